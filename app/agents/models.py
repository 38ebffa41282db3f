from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKeyConstraint, Index, text
from sqlmodel import Field, SQLModel

from app.db.mixins import TenantOwned, Versioned

AGENT_STATUSES = ("invited", "active", "disabled")


class Agent(TenantOwned, Versioned, table=True):
    """An agent: a user of role 'agent' (id = the user's id) with routing attributes."""

    __tablename__ = "agents"

    display_name: str = Field(max_length=200)
    routing_profile_id: uuid.UUID | None = None
    team: str | None = Field(default=None, max_length=100)
    supervisor_id: uuid.UUID | None = None  # a user of this tenant
    status: str = Field(default="invited", max_length=16)  # invited | active | disabled

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "id"],
            ["users.tenant_id", "users.id"],
            name="fk_agents_user",
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "routing_profile_id"],
            ["routing_profiles.tenant_id", "routing_profiles.id"],
            name="fk_agents_routing_profile",
            ondelete="RESTRICT",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "supervisor_id"],
            ["users.tenant_id", "users.id"],
            name="fk_agents_supervisor",
            # Only the supervisor column: tenant_id is part of the key (PostgreSQL 15+).
            ondelete="SET NULL (supervisor_id)",
        ),
        CheckConstraint("status IN ('invited', 'active', 'disabled')", name="status_known"),
        # Foreign-key checks on deleting a profile or a user, and the list filters.
        Index("ix_agents_tenant_id_routing_profile_id", "tenant_id", "routing_profile_id"),
        Index("ix_agents_tenant_id_supervisor_id", "tenant_id", "supervisor_id"),
        Index("ix_agents_tenant_id_team", "tenant_id", text("lower(team)")),
    )


class AgentSkill(SQLModel, table=True):
    __tablename__ = "agent_skills"

    tenant_id: uuid.UUID = Field(primary_key=True)
    agent_id: uuid.UUID = Field(primary_key=True)
    skill_id: uuid.UUID = Field(primary_key=True)
    proficiency: int

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "agent_id"],
            ["agents.tenant_id", "agents.id"],
            name="fk_agent_skills_agent",
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "skill_id"],
            ["skills.tenant_id", "skills.id"],
            name="fk_agent_skills_skill",
            ondelete="RESTRICT",
        ),
        CheckConstraint("proficiency BETWEEN 1 AND 5", name="proficiency_range"),
        # Foreign-key check on deleting a skill, and the skill_id list filter.
        Index("ix_agent_skills_tenant_id_skill_id", "tenant_id", "skill_id"),
    )


class AgentInvitation(TenantOwned, table=True):
    """A pending invitation: the token's hash. Re-sending deletes the older ones."""

    __tablename__ = "agent_invitations"

    agent_id: uuid.UUID
    secret_hash: str = Field(max_length=128)
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    accepted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "agent_id"],
            ["agents.tenant_id", "agents.id"],
            name="fk_agent_invitations_agent",
            ondelete="CASCADE",
        ),
        Index("ix_agent_invitations_tenant_id_agent_id", "tenant_id", "agent_id"),
    )
