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
    "skills:read": "List skills",
    "skills:write": "Create, change and delete skills",
    "business_hours:read": "List business hours",
    "business_hours:write": "Create, change and delete business hours",
    "queues:read": "List queues",
    "queues:write": "Create, change and delete queues",
    "routing_profiles:read": "List routing profiles",
    "routing_profiles:write": "Create, change and delete routing profiles",
    "agents:read": "List agents",
    "agents:write": "Invite agents, change their skills and profiles",
    "phone_numbers:read": "List and search phone numbers",
    "phone_numbers:write": "Claim, point and release phone numbers",
    "channels:read": "List channels",
    "channels:write": "Create, change and delete channels",
    "flows:read": "List contact flows",
    "flows:write": "Edit and publish contact flows",
}

_PROVISIONING_READ = {
    s
    for s in SCOPES
    if s.endswith(":read")
    and s.split(":")[0]
    in {
        "skills",
        "business_hours",
        "queues",
        "routing_profiles",
        "agents",
        "phone_numbers",
        "channels",
        "flows",
    }
}

_SUPERVISOR = {"me", "tenant:read", "users:read", "agents:write"} | _PROVISIONING_READ
_AGENT = {"me"}
# SSO settings decide who can sign in as whom (the owner included): owners only.
_ADMIN = set(SCOPES) - {"tenant:write", "sso:write"}
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
