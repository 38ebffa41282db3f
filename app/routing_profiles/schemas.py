from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.schemas import Name
from app.routing_profiles.models import MAX_CAPACITY_POINTS

CapacityPoints = Annotated[int, Field(ge=1, le=MAX_CAPACITY_POINTS, strict=True)]
Cost = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_CAPACITY_POINTS,
        strict=True,
        description="Points one contact of this channel takes from the agent's budget",
    ),
]


class ChannelCosts(BaseModel):
    """The channels agents with this profile serve, and what one contact of each costs.
    A channel left out is not served."""

    model_config = ConfigDict(extra="forbid")

    voice: Cost | None = None
    video: Cost | None = None
    chat: Cost | None = None
    email: Cost | None = None
    sms: Cost | None = None
    messaging: Cost | None = None

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class QueueAssignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue_id: uuid.UUID
    priority: int = Field(
        default=1, ge=1, le=100, strict=True, description="1 is served first; ties share"
    )
    delay_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        strict=True,
        description="Offer this queue's contacts only once they waited this long",
    )


Queues = Annotated[list[QueueAssignment], Field(max_length=100)]

_EXAMPLE: dict[str, Any] = {
    "name": "Tier 1 omnichannel",
    "capacity_points": 100,
    "channel_costs": {"voice": 100, "chat": 34, "email": 20},
    "queues": [
        {"queue_id": "0190b8a2-1c4e-7d6f-8a9b-0c1d2e3f4a5b", "priority": 1, "delay_seconds": 0},
        {"queue_id": "0190b8a2-1c4e-7d6f-8a9b-0c1d2e3f4a5c", "priority": 2, "delay_seconds": 30},
    ],
}


class RoutingProfileCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    name: Name
    capacity_points: CapacityPoints = 100
    channel_costs: ChannelCosts | None = Field(
        default=None,
        description="Omitted: every channel at its default cost "
        "(voice 100, video 100, chat 34, email 20, sms 20, messaging 34)",
    )
    queues: Queues = Field(default_factory=list)


class RoutingProfileUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"capacity_points": 120, "channel_costs": {"voice": 100, "chat": 20}}]
        },
    )

    name: Name | None = None
    capacity_points: CapacityPoints | None = None
    channel_costs: ChannelCosts | None = Field(default=None, description="Replaces the map")
    queues: Queues | None = Field(default=None, description="Replaces the set")


class QueueAssignmentRead(BaseModel):
    queue_id: uuid.UUID
    priority: int
    delay_seconds: int


class RoutingProfileRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0190b8a2-5d6e-7f80-9a1b-2c3d4e5f6a7b",
                    **_EXAMPLE,
                    "version": 1,
                    "created_at": "2026-11-24T09:30:00Z",
                    "updated_at": "2026-11-24T09:30:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    name: str
    capacity_points: int
    channel_costs: dict[str, int]
    queues: list[QueueAssignmentRead]
    version: int
    created_at: datetime
    updated_at: datetime
