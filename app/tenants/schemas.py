from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from app.auth.schemas import TenantRead, UserRead
from app.core.schemas import check_text


class SignupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    company_name: str = Field(min_length=1, max_length=200)
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=1, max_length=128)

    @field_validator("company_name")
    @classmethod
    def _name(cls, v: str) -> str:
        # One line, as other names are, and no C1 controls either.
        return check_text(v, refuse_c1=True, whitespace="collapse")


class SignupResponse(BaseModel):
    tenant: TenantRead
    user: UserRead
    api_key: str = Field(description="The first API key (owner scopes). Shown once.")
