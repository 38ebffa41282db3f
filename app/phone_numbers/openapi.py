"""What the phone-number routes can answer, with an example of each problem, for the
OpenAPI document."""

from __future__ import annotations

from app.core.openapi import example, not_found, problem, scope_or_quota

BAD_NUMBER = example(
    422,
    "validation-failed",
    "body.number: is not a valid number in its country",
    field="body.number",
)
NOT_OFFERED = example(
    422,
    "number-not-offered",
    "The sandbox carrier does not offer this number.",
    field="body.number",
)
NO_FLOW = example(422, "flow-not-found", "No contact flow with this id.", field="body.flow_id")
UNAVAILABLE = example(
    409,
    "number-unavailable",
    "This number is not available: it is held, or it was released recently and is cooling down.",
    field="body.number",
)
RELEASED = example(409, "phone-number-released", "This number was released.")
ATTACHED = example(
    409,
    "number-attached",
    "The number is attached to channel 'Main line'; detach it there first "
    "(PATCH /v1/channels/{channel_id} with config.phone_number_ids without it).",
    used_by=[
        {
            "type": "channel",
            "id": "0196b0f2-6f0e-7c3a-9a51-2f1d3c4b5a61",
            "name": "Main line",
            "channel_type": "voice",
        }
    ],
)
BAD_QUERY = example(
    422,
    "validation-failed",
    "query.area_code: must be a 3-digit area code (NPA) such as 415 in this country",
    field="query.area_code",
)

CARRIER_FAILED = problem(
    "The carrier failed or refused our credentials; nothing changed",
    example(
        502,
        "carrier-error",
        "The carrier (twilio) failed: authentication failed. Nothing was changed; try again later.",
        title="Carrier error",
    ),
)
NOT_FOUND = not_found("phone-number-not-found")
SCOPE_OR_QUOTA = scope_or_quota("phone_numbers:write", "phone_numbers", 2)
