"""Request and response bodies of the agents' actions on conversations (REST and the
agent WebSocket's ``conversation.*`` commands take the same bodies)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.conversations.schemas import ConversationRead
from app.core.schemas import LINE_BREAKS, StrictBool, check_text
from app.core.validation import fail_at

MAX_TEXT = 10_000
MAX_NOTE = 2_000


def _message_text(v: str) -> str:
    """Text a customer or a colleague reads: line breaks and tabs are kept; other control
    characters, NUL and lone surrogates (PostgreSQL cannot store them) are refused, and
    so is text that is only white space."""
    return check_text(
        v,
        allowed_controls=LINE_BREAKS,
        control_reason="must not contain control characters (other than line breaks)",
    )


MessageText = Annotated[
    str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_message_text)
]
NoteText = Annotated[str, Field(min_length=1, max_length=MAX_NOTE), AfterValidator(_message_text)]
WrapUpCode = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_message_text)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _template_parameter(v: str) -> str:
    """WhatsApp refuses line breaks, tabs and more than four spaces in a row in a
    template's body parameters (Graph error 132018): say so before sending."""
    v = _message_text(v)
    if any(c in v for c in LINE_BREAKS):
        raise ValueError("must not contain line breaks or tabs (WhatsApp refuses them here)")
    if " " * 5 in v:
        raise ValueError("must not contain more than four spaces in a row")
    return v


TemplateParameter = Annotated[
    str, Field(min_length=1, max_length=1024), AfterValidator(_template_parameter)
]


class MessageTemplate(_Body):
    """A WhatsApp message template approved in the business's WhatsApp Manager: the way
    to write to a customer more than 24 hours after their last message."""

    name: str = Field(
        min_length=1,
        max_length=512,
        pattern=r"^[a-z0-9_]+$",
        description="The template's name as approved (lowercase letters, digits, _)",
    )
    language: str = Field(
        min_length=2,
        max_length=16,
        pattern=r"^[a-z]{2,3}(_[A-Z]{2}|_[0-9]{3})?$",
        description="The approved translation's language code (en, en_US, pt_BR)",
    )
    parameters: list[TemplateParameter] = Field(
        default_factory=list,
        max_length=20,
        description="The values of the body's {{1}}, {{2}}... in order",
    )

    def readable(self) -> str:
        """How the message reads in the conversation (its ``body``)."""
        values = f": {', '.join(self.parameters)}" if self.parameters else ""
        return f"[template {self.name} ({self.language}){values}]"


class ReplyCreate(_Body):
    """A reply to the customer, on the conversation's channel or another of the tenant's
    channels (``channel_id``: chat -> email keeps one conversation). Either ``text`` or,
    on WhatsApp, an approved ``template`` (which may go out after the 24-hour window)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "Your refund was issued today."},
                {
                    "text": "As promised, the invoice is attached.",
                    "channel_id": "019a2b7c-0000-7000-8000-0000000000e1",
                },
                {
                    "template": {
                        "name": "order_update",
                        "language": "en_US",
                        "parameters": ["4711", "tomorrow"],
                    }
                },
            ]
        },
    )

    text: MessageText | None = None
    template: MessageTemplate | None = Field(
        default=None, description="An approved WhatsApp template instead of text"
    )
    channel_id: uuid.UUID | None = Field(
        default=None, description="Reply on another channel of the tenant (switch channel)"
    )
    attachment_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=10, description="Uploads of this conversation"
    )

    @model_validator(mode="after")
    def _text_or_template(self) -> ReplyCreate:
        if self.text is None and self.template is None:
            fail_at(("text",), "give either text or template")
        if self.text is not None and self.template is not None:
            fail_at(("template",), "give either text or template, not both")
        if self.template is not None and self.attachment_ids:
            fail_at(("attachment_ids",), "a template carries no attachments")
        return self

    @property
    def body(self) -> str:
        """The message as the conversation shows it."""
        if self.template is not None:
            return self.template.readable()
        assert self.text is not None
        return self.text


class NoteCreate(_Body):
    """An internal note: agents and supervisors see it, the customer never does."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Customer is a reseller; check contract."}]},
    )

    text: MessageText


class TransferRequest(_Body):
    """Hand the conversation to a queue or an agent. ``cold``: the current agent's work
    ends now and the conversation waits for the target. ``warm``: the current agent keeps
    it (and can chat on) until the new agent accepts; the note goes with the offer."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "queue_id": "019a2b7c-0000-7000-8000-0000000000a2",
                    "mode": "warm",
                    "note": "Wants a refund of order 4711; identity checked.",
                },
                {"agent_id": "019a2b7c-0000-7000-8000-0000000000b7", "mode": "cold"},
            ]
        },
    )

    queue_id: uuid.UUID | None = Field(default=None, description="The target queue")
    agent_id: uuid.UUID | None = Field(default=None, description="The target agent")
    mode: Literal["warm", "cold"] = "cold"
    note: NoteText | None = None

    @model_validator(mode="after")
    def _one_target(self) -> TransferRequest:
        if (self.queue_id is None) == (self.agent_id is None):
            fail_at(("queue_id",), "give either queue_id or agent_id")
        return self


class ConsultRequest(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"agent_id": "019a2b7c-0000-7000-8000-0000000000b7", "note": "Tax question"}
            ]
        },
    )

    agent_id: uuid.UUID
    note: NoteText | None = None


class ResolveRequest(_Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"wrap_up_code": "Refund issued"}]}
    )

    wrap_up_code: WrapUpCode | None = Field(
        default=None, description="One of the queue's wrap_up_codes (the disposition)"
    )


class TypingRequest(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"typing": True}]})

    typing: StrictBool = True


class ParticipantRead(BaseModel):
    id: uuid.UUID
    kind: Literal["customer", "agent", "bot", "supervisor"]
    role: Literal["customer", "owner", "consult", "monitor", "bot"]
    state: Literal["invited", "active", "left"]
    agent_id: uuid.UUID | None
    user_id: uuid.UUID | None
    name: str | None
    joined_at: datetime
    left_at: datetime | None


class ConversationDetail(ConversationRead):
    """A conversation with who takes part and a warm transfer in flight."""

    transfer_contact_id: uuid.UUID | None
    participants: list[ParticipantRead]


class ConversationEventRead(BaseModel):
    id: int
    topic: str
    audience: Literal["all", "agents"]
    payload: dict[str, Any]
    created_at: datetime


class EventPage(BaseModel):
    items: list[ConversationEventRead]
    latest_event_id: int = Field(description="Ask again with since= this id")


class TypingRead(BaseModel):
    sent: bool = Field(description="False when a typing event was sent moments ago")
