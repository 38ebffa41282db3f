"""Scopes, and the scopes each role holds. Every endpoint declares the scope it needs."""

from __future__ import annotations

from app.users.models import Role

SCOPES: dict[str, str] = {
    "me": "Read your own identity",
    "tenant:read": "Read the tenant's settings",
    "tenant:write": "Change the tenant's settings",
    "users:read": "List users",
    "users:write": "Invite, change and disable users",
    "api_keys:read": "List API keys",
    "api_keys:write": "Create and revoke API keys",
    "audit:read": "Read the audit log",
    "usage:read": "Read usage",
    "mail:read": "Read the development outbox",
    "sso:read": "Read single sign-on settings",
    "sso:write": "Change single sign-on settings",
}

_SUPERVISOR = {"me", "tenant:read", "users:read"}
_AGENT = {"me"}
_ADMIN = set(SCOPES) - {"tenant:write"}
_OWNER = set(SCOPES)

ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.owner: frozenset(_OWNER),
    Role.admin: frozenset(_ADMIN),
    Role.supervisor: frozenset(_SUPERVISOR),
    Role.agent: frozenset(_AGENT),
}


def register(scope: str, description: str, roles: tuple[str, ...]) -> None:
    """Later domains add their scopes here (at import time)."""
    SCOPES[scope] = description
    for role in roles:
        ROLE_SCOPES[role] = ROLE_SCOPES[role] | {scope}


def scopes_for(role: str) -> frozenset[str]:
    return ROLE_SCOPES.get(role, frozenset())
