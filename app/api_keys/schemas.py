from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

# No C0/C1 control characters (NUL included: PostgreSQL text cannot hold it).
NameStr = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
ScopeStr = Annotated[str, Field(min_length=1, max_length=64)]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = NameStr
    scopes: list[ScopeStr] | None = Field(
        default=None,
        max_length=64,
        description="Scopes for the key; default: every scope the caller holds. "
        "A key never holds a scope its creator lacks.",
    )
    expires_at: AwareDatetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, v: datetime | None) -> datetime | None:
        # 9999-12-31T23:59:59-23:59 parses, but is past the end of datetime in UTC.
        if v is None:
            return v
        try:
            return v.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("is out of range") from exc


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
