from __future__ import annotations

import unicodedata

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from app.auth.schemas import TenantRead, UserRead


class SignupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    company_name: str = Field(min_length=1, max_length=200)
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=1, max_length=128)

    @field_validator("company_name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("must not be blank")
        if any(unicodedata.category(c) == "Cc" for c in v):
            raise ValueError("must not contain control characters")
        return v


class SignupResponse(BaseModel):
    tenant: TenantRead
    user: UserRead
    api_key: str = Field(description="The first API key (owner scopes). Shown once.")
