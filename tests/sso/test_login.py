"""The OpenID Connect login walk against a real provider on 127.0.0.1."""

from __future__ import annotations

import logging
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc.jwk import RSAKey

from tests.conftest import create_tenant, login
from tests.sso.conftest import (
    DOMAIN,
    assert_problem,
    authorize_at_provider,
    call_callback,
    configure_sso,
    sso_login,
    start_login,
)
from tests.sso.oidc_provider import s256


async def _me(client: httpx.AsyncClient, access_token: str) -> dict:
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {access_token}"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_first_login_provisions_an_agent_and_tokens_work(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    slug = t["tenant"]["slug"]

    start = await start_login(client, slug)
    auth_url = urlsplit(start.headers["location"])
    q = {k: v[0] for k, v in parse_qs(auth_url.query).items()}
    assert start.headers["location"].startswith(provider.issuer + "/authorize?")
    assert q["response_type"] == "code" and q["client_id"] == provider.client_id
    assert set(q["scope"].split()) >= {"openid", "email"}
    assert q["code_challenge_method"] == "S256" and q["nonce"] and q["state"]
    assert q["redirect_uri"].endswith(f"/v1/auth/sso/{slug}/callback")

    r = await call_callback(client, await authorize_at_provider(start.headers["location"]))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    tokens = r.json()
    assert tokens["token_type"] == "bearer" and tokens["refresh_token"].startswith("sbr_")

    # The provider got our PKCE verifier, and it matched the challenge we sent.
    assert s256(provider.token_requests[-1]["code_verifier"]) == q["code_challenge"]

    me = await _me(client, tokens["access_token"])
    assert me["tenant"]["id"] == t["tenant"]["id"]
    assert me["role"] == "agent"
    assert me["user"]["email"] == "alice@acme.example.com"
    assert me["user"]["display_name"] == "Alice Agent"
    assert me["user"]["email_verified"] is True

    # The refresh token works like a password login's.
    r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text

    events = await client.get("/v1/audit-events", headers=t["headers"])
    actions = [e["action"] for e in events.json()["items"]]
    assert "user.provision_sso" in actions and "auth.sso_login" in actions
    login_event = next(e for e in events.json()["items"] if e["action"] == "auth.sso_login")
    assert login_event["actor_id"] == me["user"]["id"]
    assert login_event["details"]["issuer"] == provider.issuer


async def test_second_login_finds_the_same_user(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider, default_role="supervisor")
    slug = t["tenant"]["slug"]
    first = await sso_login(client, slug)
    assert first.status_code == 200, first.text
    second = await sso_login(client, slug)
    assert second.status_code == 200, second.text
    me1 = await _me(client, first.json()["access_token"])
    me2 = await _me(client, second.json()["access_token"])
    assert me1["user"]["id"] == me2["user"]["id"]
    assert me2["role"] == "supervisor"

    events = (await client.get("/v1/audit-events", headers=t["headers"])).json()["items"]
    actions = [e["action"] for e in events]
    assert actions.count("user.provision_sso") == 1
    assert actions.count("auth.sso_login") == 2


async def test_existing_user_logs_in_and_keeps_role(client, app, provider):
    owner_email = f"boss-{uuid.uuid4().hex[:6]}@{DOMAIN}"
    t = await create_tenant(client, email=owner_email)
    await configure_sso(client, app, t, provider)
    provider.user["email"] = owner_email.upper()  # email case differs at the provider
    r = await sso_login(client, t["tenant"]["slug"])
    assert r.status_code == 200, r.text
    me = await _me(client, r.json()["access_token"])
    assert me["user"]["email"] == owner_email
    assert me["role"] == "owner"  # the default role applies only to new users
    # And the password login still works.
    await login(client, owner_email)


