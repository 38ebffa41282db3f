from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from app.core.schemas import StrictBool
from app.users.models import Role


class SsoOidcConfigWrite(BaseModel):
    """The tenant's OpenID Connect provider. Shape only; the rules (https issuer,
    domain syntax, role) are checked by the service, which names the field."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(
        min_length=1,
        max_length=2048,
        description="The provider's issuer URL (https). Discovery reads "
        "<issuer>/.well-known/openid-configuration; ID tokens must carry exactly this iss.",
    )
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Write-only; stored encrypted and never returned. Required when SSO is "
        "first configured and whenever issuer or client_id changes; omit it to keep the "
        "stored one.",
    )
    allowed_domains: list[str] = Field(
        min_length=1,
        max_length=50,
        description="Email domains that may sign in, matched exactly (a subdomain must be "
        "listed itself).",
    )
    default_role: str = Field(
        default=Role.agent.value,
        max_length=16,
        description="Role of users created at their first SSO login: admin, supervisor or "
        "agent (never owner).",
    )
    enabled: StrictBool = True


class SsoOidcConfigRead(BaseModel):
    issuer: str
    client_id: str
    client_secret_set: bool = Field(description="The secret itself is never returned.")
    allowed_domains: list[str]
    default_role: str
    enabled: bool
    redirect_uri: str = Field(description="Register this redirect URI with the provider.")
    login_url: str = Field(description="Where users start a single sign-on login.")
    created_at: datetime
    updated_at: datetime
