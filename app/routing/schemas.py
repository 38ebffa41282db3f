"""Request and response models of contacts, presence, reservations and explanations."""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from app.core.schemas import StrictInt, check_unicode, no_nul, one_line, plain_text
from app.phone_numbers.e164 import E164
from app.queues.schemas import Channel, RequiredSkill

ContactState = Literal["queued", "offered", "in_progress", "wrap_up", "completed", "abandoned"]
PresenceStatus = Literal["offline", "available", "break"]
AgentState = Literal["offline", "available", "busy", "wrap_up", "break"]
ReservationState = Literal[
    "offered", "in_progress", "wrap_up", "completed", "rejected", "timed_out", "rescinded"
]

MAX_ATTRIBUTES_BYTES = 8192
MAX_ATTRIBUTES_DEPTH = 8


def _storable(value: Any, depth: int = 0) -> None:
    """Raise ValueError unless ``value`` fits in a PostgreSQL jsonb column: no NUL, no
    lone surrogates, no NaN or Infinity, and not nested deeper than the bound."""
    if depth > MAX_ATTRIBUTES_DEPTH:
        raise ValueError(f"must not nest deeper than {MAX_ATTRIBUTES_DEPTH} levels")
    if isinstance(value, str):
        check_unicode(no_nul(value))
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must not contain NaN or Infinity")
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, depth + 1)
            _storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _storable(item, depth + 1)


# No control characters: PostgreSQL text cannot hold NUL; the others are a client's bug.
PlainText = Annotated[str, AfterValidator(plain_text)]
# A break reason, a wrap-up code: one line, as the queue's names and wrap-up codes are.
Label = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(one_line)]


class ContactCreate(BaseModel):
    """A contact to route: into a queue, or wherever a published contact flow sends it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel": "chat",
                    "queue_id": "019a2b7c-0000-7000-8000-0000000000a1",
                    "customer_ref": "cust-4711",
                    "priority": 3,
                    "required_skills": [
                        {"skill_id": "019a2b7c-0000-7000-8000-0000000000c1", "min_proficiency": 3}
                    ],
                    "attributes": {"language": "es", "tier": "gold", "cart_value": 240},
                }
            ]
        },
    )

    channel: Channel
    queue_id: uuid.UUID | None = Field(
        default=None, description="The queue; or give flow_id and let the flow choose"
    )
    flow_id: uuid.UUID | None = Field(
        default=None, description="A published contact flow whose transfer picks the queue"
    )
    flow_inputs: list[Annotated[PlainText, Field(max_length=200)]] = Field(
        default_factory=list,
        max_length=20,
        description="Answers fed to the flow's input nodes, in order (e.g. DTMF digits)",
    )
    customer_ref: Annotated[PlainText, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="Your reference for the customer (sticky routing uses it)"
    )
    priority: StrictInt = Field(default=5, ge=1, le=10, description="1 is the most urgent")
    required_skills: list[RequiredSkill] = Field(
        default_factory=list, max_length=20, description="Skills on top of the queue's"
    )
    preferred_agent_ids: list[uuid.UUID] = Field(default_factory=list, max_length=20)
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Customer and contact attributes (for best_score)"
    )

    @field_validator("required_skills")
    @classmethod
    def _distinct(cls, v: list[RequiredSkill]) -> list[RequiredSkill]:
        ids = [s.skill_id for s in v]
        if len(ids) != len(set(ids)):
            raise ValueError("names a skill twice")
        return v

    @field_validator("attributes")
    @classmethod
    def _bounded(cls, v: dict[str, Any]) -> dict[str, Any]:
        _storable(v)
        if len(json.dumps(v, ensure_ascii=False).encode()) > MAX_ATTRIBUTES_BYTES:
            raise ValueError(f"must encode to at most {MAX_ATTRIBUTES_BYTES} bytes of JSON")
        return v


class ContactRead(BaseModel):
    id: uuid.UUID
    channel: str
    queue_id: uuid.UUID
    original_queue_id: uuid.UUID
    customer_ref: str | None
    priority: int
    state: ContactState
    mode: Literal["live", "callback"]
    callback_number: str | None
    required_skills: list[dict[str, Any]]
    preferred_agent_ids: list[uuid.UUID]
    attributes: dict[str, Any]
    sticky_agent_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    enqueued_at: datetime
    offered_at: datetime | None
    answered_at: datetime | None
    completed_at: datetime | None
    abandoned_at: datetime | None
    wait_seconds: float | None = Field(description="Enqueue to answer, or to abandonment")
    missed_offers: int
    wrap_up_code: str | None
    position: int | None = Field(description="1 = next in line (waiting contacts only)")
    estimated_wait_seconds: float | None = Field(
        description="From the queue's recent speed of answer and the agents serving it"
    )


class CallbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: E164 = Field(description="The customer's number, E.164 (e.g. +12025550123)")


class PresenceUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "break", "break_reason": "lunch"}]},
    )

    status: PresenceStatus
    break_reason: Label | None = Field(default=None, description="Required with status break")


class PresenceRead(BaseModel):
    agent_id: uuid.UUID
    status: PresenceStatus
    state: AgentState
    break_reason: str | None
    capacity_points: int
    used_points: int
    missed_offers: int
    status_since: datetime
    heartbeat_expires_at: datetime | None
    reservations: list[ReservationRead] = Field(default_factory=list)


class ReservationRead(BaseModel):
    id: uuid.UUID
    contact_id: uuid.UUID
    agent_id: uuid.UUID
    queue_id: uuid.UUID
    channel: str
    points: int
    state: ReservationState
    reason: str | None
    offered_at: datetime
    offer_expires_at: datetime
    accepted_at: datetime | None
    wrap_up_at: datetime | None
    wrap_up_expires_at: datetime | None
    closed_at: datetime | None


class WrapUpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Label | None = Field(default=None, description="One of the queue's wrap_up_codes")


class RoutingTrail(BaseModel):
    contact_id: uuid.UUID
    state: ContactState
    trail: list[dict[str, Any]] = Field(description="Every decision, oldest first")
    now: dict[str, Any] | None = Field(
        description="For a waiting contact: why it waits, evaluated against agents now"
    )


class AgentRouting(BaseModel):
    agent_id: uuid.UUID
    receiving_work: bool
    reasons: list[str]
    presence: PresenceRead
    queues: list[dict[str, Any]]
    waiting: list[dict[str, Any]]


PresenceRead.model_rebuild()
