"""Self-service signup: tenant, owner, first API key and verification mail, one transaction."""

from __future__ import annotations

import re
import secrets as pysecrets
import unicodedata
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys import service as api_key_service
from app.auth import service as auth_service
from app.auth.scopes import scopes_for
from app.config import Settings
from app.core.errors import Conflict, SwitchboardError
from app.db.tenant import bind_tenant, mint_scope
from app.mail import service as mail_service
from app.mail.adapters import MailSender
from app.tenants import repository
from app.tenants.models import Tenant, TenantStatus
from app.users import repository as user_repo
from app.users.models import Role, User
from app.users.service import create_user


@dataclass(frozen=True)
class SignupResult:
    tenant: Tenant
    user: User
    api_key: str


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40].strip("-")
    return slug or "tenant"


async def _free_slug(session: AsyncSession, name: str) -> str:
    base = slugify(name)
    if not await repository.slug_taken(session, base):
        return base
    return f"{base}-{pysecrets.token_hex(3)}"


async def _add_tenant(session: AsyncSession, name: str) -> Tenant:
    """Insert a trial tenant under a free slug. Concurrent signups of one company name
    all see the same slug free; the losers of the unique index retry with a suffix
    (each attempt in a savepoint) instead of failing the signup."""
    slug = await _free_slug(session, name)
    for _ in range(5):
        tenant = Tenant(name=name, slug=slug, status=TenantStatus.trial.value, plan="trial")
        try:
            async with session.begin_nested():
                session.add(tenant)
                await session.flush()
        except IntegrityError as exc:
            if "uq_tenants_slug" not in str(exc.orig):
                raise
            slug = f"{slugify(name)}-{pysecrets.token_hex(3)}"
            continue
        return tenant
    raise Conflict("Could not find a free slug for this name; try again.", code="slug-taken")


async def signup(
    session: AsyncSession,
    settings: Settings,
    sender: MailSender,
    factory: async_sessionmaker[AsyncSession] | None,
    *,
    company_name: str,
    email: str,
    password: str,
) -> SignupResult:
    if await user_repo.find_login(session, email) is not None:
        raise Conflict("An account with this email exists.", code="email-taken", field="body.email")
    tenant = await _add_tenant(session, company_name)
    scope = mint_scope(tenant.id)
    await bind_tenant(session, scope)
    try:
        # The same path as every other user: strength (with the company as context),
        # platform-unique email, login index; races end in email-taken.
        user = await create_user(
            session, scope, email=email, role=Role.owner, password=password, context=[company_name]
        )
    except SwitchboardError as exc:
        exc.field = f"body.{exc.field}" if exc.field else exc.field
        raise

    _, api_key = await api_key_service.create(
        session,
        scope,
        name="Default key",
        role=Role.owner.value,
        held_scopes=scopes_for(Role.owner.value),
        requested_scopes=None,
        created_by=user.id,
    )
    token = await auth_service.create_email_verification(session, scope, user)
    await mail_service.enqueue(
        session,
        scope,
        sender,
        factory,
        kind="email-verification",
        to=email,
        subject="Verify your Switchboard email address",
        body=(
            f"Welcome to Switchboard, {company_name}!\n\n"
            "Confirm your email address by sending this token to "
            f"{settings.public_url}/v1/auth/verify-email:\n\n{token}\n\n"
            "The token expires in 3 days."
        ),
    )
    return SignupResult(tenant, user, api_key)
