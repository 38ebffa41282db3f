"""A small but real OpenID Connect provider for tests, on 127.0.0.1 in a thread.

It speaks the wire protocol a relying party sees: the discovery document, a JWKS,
an authorization endpoint that auto-approves the configured user and redirects back
with code and state, and a token endpoint that authenticates the client, checks the
redirect URI and the PKCE S256 verifier, and returns an RS256-signed ID token carrying
the nonce. Knobs on the instance let a test make it misbehave.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.live_server import FakeService


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode()).digest())


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    claims: dict[str, Any]


@dataclass
class OidcProvider(FakeService):
    signing_key: RSAKey
    client_id: str = "switchboard-test"
    client_secret: str = field(default_factory=lambda: "cs-" + secrets.token_urlsafe(24))
    redirect_uris: set[str] = field(default_factory=set)
    # The person who "logs in" at /authorize.
    user: dict[str, Any] = field(
        default_factory=lambda: {
            "sub": "user-1",
            "email": "alice@acme.example.com",
            "email_verified": True,
            "name": "Alice Agent",
        }
    )
    # Knobs for misbehaviour.
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    tamper_signature: bool = False
    sign_with: RSAKey | None = None  # a key that is not in the JWKS
    token_status: int | None = None  # answer the token endpoint with this HTTP status
    # What happened.
    token_requests: list[dict[str, str]] = field(default_factory=list)
    discovery_requests: int = 0
    _codes: dict[str, Grant] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.url

    def handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(_Handler):
            pass

        Handler.provider = provider
        return Handler

    # -- protocol ------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        self.discovery_requests += 1
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
            "grant_types_supported": ["authorization_code"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.signing_key.as_dict(private=False) | {"use": "sig", "alg": "RS256"}]}

    def authorize(self, q: dict[str, str]) -> tuple[int, dict[str, str], str]:
        if q.get("client_id") != self.client_id or q.get("redirect_uri") not in self.redirect_uris:
            # Never redirect to an unregistered URI (RFC 6749, section 4.1.2.1).
            return 400, {}, "unknown client or redirect_uri"
        target = q["redirect_uri"]
        if (
            q.get("response_type") != "code"
            or "openid" not in q.get("scope", "").split()
            or q.get("code_challenge_method") != "S256"
            or not q.get("code_challenge")
        ):
            err = {"error": "invalid_request", "state": q.get("state", "")}
            return 302, {"Location": target + "?" + urlencode(err)}, ""
        code = secrets.token_urlsafe(24)
        self._codes[code] = Grant(
            self.client_id, target, q["code_challenge"], q.get("nonce"), dict(self.user)
        )
        params = {"code": code, "state": q.get("state", ""), "iss": self.issuer}
        return 302, {"Location": target + "?" + urlencode(params)}, ""

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(dict(form))
        if self.token_status is not None:
            return self.token_status, {"error": "server_error"}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            raw = base64.b64decode(authorization[6:]).decode()
            cid, _, sec = raw.partition(":")
            client_id, secret = unquote(cid), unquote(sec)
        if client_id != self.client_id or secret != self.client_secret:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant.client_id != client_id:
            return 400, {"error": "invalid_grant"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri"}
        if s256(form.get("code_verifier", "")) != grant.code_challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier"}
        return 200, {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": self.id_token(grant),
        }

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            **grant.claims,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(self.id_token_overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        key = self.sign_with or self.signing_key
        token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
        if self.tamper_signature:
            head, body, sig = token.split(".")
            raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
            raw[0] ^= 0x01
            token = f"{head}.{body}.{_b64url(bytes(raw))}"
        return token


class _Handler(BaseHTTPRequestHandler):
    provider: OidcProvider

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any = "", headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else str(body).encode()
        self.send_response(status)
        ctype = "application/json" if isinstance(body, dict) else "text/plain"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        p = self.provider
        if url.path == "/.well-known/openid-configuration":
            self._send(200, p.discovery())
        elif url.path == "/jwks":
            self._send(200, p.jwks())
        elif url.path == "/authorize":
            status, headers, body = p.authorize(q)
            self._send(status, body, headers)
        else:
            self._send(404, "not found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if urlsplit(self.path).path != "/token":
            self._send(404, "not found")
            return
        status, body = self.provider.token(form, self.headers.get("Authorization"))
        self._send(status, body, {"Cache-Control": "no-store"})
