"""Imports every table so that the metadata (and Alembic) sees them all."""

from app.api_keys.models import ApiKey
from app.audit.models import AuditEvent
from app.auth.models import EmailVerification, LoginFailure, RefreshToken
from app.mail.models import OutboundMail
from app.tenants.models import Tenant
from app.usage.models import UsageEvent
from app.users.models import LoginEmail, User

__all__ = [
    "ApiKey",
    "AuditEvent",
    "EmailVerification",
    "LoginEmail",
    "LoginFailure",
    "OutboundMail",
    "RefreshToken",
    "Tenant",
    "UsageEvent",
    "User",
]
