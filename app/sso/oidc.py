"""The relying-party side of OpenID Connect, behind one small interface: discovery,
the authorization URL and the code exchange (authlib), ID-token verification
(joserfc). Anything the provider gets wrong raises ``ProviderError`` (502); an ID token
that fails verification raises ``IdTokenInvalid`` (401).

Outbound requests never follow redirects, time out after a few seconds and read at most
``MAX_DOCUMENT_BYTES`` of discovery and JWKS documents: the issuer is tenant input.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import httpx
from authlib.integrations.base_client import OAuthError

with warnings.catch_warnings():
    # authlib 1.9 nudges towards its httpx2 backend on import; httpx 0.28 works as-is.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import ClaimError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from app.core.errors import SwitchboardError

log = logging.getLogger("switchboard.sso")

SCOPE = "openid email profile"
HTTP_TIMEOUT_SECONDS = 10.0
MAX_DOCUMENT_BYTES = 512 * 1024
METADATA_TTL_SECONDS = 300.0
JWKS_TTL_SECONDS = 300.0
CLOCK_LEEWAY_SECONDS = 60
# Asymmetric algorithms only: never "none", never HS* (a shared-secret MAC).
SAFE_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class ProviderError(SwitchboardError):
    status, code, title = 502, "sso-provider-error", "Identity provider error"


class IdTokenInvalid(SwitchboardError):
    status, code, title = 401, "sso-id-token-invalid", "ID token rejected"


def provider_error_code(value: object) -> str:
    """A provider's OAuth error code, safe to echo (or "invalid")."""
    return value if isinstance(value, str) and _ERROR_CODE.match(value) else "invalid"


def url_problem(url: str, *, allow_loopback_http: bool, is_issuer: bool = False) -> str | None:
    """Why ``url`` is not acceptable as a provider URL, or None.

    https only. Plain http is accepted for a loopback host (127.0.0.1, localhost, ::1)
    when ``allow_loopback_http`` (outside production), so that tests and local
    development can run a provider on this machine. An issuer has no query or fragment
    (OpenID Connect Discovery 1.0, section 3).
    """
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "is not a valid URL"
    if not host:
        return "must be an absolute URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials"
    if parts.fragment or (is_issuer and parts.query):
        return "must not have a query or fragment"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and allow_loopback_http and _is_loopback(host):
        return None
    return "must use https"


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    signing_algorithms: tuple[str, ...]
    token_endpoint_auth_method: str


T = TypeVar("T")


class _TTLCache(Generic[T]):
    """A small per-process cache: entries live ``ttl`` seconds, oldest evicted first."""

    def __init__(self, ttl: float, max_entries: int = 1024) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self._entries: dict[str, tuple[float, T]] = {}

    def get(self, key: str) -> T | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    def put(self, key: str, value: T) -> None:
        self._entries.pop(key, None)
        while len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        self._entries.clear()


_metadata_cache: _TTLCache[ProviderMetadata] = _TTLCache(METADATA_TTL_SECONDS)
_jwks_cache: _TTLCache[KeySet] = _TTLCache(JWKS_TTL_SECONDS)


def clear_caches() -> None:
    _metadata_cache.clear()
    _jwks_cache.clear()


async def _get_json(url: str, what: str) -> dict[str, Any]:
    failed = ProviderError(f"Could not read the provider's {what}.")
    try:
        async with (
            httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False) as http,
            http.stream("GET", url, headers={"Accept": "application/json"}) as resp,
        ):
            if resp.status_code != 200:
                log.warning("sso: %s at %s answered HTTP %s", what, url, resp.status_code)
                raise failed
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    log.warning("sso: %s at %s is larger than allowed", what, url)
                    raise failed
    except httpx.HTTPError as exc:
        log.warning("sso: %s at %s failed: %s", what, url, type(exc).__name__)
        raise failed from None
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ProviderError(f"The provider's {what} is not a JSON object.")
    return doc


async def discover(issuer: str, *, allow_loopback_http: bool) -> ProviderMetadata:
    """The provider's metadata from ``<issuer>/.well-known/openid-configuration``
    (cached for a few minutes), checked before anything is sent to it."""
    cached = _metadata_cache.get(issuer)
    if cached is not None:
        return cached
    doc = await _get_json(
        issuer.rstrip("/") + "/.well-known/openid-configuration", "discovery document"
    )
    if doc.get("issuer") != issuer:
        # OpenID Connect Discovery 1.0, section 4.3: they must be identical.
        raise ProviderError("The discovery document names a different issuer.")
    endpoints: dict[str, str] = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = doc.get(name)
        if not isinstance(value, str) or url_problem(
            value, allow_loopback_http=allow_loopback_http
        ):
            raise ProviderError(f"The discovery document has no usable {name}.")
        endpoints[name] = value
    offered = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(a for a in SAFE_ALGORITHMS if isinstance(offered, list) and a in offered)
    if not algorithms:
        raise ProviderError("The provider signs ID tokens with no algorithm we accept.")
    methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" in methods:
        auth_method = "client_secret_basic"
    elif "client_secret_post" in methods:
        auth_method = "client_secret_post"
    else:
        raise ProviderError("The provider supports no client-secret authentication we offer.")
    meta = ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=endpoints["authorization_endpoint"],
        token_endpoint=endpoints["token_endpoint"],
        jwks_uri=endpoints["jwks_uri"],
        signing_algorithms=algorithms,
        token_endpoint_auth_method=auth_method,
    )
    _metadata_cache.put(issuer, meta)
    return meta


