from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.core.schemas import Description, Name, StrictBool, StrictInt
from app.core.validation import fail_at, patch_schema, reject_nulls

CHANNELS = ("voice", "video", "chat", "email", "sms", "messaging")
Channel = Literal["voice", "video", "chat", "email", "sms", "messaging"]
AgentSelection = Literal["longest_idle", "most_skilled", "best_score"]
RelaxationAction = Literal["lower_minimum", "drop_skill", "add_overflow"]

DAY = 86_400
MAX_WAIT = 30 * DAY  # email and messaging may wait for days


class RequiredSkill(BaseModel):
    """A skill an agent must hold, at this proficiency (1-5) or better."""

    model_config = ConfigDict(extra="forbid")

    skill_id: uuid.UUID
    min_proficiency: StrictInt = Field(default=1, ge=1, le=5)


def _only_true(v: Any) -> Any:
    # Literal[True] alone would take 1 and 1.0 (they equal True in Python).
    if v is not None and v is not True:
        raise ValueError("must be true")
    return v


class OverflowTarget(BaseModel):
    """Where contacts may also go: another queue of this tenant, or the crowd pool."""

    model_config = ConfigDict(extra="forbid")

    queue_id: uuid.UUID | None = None
    crowd: Annotated[Literal[True] | None, BeforeValidator(_only_true)] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> OverflowTarget:
        if (self.queue_id is None) == (self.crowd is None):
            fail_at((), 'must be either {"queue_id": ...} or {"crowd": true}')
        return self


_STEP_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # action: (required, not allowed)
    "lower_minimum": ({"skill_id", "to"}, {"target"}),
    "drop_skill": ({"skill_id"}, {"to", "target"}),
    "add_overflow": ({"target"}, {"skill_id", "to"}),
}


