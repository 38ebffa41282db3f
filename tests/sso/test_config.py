"""Configuring a tenant's OpenID Connect provider: write-only secret, validation,
scopes and tenant isolation."""

from __future__ import annotations

import uuid

import pytest

from app.core.crypto import DecryptionError, load_cipher
from app.sso.models import SsoOidcConfig
from app.sso.service import decrypt_client_secret
from tests.conftest import create_tenant
from tests.sso.conftest import DOMAIN, assert_problem, configure_sso


def _body(provider, **overrides):
    return {
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "allowed_domains": [DOMAIN],
        **overrides,
    }


async def test_put_get_never_return_the_secret(client, app, provider, admin_conn):
    t = await create_tenant(client)
    r = await configure_sso(client, app, t, provider, allowed_domains=["ACME.example.com."])
    assert r.status_code == 201
    assert provider.client_secret not in r.text
    r = await client.get("/v1/sso/oidc", headers=t["headers"])
    assert r.status_code == 200, r.text
    cfg = r.json()
    assert "client_secret" not in cfg and provider.client_secret not in r.text
    assert cfg["client_secret_set"] is True
    assert cfg["issuer"] == provider.issuer and cfg["client_id"] == provider.client_id
    assert cfg["allowed_domains"] == [DOMAIN]  # normalised
    assert cfg["default_role"] == "agent" and cfg["enabled"] is True
    slug = t["tenant"]["slug"]
    assert cfg["redirect_uri"].endswith(f"/v1/auth/sso/{slug}/callback")
    assert cfg["login_url"].endswith(f"/v1/auth/sso/{slug}/login")

    # At rest: ciphertext, not the secret; it decrypts only for its own tenant.
    stored = await admin_conn.fetchval(
        "SELECT client_secret_encrypted FROM sso_oidc_configs WHERE tenant_id = $1",
        uuid.UUID(t["tenant"]["id"]),
    )
    assert stored.startswith("v1:") and provider.client_secret not in stored

    cipher = load_cipher(app.state.settings)
    row = SsoOidcConfig(tenant_id=uuid.UUID(t["tenant"]["id"]), client_secret_encrypted=stored)
    assert decrypt_client_secret(cipher, row) == provider.client_secret
    row.tenant_id = uuid.uuid4()  # copied into another tenant's row: does not decrypt
    with pytest.raises(DecryptionError):
        decrypt_client_secret(cipher, row)

    # The audit event names the change, never the secret.
    events = (
        await client.get("/v1/audit-events?action=sso.configure", headers=t["headers"])
    ).json()
    assert len(events["items"]) == 1
    assert events["items"][0]["details"]["client_secret_changed"] is True
    assert provider.client_secret not in str(events)


async def test_update_keeps_the_secret_unless_the_provider_changes(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    body = _body(provider, default_role="supervisor")
    del body["client_secret"]
    r = await client.put("/v1/sso/oidc", json=body, headers=t["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["default_role"] == "supervisor" and r.json()["client_secret_set"] is True

    # A new issuer or client id must come with its own secret: the stored one is never
    # sent to a provider it was not issued by.
    for change in ({"client_id": "another"}, {"issuer": "https://idp.example.net"}):
        r = await client.put("/v1/sso/oidc", json=body | change, headers=t["headers"])
        assert_problem(r, 422, "validation-failed")
        assert r.json()["field"] == "body.client_secret"


async def test_first_configuration_needs_a_secret(client, provider):
    t = await create_tenant(client)
    body = _body(provider)
    del body["client_secret"]
    r = await client.put("/v1/sso/oidc", json=body, headers=t["headers"])
    assert_problem(r, 422, "validation-failed")
    assert r.json()["field"] == "body.client_secret"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"issuer": "http://idp.example.com"}, "body.issuer"),
        ({"issuer": "ftp://idp.example.com"}, "body.issuer"),
        ({"issuer": "https://user:pw@idp.example.com"}, "body.issuer"),
        ({"issuer": "https://idp.example.com/?tenant=1"}, "body.issuer"),
        ({"issuer": "not a url"}, "body.issuer"),
        ({"default_role": "owner"}, "body.default_role"),
        ({"default_role": "emperor"}, "body.default_role"),
        ({"allowed_domains": ["acme.example.com", "*.example.com"]}, "body.allowed_domains.1"),
        ({"allowed_domains": ["bob@acme.example.com"]}, "body.allowed_domains.0"),
        ({"allowed_domains": ["localhost"]}, "body.allowed_domains.0"),
        ({"allowed_domains": []}, "body.allowed_domains"),
        ({"client_id": "bad\nid"}, "body.client_id"),
        ({"client_secret": ""}, "body.client_secret"),
        ({"surprise": 1}, "body.surprise"),
    ],
)
async def test_invalid_input_names_the_field(client, provider, overrides, field):
    t = await create_tenant(client)
    r = await client.put("/v1/sso/oidc", json=_body(provider, **overrides), headers=t["headers"])
    body = assert_problem(r, 422, "validation-failed")
    assert body["field"] == field, body
    assert provider.client_secret not in r.text
    r = await client.get("/v1/sso/oidc", headers=t["headers"])
    assert_problem(r, 404, "sso-not-configured")  # nothing half-written


