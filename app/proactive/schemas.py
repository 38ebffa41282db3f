"""Request and response bodies of proactive rules, decisions and proactive messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, model_validator

from app.conversations.schemas import MessageRead
from app.core.schemas import LINE_BREAKS, Name, StrictBool, StrictInt, check_text
from app.core.validation import fail_at, patch_schema, reject_nulls

Action = Literal["invite_chat", "offer_callback"]
AttributeOp = Literal["eq", "ne", "gt", "gte", "lt", "lte"]
ORDERING_OPS = ("gt", "gte", "lt", "lte")
DecisionKind = Literal["contact", "hold"]


def _line(v: str) -> str:
    """A condition's operand: compared as given, so not collapsed."""
    return check_text(v)


def _text(v: str) -> str:
    """A message to a customer: line breaks and tabs kept."""
    return check_text(v, allowed_controls=LINE_BREAKS)


Line = Annotated[str, AfterValidator(_line)]
Message = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_text)]
AttributeName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="A key of the page view's attributes (reported by the widget), else of "
        "the customer's profile attributes",
    ),
]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttributeCondition(_Strict):
    """Compare one attribute: the latest page view's, else the customer profile's.
    ``gt``/``gte``/``lt``/``lte`` compare numbers (a value that is not a number, or a
    numeric string, does not match); ``eq``/``ne`` compare numbers as numbers and
    anything else as text."""

    name: AttributeName
    op: AttributeOp
    value: StrictInt | Number | Annotated[Line, Field(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _number_for_ordering(self) -> AttributeCondition:
        if self.op in ORDERING_OPS and isinstance(self.value, str):
            fail_at(("value",), f"must be a number for op {self.op}", self.value)
        return self


class Conditions(_Strict):
    """All the given conditions must hold (at least one is required)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "min_pages_seen": 3,
                    "url_contains": "/checkout",
                    "attribute": {"name": "cart_value", "op": "gte", "value": 200},
                }
            ]
        },
    )

    min_pages_seen: StrictInt | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Pages seen in the current visit (page views with no gap over 30 "
        "minutes between them), the current one included",
    )
    url_contains: Annotated[Line, Field(min_length=1, max_length=500)] | None = Field(
        default=None, description="The current page's URL contains this (case-insensitive)"
    )
    min_dwell_seconds: Annotated[Number, Field(ge=0, le=86_400)] | None = Field(
        default=None,
        description="Seconds since the visit began (its first page view), as of the "
        "evaluation: total time on the site in this visit",
    )
    attribute: AttributeCondition | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Conditions:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError(
                "give at least one condition: min_pages_seen, url_contains, "
                "min_dwell_seconds or attribute"
            )
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


Priority = Annotated[
    StrictInt, Field(ge=0, le=10_000, description="Lower is evaluated first; ties by age")
]
ChannelIdField = Field(
    default=None,
    description="A webchat channel of this tenant the rule applies to; null: every webchat channel",
)

_EXAMPLE: dict[str, Any] = {
    "name": "Help at checkout",
    "enabled": True,
    "channel_id": "019a2b7c-0000-7000-8000-0000000000d1",
    "conditions": {"url_contains": "/checkout", "min_dwell_seconds": 60},
    "action": "invite_chat",
    "message": "Need a hand with your order? Chat with us.",
    "priority": 10,
}


class RuleCreate(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    name: Name
    enabled: StrictBool = True
    channel_id: uuid.UUID | None = ChannelIdField
    conditions: Conditions
    action: Action
    message: Message
    priority: Priority = 100


_NOT_NULL = ("name", "enabled", "conditions", "action", "message", "priority")


class RuleUpdate(_Strict):
    """Fields given replace the stored ones (``conditions`` whole); ``channel_id: null``
    makes the rule apply to every webchat channel."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=patch_schema(
            _NOT_NULL, [{"enabled": False}, {"conditions": {"min_pages_seen": 4}, "priority": 5}]
        ),
    )

    name: Name | None = None
    enabled: StrictBool | None = None
    channel_id: uuid.UUID | None = ChannelIdField
    conditions: Conditions | None = None
    action: Action | None = None
    message: Message | None = None
    priority: Priority | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return reject_nulls(data, _NOT_NULL)


class RuleRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _EXAMPLE
                | {
                    "id": "019a2b7c-0000-7000-8000-0000000000f7",
                    "version": 1,
                    "created_at": "2026-11-24T10:00:00Z",
                    "updated_at": "2026-11-24T10:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    name: str
    enabled: bool
    channel_id: uuid.UUID | None
    conditions: dict[str, Any]
    action: Action
    message: str
    priority: int
    version: int
    created_at: datetime
    updated_at: datetime


class DecisionRead(BaseModel):
    """One decision to contact a customer or hold back. ``reason``: ``rule-matched`` or
    ``operator-request`` (contact), ``frequency-cap``, ``quiet-hours`` or ``no-consent``
    (hold). ``detail`` carries what was weighed: contacts in the window and the cap, the
    customer's local time and timezone, consent, and the visit or message context."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "019a2b7c-0000-7000-8000-0000000000e9",
                    "customer_id": "019a2b7c-0000-7000-8000-0000000000c4",
                    "rule_id": "019a2b7c-0000-7000-8000-0000000000f7",
                    "channel": "webchat",
                    "decision": "hold",
                    "reason": "quiet-hours",
                    "detail": {
                        "local_time": "23:04",
                        "timezone": "Asia/Tokyo",
                        "timezone_source": "customer",
                        "quiet_hours": "21:00-08:00",
                        "contacts_in_window": 1,
                        "max_contacts": 3,
                        "window_days": 7,
                        "consent": None,
                    },
                    "at": "2026-11-24T14:04:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    customer_id: uuid.UUID
    rule_id: uuid.UUID | None
    channel: str
    decision: DecisionKind
    reason: str
    detail: dict[str, Any]
    at: datetime


class ProactiveMessageCreate(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel_id": "019a2b7c-0000-7000-8000-0000000000d2",
                    "text": "Your order 4711 shipped today. Reply here with any question.",
                }
            ]
        },
    )

    channel_id: uuid.UUID = Field(
        description="An sms, email, whatsapp, wechat or messenger channel of this tenant"
    )
    text: Annotated[str, Field(min_length=1, max_length=4000), AfterValidator(_text)]


class ProactiveMessageSent(BaseModel):
    decision: DecisionRead
    conversation_id: uuid.UUID
    message: MessageRead
