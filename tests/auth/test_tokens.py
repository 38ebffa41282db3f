from __future__ import annotations

import asyncio
import json
import time

from app.auth import jwt_keys
from tests.conftest import create_tenant, create_user, login


async def test_token_pair_shape_and_me(client):
    t = await create_tenant(client)
    r = await client.post("/v1/auth/token", json={"email": t["email"], "password": t["password"]})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["user"]["email"] == t["email"] and me.json()["role"] == "owner"


async def test_login_email_is_case_insensitive_and_wrong_password_is_401(client):
    t = await create_tenant(client)
    await login(client, t["email"].upper())
    r = await client.post("/v1/auth/token", json={"email": t["email"], "password": "wrong" * 3})
    assert r.status_code == 401 and r.json()["code"] == "invalid-credentials"
    r = await client.post(
        "/v1/auth/token", json={"email": "nobody@example.com", "password": "whatever1234"}
    )
    assert r.status_code == 401 and r.json()["code"] == "invalid-credentials"


async def test_refresh_rotates_and_reuse_revokes_the_family(client):
    t = await create_tenant(client)
    first = await login(client, t["email"])
    r = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    # The spent token comes back (stolen?): the whole family dies.
    r = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401 and r.json()["code"] == "refresh-token-reused"
    r = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401 and r.json()["code"] == "invalid-refresh-token"
    # Another session (family) of the same user is unaffected.
    other = await login(client, t["email"])
    r = await client.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert r.status_code == 200


async def test_concurrent_use_of_one_refresh_token_yields_at_most_one_pair(client):
    t = await create_tenant(client)
    tokens = await login(client, t["email"])
    rs = await asyncio.gather(
        *[
            client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            for _ in range(3)
        ]
    )
    assert sum(r.status_code == 200 for r in rs) <= 1


async def test_logout_revokes_the_session(client):
    t = await create_tenant(client)
    tokens = await login(client, t["email"])
    r = await client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 204
    r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401


async def test_garbage_tokens_are_401_problem_json(client):
    for header in (
        "Bearer x",
        "Bearer " + "a" * 5000,
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer sbk_" + "A" * 87,
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    ):
        r = await client.get("/v1/me", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"] == "Bearer"
    r = await client.get("/v1/me")
    assert r.status_code == 401


async def test_refresh_token_is_not_an_access_token(client):
    t = await create_tenant(client)
    tokens = await login(client, t["email"])
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert r.status_code == 401


async def test_expired_and_foreign_key_jwts_are_refused(client, app):
    t = await create_tenant(client)
    tokens = await login(client, t["email"])
    keys = app.state.signing_keys
    me = (await client.get("/v1/me", headers=tokens["headers"])).json()
    now = int(time.time())
    claims = {
        "iss": "switchboard",
        "sub": me["user"]["id"],
        "tid": me["tenant"]["id"],
        "role": "owner",
        "typ": "access",
        "iat": now - 3600,
        "exp": now - 60,
    }
    expired = jwt_keys.encode(keys, claims)
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    foreign = jwt_keys.from_document({"keys": [jwt_keys.new_key()]})
    forged = jwt_keys.encode(foreign, claims | {"exp": now + 600})
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


async def test_signing_keys_rotate_by_kid(tmp_path, client, app):
    path = tmp_path / "keys.json"
    jwt_keys.write_document(path, app.state.signing_keys.document)
    old_kid = app.state.signing_keys.active_kid
    t = await create_tenant(client)
    old_tokens = await login(client, t["email"])
    new_kid = jwt_keys.rotate(path)
    assert new_kid != old_kid
    original = app.state.signing_keys
    app.state.signing_keys = jwt_keys.from_document(json.loads(path.read_text()))
    try:
        new_tokens = await login(client, t["email"])
        header = json.loads(_b64json(new_tokens["access_token"].split(".")[0]))
        assert header["kid"] == new_kid
        # Tokens signed by the retired key still verify until it is pruned.
        assert (await client.get("/v1/me", headers=old_tokens["headers"])).status_code == 200
        jwt_keys.prune(path, old_kid)
        app.state.signing_keys = jwt_keys.from_document(json.loads(path.read_text()))
        assert (await client.get("/v1/me", headers=old_tokens["headers"])).status_code == 401
        assert (await client.get("/v1/me", headers=new_tokens["headers"])).status_code == 200
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert [k["kid"] for k in jwks["keys"]] == [new_kid]
        assert "d" not in jwks["keys"][0]  # public halves only
    finally:
        app.state.signing_keys = original


def _b64json(segment: str) -> str:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()


async def test_roles_bound_what_users_may_do(client, app):
    t = await create_tenant(client)
    agent = await create_user(app, t, "agent")
    supervisor = await create_user(app, t, "supervisor")
    admin = await create_user(app, t, "admin")
    agent_h = (await login(client, agent["email"]))["headers"]
    sup_h = (await login(client, supervisor["email"]))["headers"]
    admin_h = (await login(client, admin["email"]))["headers"]
    assert (await client.get("/v1/me", headers=agent_h)).json()["role"] == "agent"
    r = await client.get("/v1/audit-events", headers=agent_h)
    assert r.status_code == 403 and r.json()["code"] == "insufficient-scope"
    assert r.json()["required_scope"] == "audit:read"
    assert (await client.get("/v1/audit-events", headers=sup_h)).status_code == 403
    assert (await client.get("/v1/audit-events", headers=admin_h)).status_code == 200
    assert (
        await client.post("/v1/api-keys", json={"name": "k"}, headers=agent_h)
    ).status_code == 403


async def test_login_is_throttled_per_account(client):
    t = await create_tenant(client)
    for _ in range(5):
        r = await client.post("/v1/auth/token", json={"email": t["email"], "password": "nope" * 3})
        assert r.status_code == 401
    r = await client.post("/v1/auth/token", json={"email": t["email"], "password": t["password"]})
    assert r.status_code == 429
    assert r.json()["code"] == "login-throttled"
    assert int(r.headers["retry-after"]) > 0
    # Other accounts from elsewhere are not affected.
    other = await create_tenant(client)
    await login(client, other["email"])


async def test_login_is_throttled_per_address(client, app):
    # The same rule at a lower limit than the default 30, for fewer requests; above the
    # per-account limit (5), so that mixing the two up fails here.
    settings = app.state.settings
    limit = 8
    app.state.settings = settings.model_copy(update={"login_max_failures_per_address": limit})
    try:
        for i in range(limit):
            r = await client.post(
                "/v1/auth/token", json={"email": f"ghost{i}@example.com", "password": "nope" * 3}
            )
            assert r.status_code == 401
        t = await create_tenant(client)
        r = await client.post(
            "/v1/auth/token", json={"email": t["email"], "password": t["password"]}
        )
        assert r.status_code == 429
    finally:
        app.state.settings = settings