async def test_loopback_http_issuer_is_refused_in_production(client, app, provider):
    t = await create_tenant(client)
    settings = app.state.settings
    app.state.settings = settings.model_copy(update={"environment": "production"})
    try:
        r = await client.put("/v1/sso/oidc", json=_body(provider), headers=t["headers"])
    finally:
        app.state.settings = settings
    body = assert_problem(r, 422, "validation-failed")
    assert body["field"] == "body.issuer" and "https" in body["detail"]


async def test_another_tenant_cannot_see_or_remove_the_config(client, app, provider, app_conn):
    a = await create_tenant(client, company_name="Tenant A")
    b = await create_tenant(client, company_name="Tenant B")
    await configure_sso(client, app, a, provider)
    assert_problem(
        await client.get("/v1/sso/oidc", headers=b["headers"]), 404, "sso-not-configured"
    )
    r = await client.delete("/v1/sso/oidc", headers=b["headers"])
    assert_problem(r, 404, "sso-not-configured")
    assert (await client.get("/v1/sso/oidc", headers=a["headers"])).status_code == 200

    # Row-level security: as the runtime role bound to B, A's row does not exist.
    async with app_conn.transaction():
        await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", b["tenant"]["id"])
        assert await app_conn.fetchval("SELECT count(*) FROM sso_oidc_configs") == 0
    async with app_conn.transaction():
        assert await app_conn.fetchval("SELECT count(*) FROM sso_oidc_configs") == 0


async def test_scopes_are_required(client, provider):
    t = await create_tenant(client)
    r = await client.post(
        "/v1/api-keys",
        json={"name": "read only", "scopes": ["me", "sso:read"]},
        headers=t["headers"],
    )
    assert r.status_code == 201, r.text
    reader = {"Authorization": f"Bearer {r.json()['key']}"}
    r = await client.put("/v1/sso/oidc", json=_body(provider), headers=reader)
    body = assert_problem(r, 403, "insufficient-scope")
    assert body["required_scope"] == "sso:write"
    assert (await client.get("/v1/sso/oidc")).status_code == 401


async def test_delete_removes_the_config(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    r = await client.delete("/v1/sso/oidc", headers=t["headers"])
    assert r.status_code == 204
    assert_problem(
        await client.get("/v1/sso/oidc", headers=t["headers"]), 404, "sso-not-configured"
    )
    r = await client.get(f"/v1/auth/sso/{t['tenant']['slug']}/login")
    assert_problem(r, 404, "sso-not-configured")
    events = (await client.get("/v1/audit-events?action=sso.delete", headers=t["headers"])).json()
    assert len(events["items"]) == 1


async def test_openapi_documents_the_routes(client):
    spec = (await client.get("/openapi.json")).json()
    callback = spec["paths"]["/v1/auth/sso/{tenant_slug}/callback"]["get"]
    assert "502" in callback["responses"]
    login = spec["paths"]["/v1/auth/sso/{tenant_slug}/login"]["get"]
    assert "302" in login["responses"] and "502" in login["responses"]
    assert {"get", "put", "delete"} <= set(spec["paths"]["/v1/sso/oidc"])
