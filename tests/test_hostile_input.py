"""What a hostile (or just careless) client sends, and what it must get back: a 4xx
problem+json that names the field and the reason, never a 500, never another tenant's
data. Each case here was tried by hand against the API; the ones marked "was" answered
500 or the wrong status before they were fixed."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.errors import install_error_handlers
from app.db import bootstrap
from app.db.engine import create_engine
from tests.conftest import STRONG_PASSWORD, create_tenant, unique_email

PROBLEM_JSON = "application/problem+json"


def problem_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


def signup_body(**overrides: Any) -> dict[str, Any]:
    return {
        "company_name": "Acme Retail",
        "email": unique_email(),
        "password": STRONG_PASSWORD,
    } | overrides


# --- request bodies -------------------------------------------------------------------


async def test_body_over_the_limit_is_413_when_streamed_without_a_length(
    client: httpx.AsyncClient,
) -> None:
    # was: 400 "There was an error parsing the body" (FastAPI wrapped the limit error)
    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 65536

    r = await client.post(
        "/v1/signup", content=chunks(), headers={"content-type": "application/json"}
    )
    assert problem_of(r, 413)["code"] == "payload-too-large"


async def test_body_over_the_limit_is_413_when_declared(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/signup", content=b" " * (1_048_576 + 1), headers={"content-type": "application/json"}
    )
    assert problem_of(r, 413)["code"] == "payload-too-large"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_a_body_that_is_not_json_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    # was: 422 "body: Input should be a valid dictionary or object"
    r = await client.post(
        "/v1/signup",
        content=json.dumps(signup_body()).encode(),
        headers={"content-type": content_type},
    )
    body = problem_of(r, 415)
    assert body["code"] == "unsupported-media-type"
    assert body["field"] == "body"


async def test_json_with_a_charset_parameter_is_accepted(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/signup",
        content=json.dumps(signup_body()).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201, r.text


async def test_invalid_json_names_the_body_and_the_position(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/signup", content=b'{"company_name": ', headers={"content-type": "application/json"}
    )
    body = problem_of(r, 422)
    assert body["field"] == "body"
    assert "not valid JSON" in body["detail"] and "character 17" in body["detail"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"company_name": "\xff\xfe"}', "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    ],
)
async def test_unparseable_bodies_are_400_naming_the_body(
    client: httpx.AsyncClient, raw: bytes, reason: str
) -> None:
    r = await client.post("/v1/signup", content=raw, headers={"content-type": "application/json"})
    body = problem_of(r, 400)
    assert body["code"] == "bad-request"
    assert body["field"] == "body"
    assert reason in body["detail"]


# --- text that PostgreSQL cannot store or UTF-8 cannot encode ---------------------------


async def test_nul_in_a_query_parameter_is_422(client: httpx.AsyncClient) -> None:
    # was: 500 (asyncpg CharacterNotInRepertoireError from the audit query)
    t = await create_tenant(client)
    r = await client.get("/v1/audit-events", params={"action": "a\x00b"}, headers=t["headers"])
    assert problem_of(r, 422)["field"] == "query.action"


@pytest.mark.parametrize(
    ("field", "value"),
    [("company_name", "Acme\x00"), ("company_name", "Acme\x9bRetail"), ("email", "a\x00@x.com")],
)
async def test_control_characters_in_signup_are_422(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    r = await client.post("/v1/signup", json=signup_body(**{field: value}))
    assert problem_of(r, 422)["field"] == f"body.{field}"


async def test_nul_and_c1_controls_in_an_api_key_name_are_422(client: httpx.AsyncClient) -> None:
    t = await create_tenant(client)
    for name in ("a\x00b", "a\x9bb"):
        r = await client.post("/v1/api-keys", json={"name": name}, headers=t["headers"])
        assert problem_of(r, 422)["field"] == "body.name"


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        (
            "/v1/signup",
            b'{"company_name": "Acme \\ud800", "email": "a@x.com", "password": "p"}',
            "body.company_name",
        ),
        ("/v1/auth/token", b'{"email": "a@x.com", "password": "\\udfff"}', "body.password"),
        ("/v1/auth/refresh", b'{"refresh_token": "sbr_x_\\ud800"}', "body.refresh_token"),
        ("/v1/api-keys", b'{"name": "k", "scopes": ["\\ud800"]}', "body.scopes.0"),
    ],
)
async def test_lone_surrogates_are_422(
    client: httpx.AsyncClient, path: str, raw: bytes, field: str
) -> None:
    # was: 500 for scopes (an unconstrained str let the surrogate through, and the
    # problem+json that quoted it back could not be encoded as UTF-8)
    t = await create_tenant(client)
    r = await client.post(
        path, content=raw, headers={**t["headers"], "content-type": "application/json"}
    )
    assert problem_of(r, 422)["field"] == field


async def test_text_postgresql_cannot_store_is_422_even_past_validation(
    db_urls: bootstrap.DatabaseUrls,
) -> None:
    """The backstop behind validation: NUL that reaches PostgreSQL is the client's
    input (SQLSTATE 22021), so it answers 422, not 500."""
    engine = create_engine(db_urls.app, pool_size=1, max_overflow=0)
    mini = FastAPI()
    install_error_handlers(mini)

    @mini.get("/echo")
    async def echo(v: str) -> dict[str, Any]:
        async with engine.connect() as conn:
            return {"v": (await conn.execute(text("SELECT CAST(:v AS text)"), {"v": v})).scalar()}

    try:
        transport = httpx.ASGITransport(app=mini)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/echo", params={"v": "ok"})).json() == {"v": "ok"}
            r = await c.get("/echo", params={"v": "a\x00b"})
    finally:
        await engine.dispose()
    assert problem_of(r, 422)["code"] == "invalid-text"


async def test_nul_through_raw_asyncpg_is_422_too(db_urls: bootstrap.DatabaseUrls) -> None:
    """Routing and ingest talk to asyncpg directly: the same backstop applies there."""
    mini = FastAPI()
    install_error_handlers(mini)

    @mini.get("/echo")
    async def echo(v: str) -> dict[str, Any]:
        conn = await asyncpg.connect(**bootstrap.asyncpg_kwargs(db_urls.app))
        try:
            return {"v": await conn.fetchval("SELECT $1::text", v)}
        finally:
            await conn.close()

    @mini.get("/boom")
    async def boom() -> None:
        conn = await asyncpg.connect(**bootstrap.asyncpg_kwargs(db_urls.app))
        try:
            await conn.execute("SELECT 1/0")
        finally:
            await conn.close()

    transport = httpx.ASGITransport(app=mini, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/echo", params={"v": "ok"})).json() == {"v": "ok"}
        r = await c.get("/echo", params={"v": "a\x00b"})
        assert problem_of(r, 422)["code"] == "invalid-text"
        # Any other database error stays a 500, not a client error.
        assert problem_of(await c.get("/boom"), 500)["code"] == "internal-error"


# --- values at the edges ---------------------------------------------------------------


@pytest.mark.parametrize("length", [73, 128])
async def test_passwords_longer_than_72_characters_are_judged_not_crashed(
    client: httpx.AsyncClient, length: int
) -> None:
    # was: 500 (zxcvbn raises ValueError past its default 72 characters)
    strong = (hashlib.sha256(b"switchboard").hexdigest() * 2)[:length]
    r = await client.post("/v1/signup", json=signup_body(password=strong))
    assert r.status_code == 201, r.text
    r = await client.post("/v1/signup", json=signup_body(password="a" * length))
    assert problem_of(r, 422)["code"] == "weak-password"


@pytest.mark.parametrize("expires_at", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00"])
async def test_expiry_outside_the_representable_range_is_422(
    client: httpx.AsyncClient, expires_at: str
) -> None:
    # was: 500 (PostgreSQL "date value out of range" for year 10000 in UTC)
    t = await create_tenant(client)
    r = await client.post(
        "/v1/api-keys", json={"name": "k", "expires_at": expires_at}, headers=t["headers"]
    )
    body = problem_of(r, 422)
    assert body["field"] == "body.expires_at"
    assert "out of range" in body["detail"]


async def test_an_overlong_scope_is_refused_before_it_is_echoed(
    client: httpx.AsyncClient,
) -> None:
    t = await create_tenant(client)
    r = await client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["x" * 100_000]}, headers=t["headers"]
    )
    body = problem_of(r, 422)
    assert body["field"] == "body.scopes.0"
    assert len(r.content) < 2_000


@pytest.mark.parametrize(
    "query", ["limit=-1", "limit=0", "limit=201", "limit=1e3", "limit=" + "9" * 40]
)
async def test_out_of_range_page_sizes_are_422(client: httpx.AsyncClient, query: str) -> None:
    t = await create_tenant(client)
    r = await client.get(f"/v1/api-keys?{query}", headers=t["headers"])
    assert problem_of(r, 422)["field"] == "query.limit"


@pytest.mark.parametrize(
    "cursor", ["abc", "A" * 24, "AAAAAAAAAAAAAAAAAAAAA=", "%00" * 22, "../../etc/passwd", "é" * 22]
)
async def test_cursors_we_did_not_issue_are_422(client: httpx.AsyncClient, cursor: str) -> None:
    t = await create_tenant(client)
    r = await client.get(f"/v1/api-keys?cursor={cursor}", headers=t["headers"])
    assert problem_of(r, 422)["field"] == "query.cursor"


async def test_a_cursor_from_another_tenant_pages_only_your_own_rows(
    client: httpx.AsyncClient,
) -> None:
    mine, theirs = await create_tenant(client), await create_tenant(client)
    for i in range(2):
        r = await client.post("/v1/api-keys", json={"name": f"k{i}"}, headers=theirs["headers"])
        assert r.status_code == 201
    r = await client.get("/v1/api-keys?limit=1", headers=theirs["headers"])
    their_cursor = r.json()["next_cursor"]
    assert their_cursor
    r = await client.get(f"/v1/api-keys?cursor={their_cursor}", headers=mine["headers"])
    assert r.status_code == 200, r.text
    names = {k["name"] for k in r.json()["items"]}
    assert names <= {"Default key"}


# --- identity --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer a b",
        "Bearer sbk_",
        "Bearer sbk_!!!_x",
        "Bearer sbk_" + "A" * 43 + "_",
        "Bearer " + "a" * 200_000,
        "Bearer sbk_" + "a" * 200_000,
        "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwidGlkIjoiMSJ9.",
        "Bearer a.b.c",
        "Bearer ....",
    ],
)
async def test_malformed_credentials_are_401(client: httpx.AsyncClient, authorization: str) -> None:
    r = await client.get("/v1/me", headers={"Authorization": authorization})
    problem_of(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"


async def test_a_tampered_or_misused_credential_is_401(client: httpx.AsyncClient) -> None:
    t = await create_tenant(client)
    tampered = t["api_key"][:-4] + ("AAAA" if not t["api_key"].endswith("AAAA") else "BBBB")
    r = await client.post("/v1/auth/token", json={"email": t["email"], "password": t["password"]})
    refresh = r.json()["refresh_token"]
    for credential in (tampered.encode(), refresh.encode(), b"caf\xe9"):
        r = await client.get("/v1/me", headers=[(b"Authorization", b"Bearer " + credential)])
        problem_of(r, 401)


async def test_another_tenants_api_key_is_404_and_stays_untouched(
    client: httpx.AsyncClient,
) -> None:
    mine, theirs = await create_tenant(client), await create_tenant(client)
    their_key = (await client.get("/v1/api-keys", headers=theirs["headers"])).json()["items"][0]
    for method in ("GET", "DELETE"):
        r = await client.request(method, f"/v1/api-keys/{their_key['id']}", headers=mine["headers"])
        assert problem_of(r, 404)["code"] == "api-key-not-found"
    # Their key still works: the DELETE above revoked nothing.
    assert (await client.get("/v1/me", headers=theirs["headers"])).status_code == 200


async def test_a_key_cannot_mint_a_key_with_more_than_it_holds(client: httpx.AsyncClient) -> None:
    t = await create_tenant(client)
    r = await client.post(
        "/v1/api-keys", json={"name": "narrow", "scopes": ["me"]}, headers=t["headers"]
    )
    narrow = {"Authorization": f"Bearer {r.json()['key']}"}
    r = await client.post("/v1/api-keys", json={"name": "wider"}, headers=narrow)
    assert problem_of(r, 403)["code"] == "insufficient-scope"

    r = await client.post(
        "/v1/api-keys",
        json={"name": "writer", "scopes": ["api_keys:write", "me"]},
        headers=t["headers"],
    )
    writer = {"Authorization": f"Bearer {r.json()['key']}"}
    r = await client.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["audit:read"]}, headers=writer
    )
    body = problem_of(r, 422)
    assert body["field"] == "body.scopes.0"


async def test_concurrent_signups_with_one_email_make_one_tenant(
    client: httpx.AsyncClient,
) -> None:
    email = unique_email()
    responses = await asyncio.gather(
        *(
            client.post("/v1/signup", json=signup_body(email=email, company_name=f"Race {i}"))
            for i in range(4)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409], [r.text for r in responses]


async def test_concurrent_signups_of_companies_with_one_name_all_succeed(
    client: httpx.AsyncClient,
) -> None:
    responses = await asyncio.gather(
        *(client.post("/v1/signup", json=signup_body(company_name="Same Name")) for _ in range(4))
    )
    assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
    slugs = {r.json()["tenant"]["slug"] for r in responses}
    assert len(slugs) == 4


# --- routing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/api-keys", "GET, POST"),
        ("PATCH", "/v1/api-keys/01a20b03-3373-7499-b3c6-db2a9f40e39f", "DELETE, GET"),
        ("GET", "/v1/signup", "POST"),
    ],
)
async def test_405_lists_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    # was: Allow named only the first route's method (FastAPI has one route per method)
    r = await client.request(method, path)
    assert problem_of(r, 405)["code"] == "method-not-allowed"
    assert r.headers["allow"] == allow


@pytest.mark.parametrize(
    "path", ["/v1/api-keys/not-a-uuid", "/v1/api-keys/%00", "/v1/api-keys/" + "a" * 5000]
)
async def test_malformed_ids_are_422(client: httpx.AsyncClient, path: str) -> None:
    t = await create_tenant(client)
    r = await client.get(path, headers=t["headers"])
    assert problem_of(r, 422)["field"] == "path.key_id"