async def test_wrong_nonce_is_refused(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.id_token_overrides["nonce"] = "not-the-nonce-we-sent"
    r = await sso_login(client, t["tenant"]["slug"])
    body = assert_problem(r, 401, "sso-id-token-invalid")
    assert body["claim"] == "nonce"


async def test_missing_nonce_is_refused(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.id_token_overrides["nonce"] = None
    assert_problem(await sso_login(client, t["tenant"]["slug"]), 401, "sso-id-token-invalid")


async def test_tampered_signature_is_refused(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.tamper_signature = True
    assert_problem(await sso_login(client, t["tenant"]["slug"]), 401, "sso-id-token-invalid")


async def test_token_signed_by_a_key_outside_the_jwks_is_refused(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.sign_with = RSAKey.generate_key(2048, parameters={"kid": "rogue"}, private=True)
    assert_problem(await sso_login(client, t["tenant"]["slug"]), 401, "sso-id-token-invalid")


async def test_wrong_audience_is_refused(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.id_token_overrides["aud"] = "some-other-client"
    body = assert_problem(await sso_login(client, t["tenant"]["slug"]), 401, "sso-id-token-invalid")
    assert body["claim"] == "aud"


async def test_wrong_issuer_claim_is_refused(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.id_token_overrides["iss"] = "https://evil.example.net"
    body = assert_problem(await sso_login(client, t["tenant"]["slug"]), 401, "sso-id-token-invalid")
    assert body["claim"] == "iss"


async def test_expired_id_token_is_refused(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.id_token_overrides.update({"iat": 1_000_000, "exp": 1_000_300})
    assert_problem(await sso_login(client, t["tenant"]["slug"]), 401, "sso-id-token-invalid")


async def test_unverified_email_is_refused(client, app, provider, admin_conn):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.user["email_verified"] = False
    assert_problem(await sso_login(client, t["tenant"]["slug"]), 403, "sso-email-unverified")
    provider.user["email_verified"] = "false"
    assert_problem(await sso_login(client, t["tenant"]["slug"]), 403, "sso-email-unverified")
    provider.user.pop("email_verified")
    assert_problem(await sso_login(client, t["tenant"]["slug"]), 403, "sso-email-unverified")
    # Nobody was created.
    assert (
        await admin_conn.fetchval("SELECT count(*) FROM login_emails WHERE email LIKE 'alice@%'")
        == 0
    )


async def test_email_domain_not_allowed_is_refused(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    for email in ("mallory@evil.example.com", "mallory@sub.acme.example.com"):
        provider.user["email"] = email
        assert_problem(
            await sso_login(client, t["tenant"]["slug"]), 403, "sso-email-domain-not-allowed"
        )


async def test_replayed_state_is_refused(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    slug = t["tenant"]["slug"]
    start = await start_login(client, slug)
    cookie = start.headers["set-cookie"].split(";")[0]  # name=value of the browser binding
    callback = await authorize_at_provider(start.headers["location"])
    assert (await call_callback(client, callback)).status_code == 200
    # Replayed exactly, cookie included (the first response told the browser to drop it).
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as replay:
        again = await replay.get(callback.path, params=callback.params, headers={"Cookie": cookie})
    assert_problem(again, 400, "sso-state-invalid")


async def test_state_is_spent_even_when_the_login_fails(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.user["email_verified"] = False
    start = await start_login(client, t["tenant"]["slug"])
    callback = await authorize_at_provider(start.headers["location"])
    assert_problem(await call_callback(client, callback), 403, "sso-email-unverified")
    provider.user["email_verified"] = True
    assert_problem(await call_callback(client, callback), 400, "sso-state-invalid")


async def test_expired_state_is_refused(client, app, provider, admin_conn):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    start = await start_login(client, t["tenant"]["slug"])
    callback = await authorize_at_provider(start.headers["location"])
    await admin_conn.execute(
        "UPDATE sso_login_states SET expires_at = now() - interval '1 second' WHERE tenant_id = $1",
        uuid.UUID(t["tenant"]["id"]),
    )
    assert_problem(await call_callback(client, callback), 400, "sso-state-invalid")
    assert provider.token_requests == []  # the code was never exchanged


async def test_unknown_state_and_missing_state_are_refused(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    slug = t["tenant"]["slug"]
    r = await client.get(f"/v1/auth/sso/{slug}/callback", params={"code": "x", "state": "forged"})
    assert_problem(r, 400, "sso-state-invalid")
    r = await client.get(f"/v1/auth/sso/{slug}/callback", params={"code": "x"})
    assert_problem(r, 400, "sso-state-invalid")


async def test_state_from_another_browser_is_refused(client, app, provider):
    """Login CSRF: a victim's browser handed the attacker's callback URL."""
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    start = await start_login(client, t["tenant"]["slug"])
    callback = await authorize_at_provider(start.headers["location"])
    transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as victim:
        assert_problem(await call_callback(victim, callback), 400, "sso-state-invalid")
    # The legitimate browser can still finish: the attempt did not burn its state.
    assert (await call_callback(client, callback)).status_code == 200


async def test_state_of_another_tenant_is_refused(client, app, provider):
    a = await create_tenant(client, company_name="Tenant A")
    b = await create_tenant(client, company_name="Tenant B")
    await configure_sso(client, app, a, provider)
    await configure_sso(client, app, b, provider)
    start = await start_login(client, a["tenant"]["slug"])
    callback = await authorize_at_provider(start.headers["location"])
    path_b = callback.path.replace(a["tenant"]["slug"], b["tenant"]["slug"])
    r = await client.get(path_b, params=callback.params)
    assert_problem(r, 400, "sso-state-invalid")


async def test_provider_refusal_is_reported(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    start = await start_login(client, t["tenant"]["slug"])
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    r = await client.get(
        f"/v1/auth/sso/{t['tenant']['slug']}/callback",
        params={"error": "access_denied", "state": state},
    )
    body = assert_problem(r, 401, "sso-login-refused")
    assert body["provider_error"] == "access_denied"


async def test_pkce_mismatch_fails_at_the_provider(client, app, provider, admin_conn):
    """The provider checks our verifier: a different one makes the exchange fail."""
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    start = await start_login(client, t["tenant"]["slug"])
    callback = await authorize_at_provider(start.headers["location"])
    await admin_conn.execute(
        "UPDATE sso_login_states SET code_verifier = $2 WHERE tenant_id = $1",
        uuid.UUID(t["tenant"]["id"]),
        "x" * 64,
    )
    body = assert_problem(await call_callback(client, callback), 502, "sso-provider-error")
    assert body["provider_error"] == "invalid_grant"


async def test_token_endpoint_failure_is_502(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.token_status = 500
    assert_problem(await sso_login(client, t["tenant"]["slug"]), 502, "sso-provider-error")


async def test_unreachable_provider_is_502(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.stop()
    r = await client.get(f"/v1/auth/sso/{t['tenant']['slug']}/login")
    assert_problem(r, 502, "sso-provider-error")


async def test_discovery_naming_another_issuer_is_502(client, app, provider):
    t = await create_tenant(client)
    # The same server under another name: its discovery document names 127.0.0.1.
    await configure_sso(
        client, app, t, provider, issuer=provider.issuer.replace("127.0.0.1", "localhost")
    )
    r = await client.get(f"/v1/auth/sso/{t['tenant']['slug']}/login")
    assert_problem(r, 502, "sso-provider-error")


async def test_discovery_is_cached(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    for _ in range(2):
        assert (await sso_login(client, t["tenant"]["slug"])).status_code == 200
    assert provider.discovery_requests == 1


async def test_unknown_tenant_and_unconfigured_sso_are_404(client, app, provider):
    r = await client.get("/v1/auth/sso/no-such-tenant/login")
    assert_problem(r, 404, "sso-not-configured")
    t = await create_tenant(client)
    r = await client.get(f"/v1/auth/sso/{t['tenant']['slug']}/login")
    assert_problem(r, 404, "sso-not-configured")
    r = await client.get(f"/v1/auth/sso/{t['tenant']['slug']}/callback", params={"state": "s"})
    assert_problem(r, 404, "sso-not-configured")


async def test_disabled_sso_is_404_and_voids_pending_logins(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    start = await start_login(client, t["tenant"]["slug"])
    callback = await authorize_at_provider(start.headers["location"])
    r = await client.put(
        "/v1/sso/oidc",
        json={
            "issuer": provider.issuer,
            "client_id": provider.client_id,
            "allowed_domains": [DOMAIN],
            "enabled": False,
        },
        headers=t["headers"],
    )
    assert r.status_code == 200, r.text
    assert_problem(await call_callback(client, callback), 404, "sso-not-configured")
    r = await client.get(f"/v1/auth/sso/{t['tenant']['slug']}/login")
    assert_problem(r, 404, "sso-not-configured")


async def test_suspended_tenant_is_refused(client, app, provider, admin_conn):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    await admin_conn.execute(
        "UPDATE tenants SET status = 'suspended' WHERE id = $1", uuid.UUID(t["tenant"]["id"])
    )
    r = await client.get(f"/v1/auth/sso/{t['tenant']['slug']}/login")
    assert_problem(r, 403, "tenant-suspended")


async def test_email_of_another_tenant_is_409(client, app, provider):
    taken = f"carol-{uuid.uuid4().hex[:6]}@{DOMAIN}"
    await create_tenant(client, company_name="Other Co", email=taken)
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    provider.user["email"] = taken
    assert_problem(await sso_login(client, t["tenant"]["slug"]), 409, "email-in-another-tenant")


async def test_disabled_user_is_refused(client, app, provider, admin_conn):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    assert (await sso_login(client, t["tenant"]["slug"])).status_code == 200
    await admin_conn.execute(
        "UPDATE users SET status = 'disabled' WHERE lower(email) = 'alice@acme.example.com'"
    )
    assert_problem(await sso_login(client, t["tenant"]["slug"]), 403, "user-disabled")


async def test_login_sets_a_bound_cookie_and_no_secret_leaks(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    start = await start_login(client, t["tenant"]["slug"])
    cookie = start.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert f"Path=/v1/auth/sso/{t['tenant']['slug']}/callback" in cookie
    assert provider.client_secret not in start.headers["location"]


async def test_callback_naming_another_issuer_is_refused(client, app, provider):
    """RFC 9207: the iss parameter of the response must be the provider we asked."""
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    start = await start_login(client, t["tenant"]["slug"])
    callback = await authorize_at_provider(start.headers["location"])
    forged = callback.copy_set_param("iss", "https://evil.example.net")
    assert_problem(await call_callback(client, forged), 400, "sso-issuer-mismatch")
    assert provider.token_requests == []


async def test_callback_without_code_is_refused(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    start = await start_login(client, t["tenant"]["slug"])
    callback = await authorize_at_provider(start.headers["location"])
    no_code = callback.copy_remove_param("code")
    assert_problem(await call_callback(client, no_code), 400, "sso-callback-invalid")


async def test_client_secret_never_reaches_the_logs(client, app, provider, caplog):
    caplog.set_level(logging.DEBUG)
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    assert (await sso_login(client, t["tenant"]["slug"])).status_code == 200
    provider.token_status = 500
    assert (await sso_login(client, t["tenant"]["slug"])).status_code == 502
    bad = {"issuer": "http://idp.example.com", "client_id": "x", "allowed_domains": [DOMAIN]}
    r = await client.put(
        "/v1/sso/oidc", json=bad | {"client_secret": provider.client_secret}, headers=t["headers"]
    )
    assert r.status_code == 422
    assert caplog.records  # something was logged (httpx requests, the 502)
    assert provider.client_secret not in caplog.text
