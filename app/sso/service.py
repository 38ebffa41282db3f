"""Single sign-on with a tenant's own OpenID Connect provider.

Configuration: one provider per tenant; the client secret is write-only and stored
encrypted (app.core.crypto), bound to its tenant.

Login (authorization code flow with PKCE, docs/decisions/0002-oidc-sso.md): ``start_login``
stores state, nonce and PKCE verifier server-side and answers with the provider's
authorization URL; ``finish_login`` spends the state (once, in its own committed
transaction), exchanges the code, verifies the ID token and finds or provisions the
user by verified email within the tenant's allowed domains. An invited agent who signs
in this way has accepted the invitation (becomes active); a user provisioned with role
agent gets an active agent too, a seat of the plan's agents quota.

No database connection is held while the provider is called: tenant and configuration
are read in a short transaction of their own before the outbound requests, and the
request's own transaction is first used after them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.agents import service as agents_service
from app.agents.schemas import AgentCreate
from app.agents.service import activate_invited_agent
from app.auth import jwt_keys
from app.auth import service as auth_service
from app.auth.principal import check_tenant_status
from app.config import Settings
from app.core.crypto import Cipher
from app.core.errors import Conflict, Forbidden, InvalidInput, NotFound, SwitchboardError
from app.db.base import utcnow
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.sso import oidc, repository
from app.sso.models import SsoLoginState, SsoOidcConfig
from app.sso.schemas import SsoOidcConfigWrite
from app.tenants import repository as tenant_repo
from app.users import repository as user_repo
from app.users.models import LoginEmail, Role, User

STATE_TTL = timedelta(minutes=10)
PROVISIONABLE_ROLES = (Role.admin.value, Role.supervisor.value, Role.agent.value)
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})+$")


class SsoNotConfigured(NotFound):
    code, title = "sso-not-configured", "Single sign-on not available"


class StateInvalid(SwitchboardError):
    status, code, title = 400, "sso-state-invalid", "Login state invalid"


class CallbackInvalid(SwitchboardError):
    status, code, title = 400, "sso-callback-invalid", "Callback invalid"


class LoginRefused(SwitchboardError):
    status, code, title = 401, "sso-login-refused", "Login refused by the provider"


class EmailNotAllowed(SwitchboardError):
    status, code, title = 403, "sso-email-not-allowed", "Email not allowed"


# -- shared ---------------------------------------------------------------------------


def allow_loopback_http(settings: Settings) -> bool:
    """Plain-http providers on a loopback address: tests and local development only."""
    return settings.environment != "production"


def callback_path(slug: str) -> str:
    return f"/v1/auth/sso/{slug}/callback"


def redirect_uri(settings: Settings, slug: str) -> str:
    """The callback URL registered with the provider. Built from the configured public
    URL, never from the request's Host header."""
    return settings.public_url.rstrip("/") + callback_path(slug)


def login_url(settings: Settings, slug: str) -> str:
    return settings.public_url.rstrip("/") + f"/v1/auth/sso/{slug}/login"


def binding_cookie_name(state: str) -> str:
    """One cookie per pending login, so two tabs logging in at once do not collide."""
    return "sb_sso_" + _digest(state)[:16]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _secret_context(tenant_id: uuid.UUID) -> str:
    return f"sso_oidc_configs.client_secret:{tenant_id}"


def decrypt_client_secret(cipher: Cipher, config: SsoOidcConfig) -> str:
    return cipher.decrypt(config.client_secret_encrypted, context=_secret_context(config.tenant_id))


# -- configuration ----------------------------------------------------------------------


