from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import CheckConstraint, Column, ForeignKeyConstraint, Index, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.db.mixins import TenantOwned, Versioned

DEFAULT_CHANNEL_COSTS = {
    "voice": 100,
    "video": 100,
    "chat": 34,
    "email": 20,
    "sms": 20,
    "messaging": 34,
}
CHANNELS = tuple(DEFAULT_CHANNEL_COSTS)
MAX_CAPACITY_POINTS = 1000


class RoutingProfile(TenantOwned, Versioned, table=True):
    """An agent's capacity model: a points budget shared by channels, and queues served."""

    __tablename__ = "routing_profiles"

    name: str = Field(max_length=100)
    capacity_points: int = 100
    channel_costs: dict[str, Any] = Field(
        default_factory=lambda: dict(DEFAULT_CHANNEL_COSTS), sa_column=Column(JSONB, nullable=False)
    )

    __table_args__ = (
        Index("ix_routing_profiles_tenant_id_name", "tenant_id", text("lower(name)"), unique=True),
        CheckConstraint("capacity_points BETWEEN 1 AND 1000", name="capacity_points_range"),
    )


class RoutingProfileQueue(SQLModel, table=True):
    __tablename__ = "routing_profile_queues"

    tenant_id: uuid.UUID = Field(primary_key=True)
    routing_profile_id: uuid.UUID = Field(primary_key=True)
    queue_id: uuid.UUID = Field(primary_key=True)
    priority: int = 1  # 1 first
    delay_seconds: int = 0  # offer this queue's contacts only after they waited this long

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "routing_profile_id"],
            ["routing_profiles.tenant_id", "routing_profiles.id"],
            name="fk_routing_profile_queues_profile",
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "queue_id"],
            ["queues.tenant_id", "queues.id"],
            name="fk_routing_profile_queues_queue",
            ondelete="RESTRICT",
        ),
        # Deleting a queue checks this foreign key; without the index that is a scan.
        Index("ix_routing_profile_queues_tenant_id_queue_id", "tenant_id", "queue_id"),
        CheckConstraint("priority BETWEEN 1 AND 100", name="priority_range"),
        CheckConstraint("delay_seconds BETWEEN 0 AND 3600", name="delay_seconds_range"),
    )
