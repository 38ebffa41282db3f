"""The rules every channel call keeps: tenant isolation, unique names and addresses,
If-Match, Idempotency-Key, the plan quota, and bad input answered 4xx naming the field,
with nothing changed."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.channels.conftest import WEBCHAT, AddNumber, create_channel, sms
from tests.conftest import create_tenant


async def snapshot(admin_conn) -> tuple[Any, ...]:
    """Everything a channel call could write."""
    return tuple(
        [
            await admin_conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")
            for table in ("channels", "channel_numbers", "channel_addresses")
        ]
    )


async def test_another_tenant_sees_nothing_and_may_use_the_same_names(
    client, add_number: AddNumber
):
    a = await create_tenant(client, company_name="Alpha")
    b = await create_tenant(client, company_name="Beta")
    number = await add_number(a)
    a_chat = await create_channel(client, a, WEBCHAT)
    a_voice = await create_channel(
        client, a, {"type": "voice", "name": "Line", "config": {"phone_number_ids": [number]}}
    )
    a_sms = await create_channel(client, a, sms())
    for ch in (a_chat, a_voice, a_sms):
        for method, path in (
            ("GET", ""),
            ("PATCH", ""),
            ("DELETE", ""),
            ("POST", "/rotate-widget-key"),
            ("POST", "/rotate-webhook-secret"),
        ):
            r = await client.request(
                method,
                f"/v1/channels/{ch['id']}{path}",
                headers=b["headers"],
                json={"name": "Mine now"} if method == "PATCH" else None,
            )
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["code"] == "channel-not-found"
    assert (await client.get("/v1/channels", headers=b["headers"])).json()["items"] == []
    # The same names are fine in another tenant.
    await create_channel(client, b, WEBCHAT)
    b_voice = await create_channel(client, b, {"type": "voice", "name": "Line"})
    # Another tenant's phone number reads as unknown, like one that does not exist.
    r = await client.post(
        "/v1/channels",
        json={"type": "voice", "name": "Stolen", "config": {"phone_number_ids": [number]}},
        headers=b["headers"],
    )
    assert r.status_code == 422 and r.json()["code"] == "unknown-phone-number"
    assert r.json()["field"] == "body.config.phone_number_ids.0"
    r = await client.patch(
        f"/v1/channels/{b_voice['id']}",
        json={"config": {"phone_number_ids": [number]}},
        headers=b["headers"],
    )
    assert r.status_code == 422 and r.json()["code"] == "unknown-phone-number"
    # A's channels are untouched.
    got = await client.get(f"/v1/channels/{a_voice['id']}", headers=a["headers"])
    assert got.json() == a_voice


async def test_inbound_addresses_are_unique_across_tenants_without_saying_whose(client, admin_conn):
    a = await create_tenant(client, company_name="Alpha Widgets")
    b = await create_tenant(client, company_name="Beta Gadgets")
    await create_channel(
        client, a, {"type": "email", "name": "Mail", "config": {"local_part": "support"}}
    )
    account = "AC" + "1" * 32
    await create_channel(
        client, a, sms(config={"provider": "twilio", "provider_account_id": account})
    )
    before = await snapshot(admin_conn)
    for body, field in (
        ({"type": "email", "name": "Mail", "config": {"local_part": "support"}}, "local_part"),
        (
            sms(config={"provider": "twilio", "provider_account_id": account}),
            "provider_account_id",
        ),
    ):
        r = await client.post("/v1/channels", json=body, headers=b["headers"])
        assert r.status_code == 409 and r.json()["code"] == "address-taken"
        assert r.json()["field"] == f"body.config.{field}"
        assert "Alpha" not in r.text and a["tenant"]["id"] not in r.text
    assert await snapshot(admin_conn) == before
    # Same account id under another provider or channel type is another address.
    await create_channel(
        client,
        b,
        sms(config={"provider": "aws", "provider_account_id": account})
        | {"credentials": {"access_key_id": "k", "secret_access_key": "s"}},
    )


async def test_concurrent_claims_of_one_address_make_one_channel(client, admin_conn):
    tenants = [await create_tenant(client) for _ in range(3)]
    body = {"type": "email", "name": "Mail", "config": {"local_part": "sales"}}
    rs = await asyncio.gather(
        *[client.post("/v1/channels", json=body, headers=t["headers"]) for t in tenants]
    )
    assert sorted(r.status_code for r in rs) == [201, 409, 409]
    assert {r.json()["code"] for r in rs if r.status_code == 409} == {"address-taken"}
    assert await admin_conn.fetchval("SELECT count(*) FROM channels") == 1


async def test_concurrent_attaches_of_one_number_leave_it_on_one_channel(
    client, admin_conn, add_number: AddNumber
):
    t = await create_tenant(client)
    number = await add_number(t)
    rs = await asyncio.gather(
        *[
            client.post(
                "/v1/channels",
                json={
                    "type": "voice",
                    "name": f"Line {i}",
                    "config": {"phone_number_ids": [number]},
                },
                headers=t["headers"],
            )
            for i in range(3)
        ]
    )
    assert sorted(r.status_code for r in rs) == [201, 409, 409]
    assert await admin_conn.fetchval("SELECT count(*) FROM channel_numbers") == 1


async def test_names_are_unique_per_tenant_case_insensitively(client, admin_conn):
    t = await create_tenant(client)
    await create_channel(client, t, WEBCHAT)
    other = await create_channel(client, t, sms())
    before = await snapshot(admin_conn)
    r = await client.post(
        "/v1/channels",
        json={
            "type": "email",
            "name": "  website   CHAT ",
            "config": {"local_part": "unused-address"},
        },
        headers=t["headers"],
    )
    assert r.status_code == 409 and r.json()["code"] == "channel-name-taken"
    assert r.json()["field"] == "body.name"
    r = await client.patch(
        f"/v1/channels/{other['id']}", json={"name": "WEBSITE chat"}, headers=t["headers"]
    )
    assert r.status_code == 409 and r.json()["code"] == "channel-name-taken"
    assert await snapshot(admin_conn) == before
    # The unused address was not claimed by the refused create.
    await create_channel(
        client, t, {"type": "email", "name": "Mail", "config": {"local_part": "unused-address"}}
    )
    # A channel may change the case of its own name.
    r = await client.patch(
        f"/v1/channels/{other['id']}", json={"name": "TEXT US"}, headers=t["headers"]
    )
    assert r.status_code == 200 and r.json()["name"] == "TEXT US"


async def test_stale_if_match_answers_412_and_changes_nothing(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"]
    ch = await create_channel(client, t, sms())
    r = await client.patch(
        f"/v1/channels/{ch['id']}", json={"name": "Texts"}, headers=h | {"If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    before = await snapshot(admin_conn)
    for method, path, body in (
        ("PATCH", "", {"credentials": {"auth_token": "stale"}}),
        ("DELETE", "", None),
        ("POST", "/rotate-webhook-secret", None),
    ):
        r = await client.request(
            method, f"/v1/channels/{ch['id']}{path}", json=body, headers=h | {"If-Match": '"1"'}
        )
        assert r.status_code == 412, (method, path)
        assert r.json()["code"] == "precondition-failed"
        assert r.json()["current_etag"] == '"2"' and r.json()["field"] == "header.If-Match"
    assert await snapshot(admin_conn) == before
    r = await client.delete(f"/v1/channels/{ch['id']}", headers=h | {"If-Match": 'W/"2"'})
    assert r.status_code == 204


async def test_idempotent_create_replays_the_first_answer_without_the_secret(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"] | {"Idempotency-Key": "create-sms-1"}
    body = sms()
    first = await client.post("/v1/channels", json=body, headers=h)
    again = await client.post("/v1/channels", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    secret = first.json()["webhook_secret"]
    assert secret and again.json()["webhook_secret"] is None
    assert again.json() == first.json() | {"webhook_secret": None}
    assert await admin_conn.fetchval("SELECT count(*) FROM channels") == 1
    # The replay record keeps neither the webhook secret nor the credentials.
    stored = await admin_conn.fetchval("SELECT response::text FROM idempotency_keys")
    assert secret not in stored and body["credentials"]["auth_token"] not in stored
    # A channel without secrets replays exactly.
    h2 = t["headers"] | {"Idempotency-Key": "create-chat-1"}
    one = await client.post("/v1/channels", json=WEBCHAT, headers=h2)
    two = await client.post("/v1/channels", json=WEBCHAT, headers=h2)
    assert one.status_code == two.status_code == 201 and one.json() == two.json()
    # The key with another body is refused.
    r = await client.post("/v1/channels", json=WEBCHAT | {"name": "Other"}, headers=h2)
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"
    # Rotations are retry-safe too: a replay does not rotate again.
    ch = first.json()
    h3 = t["headers"] | {"Idempotency-Key": "rotate-1"}
    r1 = await client.post(f"/v1/channels/{ch['id']}/rotate-webhook-secret", headers=h3)
    r2 = await client.post(f"/v1/channels/{ch['id']}/rotate-webhook-secret", headers=h3)
    assert r1.json()["version"] == r2.json()["version"] == 2
    assert r1.json()["webhook_secret"] and r2.json()["webhook_secret"] is None


async def test_the_plan_quota_refuses_the_sixth_channel_and_writes_nothing(client, admin_conn):
    t = await create_tenant(client)
    for i in range(5):
        await create_channel(client, t, WEBCHAT | {"name": f"Chat {i}"})
    before = await snapshot(admin_conn)
    r = await client.post(
        "/v1/channels",
        json={"type": "email", "name": "Mail", "config": {"local_part": "sixth"}},
        headers=t["headers"],
    )
    assert r.status_code == 403 and r.json()["code"] == "quota-exceeded"
    assert r.json()["limit"] == 5 and r.json()["current"] == 5
    assert await snapshot(admin_conn) == before
    quotas = (await client.get("/v1/quotas", headers=t["headers"])).json()["quotas"]
    assert {q["resource"]: q["used"] for q in quotas}["channels"] == 5
    # Freeing a slot lets the next one in.
    first = (await client.get("/v1/channels", headers=t["headers"])).json()["items"][0]
    await client.delete(f"/v1/channels/{first['id']}", headers=t["headers"])
    await create_channel(
        client, t, {"type": "email", "name": "Mail", "config": {"local_part": "sixth"}}
    )


def chat(**config: Any) -> dict[str, Any]:
    return {
        "type": "webchat",
        "name": "Chat",
        "config": {"allowed_origins": ["https://a.example"]} | config,
    }


def mail(**config: Any) -> dict[str, Any]:
    return {"type": "email", "name": "Mail", "config": {"local_part": "help"} | config}


BAD_CREATES: list[tuple[Any, str]] = [
    ({}, "body.type"),
    ({"type": "fax", "name": "x"}, "body.type"),
    ({"type": None, "name": "x"}, "body.type"),
    ([], "body"),
    ({"type": "voice"}, "body.name"),
    ({"type": "voice", "name": ""}, "body.name"),
    ({"type": "voice", "name": "x" * 101}, "body.name"),
    ({"type": "voice", "name": "a\nb"}, "body.name"),
    ({"type": "voice", "name": "x", "colour": "red"}, "body.colour"),
    ({"type": "voice", "name": "x", "credentials": {"a": "b"}}, "body.credentials"),
    (
        {"type": "voice", "name": "x", "config": {"phone_number_ids": ["nope"]}},
        "body.config.phone_number_ids.0",
    ),
    (
        {
            "type": "voice",
            "name": "x",
            "config": {"phone_number_ids": ["0196b0f2-6f0e-7c3a-9a51-2f1d3c4b5a60"] * 2},
        },
        "body.config.phone_number_ids",
    ),
    (
        {
            "type": "voice",
            "name": "x",
            "config": {"phone_number_ids": ["0196b0f2-6f0e-7c3a-9a51-2f1d3c4b5a60"]},
        },
        "body.config.phone_number_ids.0",
    ),
    ({"type": "webchat", "name": "x"}, "body.config"),
    ({"type": "webchat", "name": "x", "config": {}}, "body.config.allowed_origins"),
    (chat(allowed_origins=[]), "body.config.allowed_origins"),
    (chat(allowed_origins="https://a.example"), "body.config.allowed_origins"),
    (
        chat(allowed_origins=["https://a.example", "http://b.example"]),
        "body.config.allowed_origins.1",
    ),
    (chat(allowed_origins=["https://a.example/"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a.example/path"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a.example?x=1"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a.example#top"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://user@a.example"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["a.example"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["ftp://a.example"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://*"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["*"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://*.com"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a.*.example"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://*a.example"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://**.a.example"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a.example:0"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a.example:65536"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a.example:"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a.example:8o"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a..example"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://-a.example"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a_b.example"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://intranet"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://bücher.example"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://[::1]"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://999.1.1.1"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://*.10.0.0.1"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["http://*.localhost"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["http://localhost.evil.example"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a.example "]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["https://a.example\x00"]), "body.config.allowed_origins.0"),
    (chat(allowed_origins=["null"]), "body.config.allowed_origins.0"),
    (
        chat(allowed_origins=["https://a.example", "HTTPS://A.example:443"]),
        "body.config.allowed_origins",
    ),
    (chat(allowed_origins=["https://a.example"] * 51), "body.config.allowed_origins"),
    (chat(greeting=""), "body.config.greeting"),
    (chat(greeting="   "), "body.config.greeting"),
    (chat(greeting="x" * 501), "body.config.greeting"),
    (chat(greeting="bell\x07"), "body.config.greeting"),
    (chat(theme="blue"), "body.config.theme"),
    (chat(theme="#12345"), "body.config.theme"),
    (chat(theme="#gggggg"), "body.config.theme"),
    (chat(widget_key="wk_mine"), "body.config.widget_key"),
    ({"type": "email", "name": "x", "config": {}}, "body.config.local_part"),
    (mail(local_part=""), "body.config.local_part"),
    (mail(local_part="Support"), "body.config.local_part"),
    (mail(local_part=".support"), "body.config.local_part"),
    (mail(local_part="support."), "body.config.local_part"),
    (mail(local_part="sup..port"), "body.config.local_part"),
    (mail(local_part="sup port"), "body.config.local_part"),
    (mail(local_part="sup+port"), "body.config.local_part"),
    (mail(local_part="x@y"), "body.config.local_part"),
    (mail(local_part="a" * 65), "body.config.local_part"),
    (mail(local_part="postmaster"), "body.config.local_part"),
    (mail(local_part="abuse"), "body.config.local_part"),
    (mail(reply_from="not-an-address"), "body.config.reply_from"),
    (mail(reply_from="a@b@c.example"), "body.config.reply_from"),
    (mail(reply_from="x\r\nBcc: all@example.com"), "body.config.reply_from"),
    (mail(display_name="Acme\r\nBcc: x@y.example"), "body.config.display_name"),
    (mail(address="me@elsewhere.example"), "body.config.address"),
    (
        {"type": "sms", "name": "x", "config": {"provider_account_id": "AC1"}},
        "body.config.provider",
    ),
    (sms(config={"provider": "nexmo", "provider_account_id": "AC1"}), "body.config.provider"),
    (sms(config={"provider": "twilio"}), "body.config.provider_account_id"),
    (
        sms(config={"provider": "twilio", "provider_account_id": ""}),
        "body.config.provider_account_id",
    ),
    (
        sms(config={"provider": "twilio", "provider_account_id": "AC 1"}),
        "body.config.provider_account_id",
    ),
    (
        sms(config={"provider": "twilio", "provider_account_id": "sms:twilio:AC1"}),
        "body.config.provider_account_id",
    ),
    (
        sms(config={"provider": "twilio", "provider_account_id": "A" * 129}),
        "body.config.provider_account_id",
    ),
    (sms(credentials=None), "body.credentials"),
    (sms(credentials={}), "body.credentials"),
    (sms(credentials="token"), "body.credentials"),
    (sms(credentials={"auth_token": ""}), "body.credentials.auth_token"),
    (sms(credentials={"auth_token": 42}), "body.credentials.auth_token"),
    (sms(credentials={"auth_token": "a\x00b"}), "body.credentials.auth_token"),
    (sms(credentials={"auth_token": "x" * 4097}), "body.credentials.auth_token"),
    (sms(credentials={"auth_token": "t", "api_secret": "s"}), "body.credentials.api_secret"),
    (sms(credentials={"account_sid": "s"}), "body.credentials.account_sid"),
    (sms(credentials={"Auth Token!": "s"}), "body.credentials"),
    (sms(webhook_secret="whsec_mine"), "body.webhook_secret"),
    (
        {
            "type": "whatsapp",
            "name": "x",
            "config": {"provider": "meta", "provider_account_id": "1"},
            "credentials": {"access_token": "t"},
        },
        "body.credentials.app_secret",
    ),
    (
        {
            "type": "whatsapp",
            "name": "x",
            "config": {"provider": "aws", "provider_account_id": "1"},
            "credentials": {"t": "t"},
        },
        "body.config.provider",
    ),
    ({"type": "wechat", "name": "x", "config": {"provider_account_id": "wx1"}}, "body.credentials"),
    (
        {
            "type": "messenger",
            "name": "x",
            "config": {"provider": "twilio", "provider_account_id": "1"},
            "credentials": {"t": "t"},
        },
        "body.config.provider",
    ),
    (
        {
            "type": "messenger",
            "name": "x",
            "config": {"provider_account_id": "1", "phone_number_ids": []},
            "credentials": {"t": "t"},
        },
        "body.config.phone_number_ids",
    ),
]


async def test_bad_creates_name_the_field_and_write_nothing(client, admin_conn):
    t = await create_tenant(client)
    for body, field in BAD_CREATES:
        r = await client.post("/v1/channels", json=body, headers=t["headers"])
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["field"] == field, (body, r.json())
    assert await admin_conn.fetchval("SELECT count(*) FROM channels") == 0
    assert await admin_conn.fetchval("SELECT count(*) FROM channel_addresses") == 0


async def test_bad_updates_name_the_field_and_change_nothing(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"]
    chat_ch = await create_channel(client, t, WEBCHAT)
    mail_ch = await create_channel(client, t, mail())
    sms_ch = await create_channel(client, t, sms())
    voice_ch = await create_channel(client, t, {"type": "voice", "name": "Line"})
    cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
        (chat_ch, {"type": "email"}, "body.type"),
        (chat_ch, {"type": "pigeon"}, "body.type"),
        (chat_ch, {"name": None}, "body.name"),
        (chat_ch, {"name": ""}, "body.name"),
        (chat_ch, {"enabled": None}, "body.enabled"),
        (chat_ch, {"enabled": "sometimes"}, "body.enabled"),
        (chat_ch, {"config": None}, "body.config"),
        (chat_ch, {"config": {"allowed_origins": None}}, "body.config.allowed_origins"),
        (
            chat_ch,
            {"config": {"allowed_origins": ["http://a.example"]}},
            "body.config.allowed_origins.0",
        ),
        (chat_ch, {"config": {"widget_key": "wk_x"}}, "body.config.widget_key"),
        (chat_ch, {"config": {"reply_from": "a@b.example"}}, "body.config.reply_from"),
        (chat_ch, {"config": {"phone_number_ids": []}}, "body.config.phone_number_ids"),
        (chat_ch, {"credentials": {"auth_token": "x"}}, "body.credentials"),
        (chat_ch, {"id": chat_ch["id"]}, "body.id"),
        (mail_ch, {"config": {"local_part": "moved"}}, "body.config.local_part"),
        (mail_ch, {"config": {"reply_from": "nope"}}, "body.config.reply_from"),
        (mail_ch, {"config": {"greeting": "hi"}}, "body.config.greeting"),
        (sms_ch, {"config": {"provider": "aws"}}, "body.config.provider"),
        (sms_ch, {"config": {"provider_account_id": "AC2"}}, "body.config.provider_account_id"),
        (sms_ch, {"credentials": None}, "body.credentials"),
        (sms_ch, {"credentials": {"access_token": "x"}}, "body.credentials.access_token"),
        (sms_ch, {"credentials": {"auth_token": "x\ny"}}, "body.credentials.auth_token"),
        (
            sms_ch,
            {"config": {"phone_number_ids": ["0196b0f2-6f0e-7c3a-9a51-2f1d3c4b5a60"]}},
            "body.config.phone_number_ids.0",
        ),
        (voice_ch, {"config": {"phone_number_ids": None}}, "body.config.phone_number_ids"),
        (voice_ch, {"config": {"phone_number_ids": ["x"]}}, "body.config.phone_number_ids.0"),
        (voice_ch, {"credentials": {"auth_token": "x"}}, "body.credentials"),
    ]
    before = await snapshot(admin_conn)
    for ch, body, field in cases:
        r = await client.patch(f"/v1/channels/{ch['id']}", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["field"] == field, (body, r.json())
    r = await client.patch(f"/v1/channels/{chat_ch['id']}", content=b"name=x", headers=h)
    assert r.status_code == 415
    r = await client.patch("/v1/channels/not-a-uuid", json={}, headers=h)
    assert r.status_code == 422 and r.json()["field"] == "path.channel_id"
    r = await client.post(f"/v1/channels/{voice_ch['id']}/rotate-widget-key", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "channel-type-mismatch"
    r = await client.post(f"/v1/channels/{chat_ch['id']}/rotate-webhook-secret", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "channel-type-mismatch"
    assert await snapshot(admin_conn) == before
