from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class PasswordLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=1, max_length=128)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=200)


class VerifyEmailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - not a secret
    expires_in: int = Field(description="Access-token lifetime in seconds")


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str | None
    role: str
    status: str
    email_verified: bool


class TenantRead(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    status: str
    plan: str


class ApiKeyIdentity(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str


class Me(BaseModel):
    tenant: TenantRead
    user: UserRead | None
    api_key: ApiKeyIdentity | None
    role: str
    scopes: list[str]
