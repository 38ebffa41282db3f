"""OpenAPI pieces for the channel routes: headers, and example bodies for every status."""

from __future__ import annotations

from app.core.openapi import ETAG_HEADER, example

NO_STORE_HEADER = {
    "Cache-Control": {
        "description": "no-store when the body carries a secret",
        "schema": {"type": "string"},
    }
}

NAME_TAKEN = example(
    409, "channel-name-taken", "A channel named 'Website chat' exists.", field="body.name"
)
ADDRESS_TAKEN = example(
    409,
    "address-taken",
    "The address support@inbound.switchboard.localhost is already in use.",
    field="body.config.local_part",
)
NUMBER_IN_USE = example(
    409,
    "number-in-use",
    "The number already serves voice channel 'Main line'; detach it there first.",
    field="body.config.phone_number_ids.0",
)
IN_USE = example(409, "channel-in-use", "Something still uses this channel.")
TYPE_MISMATCH = example(
    409, "channel-type-mismatch", "Only webchat channels have this.", field="path.channel_id"
)
BAD_CONFIG = example(
    422,
    "validation-failed",
    "body.config.allowed_origins.0: must use https (plain http only for localhost and 127.0.0.1)",
    field="body.config.allowed_origins.0",
)
UNKNOWN_NUMBER = example(
    422,
    "unknown-phone-number",
    "No active phone number 0196b0f2-6f0e-7c3a-9a51-2f1d3c4b5a60 in this tenant.",
    field="body.config.phone_number_ids.0",
)
UNKNOWN_QUEUE = example(
    422,
    "unknown-reference",
    "body.config.queue_id: no such queue in this tenant",
    field="body.config.queue_id",
)
QUEUE_NOT_TAKING = example(
    422,
    "channel-not-taken",
    "body.config.queue_id: the queue takes voice, not chat; a webchat channel needs a queue "
    "that takes chat",
    field="body.config.queue_id",
)
FLOW_NOT_PUBLISHED = example(
    422,
    "flow-not-published",
    "body.config.flow_id: the flow has never been published; publish it first",
    field="body.config.flow_id",
)
TYPE_IMMUTABLE = example(
    422,
    "channel-type-immutable",
    "A channel's type cannot change (this one is webchat); create a new channel.",
    field="body.type",
)


_BASE = {
    "id": "0196b0f2-7a10-7d2e-b1c3-5e6f7a8b9c0d",
    "enabled": True,
    "version": 1,
    "created_at": "2026-11-24T09:30:00Z",
    "updated_at": "2026-11-24T09:30:00Z",
}
READ_EXAMPLE = _BASE | {
    "type": "webchat",
    "name": "Website chat",
    "config": {
        "widget_key": "wk_3q2Rm0bXc9Lw1yTz8UvA5sKd",
        "allowed_origins": ["https://www.acme.example", "https://*.acme.example"],
        "greeting": "Hi! How can we help?",
        "theme": "#0055ff",
        "queue_id": "0196b0f2-5c1d-7e4f-8a9b-0c1d2e3f4a5b",
        "flow_id": None,
    },
}
CREATED_EXAMPLES = {
    "webchat": {"summary": "A webchat channel", "value": READ_EXAMPLE},
    "sms": {
        "summary": "An sms channel: the webhook secret is shown this once",
        "value": _BASE
        | {
            "type": "sms",
            "name": "Text us",
            "config": {
                "provider": "twilio",
                "provider_account_id": "AC0123456789abcdef0123456789abcdef",
                "phone_number_ids": [],
                "queue_id": None,
                "flow_id": None,
            },
            "credentials_set": True,
            "credential_fields": ["auth_token"],
            "webhook_secret": "whsec_Jq0c8mJ2o0y3Vb5mQk6lH1p9xZr4sTt7uWv2aBcDeFg",
        },
    },
}

# A channel with its ETag: the get and change answers.
READ_WITH_ETAG = {
    "headers": ETAG_HEADER,
    "content": {"application/json": {"example": READ_EXAMPLE}},
}
