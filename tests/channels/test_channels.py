"""Channels as a new tenant meets them: one happy path per type, the widget key and
webhook secret rotations, per-type PATCH, and the platform address lookup for ingress."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from app.channels import repository, secrets, service
from app.channels.models import Channel
from app.db.tenant import bind_tenant, mint_scope
from tests.channels.conftest import WEBCHAT, AddNumber, create_channel, sms
from tests.conftest import create_tenant, create_user, login

DOMAIN = "inbound.switchboard.localhost"


async def resolve(app: Any, kind: str, address: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    async with app.state.session_factory() as session, session.begin():
        return await repository.resolve_address(session, kind, address)


async def load(app: Any, tenant: dict[str, Any], channel_id: str) -> Channel:
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        return await service.get(session, scope, uuid.UUID(channel_id))


def ids(tenant: dict[str, Any], channel: dict[str, Any]) -> tuple[uuid.UUID, uuid.UUID]:
    return uuid.UUID(tenant["tenant"]["id"]), uuid.UUID(channel["id"])


async def test_webchat_channel_with_a_public_widget_key_that_rotates(client, app):
    t = await create_tenant(client)
    h = t["headers"]
    body = {
        "type": "webchat",
        "name": "Website chat",
        "config": {
            "allowed_origins": [
                "HTTPS://WWW.Acme.Example:443",
                "https://*.acme.example",
                "http://localhost:3000",
                "http://127.0.0.1",
                "https://shop.acme.example:8443",
            ],
            "greeting": "  Hi!\nHow can we help?  ",
            "theme": "#0AF",
        },
    }
    r = await client.post("/v1/channels", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"'
    ch = r.json()
    assert ch["type"] == "webchat" and ch["enabled"] is True and ch["version"] == 1
    cfg = ch["config"]
    assert re.fullmatch(r"wk_[A-Za-z0-9_-]{24}", cfg["widget_key"])
    assert cfg["allowed_origins"] == [
        "https://www.acme.example",
        "https://*.acme.example",
        "http://localhost:3000",
        "http://127.0.0.1",
        "https://shop.acme.example:8443",
    ]
    assert cfg["greeting"] == "Hi!\nHow can we help?" and cfg["theme"] == "#00aaff"
    assert await resolve(app, "widget_key", cfg["widget_key"]) == ids(t, ch)

    r = await client.get(f"/v1/channels/{ch['id']}", headers=h)
    assert r.status_code == 200 and r.json() == ch and r.headers["etag"] == '"1"'

    r = await client.post(
        f"/v1/channels/{ch['id']}/rotate-widget-key", headers=h | {"If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    new_key = r.json()["config"]["widget_key"]
    assert new_key != cfg["widget_key"] and re.fullmatch(r"wk_[A-Za-z0-9_-]{24}", new_key)
    assert await resolve(app, "widget_key", cfg["widget_key"]) is None
    assert await resolve(app, "widget_key", new_key) == ids(t, ch)
    assert (await client.get(f"/v1/channels/{ch['id']}", headers=h)).json()["config"][
        "widget_key"
    ] == new_key
    # A stale If-Match rotates nothing.
    r = await client.post(
        f"/v1/channels/{ch['id']}/rotate-widget-key", headers=h | {"If-Match": '"1"'}
    )
    assert r.status_code == 412
    assert await resolve(app, "widget_key", new_key) == ids(t, ch)


async def test_email_channel_gets_an_inbound_address_under_the_configured_domain(client, app):
    t = await create_tenant(client)
    r = await client.post(
        "/v1/channels",
        json={
            "type": "email",
            "name": "Support email",
            "config": {
                "local_part": "acme-support.eu",
                "reply_from": "Help@Acme.example",
                "display_name": "Acme Support",
            },
        },
        headers=t["headers"],
    )
    assert r.status_code == 201, r.text
    ch = r.json()
    assert ch["config"] == {
        "local_part": "acme-support.eu",
        "address": f"acme-support.eu@{DOMAIN}",
        "reply_from": "Help@acme.example",
        "display_name": "Acme Support",
        "queue_id": None,
        "flow_id": None,
    }
    # Ingress finds it whatever the case the sender used.
    assert await resolve(app, "email", f"ACME-Support.EU@{DOMAIN.upper()}") == ids(t, ch)
    # Without reply_from, replies come from the inbound address.
    other = await create_channel(
        client,
        t,
        {"type": "email", "name": "Sales", "config": {"local_part": "acme-sales"}},
    )
    assert other["config"]["reply_from"] == f"acme-sales@{DOMAIN}"
    assert other["config"]["display_name"] is None

    r = await client.patch(
        f"/v1/channels/{ch['id']}",
        json={"config": {"reply_from": None, "display_name": "Acme Help Desk"}},
        headers=t["headers"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["config"]["reply_from"] == f"acme-support.eu@{DOMAIN}"
    assert r.json()["config"]["display_name"] == "Acme Help Desk"
    assert r.json()["version"] == 2


async def test_voice_channel_answers_the_tenants_active_numbers(client, app, add_number: AddNumber):
    t = await create_tenant(client)
    h = t["headers"]
    n1, n2, n3 = [await add_number(t) for _ in range(3)]
    released = await add_number(t, status="released")
    ch = await create_channel(
        client, t, {"type": "voice", "name": "Main line", "config": {"phone_number_ids": [n2, n1]}}
    )
    assert ch["config"] == {"phone_number_ids": sorted([n1, n2])}

    # A number serves one voice channel at a time; nothing is written on refusal.
    r = await client.post(
        "/v1/channels",
        json={"type": "voice", "name": "Backup", "config": {"phone_number_ids": [n3, n1]}},
        headers=h,
    )
    assert r.status_code == 409 and r.json()["code"] == "number-in-use"
    assert r.json()["field"] == "body.config.phone_number_ids.1"
    assert "Main line" in r.json()["detail"]
    assert len((await client.get("/v1/channels", headers=h)).json()["items"]) == 1
    # A released number is not one the tenant can use.
    r = await client.post(
        "/v1/channels",
        json={"type": "voice", "name": "Backup", "config": {"phone_number_ids": [released]}},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["code"] == "unknown-phone-number"
    assert r.json()["field"] == "body.config.phone_number_ids.0"
    # The same number may also carry SMS (another channel type).
    texting = await create_channel(
        client,
        t,
        {
            "type": "sms",
            "name": "Texting",
            "config": {
                "provider": "sandbox",
                "provider_account_id": "sb-1",
                "phone_number_ids": [n1],
            },
        },
    )
    assert texting["config"]["phone_number_ids"] == [n1]
    assert texting["credentials_set"] is False

    # A voice channel without numbers (WebRTC click-to-call only) is fine.
    webrtc = await create_channel(client, t, {"type": "voice", "name": "Click to call"})
    assert webrtc["config"] == {"phone_number_ids": []}

    # PATCH replaces the set; moving n1 needs it freed first.
    r = await client.patch(
        f"/v1/channels/{webrtc['id']}", json={"config": {"phone_number_ids": [n1]}}, headers=h
    )
    assert r.status_code == 409 and r.json()["code"] == "number-in-use"
    r = await client.patch(
        f"/v1/channels/{ch['id']}",
        json={"config": {"phone_number_ids": [n2, n3]}},
        headers=h | {"If-Match": '"1"'},
    )
    assert r.status_code == 200 and r.json()["config"]["phone_number_ids"] == sorted([n2, n3])
    assert r.headers["etag"] == '"2"'
    r = await client.patch(
        f"/v1/channels/{webrtc['id']}", json={"config": {"phone_number_ids": [n1]}}, headers=h
    )
    assert r.status_code == 200 and r.json()["config"]["phone_number_ids"] == [n1]
    # Deleting a channel frees its numbers.
    assert (await client.delete(f"/v1/channels/{ch['id']}", headers=h)).status_code == 204
    again = await create_channel(
        client, t, {"type": "voice", "name": "Main line", "config": {"phone_number_ids": [n2]}}
    )
    assert again["config"]["phone_number_ids"] == [n2]
    listed = (await client.get("/v1/channels?type=voice", headers=h)).json()["items"]
    assert {c["id"]: c["config"]["phone_number_ids"] for c in listed} == {
        again["id"]: [n2],
        webrtc["id"]: [n1],
    }


MESSAGING = [
    (
        "sms",
        {"provider": "aws", "provider_account_id": "123456789012"},
        {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "aws-secret-value"},
    ),
    (
        "whatsapp",
        {"provider": "meta", "provider_account_id": "109876543210987"},
        {"access_token": "EAAG-meta-token", "app_secret": "meta-app-secret"},
    ),
    (
        "whatsapp",
        {"provider": "twilio", "provider_account_id": "ACabc"},
        {"auth_token": "twilio-token"},
    ),
    (
        "wechat",
        {"provider_account_id": "wx1234567890abcdef"},
        {"app_secret": "wechat-secret", "token": "wechat-token", "encoding_aes_key": "aes"},
    ),
    (
        "messenger",
        {"provider_account_id": "104455667788990"},
        {"page_access_token": "page-token", "app_secret": "page-app-secret"},
    ),
]


async def test_messaging_channels_keep_credentials_encrypted_and_show_the_secret_once(client, app):
    t = await create_tenant(client, company_name="Plenty Of Channels")
    # The trial plan allows five channels.
    for i, (kind, config, creds) in enumerate(MESSAGING):
        r = await client.post(
            "/v1/channels",
            json={"type": kind, "name": f"{kind} {i}", "config": config, "credentials": creds},
            headers=t["headers"],
        )
        assert r.status_code == 201, r.text
        assert r.headers["cache-control"] == "no-store"
        ch = r.json()
        provider = config.get("provider") or {"wechat": "wechat", "messenger": "meta"}[kind]
        assert ch["config"]["provider"] == provider
        assert ch["config"]["provider_account_id"] == config["provider_account_id"]
        assert ch["credentials_set"] is True
        assert ch["credential_fields"] == sorted(creds)
        secret = ch["webhook_secret"]
        assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", secret)
        address = f"{kind}:{provider}:{config['provider_account_id']}"
        assert await resolve(app, "provider_id", address) == ids(t, ch)

        got = await client.get(f"/v1/channels/{ch['id']}", headers=t["headers"])
        assert "webhook_secret" not in got.json()
        assert got.json() == {k: v for k, v in ch.items() if k != "webhook_secret"}

        # Ingress and adapters read the clear values through app.channels.secrets.
        stored = await load(app, t, ch["id"])
        assert secrets.read_credentials(app.state.cipher, stored) == creds
        assert secrets.read_webhook_secret(app.state.cipher, stored) == secret

        r = await client.post(
            f"/v1/channels/{ch['id']}/rotate-webhook-secret", headers=t["headers"]
        )
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        rotated = r.json()["webhook_secret"]
        assert rotated != secret and r.json()["version"] == 2
        stored = await load(app, t, ch["id"])
        assert secrets.read_webhook_secret(app.state.cipher, stored) == rotated


async def test_patch_replaces_credentials_and_changes_only_what_the_type_allows(client, app):
    t = await create_tenant(client)
    h = t["headers"]
    ch = await create_channel(client, t, sms())
    r = await client.patch(
        f"/v1/channels/{ch['id']}",
        json={"name": "SMS (US)", "enabled": False, "credentials": {"auth_token": "new-token"}},
        headers=h | {"If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "SMS (US)" and r.json()["enabled"] is False
    assert r.json()["credential_fields"] == ["auth_token"] and "webhook_secret" not in r.json()
    stored = await load(app, t, ch["id"])
    assert secrets.read_credentials(app.state.cipher, stored) == {"auth_token": "new-token"}
    # The webhook secret survives a credentials change.
    assert secrets.read_webhook_secret(app.state.cipher, stored) == ch["webhook_secret"]

    chat = await create_channel(client, t, WEBCHAT)
    r = await client.patch(
        f"/v1/channels/{chat['id']}",
        json={
            "type": "webchat",
            "config": {"allowed_origins": ["https://help.acme.example"], "theme": "#123456"},
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["config"]["allowed_origins"] == ["https://help.acme.example"]
    assert r.json()["config"]["greeting"] == "Hi there"  # untouched
    r = await client.patch(
        f"/v1/channels/{chat['id']}", json={"config": {"greeting": None}}, headers=h
    )
    assert r.json()["config"]["greeting"] is None and r.json()["version"] == 3
    # The same values again: no new version.
    r = await client.patch(
        f"/v1/channels/{chat['id']}",
        json={"name": "Website chat", "config": {"theme": "#123456", "greeting": None}},
        headers=h,
    )
    assert r.status_code == 200 and r.headers["etag"] == '"3"'


async def test_delete_stops_every_address_resolving(client, app):
    t = await create_tenant(client)
    chat = await create_channel(client, t, WEBCHAT)
    mail = await create_channel(
        client, t, {"type": "email", "name": "Mail", "config": {"local_part": "helpdesk"}}
    )
    text = await create_channel(client, t, sms())
    for ch in (chat, mail, text):
        r = await client.delete(f"/v1/channels/{ch['id']}", headers=t["headers"])
        assert r.status_code == 204
        assert (
            await client.get(f"/v1/channels/{ch['id']}", headers=t["headers"])
        ).status_code == 404
    assert await resolve(app, "widget_key", chat["config"]["widget_key"]) is None
    assert await resolve(app, "email", f"helpdesk@{DOMAIN}") is None
    account = text["config"]["provider_account_id"]
    assert await resolve(app, "provider_id", f"sms:twilio:{account}") is None
    # The address is free again, for anyone.
    other = await create_tenant(client)
    await create_channel(
        client, other, {"type": "email", "name": "Mail", "config": {"local_part": "helpdesk"}}
    )


async def test_supervisors_read_channels_but_only_admins_change_them(client, app):
    t = await create_tenant(client)
    ch = await create_channel(client, t, WEBCHAT)
    sup = await create_user(app, t, "supervisor")
    agent = await create_user(app, t, "agent")
    sh = (await login(client, sup["email"]))["headers"]
    ah = (await login(client, agent["email"]))["headers"]
    assert (await client.get(f"/v1/channels/{ch['id']}", headers=sh)).status_code == 200
    assert (await client.get("/v1/channels", headers=ah)).status_code == 403
    for method, path in (
        ("POST", "/v1/channels"),
        ("PATCH", f"/v1/channels/{ch['id']}"),
        ("DELETE", f"/v1/channels/{ch['id']}"),
        ("POST", f"/v1/channels/{ch['id']}/rotate-widget-key"),
    ):
        r = await client.request(
            method, path, headers=sh, json=WEBCHAT if method == "POST" else {"name": "x"}
        )
        assert r.status_code == 403, (method, path)
        assert r.json()["required_scope"] == "channels:write"
    assert (await client.get(f"/v1/channels/{ch['id']}", headers=sh)).json() == ch


async def test_list_is_paginated_and_filtered_by_type(client: httpx.AsyncClient):
    t = await create_tenant(client)
    made = [await create_channel(client, t, WEBCHAT | {"name": f"Chat {i}"}) for i in range(3)] + [
        await create_channel(client, t, sms())
    ]
    r = await client.get("/v1/channels?limit=2", headers=t["headers"])
    page1 = r.json()
    assert [c["id"] for c in page1["items"]] == [made[3]["id"], made[2]["id"]]
    r = await client.get(
        f"/v1/channels?limit=2&cursor={page1['next_cursor']}", headers=t["headers"]
    )
    assert [c["id"] for c in r.json()["items"]] == [made[1]["id"], made[0]["id"]]
    assert r.json()["next_cursor"] is None
    r = await client.get("/v1/channels?type=sms", headers=t["headers"])
    assert [c["id"] for c in r.json()["items"]] == [made[3]["id"]]
    r = await client.get("/v1/channels?type=fax", headers=t["headers"])
    assert r.status_code == 422 and r.json()["field"] == "query.type"
