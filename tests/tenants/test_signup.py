from __future__ import annotations

import asyncio

import pytest

from tests.conftest import STRONG_PASSWORD, create_tenant, unique_email

TABLES = (
    "tenants",
    "users",
    "login_emails",
    "api_keys",
    "email_verifications",
    "outbound_mail",
    "audit_events",
)


async def _counts(admin_conn) -> dict[str, int]:
    return {t: await admin_conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


async def test_signup_creates_tenant_owner_and_key_in_trial(client):
    t = await create_tenant(client, company_name="Zoë's Café & Co")
    assert t["tenant"]["status"] == "trial"
    assert t["tenant"]["slug"] == "zoe-s-cafe-co"
    assert t["user"]["role"] == "owner"
    assert t["user"]["email_verified"] is False
    assert t["api_key"].startswith("sbk_")
    r = await client.get("/v1/me", headers=t["headers"])
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["role"] == "owner" and me["api_key"]["prefix"] == t["api_key"][:16]


async def test_duplicate_email_answers_409_and_writes_nothing(client, admin_conn):
    email = unique_email()
    await create_tenant(client, email=email)
    before = await _counts(admin_conn)
    r = await client.post(
        "/v1/signup",
        json={"company_name": "Other", "email": email.upper(), "password": STRONG_PASSWORD},
    )
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "email-taken" and r.json()["field"] == "body.email"
    assert await _counts(admin_conn) == before


async def test_concurrent_signups_with_one_email_make_one_tenant(client, admin_conn):
    email = unique_email()
    body = {"company_name": "Racer", "email": email, "password": STRONG_PASSWORD}
    results = await asyncio.gather(*[client.post("/v1/signup", json=body) for _ in range(4)])
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 1 and all(c == 409 for c in codes if c != 201)
    assert (
        await admin_conn.fetchval("SELECT count(*) FROM login_emails WHERE email = $1", email) == 1
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"company_name": "Acme", "email": "a@example.com", "password": "short"}, "body.password"),
        (
            {"company_name": "Acme", "email": "a@example.com", "password": "passwordpassword"},
            "body.password",
        ),
        (
            {"company_name": "Acme", "email": "not-an-email", "password": STRONG_PASSWORD},
            "body.email",
        ),
        (
            {"company_name": "", "email": "a@example.com", "password": STRONG_PASSWORD},
            "body.company_name",
        ),
        (
            {"company_name": "   ", "email": "a@example.com", "password": STRONG_PASSWORD},
            "body.company_name",
        ),
        (
            {"company_name": "x" * 201, "email": "a@example.com", "password": STRONG_PASSWORD},
            "body.company_name",
        ),
        (
            {
                "company_name": "Acme",
                "email": "a" * 250 + "@example.com",
                "password": STRONG_PASSWORD,
            },
            "body.email",
        ),
        (
            {"company_name": "Acme", "email": "a@example.com", "password": "p" * 129},
            "body.password",
        ),
        ({"company_name": "Acme", "email": "a@example.com"}, "body.password"),
        (
            {
                "company_name": "Acme",
                "email": "a@example.com",
                "password": STRONG_PASSWORD,
                "role": "admin",
            },
            "body.role",
        ),
        (
            {"company_name": "Ac\x00me", "email": "a@example.com", "password": STRONG_PASSWORD},
            "body.company_name",
        ),
    ],
)
async def test_bad_signup_answers_422_naming_the_field_and_writes_nothing(
    client, admin_conn, body, field
):
    before = await _counts(admin_conn)
    r = await client.post("/v1/signup", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert problem["field"] == field
    assert problem["detail"] and problem["request_id"]
    assert await _counts(admin_conn) == before


async def test_malformed_json_answers_422(client):
    r = await client.post(
        "/v1/signup",
        content=b'{"company_name": "x", ',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["code"] == "validation-failed"


async def test_oversize_body_answers_413(client):
    r = await client.post(
        "/v1/signup",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["code"] == "payload-too-large"


async def test_verification_mail_lands_in_the_owners_dev_outbox(client):
    t = await create_tenant(client)
    r = await client.get("/v1/dev/outbox", headers=t["headers"])
    assert r.status_code == 200
    mails = r.json()["items"]
    assert len(mails) == 1 and mails[0]["to_address"] == t["email"]
    token = next(w for w in mails[0]["body_text"].split() if w.startswith("sbv_"))
    r = await client.post("/v1/auth/verify-email", json={"token": token})
    assert r.status_code == 200 and r.json()["email_verified"] is True
    r = await client.post("/v1/auth/verify-email", json={"token": token})
    assert r.status_code == 422 and r.json()["code"] == "invalid-verification-token"
    me = (await client.get("/v1/me", headers=t["headers"])).json()
    assert me["user"] is None  # an API key acts as itself, not as a user
    other = await create_tenant(client)
    r = await client.get("/v1/dev/outbox", headers=other["headers"])
    assert [m["to_address"] for m in r.json()["items"]] == [other["email"]]


async def test_suspended_tenant_answers_403_tenant_suspended(client, admin_conn):
    t = await create_tenant(client)
    await admin_conn.execute(
        "UPDATE tenants SET status = 'suspended' WHERE id = $1::uuid", t["tenant"]["id"]
    )
    r = await client.get("/v1/me", headers=t["headers"])
    assert r.status_code == 403 and r.json()["code"] == "tenant-suspended"
    r = await client.post("/v1/auth/token", json={"email": t["email"], "password": t["password"]})
    assert r.status_code == 403 and r.json()["code"] == "tenant-suspended"
    await admin_conn.execute(
        "UPDATE tenants SET status = 'closed' WHERE id = $1::uuid", t["tenant"]["id"]
    )
    r = await client.get("/v1/me", headers=t["headers"])
    assert r.status_code == 403 and r.json()["code"] == "tenant-closed"
