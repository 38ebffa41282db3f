from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ARRAY, CheckConstraint, Column, ForeignKeyConstraint, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, relationship
from sqlmodel import Field, Relationship, SQLModel

from app.db.mixins import TenantOwned, Versioned


class Queue(TenantOwned, Versioned, table=True):
    """Where contacts wait for an agent, and the policy that routes them."""

    __tablename__ = "queues"

    name: str = Field(max_length=100)
    description: str | None = Field(default=None, max_length=500)
    channels: list[str] = Field(sa_column=Column(ARRAY(String(16)), nullable=False))
    business_hours_id: uuid.UUID | None = None
    service_level_percent: int = 80  # target: this share answered ...
    service_level_seconds: int = 20  # ... within this many seconds
    max_waiting: int | None = None  # contacts waiting at once
    max_wait_seconds: int | None = None
    overflow_queue_id: uuid.UUID | None = None
    overflow_to_crowd: bool = False
    relaxation_steps: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    agent_selection: str = Field(default="longest_idle", max_length=16)
    sticky_timeout_seconds: int = 0
    wrap_up_seconds: int = 30
    wrap_up_codes: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String(64)), nullable=False)
    )
    # Loaded with the queue (one extra SELECT ... IN per query), so a queue read
    # anywhere carries its required skills; rows go with the queue.
    required_skills: Mapped[list[QueueSkill]] = Relationship(
        sa_relationship=relationship(
            "QueueSkill",
            lazy="selectin",
            cascade="all, delete-orphan",
            passive_deletes=True,
            order_by="QueueSkill.skill_id",
        )
    )

    __table_args__ = (
        Index("ix_queues_tenant_id_name", "tenant_id", text("lower(name)"), unique=True),
        ForeignKeyConstraint(
            ["tenant_id", "business_hours_id"],
            ["business_hours.tenant_id", "business_hours.id"],
            name="fk_queues_business_hours",
            ondelete="RESTRICT",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "overflow_queue_id"],
            ["queues.tenant_id", "queues.id"],
            name="fk_queues_overflow_queue",
            ondelete="RESTRICT",
        ),
        CheckConstraint(
            "overflow_queue_id IS NULL OR overflow_queue_id <> id", name="overflow_not_self"
        ),
    )


class QueueSkill(SQLModel, table=True):
    """A skill a queue requires, with the minimum proficiency."""

    __tablename__ = "queue_skills"

    tenant_id: uuid.UUID = Field(primary_key=True)
    queue_id: uuid.UUID = Field(primary_key=True)
    skill_id: uuid.UUID = Field(primary_key=True)
    min_proficiency: int = 1

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "queue_id"],
            ["queues.tenant_id", "queues.id"],
            name="fk_queue_skills_queue",
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "skill_id"],
            ["skills.tenant_id", "skills.id"],
            name="fk_queue_skills_skill",
            ondelete="RESTRICT",
        ),
        CheckConstraint("min_proficiency BETWEEN 1 AND 5", name="proficiency_range"),
    )
