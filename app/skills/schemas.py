from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from app.core.schemas import Description, Name


class SkillCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "Spanish", "kind": "language", "description": "Native-level"}]
        },
    )

    name: Name
    description: Description | None = None
    kind: Literal["skill", "language"] = "skill"


class SkillUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"description": "Billing disputes and refunds"}]},
    )

    name: Name | None = None
    description: Description | None = None
    kind: Literal["skill", "language"] | None = None


class SkillRead(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    kind: str
    version: int
    created_at: datetime
    updated_at: datetime
