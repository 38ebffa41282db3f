"""Request and response bodies of the public widget API (what a visitor's browser sends
and sees: never agents' ids, internal notes or routing internals)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.conversations.schemas import ConversationState, MessageStatus
from app.core.schemas import LINE_BREAKS, check_text, one_line

MAX_TEXT = 5000
MAX_ATTACHMENTS = 10
MAX_PAGE_ATTRIBUTES = 20


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_control(value: str) -> str:
    """Free text a person typed: line breaks and tabs allowed, other control
    characters (NUL among them, which PostgreSQL cannot store) not. Blank is the
    service's call: a message may be only attachments."""
    return check_text(
        value,
        allowed_controls=LINE_BREAKS,
        allow_blank=True,
        control_reason="must not contain control characters other than line breaks",
    )


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_no_control)]
OneLine = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(one_line)]
ClientMessageId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$"),
    Field(description="The widget's id for this message: a resend with it is not doubled."),
]
AttachmentIds = Annotated[
    list[uuid.UUID],
    Field(max_length=MAX_ATTACHMENTS, description="Uploads of this conversation to attach."),
]


# -- session ------------------------------------------------------------------------------


class SessionCreate(Strict):
    visitor_token: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None,
        description="A token this visitor had before (even an expired one): the same "
        "visitor and history. Unusable tokens start a new visitor.",
    )


class WidgetConfig(BaseModel):
    greeting: str | None
    theme: str | None


class AgentInfo(BaseModel):
    display_name: str


class WidgetConversation(BaseModel):
    id: uuid.UUID
    state: ConversationState
    position: int | None = Field(description="Place in line while queued (1 = next).")
    estimated_wait_seconds: float | None = Field(
        description="Estimated wait while queued; null when nobody serves the queue now."
    )
    agent: AgentInfo | None
    created_at: datetime
    last_message_at: datetime | None
    resolved_at: datetime | None


class SessionRead(BaseModel):
    visitor_token: str = Field(description="Send as 'Authorization: Bearer <token>'.")
    visitor_id: str
    expires_at: datetime
    resumed: bool = Field(description="True when visitor_token named this visitor again.")
    widget: WidgetConfig
    conversation: WidgetConversation | None


# -- messages -----------------------------------------------------------------------------


class WidgetAttachment(BaseModel):
    attachment_id: uuid.UUID
    filename: str
    content_type: str
    size_bytes: int | None = None


class WidgetMessage(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    direction: Literal["inbound", "outbound"]
    sender_kind: Literal["customer", "agent", "bot", "system"]
    agent_name: str | None
    body: str
    attachments: list[WidgetAttachment]
    status: MessageStatus
    client_message_id: str | None
    created_at: datetime
    read_at: datetime | None


class MessagePage(BaseModel):
    items: list[WidgetMessage]
    next_cursor: str | None = None


class ConversationStart(Strict):
    text: Text
    client_message_id: ClientMessageId | None = None
    attachment_ids: AttachmentIds = []


class MessageCreate(Strict):
    text: Text
    client_message_id: ClientMessageId
    attachment_ids: AttachmentIds = []


class ChatStarted(BaseModel):
    conversation: WidgetConversation
    message: WidgetMessage


class MessagePosted(BaseModel):
    message: WidgetMessage
    duplicate: bool = Field(description="True when this client_message_id was sent before.")


class ReadReceipt(Strict):
    message_id: uuid.UUID


class ReadResult(BaseModel):
    marked_read: int


# -- attachments --------------------------------------------------------------------------


class UploadCreate(Strict):
    filename: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(one_line)]
    content_type: Annotated[str, Field(min_length=3, max_length=100)]
    size_bytes: Annotated[int, Field(ge=1)]


class UploadTicketRead(BaseModel):
    url: str
    method: Literal["POST", "PUT"]
    fields: dict[str, str]
    headers: dict[str, str]
    expires_at: datetime
    max_bytes: int
    content_type: str


class UploadGrant(BaseModel):
    attachment_id: uuid.UUID
    upload: UploadTicketRead


# -- visitor ------------------------------------------------------------------------------


class IdentifyBody(Strict):
    name: OneLine | None = None
    email: Annotated[str, Field(min_length=3, max_length=254)] | None = None


class EmailOutcome(BaseModel):
    address: str
    status: Literal["added", "already_linked", "claimed"]
    detail: str


class Identified(BaseModel):
    display_name: str | None
    email: EmailOutcome | None


PageAttribute = Annotated[str, Field(max_length=500), AfterValidator(_no_control)] | float | bool


def _attribute_keys(value: dict[str, Any]) -> dict[str, Any]:
    for key in value:
        if not (1 <= len(key) <= 64) or not all(c.isalnum() or c in "_.-" for c in key):
            raise ValueError(f"key {key[:64]!r}: 1-64 letters, digits, '_', '.' or '-'")
    return value


class PageViewCreate(Strict):
    url: Annotated[str, Field(min_length=8, max_length=2000), AfterValidator(one_line)]
    title: Annotated[str, Field(max_length=300), AfterValidator(_no_control)] | None = None
    referrer: Annotated[str, Field(max_length=2000), AfterValidator(one_line)] | None = None
    attributes: Annotated[
        dict[str, PageAttribute],
        Field(max_length=MAX_PAGE_ATTRIBUTES),
        AfterValidator(_attribute_keys),
    ] = {}


class InvitationRead(BaseModel):
    decision_id: uuid.UUID
    rule_id: uuid.UUID
    action: Literal["invite_chat", "offer_callback"]
    message: str


class PageViewRecorded(BaseModel):
    page_view_id: uuid.UUID
    invitation: InvitationRead | None


class InvitationAccept(Strict):
    text: Text | None = None


class InvitationAccepted(BaseModel):
    conversation: WidgetConversation
    message: WidgetMessage | None


class CallbackCreate(Strict):
    phone: Annotated[str, Field(min_length=3, max_length=32)]
    decision_id: uuid.UUID | None = None


class CallbackRequested(BaseModel):
    callback_id: uuid.UUID
    position: int | None
    estimated_wait_seconds: float | None
