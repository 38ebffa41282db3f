"""Users of a tenant. Emails are unique across the platform (one login, one tenant)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import passwords
from app.core.errors import Conflict, InvalidInput
from app.db.base import utcnow
from app.db.tenant import TenantScope
from app.users import repository
from app.users.models import LoginEmail, Role, User


async def create_user(
    session: AsyncSession,
    scope: TenantScope,
    *,
    email: str,
    role: Role | str,
    password: str | None = None,
    display_name: str | None = None,
    email_verified: bool = False,
    context: Sequence[str] = (),
) -> User:
    """Create a user of this tenant (password optional: invited or SSO users have none)."""
    try:
        role = Role(role)
    except ValueError:
        raise InvalidInput(f"unknown role '{role}'", field="role") from None
    if password is not None:
        problem = passwords.password_problem(password, [email, email.split("@")[0], *context])
        if problem:
            raise InvalidInput(f"password {problem}", code="weak-password", field="password")
    if await repository.find_login(session, email) is not None:
        raise Conflict("An account with this email exists.", code="email-taken", field="email")
    user = User(
        tenant_id=scope.tenant_id,
        email=email,
        role=role.value,
        display_name=display_name,
        password_hash=await passwords.hash_password_async(password) if password else None,
        email_verified_at=utcnow() if email_verified else None,
    )
    try:
        async with session.begin_nested():
            session.add(user)
            await session.flush()
            session.add(LoginEmail(email=email.lower(), tenant_id=scope.tenant_id, user_id=user.id))
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "An account with this email exists.", code="email-taken", field="email"
        ) from exc
    return user