async def authorization_url(
    meta: ProviderMetadata,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    nonce: str,
    code_verifier: str,
) -> str:
    """The provider's authorization URL with state, nonce and a PKCE S256 challenge."""
    async with AsyncOAuth2Client(
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=SCOPE,
        code_challenge_method="S256",
    ) as oauth:
        url, _ = oauth.create_authorization_url(
            meta.authorization_endpoint, state=state, nonce=nonce, code_verifier=code_verifier
        )
    return str(url)


async def exchange_code(
    meta: ProviderMetadata,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    code: str,
    code_verifier: str,
) -> str:
    """Exchange the authorization code (with its PKCE verifier) for the ID token."""
    try:
        async with AsyncOAuth2Client(
            client_id=client_id,
            client_secret=client_secret,
            token_endpoint_auth_method=meta.token_endpoint_auth_method,
            redirect_uri=redirect_uri,
            timeout=HTTP_TIMEOUT_SECONDS,
            follow_redirects=False,
        ) as oauth:
            token = await oauth.fetch_token(
                meta.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
            )
    except OAuthError as exc:
        error = provider_error_code(exc.error)
        log.info("sso: token endpoint of %s refused the code: %s", meta.issuer, error)
        raise ProviderError(
            f"The provider refused the authorization code ({error}).", provider_error=error
        ) from None
    except Exception as exc:
        # Network, HTTP status or body problems; the HTTP library behind authlib may be
        # httpx or httpx2, so their exception types are not named here.
        log.warning("sso: token request to %s failed: %s", meta.issuer, type(exc).__name__)
        raise ProviderError("The provider's token endpoint could not be used.") from None
    id_token = token.get("id_token") if isinstance(token, dict) else None
    if not isinstance(id_token, str) or not id_token:
        raise ProviderError("The provider's token response has no id_token.")
    return id_token


async def _keyset(jwks_uri: str, *, refresh: bool = False) -> KeySet:
    cached = None if refresh else _jwks_cache.get(jwks_uri)
    if cached is not None:
        return cached
    doc = await _get_json(jwks_uri, "JWKS")
    keys = doc.get("keys")
    usable = (
        [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"]
        if isinstance(keys, list)
        else []
    )
    try:
        keyset = KeySet.import_key_set({"keys": usable})  # type: ignore[typeddict-item]
    except (JoseError, ValueError, TypeError, KeyError):
        raise ProviderError("The provider's JWKS holds no usable signing key.") from None
    _jwks_cache.put(jwks_uri, keyset)
    return keyset


async def verify_id_token(
    meta: ProviderMetadata, id_token: str, *, client_id: str, nonce: str
) -> dict[str, Any]:
    """Verified ID-token claims: signature against the provider's JWKS (fetched again
    once when the key id is unknown: the provider rotated its keys), then iss, aud,
    azp, exp, iat, sub and nonce (OpenID Connect Core 1.0, section 3.1.3.7)."""
    keyset = await _keyset(meta.jwks_uri)
    try:
        try:
            token = jwt.decode(id_token, keyset, algorithms=list(meta.signing_algorithms))
        except InvalidKeyIdError:
            keyset = await _keyset(meta.jwks_uri, refresh=True)
            token = jwt.decode(id_token, keyset, algorithms=list(meta.signing_algorithms))
    except JoseError as exc:
        raise IdTokenInvalid(f"The ID token's signature is not valid ({exc.error}).") from None
    except (ValueError, TypeError):
        raise IdTokenInvalid("The ID token is malformed.") from None
    claims = dict(token.claims)
    registry = jwt.JWTClaimsRegistry(
        leeway=CLOCK_LEEWAY_SECONDS,
        iss={"essential": True, "value": meta.issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except ClaimError as exc:
        raise IdTokenInvalid(
            f"The ID token's '{exc.claim}' claim is missing or wrong.", claim=exc.claim
        ) from None
    aud = claims["aud"]
    azp = claims.get("azp")
    if (isinstance(aud, list) and len(aud) > 1 and azp is None) or (
        azp is not None and azp != client_id
    ):
        raise IdTokenInvalid("The ID token's 'azp' claim is missing or wrong.", claim="azp")
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise IdTokenInvalid("The ID token's 'nonce' claim is missing or wrong.", claim="nonce")
    return claims
