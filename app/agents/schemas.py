from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from app.core.schemas import Name, check_text


def _clean_display_name(v: str) -> str:
    """One line, as other names, and no C1 controls either: customers' widgets and
    colleagues' terminals show it."""
    return check_text(v, refuse_c1=True, whitespace="collapse")


# A person's name as shown to colleagues and customers: 1-200 characters, trimmed.
DisplayName = Annotated[
    str, Field(min_length=1, max_length=200), AfterValidator(_clean_display_name)
]
Team = Name


class AgentSkillIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skill_id: uuid.UUID
    proficiency: int = Field(ge=1, le=5, strict=True, description="1 (novice) to 5 (expert)")


Skills = Annotated[list[AgentSkillIn], Field(max_length=100)]

_SKILLS_EXAMPLE: list[Any] = [
    {"skill_id": "0190b8a2-77aa-7bcd-8e0f-112233445566", "proficiency": 4}
]


class AgentCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "maria.lopez@acme.example",
                    "display_name": "María López",
                    "routing_profile_id": "0190b8a2-5d6e-7f80-9a1b-2c3d4e5f6a7b",
                    "team": "Billing",
                    "supervisor_id": "0190b8a2-0000-7000-8000-00000000beef",
                    "skills": _SKILLS_EXAMPLE,
                }
            ]
        },
    )

    email: EmailStr = Field(max_length=254)
    display_name: DisplayName
    routing_profile_id: uuid.UUID | None = None
    team: Team | None = None
    supervisor_id: uuid.UUID | None = Field(
        default=None, description="A user of this tenant with role supervisor, admin or owner"
    )
    skills: Skills = Field(default_factory=list)


class AgentUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"team": "Retention", "skills": _SKILLS_EXAMPLE}, {"status": "disabled"}]
        },
    )

    display_name: DisplayName | None = None
    routing_profile_id: uuid.UUID | None = Field(default=None, description="null removes it")
    team: Team | None = Field(default=None, description="null removes it")
    supervisor_id: uuid.UUID | None = Field(default=None, description="null removes it")
    skills: Skills | None = Field(default=None, description="Replaces the set")
    status: Literal["active", "disabled"] | None = Field(
        default=None,
        description="disabled: the agent can no longer sign in and their tokens stop "
        "working; active: enable again. An invited agent becomes active by accepting.",
    )


class AgentSkillRead(BaseModel):
    skill_id: uuid.UUID
    proficiency: int


class AgentRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0190b8a2-9999-7abc-8def-0123456789ab",
                    "email": "maria.lopez@acme.example",
                    "display_name": "María López",
                    "status": "invited",
                    "routing_profile_id": "0190b8a2-5d6e-7f80-9a1b-2c3d4e5f6a7b",
                    "team": "Billing",
                    "supervisor_id": None,
                    "skills": _SKILLS_EXAMPLE,
                    "version": 1,
                    "created_at": "2026-11-24T09:30:00Z",
                    "updated_at": "2026-11-24T09:30:00Z",
                }
            ]
        }
    )

    id: uuid.UUID = Field(description="The agent's user id")
    email: str
    display_name: str
    status: Literal["invited", "active", "disabled"]
    routing_profile_id: uuid.UUID | None
    team: str | None
    supervisor_id: uuid.UUID | None
    skills: list[AgentSkillRead]
    version: int
    created_at: datetime
    updated_at: datetime


class InvitationSent(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "agent_id": "0190b8a2-9999-7abc-8def-0123456789ab",
                    "email": "maria.lopez@acme.example",
                    "expires_at": "2026-12-01T09:30:00Z",
                }
            ]
        }
    )

    agent_id: uuid.UUID
    email: str
    expires_at: datetime


class AcceptInvitation(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "token": "sbi_" + "A" * 43 + "_" + "b" * 43,
                    "password": "correct horse battery staple 42",
                    "display_name": "María López",
                }
            ]
        },
    )

    token: str = Field(min_length=1, max_length=200, description="From the invitation mail")
    password: str = Field(min_length=1, max_length=128)
    display_name: DisplayName | None = None


def audit_details(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude_unset=True)
