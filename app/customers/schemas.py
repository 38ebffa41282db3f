"""Request and response bodies of the customer profile API (docs/decisions/0017)."""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from app.business_hours.schedule import check_timezone
from app.core.schemas import StrictBool, check_unicode, one_line, plain_text
from app.core.validation import fail_at, patch_schema, reject_nulls

IdentityKind = Literal["phone", "email", "webchat", "whatsapp", "wechat", "messenger"]
ConsentChannel = Literal["voice", "sms", "email", "webchat", "whatsapp", "wechat", "messenger"]
ConsentStatus = Literal["granted", "revoked"]

MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_CHARS = 500
MAX_IDENTITIES = 20
# Integers beyond 2^53 do not survive a JavaScript client's JSON.parse.
_SAFE_INT = 2**53
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")

DisplayName = Annotated[
    str,
    Field(min_length=1, max_length=200, description="How agents see the customer"),
    AfterValidator(one_line),
]
Timezone = Annotated[
    str,
    Field(max_length=64, description="IANA time zone (quiet hours use it)"),
    AfterValidator(check_timezone),
]
Language = Annotated[
    str,
    Field(
        max_length=16,
        pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$",
        description="BCP 47 language tag (es, pt-BR)",
    ),
]
IdentityValue = Annotated[
    str,
    Field(min_length=1, max_length=320, description="Normalised: E.164, lower-case email..."),
    AfterValidator(plain_text),
]
Source = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(one_line)]

_ATTRIBUTE_VALUE = {
    "anyOf": [
        {"type": "string", "maxLength": MAX_ATTRIBUTE_CHARS},
        {"type": "integer", "minimum": -_SAFE_INT, "maximum": _SAFE_INT},
        {"type": "number"},
        {"type": "boolean"},
    ]
}
_KEYS = {"pattern": _KEY.pattern, "maxLength": 64}


def _check_value(key: str, value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > _SAFE_INT:
            fail_at((key,), f"must be between -{_SAFE_INT} and {_SAFE_INT}", value)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            fail_at((key,), "must be a finite number", None)
        return
    if isinstance(value, str):
        if len(value) > MAX_ATTRIBUTE_CHARS:
            fail_at((key,), f"must be at most {MAX_ATTRIBUTE_CHARS} characters", None)
        if "\x00" in value:
            fail_at((key,), "must not contain NUL characters", None)
        try:
            check_unicode(value)
        except ValueError as exc:
            fail_at((key,), str(exc), None)
        return
    fail_at((key,), "must be a string, number or boolean (no objects or lists)", None)


def _check_attributes(v: dict[str, Any], *, nulls: bool) -> dict[str, Any]:
    if len(v) > MAX_ATTRIBUTES:
        fail_at((), f"must have at most {MAX_ATTRIBUTES} keys", None)
    for key, value in v.items():
        if not _KEY.match(key):
            fail_at(
                (),
                "keys are 1-64 letters, digits, '_', '.' or '-', starting with a letter or '_'",
                None,
            )
        if value is None:
            if not nulls:
                fail_at((key,), "must not be null (null deletes a key only in PATCH)", None)
            continue
        _check_value(key, value)
    return v


def _attributes(v: dict[str, Any]) -> dict[str, Any]:
    return _check_attributes(v, nulls=False)


def _attributes_patch(v: dict[str, Any]) -> dict[str, Any]:
    return _check_attributes(v, nulls=True)


Attributes = Annotated[
    dict[str, Any],
    AfterValidator(_attributes),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_ATTRIBUTES,
            "propertyNames": _KEYS,
            "additionalProperties": _ATTRIBUTE_VALUE,
            "description": f"At most {MAX_ATTRIBUTES} keys; values are strings (at most "
            f"{MAX_ATTRIBUTE_CHARS} characters), numbers or booleans",
        }
    ),
]
AttributesPatch = Annotated[
    dict[str, Any],
    AfterValidator(_attributes_patch),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_ATTRIBUTES,
            "propertyNames": _KEYS,
            "additionalProperties": {"anyOf": [*_ATTRIBUTE_VALUE["anyOf"], {"type": "null"}]},
            "description": "JSON merge patch: a key set to null is deleted, others are set",
        }
    ),
]


class IdentityIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"kind": "phone", "value": "+1 202-555-0123"}]},
    )

    kind: IdentityKind
    value: IdentityValue
    verified: StrictBool = Field(
        default=False,
        description="You checked the customer controls it (a confirmed login, a code sent)",
    )


def _distinct_identities(v: list[IdentityIn]) -> list[IdentityIn]:
    seen: dict[tuple[str, str], int] = {}
    for i, ident in enumerate(v):
        key = (ident.kind, ident.value.strip().lower())
        if key in seen:
            fail_at((i,), f"names the same identity as item {seen[key]}", None)
        seen[key] = i
    return v


class CustomerCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "display_name": "Maria Lopez",
                    "attributes": {"tier": "gold", "crm_id": "C-4711", "lifetime_value": 1240},
                    "timezone": "Europe/Madrid",
                    "language": "es",
                    "identities": [
                        {"kind": "phone", "value": "+34 612 345 678"},
                        {"kind": "email", "value": "Maria.Lopez@Example.com"},
                    ],
                }
            ]
        },
    )

    display_name: DisplayName | None = None
    attributes: Attributes = Field(default_factory=dict)
    timezone: Timezone | None = None
    language: Language | None = None
    identities: Annotated[
        list[IdentityIn],
        Field(min_length=1, max_length=MAX_IDENTITIES),
        AfterValidator(_distinct_identities),
    ]


_PATCH_EXAMPLES: list[dict[str, Any]] = [
    {"display_name": "Maria López", "attributes": {"tier": "platinum", "crm_id": None}},
    {"timezone": "America/Mexico_City", "language": "es-MX"},
]


class CustomerUpdate(BaseModel):
    """Fields left out keep their value; ``display_name``, ``timezone`` and ``language``
    may be set to null; ``attributes`` is a JSON merge patch (null deletes a key)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=patch_schema(["attributes"], _PATCH_EXAMPLES)
    )

    display_name: DisplayName | None = None
    attributes: AttributesPatch | None = None
    timezone: Timezone | None = None
    language: Language | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return reject_nulls(data, ["attributes"])


class MergeRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"customer_id": "019a2b7c-0000-7000-8000-0000000000d2"}]},
    )

    customer_id: uuid.UUID = Field(description="The profile absorbed into this one")


class SplitRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "identity_ids": ["019a2b7c-0000-7000-8000-0000000000e1"],
                    "display_name": "Mario Lopez",
                }
            ]
        },
    )

    identity_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=MAX_IDENTITIES)]
    display_name: DisplayName | None = None


class ConsentUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "granted", "source": "checkout form"}]},
    )

    status: ConsentStatus
    source: Source | None = Field(default=None, description="Where the customer said so")


# -- responses ----------------------------------------------------------------------------


class IdentityRead(BaseModel):
    id: uuid.UUID
    kind: IdentityKind
    value: str
    verified: bool
    bounced_at: datetime | None
    created_at: datetime
    last_seen_at: datetime | None


class ConsentRead(BaseModel):
    channel: ConsentChannel
    status: ConsentStatus
    source: str | None
    updated_at: datetime


class CustomerRead(BaseModel):
    id: uuid.UUID
    display_name: str | None
    attributes: dict[str, Any]
    timezone: str | None
    language: str | None
    merged_into_id: uuid.UUID | None = Field(
        description="Set once the profile was merged: the surviving profile"
    )
    identities: list[IdentityRead]
    consents: list[ConsentRead]
    last_seen_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class CustomerPage(BaseModel):
    items: list[CustomerRead]
    next_cursor: str | None = None


class Moved(BaseModel):
    identity_ids: list[uuid.UUID]
    conversations: int
    messages: int
    timeline_events: int
    page_views: int
    proactive_decisions: int = 0
    consents: list[str] = Field(default_factory=list, description="Channels whose consent moved")
    contacts: int
    attributes: list[str] = Field(default_factory=list, description="Attribute keys taken over")
    attributes_dropped: list[str] = Field(
        default_factory=list, description="Keys left behind: the survivor reached the limit"
    )


class MergeResult(BaseModel):
    customer: CustomerRead = Field(description="The surviving profile")
    absorbed_customer_id: uuid.UUID
    moved: Moved


class SplitResult(BaseModel):
    customer: CustomerRead = Field(description="The new profile")
    from_customer_id: uuid.UUID
    moved: Moved


class ChangeRead(BaseModel):
    id: uuid.UUID
    kind: str
    other_customer_id: uuid.UUID | None
    detail: dict[str, Any]
    actor_type: str
    actor_id: str | None
    at: datetime


class ChangePage(BaseModel):
    items: list[ChangeRead]
    next_cursor: str | None = None


class TimelineItem(BaseModel):
    id: uuid.UUID
    at: datetime
    kind: str = Field(description="conversation.opened, message.received, call, callback...")
    channel: str | None
    conversation_id: uuid.UUID | None
    ref_id: uuid.UUID | None = Field(description="The message, conversation or contact")
    summary: dict[str, Any]


class TimelinePage(BaseModel):
    items: list[TimelineItem]
    next_cursor: str | None = None
