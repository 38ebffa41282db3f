"""Fixtures for single sign-on: a real OpenID provider on 127.0.0.1 and the browser's
walk between Switchboard and it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from app.sso import oidc
from tests.sso.oidc_provider import OidcProvider

DOMAIN = "acme.example.com"


@pytest.fixture(scope="session")
def provider_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "provider-key-1"}, private=True)


@pytest.fixture
def provider(provider_key: RSAKey) -> Iterator[OidcProvider]:
    p = OidcProvider(signing_key=provider_key).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(autouse=True)
def _fresh_oidc_caches() -> Iterator[None]:
    oidc.clear_caches()
    yield
    oidc.clear_caches()


def callback_url(app: Any, slug: str) -> str:
    return app.state.settings.public_url.rstrip("/") + f"/v1/auth/sso/{slug}/callback"


async def configure_sso(
    client: httpx.AsyncClient,
    app: Any,
    tenant: dict[str, Any],
    provider: OidcProvider,
    **overrides: Any,
) -> httpx.Response:
    """PUT the tenant's SSO configuration pointing at ``provider`` (and register our
    callback with the provider, as an admin would)."""
    provider.redirect_uris.add(callback_url(app, tenant["tenant"]["slug"]))
    body = {
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "allowed_domains": [DOMAIN],
        **overrides,
    }
    r = await client.put("/v1/sso/oidc", json=body, headers=tenant["headers"])
    assert r.status_code in (200, 201), r.text
    return r


async def start_login(client: httpx.AsyncClient, slug: str) -> httpx.Response:
    r = await client.get(f"/v1/auth/sso/{slug}/login")
    assert r.status_code == 302, r.text
    return r


async def authorize_at_provider(authorization_url: str) -> httpx.URL:
    """The browser at the provider: a real HTTP request; it approves and redirects."""
    async with httpx.AsyncClient(timeout=10) as browser:
        r = await browser.get(authorization_url)
    assert r.status_code == 302, r.text
    return httpx.URL(r.headers["location"])


async def call_callback(client: httpx.AsyncClient, callback: httpx.URL) -> httpx.Response:
    """The browser back at Switchboard (through the ASGI client, which holds cookies)."""
    return await client.get(callback.path, params=callback.params)


async def sso_login(client: httpx.AsyncClient, slug: str) -> httpx.Response:
    """The whole walk: /login, the provider's /authorize, our /callback."""
    start = await start_login(client, slug)
    callback = await authorize_at_provider(start.headers["location"])
    return await call_callback(client, callback)


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    return body
