"""The documented error answers of the conversations API (app/conversations/*_endpoints.py)."""

from __future__ import annotations

from typing import Any

from app.core.openapi import (
    PRECONDITION_FAILED,
    WITH_ETAG,
    example,
    insufficient_scope,
    not_found,
    problem,
)

NOT_FOUND = not_found("conversation-not-found")
RESOLVED = example(
    409, "conversation-resolved", "The conversation is resolved; reopen it first.", state="resolved"
)
NOT_ASSIGNED = example(
    409,
    "conversation-not-assigned",
    "The conversation is queued; this needs it assigned.",
    state="queued",
)
FORBIDDEN = problem(
    "Missing the scope, not taking part, or not allowed in this part",
    insufficient_scope("conversations:write"),
    example(403, "not-a-participant", "You do not take part in this conversation."),
    example(403, "not-the-owner", "Only the agent who owns the conversation can do this."),
    example(
        403,
        "read-only-participant",
        "You monitor this conversation: monitoring is read-only.",
    ),
)
READ_FORBIDDEN = problem(
    "Missing the scope, or an agent not taking part",
    insufficient_scope("conversations:read"),
    example(403, "not-a-participant", "You do not take part in this conversation."),
)
WRONG_STATE = problem(
    "The conversation is not in a state that allows this",
    RESOLVED,
    NOT_ASSIGNED,
    example(
        409,
        "transfer-pending",
        "A warm transfer is waiting for its agent; cancel it first.",
        contact_id="019a2b7c-0000-7000-8000-0000000000c9",
    ),
)

# A change of the conversation: If-Match, and the states that refuse it.
CHANGE: dict[int | str, dict[str, Any]] = {
    200: WITH_ETAG,
    403: FORBIDDEN,
    404: NOT_FOUND,
    409: WRONG_STATE,
    412: PRECONDITION_FAILED,
}

REPLY_INVALID = problem(
    "Bad input: names the field",
    example(
        422,
        "no-address-for-channel",
        "body.channel_id: the customer has no email address for a email channel",
        field="body.channel_id",
    ),
    example(
        422,
        "validation-failed",
        "body.text: String should have at most 10000 characters",
        field="body.text",
    ),
    example(
        422,
        "template-not-supported",
        "body.template: templates are sent on WhatsApp channels only, not on sms",
        field="body.template",
    ),
)

# A reply: the conversation's state, or Meta's messaging window on WhatsApp/Messenger.
REPLY_REFUSED = problem(
    "The conversation is not assigned, or the channel takes no such message now",
    RESOLVED,
    NOT_ASSIGNED,
    example(
        409,
        "service-window-closed",
        "The customer last wrote on WhatsApp more than 24 hours ago (or never): WhatsApp "
        "takes free-form replies only within 24 hours of the customer's last message. "
        "Send an approved template (template instead of text), reply on another channel, "
        "or wait for the customer to write.",
        field="body.channel_id",
    ),
)

UPLOAD_REFUSED = problem(
    "The file's type or size is not accepted",
    example(
        422,
        "content-type-not-allowed",
        "body.content_type: 'application/x-msdownload' is not accepted; send one "
        "of image/png, application/pdf",
        field="body.content_type",
    ),
    example(
        422,
        "attachment-too-large",
        "body.size_bytes: files are limited to 10485760 bytes",
        field="body.size_bytes",
    ),
)

ATTACHMENT_NOT_FOUND = problem(
    "No such conversation or file",
    example(404, "conversation-not-found", "No such conversation."),
    example(404, "attachment-not-found", "No such attachment."),
)