class RelaxationStep(BaseModel):
    """After a contact waited ``after_seconds``: lower a skill's minimum proficiency
    (``skill_id``, ``to``), drop a required skill (``skill_id``), or add an overflow
    target (``target``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "after_seconds": 30,
                    "action": "lower_minimum",
                    "skill_id": "019a2b7c-0000-7000-8000-0000000000c1",
                    "to": 2,
                },
                {
                    "after_seconds": 60,
                    "action": "drop_skill",
                    "skill_id": "019a2b7c-0000-7000-8000-0000000000c2",
                },
                {"after_seconds": 120, "action": "add_overflow", "target": {"crowd": True}},
            ]
        },
    )

    after_seconds: StrictInt = Field(ge=1, le=MAX_WAIT)
    action: RelaxationAction
    skill_id: uuid.UUID | None = Field(
        default=None, description="lower_minimum, drop_skill: a required skill of the queue"
    )
    to: StrictInt | None = Field(
        default=None, ge=1, le=5, description="lower_minimum: the new, lower minimum"
    )
    target: OverflowTarget | None = Field(default=None, description="add_overflow")

    @model_validator(mode="after")
    def _fields_fit_the_action(self) -> RelaxationStep:
        required, not_allowed = _STEP_FIELDS[self.action]
        for name in sorted(required):
            if getattr(self, name) is None:
                fail_at((name,), f"is required for {self.action}")
        for name in sorted(not_allowed):
            if getattr(self, name) is not None:
                fail_at((name,), f"is not allowed for {self.action}", getattr(self, name))
        return self


def _no_duplicates(key_name: str, key: Any = None) -> Any:
    def check(items: list[Any]) -> list[Any]:
        seen: dict[Any, int] = {}
        for i, item in enumerate(items):
            k = key(item) if key else item
            if k in seen:
                loc: tuple[str | int, ...] = (i, key_name) if key_name else (i,)
                fail_at(loc, f"duplicates item {seen[k]}", k)
            seen[k] = i
        return items

    return check


def _increasing(steps: list[RelaxationStep]) -> list[RelaxationStep]:
    for i in range(1, len(steps)):
        if steps[i].after_seconds <= steps[i - 1].after_seconds:
            fail_at(
                (i, "after_seconds"),
                f"must be greater than the previous step's ({steps[i - 1].after_seconds})",
                steps[i].after_seconds,
            )
    return steps


Channels = Annotated[
    list[Channel],
    Field(min_length=1, max_length=len(CHANNELS), description="The channels this queue takes."),
    AfterValidator(_no_duplicates("")),
]
RequiredSkills = Annotated[
    list[RequiredSkill],
    Field(max_length=50),
    AfterValidator(_no_duplicates("skill_id", lambda s: s.skill_id)),
]
RelaxationSteps = Annotated[
    list[RelaxationStep],
    Field(max_length=20, description="Applied in order as the wait grows; cumulative."),
    AfterValidator(_increasing),
]
WrapUpCode = Annotated[Name, Field(max_length=64)]
WrapUpCodes = Annotated[
    list[WrapUpCode],
    Field(max_length=50, description="Codes an agent picks after a contact; unique."),
    AfterValidator(_no_duplicates("", lambda c: c.lower())),
]
ServiceLevelPercent = Annotated[StrictInt, Field(ge=1, le=100)]
ServiceLevelSeconds = Annotated[StrictInt, Field(ge=1, le=7 * DAY)]
MaxWaiting = Annotated[StrictInt, Field(ge=1, le=100_000)]
MaxWaitSeconds = Annotated[StrictInt, Field(ge=1, le=MAX_WAIT)]
StickySeconds = Annotated[StrictInt, Field(ge=0, le=DAY)]
WrapUpSeconds = Annotated[StrictInt, Field(ge=0, le=3600)]


def policy_problem(
    required: Sequence[RequiredSkill], steps: Sequence[RelaxationStep]
) -> tuple[tuple[str | int, ...], str] | None:
    """The first relaxation step that does not fit the required skills, as
    (location below the body, reason); None when all fit.

    Steps are cumulative: a minimum lowered by one step is the current minimum for the
    next; a dropped skill is no longer required afterwards.
    """
    minimum = {s.skill_id: s.min_proficiency for s in required}
    for i, step in enumerate(steps):
        if step.action == "add_overflow" or step.skill_id is None:
            continue
        if step.skill_id not in minimum:
            dropped = any(s.skill_id == step.skill_id for s in required)
            return (
                ("relaxation_steps", i, "skill_id"),
                "was dropped by an earlier step"
                if dropped
                else "is not one of the queue's required_skills",
            )
        if step.action == "drop_skill":
            del minimum[step.skill_id]
        elif step.to is not None:
            if step.to >= minimum[step.skill_id]:
                return (
                    ("relaxation_steps", i, "to"),
                    f"must be lower than the current minimum ({minimum[step.skill_id]})",
                )
            minimum[step.skill_id] = step.to
    return None


_EXAMPLE: dict[str, Any] = {
    "name": "Billing (EN)",
    "description": "Invoices, refunds and payment problems",
    "channels": ["voice", "chat", "email"],
    "business_hours_id": "019a2b7c-0000-7000-8000-0000000000b1",
    "service_level_percent": 80,
    "service_level_seconds": 20,
    "max_waiting": 50,
    "max_wait_seconds": 600,
    "overflow_queue_id": None,
    "overflow_to_crowd": False,
    "required_skills": [
        {"skill_id": "019a2b7c-0000-7000-8000-0000000000c1", "min_proficiency": 3},
        {"skill_id": "019a2b7c-0000-7000-8000-0000000000c2", "min_proficiency": 2},
    ],
    "relaxation_steps": [
        {
            "after_seconds": 30,
            "action": "lower_minimum",
            "skill_id": "019a2b7c-0000-7000-8000-0000000000c1",
            "to": 2,
        },
        {
            "after_seconds": 60,
            "action": "drop_skill",
            "skill_id": "019a2b7c-0000-7000-8000-0000000000c2",
        },
        {"after_seconds": 120, "action": "add_overflow", "target": {"crowd": True}},
    ],
    "agent_selection": "longest_idle",
    "sticky_timeout_seconds": 60,
    "wrap_up_seconds": 30,
    "wrap_up_codes": ["Resolved", "Refund issued", "Escalated"],
}


class QueueCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    name: Name
    description: Description | None = None
    channels: Channels
    business_hours_id: uuid.UUID | None = Field(
        default=None, description="Business hours of this tenant; none = always open."
    )
    service_level_percent: ServiceLevelPercent = Field(
        default=80, description="Target: this share of contacts answered ..."
    )
    service_level_seconds: ServiceLevelSeconds = Field(
        default=20, description="... within this many seconds."
    )
    max_waiting: MaxWaiting | None = Field(default=None, description="Contacts waiting at once.")
    max_wait_seconds: MaxWaitSeconds | None = None
    overflow_queue_id: uuid.UUID | None = Field(
        default=None, description="Another queue of this tenant to overflow to."
    )
    overflow_to_crowd: StrictBool = False
    required_skills: RequiredSkills = []
    relaxation_steps: RelaxationSteps = []
    agent_selection: AgentSelection = "longest_idle"
    sticky_timeout_seconds: StickySeconds = Field(
        default=0, description="How long a contact waits for its preferred agent."
    )
    wrap_up_seconds: WrapUpSeconds = 30
    wrap_up_codes: WrapUpCodes = []

    @model_validator(mode="after")
    def _steps_fit_skills(self) -> QueueCreate:
        if problem := policy_problem(self.required_skills, self.relaxation_steps):
            fail_at(*problem)
        return self


_NOT_NULL = (
    "name",
    "channels",
    "service_level_percent",
    "service_level_seconds",
    "overflow_to_crowd",
    "required_skills",
    "relaxation_steps",
    "agent_selection",
    "sticky_timeout_seconds",
    "wrap_up_seconds",
    "wrap_up_codes",
)


class QueueUpdate(BaseModel):
    """Fields given replace the stored ones; lists (channels, required_skills,
    relaxation_steps, wrap_up_codes) are replaced whole. Null clears the nullable ones."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=patch_schema(
            _NOT_NULL,
            [
                {"max_wait_seconds": 900, "overflow_to_crowd": True},
                {"business_hours_id": None, "wrap_up_codes": ["Resolved", "Callback booked"]},
            ],
        ),
    )

    name: Name | None = None
    description: Description | None = None
    channels: Channels | None = None
    business_hours_id: uuid.UUID | None = None
    service_level_percent: ServiceLevelPercent | None = None
    service_level_seconds: ServiceLevelSeconds | None = None
    max_waiting: MaxWaiting | None = None
    max_wait_seconds: MaxWaitSeconds | None = None
    overflow_queue_id: uuid.UUID | None = None
    overflow_to_crowd: StrictBool | None = None
    required_skills: RequiredSkills | None = None
    relaxation_steps: RelaxationSteps | None = None
    agent_selection: AgentSelection | None = None
    sticky_timeout_seconds: StickySeconds | None = None
    wrap_up_seconds: WrapUpSeconds | None = None
    wrap_up_codes: WrapUpCodes | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return reject_nulls(data, _NOT_NULL)


class QueueRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _EXAMPLE
                | {
                    "id": "019a2b7c-0000-7000-8000-0000000000a1",
                    "version": 1,
                    "created_at": "2026-11-24T10:00:00Z",
                    "updated_at": "2026-11-24T10:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    name: str
    description: str | None
    channels: list[str]
    business_hours_id: uuid.UUID | None
    service_level_percent: int
    service_level_seconds: int
    max_waiting: int | None
    max_wait_seconds: int | None
    overflow_queue_id: uuid.UUID | None
    overflow_to_crowd: bool
    required_skills: list[RequiredSkill]
    relaxation_steps: list[RelaxationStep]
    agent_selection: str
    sticky_timeout_seconds: int
    wrap_up_seconds: int
    wrap_up_codes: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
