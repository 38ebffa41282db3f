"""What the phone-number routes can answer, with an example of each problem, for the
OpenAPI document."""

from __future__ import annotations

from typing import Any

from app.core.errors import PROBLEM_JSON

ETAG_HEADER = {"ETag": {"description": "The version, for If-Match", "schema": {"type": "string"}}}

_TITLES = {
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    412: "Precondition failed",
    422: "Validation failed",
    502: "Carrier error",
}


def _problem(status_code: int, code: str, detail: str, field: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "type": f"https://switchboard.dev/problems/{code}",
        "title": _TITLES[status_code],
        "status": status_code,
        "code": code,
        "detail": detail,
        "instance": "/v1/phone-numbers",
        "request_id": "0f8c2d1e6b7a4c59",
    }
    if field:
        value["field"] = field
    return {"summary": code, "value": value}


def problems(description: str, *examples: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            PROBLEM_JSON: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "examples": {e["summary"]: e for e in examples},
            }
        },
    }


BAD_NUMBER = _problem(
    422, "validation-failed", "body.number: is not a valid number in its country", "body.number"
)
NOT_OFFERED = _problem(
    422, "number-not-offered", "The sandbox carrier does not offer this number.", "body.number"
)
NO_FLOW = _problem(422, "flow-not-found", "No contact flow with this id.", "body.flow_id")
UNAVAILABLE = _problem(
    409,
    "number-unavailable",
    "This number is not available: it is held, or it was released recently and is cooling down.",
    "body.number",
)
RELEASED = _problem(409, "phone-number-released", "This number was released.")
NOT_FOUND = _problem(404, "phone-number-not-found", "No such phone number.")
QUOTA = _problem(403, "quota-exceeded", "Your plan allows 2 phone numbers; 2 in use.")
STALE = _problem(
    412,
    "precondition-failed",
    'The resource changed (now "3"); fetch it again and retry.',
    "header.If-Match",
)
CARRIER = _problem(
    502,
    "carrier-error",
    "The carrier (twilio) failed: authentication failed. Nothing was changed; try again later.",
)
BAD_QUERY = _problem(
    422,
    "validation-failed",
    "query.area_code: must be a 3-digit area code (NPA) such as 415 in this country",
    "query.area_code",
)

R_CARRIER = problems("The carrier failed or refused our credentials; nothing changed", CARRIER)
R_STALE = problems("Stale If-Match", STALE)
R_NOT_FOUND = problems("No such phone number (or another tenant's)", NOT_FOUND)
