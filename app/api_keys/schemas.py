from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

NameStr = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = NameStr
    scopes: list[str] | None = Field(
        default=None,
        max_length=64,
        description="Scopes for the key; default: every scope the caller holds. "
        "A key never holds a scope its creator lacks.",
    )
    expires_at: AwareDatetime | None = None


class ApiKeyRead(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    role: str
    created_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(BaseModel):
    api_key: ApiKeyRead
    key: str = Field(description="The secret. Shown once; store it now.")