def _has_control_chars(value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


def _normalise_domains(domains: list[str]) -> list[str]:
    seen: list[str] = []
    for i, raw in enumerate(domains):
        field = f"body.allowed_domains.{i}"
        domain = raw.strip().lower().rstrip(".")
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidInput(f"'{raw}' is not a domain name", field=field) from None
        if not _DOMAIN.match(domain):
            raise InvalidInput(
                f"'{raw}' is not a domain name (like example.com; no '@', no wildcard)",
                field=field,
            )
        if domain not in seen:
            seen.append(domain)
    return seen


def _validate(settings: Settings, body: SsoOidcConfigWrite) -> list[str]:
    problem = oidc.url_problem(
        body.issuer, allow_loopback_http=allow_loopback_http(settings), is_issuer=True
    )
    if problem:
        raise InvalidInput(f"issuer {problem}", field="body.issuer")
    if _has_control_chars(body.client_id) or not body.client_id.strip():
        raise InvalidInput("client_id must be printable and not blank", field="body.client_id")
    if body.client_secret is not None and not body.client_secret.get_secret_value().strip():
        raise InvalidInput("client_secret must not be blank", field="body.client_secret")
    if body.default_role not in PROVISIONABLE_ROLES:
        reason = (
            "must not be owner: an owner is made by hand, never provisioned"
            if body.default_role == Role.owner.value
            else "must be one of " + ", ".join(PROVISIONABLE_ROLES)
        )
        raise InvalidInput(f"default_role {reason}", field="body.default_role")
    return _normalise_domains(body.allowed_domains)


async def get_config(session: AsyncSession, scope: TenantScope) -> SsoOidcConfig:
    config = await repository.get_config(session, scope)
    if config is None:
        raise SsoNotConfigured("Single sign-on is not configured for this tenant.")
    return config


async def configure(
    session: AsyncSession,
    scope: TenantScope,
    settings: Settings,
    cipher: Cipher,
    body: SsoOidcConfigWrite,
    *,
    actor_id: uuid.UUID | None,
) -> tuple[SsoOidcConfig, bool, bool]:
    """Create or replace the tenant's provider. Returns (config, created, secret_changed).

    The secret must be sent again when the issuer or client_id changes, so that a
    stored secret is never presented to a provider it was not issued by.
    """
    domains = _validate(settings, body)
    config = await repository.get_config(session, scope, for_update=True)
    secret = body.client_secret.get_secret_value() if body.client_secret else None
    provider_changed = config is None or (
        config.issuer != body.issuer or config.client_id != body.client_id
    )
    if secret is None and provider_changed:
        reason = (
            "is required when single sign-on is first configured"
            if config is None
            else "is required when issuer or client_id changes"
        )
        raise InvalidInput(f"client_secret {reason}", field="body.client_secret")
    encrypted = cipher.encrypt(secret, context=_secret_context(scope.tenant_id)) if secret else None
    created = config is None
    if config is None:
        assert encrypted is not None
        config = SsoOidcConfig(
            tenant_id=scope.tenant_id,
            issuer=body.issuer,
            client_id=body.client_id,
            client_secret_encrypted=encrypted,
            allowed_domains=domains,
            default_role=body.default_role,
            enabled=body.enabled,
            updated_by=actor_id,
        )
        session.add(config)
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError:
            raise Conflict(
                "Single sign-on was configured concurrently; retry.", code="sso-config-conflict"
            ) from None
    else:
        config.issuer, config.client_id = body.issuer, body.client_id
        if encrypted is not None:
            config.client_secret_encrypted = encrypted
        config.allowed_domains = domains
        config.default_role = body.default_role
        config.enabled = body.enabled
        config.updated_at, config.updated_by = utcnow(), actor_id
        await session.flush()
    if provider_changed or not body.enabled:
        # Logins started against the previous provider cannot finish any more.
        await repository.purge_states(session, scope)
    return config, created, secret is not None


async def remove_config(session: AsyncSession, scope: TenantScope) -> None:
    if not await repository.delete_config(session, scope):
        raise SsoNotConfigured("Single sign-on is not configured for this tenant.")
    await repository.purge_states(session, scope)


# -- login --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Provider:
    """What a login needs of the tenant's configuration, read before calling out."""

    scope: TenantScope
    issuer: str
    client_id: str
    client_secret_encrypted: str
    allowed_domains: tuple[str, ...]
    default_role: str


@dataclass(frozen=True)
class LoginStart:
    authorization_url: str
    cookie_name: str
    cookie_value: str
    cookie_path: str
    max_age: int


@dataclass(frozen=True)
class SsoLogin:
    tokens: auth_service.IssuedTokens
    user: User
    provisioned: bool
    scope: TenantScope
    issuer: str
    subject: str


async def _load_provider(session: AsyncSession, slug: str) -> _Provider:
    not_available = SsoNotConfigured("Single sign-on is not available for this tenant.")
    tenant = await tenant_repo.get_by_slug(session, slug)
    if tenant is None:
        raise not_available
    check_tenant_status(tenant)
    scope = mint_scope(tenant.id)
    await bind_tenant(session, scope)
    config = await repository.get_config(session, scope)
    if config is None or not config.enabled:
        raise not_available
    return _Provider(
        scope,
        config.issuer,
        config.client_id,
        config.client_secret_encrypted,
        tuple(config.allowed_domains),
        config.default_role,
    )


async def start_login(
    session: AsyncSession,
    factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    slug: str,
) -> LoginStart:
    """Record a pending login and return where to send the browser."""
    async with factory() as s, s.begin():
        provider = await _load_provider(s, slug)
    meta = await oidc.discover(provider.issuer, allow_loopback_http=allow_loopback_http(settings))
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    code_verifier = secrets.token_urlsafe(48)  # 64 characters (RFC 7636: 43 to 128)
    binding = secrets.token_urlsafe(32)
    callback = redirect_uri(settings, slug)
    url = await oidc.authorization_url(
        meta,
        client_id=provider.client_id,
        redirect_uri=callback,
        state=state,
        nonce=nonce,
        code_verifier=code_verifier,
    )
    scope, now = provider.scope, utcnow()
    await bind_tenant(session, scope)
    await repository.purge_states(session, scope, expired_before=now)
    await repository.add_state(
        session,
        scope,
        SsoLoginState(
            tenant_id=scope.tenant_id,
            state_hash=_digest(state),
            browser_binding_hash=_digest(binding),
            nonce=nonce,
            code_verifier=code_verifier,
            issuer=provider.issuer,
            client_id=provider.client_id,
            redirect_uri=callback,
            expires_at=now + STATE_TTL,
        ),
    )
    return LoginStart(
        url,
        binding_cookie_name(state),
        binding,
        callback_path(slug),
        int(STATE_TTL.total_seconds()),
    )


@dataclass(frozen=True)
class _Pending:
    nonce: str
    code_verifier: str
    redirect_uri: str


async def _spend_state(
    session: AsyncSession, provider: _Provider, state: str, binding: str | None
) -> _Pending:
    taken = None
    if binding is not None:
        taken = await repository.take_state(
            session,
            provider.scope,
            state_hash=_digest(state),
            browser_binding_hash=_digest(binding),
            issuer=provider.issuer,
            client_id=provider.client_id,
            now=utcnow(),
        )
    if taken is None:
        raise StateInvalid(
            "This login is unknown, expired or already used, or was started in another "
            "browser. Start the login again."
        )
    return _Pending(*taken)


def _verified_email(claims: dict[str, Any], allowed_domains: tuple[str, ...]) -> str:
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise EmailNotAllowed(
            "The provider did not share an email address.", code="sso-email-missing"
        )
    # OpenID Connect says boolean; a few providers send the string.
    if claims.get("email_verified") not in (True, "true"):
        raise EmailNotAllowed(
            "The provider has not verified this email address.", code="sso-email-unverified"
        )
    try:
        parsed = validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        raise EmailNotAllowed("The provider's email address is not valid.") from None
    if parsed.ascii_domain.lower() not in allowed_domains:
        raise EmailNotAllowed(
            "This email domain may not sign in to this tenant.",
            code="sso-email-domain-not-allowed",
        )
    return str(parsed.normalized)


def _display_name(claims: dict[str, Any]) -> str | None:
    name = claims.get("name")
    if not isinstance(name, str):
        return None
    name = " ".join("".join(c for c in name if not _has_control_chars(c)).split())[:200]
    return name or None


def _agent_display_name(claims: dict[str, Any], email: str) -> str:
    """An agent needs a name colleagues see: the provider's (without C1 controls, which
    agent names refuse), else the email's local part."""
    name = "".join(c for c in _display_name(claims) or "" if not 127 <= ord(c) < 160)
    return " ".join(name.split()) or email.split("@", 1)[0][:200]


def _in_other_tenant() -> Conflict:
    return Conflict(
        "This email address belongs to a user of another tenant.",
        code="email-in-another-tenant",
    )


async def _existing_user(session: AsyncSession, scope: TenantScope, email: str) -> User | None:
    """The tenant's user who logs in with ``email``; 409 when another tenant's does."""
    user = await user_repo.get_by_email(session, scope, email)
    if user is None:
        login = await user_repo.find_login(session, email)
        if login is not None and login.tenant_id != scope.tenant_id:
            raise _in_other_tenant()
        if login is not None:
            user = await user_repo.get(session, scope, login.user_id)
    return user


async def _provision_agent(
    session: AsyncSession, provider: _Provider, email: str, claims: dict[str, Any]
) -> tuple[User, bool]:
    """A new user of role agent, with the agent that makes them routable (through the
    agents service, so the plan's agents quota holds: 403 quota-exceeded past it). The
    agent starts invited without an invitation mail; ``finish_login`` activates it."""
    scope = provider.scope
    tenant = await tenant_repo.get(session, scope.tenant_id)
    plan = tenant.plan if tenant is not None else "trial"
    data = AgentCreate(email=email, display_name=_agent_display_name(claims, email))
    try:
        view = await agents_service.create(session, scope, data, plan, send_invitation=False)
    except Conflict:
        # A concurrent first login of the same person, or the email was taken just now.
        existing = await _existing_user(session, scope, email)
        if existing is None:
            raise _in_other_tenant() from None
        return existing, False
    user = await user_repo.get(session, scope, view.agent.id)
    assert user is not None  # made just now, in this transaction
    user.email_verified_at = utcnow()  # the provider verified it
    return user, True


async def _find_or_provision(
    session: AsyncSession, provider: _Provider, email: str, claims: dict[str, Any]
) -> tuple[User, bool]:
    scope = provider.scope
    user = await _existing_user(session, scope, email)
    if user is not None:
        if user.status != "active":
            raise Forbidden("This user is disabled.", code="user-disabled")
        if user.email_verified_at is None:
            user.email_verified_at = utcnow()  # the provider verified it
        return user, False
    if provider.default_role == Role.agent.value:
        return await _provision_agent(session, provider, email, claims)

    user = User(
        tenant_id=scope.tenant_id,
        email=email,
        display_name=_display_name(claims),
        role=provider.default_role,
        password_hash=None,
        email_verified_at=utcnow(),
    )
    try:
        async with session.begin_nested():
            session.add(user)
            await session.flush()
            session.add(LoginEmail(email=email.lower(), tenant_id=scope.tenant_id, user_id=user.id))
            await session.flush()
    except IntegrityError:
        # A concurrent first login of the same person, or the email was taken just now.
        login = await user_repo.find_login(session, email)
        existing = (
            await user_repo.get(session, scope, login.user_id)
            if login is not None and login.tenant_id == scope.tenant_id
            else None
        )
        if existing is None:
            raise _in_other_tenant() from None
        return existing, False
    return user, True


async def finish_login(
    session: AsyncSession,
    factory: async_sessionmaker[AsyncSession],
    keys: jwt_keys.SigningKeys,
    settings: Settings,
    cipher: Cipher,
    *,
    slug: str,
    state: str | None,
    code: str | None,
    error: str | None,
    iss: str | None,
    binding: str | None,
) -> SsoLogin:
    """Finish a login at the callback: tokens for the user the provider vouched for."""
    if not state:
        raise StateInvalid("The callback carries no state. Start the login again.")
    # Its own transaction, committed before anything else: a state is spent even when
    # the rest of the login fails, so it can never be replayed.
    async with factory() as s, s.begin():
        provider = await _load_provider(s, slug)
        pending = await _spend_state(s, provider, state, binding)
    if error is not None:
        reason = oidc.provider_error_code(error)
        raise LoginRefused(f"The provider refused the login ({reason}).", provider_error=reason)
    if iss is not None and iss != provider.issuer:
        # RFC 9207: the response came from another provider than the one asked.
        raise CallbackInvalid("The callback names another issuer.", code="sso-issuer-mismatch")
    if not code:
        raise CallbackInvalid("The callback carries no authorization code.")

    meta = await oidc.discover(provider.issuer, allow_loopback_http=allow_loopback_http(settings))
    client_secret = cipher.decrypt(
        provider.client_secret_encrypted, context=_secret_context(provider.scope.tenant_id)
    )
    id_token = await oidc.exchange_code(
        meta,
        client_id=provider.client_id,
        client_secret=client_secret,
        redirect_uri=pending.redirect_uri,
        code=code,
        code_verifier=pending.code_verifier,
    )
    claims = await oidc.verify_id_token(
        meta, id_token, client_id=provider.client_id, nonce=pending.nonce
    )
    email = _verified_email(claims, provider.allowed_domains)

    await bind_tenant(session, provider.scope)
    user, provisioned = await _find_or_provision(session, provider, email, claims)
    # The provider vouched for this email: an invited agent has accepted (a no-op for
    # everyone else, so safe on every login).
    await activate_invited_agent(session, provider.scope, user.id)
    user.last_login_at = utcnow()
    tokens = await auth_service.issue_tokens(session, keys, settings, user)
    return SsoLogin(tokens, user, provisioned, provider.scope, provider.issuer, str(claims["sub"]))
