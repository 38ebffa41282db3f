"""OpenAPI pieces for the channel routes: headers, and example bodies for every status."""

from __future__ import annotations

from typing import Any

from app.core.errors import PROBLEM_JSON

ETAG_HEADER = {"ETag": {"description": "The version, for If-Match", "schema": {"type": "string"}}}
NO_STORE_HEADER = {
    "Cache-Control": {
        "description": "no-store when the body carries a secret",
        "schema": {"type": "string"},
    }
}

_PROBLEMS: dict[str, tuple[int, str, str, str | None]] = {
    "quota-exceeded": (
        403,
        "Forbidden",
        "Your plan allows 5 channels; 5 in use.",
        None,
    ),
    "channel-not-found": (404, "Not found", "No such channel.", None),
    "channel-name-taken": (409, "Conflict", "A channel named 'Website chat' exists.", "body.name"),
    "address-taken": (
        409,
        "Conflict",
        "The address support@inbound.switchboard.localhost is already in use.",
        "body.config.local_part",
    ),
    "number-in-use": (
        409,
        "Conflict",
        "The number already serves voice channel 'Main line'; detach it there first.",
        "body.config.phone_number_ids.0",
    ),
    "channel-in-use": (409, "Conflict", "Something still uses this channel.", None),
    "channel-type-mismatch": (
        409,
        "Conflict",
        "Only webchat channels have this.",
        "path.channel_id",
    ),
    "precondition-failed": (
        412,
        "Precondition failed",
        'The resource changed (now "3"); fetch it again and retry.',
        "header.If-Match",
    ),
    "validation-failed": (
        422,
        "Validation failed",
        "body.config.allowed_origins.0: must use https (plain http only for "
        "localhost and 127.0.0.1)",
        "body.config.allowed_origins.0",
    ),
    "unknown-phone-number": (
        422,
        "Validation failed",
        "No active phone number 0196b0f2-6f0e-7c3a-9a51-2f1d3c4b5a60 in this tenant.",
        "body.config.phone_number_ids.0",
    ),
    "channel-type-immutable": (
        422,
        "Validation failed",
        "A channel's type cannot change (this one is webchat); create a new channel.",
        "body.type",
    ),
}


def _problem_example(code: str) -> dict[str, Any]:
    status, title, detail, field = _PROBLEMS[code]
    body: dict[str, Any] = {
        "type": f"https://switchboard.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        "instance": "/v1/channels",
        "request_id": "4f1c2e0a9b8d4c7e8f6a5b4c3d2e1f00",
    }
    if field:
        body["field"] = field
    return {"summary": code, "value": body}


def problem_doc(description: str, *codes: str) -> dict[str, Any]:
    """A ``responses=`` entry: problem+json with one example per error code."""
    return {
        "description": description,
        "content": {
            PROBLEM_JSON: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "examples": {code: _problem_example(code) for code in codes},
            }
        },
    }


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
            },
            "credentials_set": True,
            "credential_fields": ["auth_token"],
            "webhook_secret": "whsec_Jq0c8mJ2o0y3Vb5mQk6lH1p9xZr4sTt7uWv2aBcDeFg",
        },
    },
}
