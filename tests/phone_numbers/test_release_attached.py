"""A number a channel answers cannot be released: the channel would keep a number the
tenant no longer holds. The refusal names the channels to detach it from."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from app.channels import service as channels_service
from app.channels.schemas import ChannelUpdate
from app.core.concurrency import IfMatch
from app.core.crypto import load_cipher
from app.db.tenant import bind_tenant, mint_scope
from tests.conftest import create_tenant

URL = "/v1/phone-numbers"


async def claim(client: httpx.AsyncClient, t: dict[str, Any], number: str) -> str:
    r = await client.post(URL, json={"number": number}, headers=t["headers"])
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def make_channel(client: httpx.AsyncClient, t: dict[str, Any], body: Any) -> str:
    r = await client.post("/v1/channels", json=body, headers=t["headers"])
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def voice(name: str, *numbers: str) -> dict[str, Any]:
    return {"type": "voice", "name": name, "config": {"phone_number_ids": list(numbers)}}


def sms(name: str, *numbers: str) -> dict[str, Any]:
    return {
        "type": "sms",
        "name": name,
        "config": {
            "provider": "twilio",
            "provider_account_id": "AC" + uuid.uuid4().hex,
            "phone_number_ids": list(numbers),
        },
        "credentials": {"auth_token": "tw-" + uuid.uuid4().hex},
    }


async def test_an_attached_number_is_refused_until_detached(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"]
    nid = await claim(client, t, "+14155550123")
    line = await make_channel(client, t, voice("Main line", nid))
    texts = await make_channel(client, t, sms("Text us", nid))

    r = await client.delete(f"{URL}/{nid}", headers=h)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "number-attached"
    assert "detach it there first" in body["detail"] and "phone_number_ids" in body["detail"]
    assert body["used_by"] == [
        {"type": "channel", "id": line, "name": "Main line", "channel_type": "voice"},
        {"type": "channel", "id": texts, "name": "Text us", "channel_type": "sms"},
    ]
    # Nothing changed: still held, same version, still answering both channels.
    number = (await client.get(f"{URL}/{nid}", headers=h)).json()
    assert number["status"] == "active" and number["version"] == 1
    held = "SELECT tenant_id FROM number_claims WHERE e164 = '+14155550123'"
    assert await admin_conn.fetchval(held) == uuid.UUID(t["tenant"]["id"])
    assert await admin_conn.fetchval("SELECT count(*) FROM channel_numbers") == 2

    # Detached from one channel: the other still holds it.
    r = await client.patch(
        f"/v1/channels/{line}", json={"config": {"phone_number_ids": []}}, headers=h
    )
    assert r.status_code == 200, r.text
    r = await client.delete(f"{URL}/{nid}", headers=h)
    assert r.status_code == 409 and [c["name"] for c in r.json()["used_by"]] == ["Text us"]
    r = await client.patch(
        f"/v1/channels/{texts}", json={"config": {"phone_number_ids": []}}, headers=h
    )
    assert r.status_code == 200, r.text
    assert (await client.delete(f"{URL}/{nid}", headers=h)).status_code == 204
    assert (await client.get(f"{URL}/{nid}", headers=h)).json()["status"] == "released"


async def test_deleting_the_channel_frees_the_number(client):
    t = await create_tenant(client)
    nid = await claim(client, t, "+14155550124")
    line = await make_channel(client, t, voice("Main line", nid))
    assert (await client.delete(f"{URL}/{nid}", headers=t["headers"])).status_code == 409
    assert (await client.delete(f"/v1/channels/{line}", headers=t["headers"])).status_code == 204
    assert (await client.delete(f"{URL}/{nid}", headers=t["headers"])).status_code == 204


async def test_a_release_waits_for_an_attachment_in_progress(client, app):
    """A channel attaching the number at the same moment: the release waits for it to
    commit and then refuses, so no channel keeps a released number."""
    t = await create_tenant(client)
    nid = await claim(client, t, "+14155550125")
    line = await make_channel(client, t, voice("Main line"))
    scope = mint_scope(uuid.UUID(t["tenant"]["id"]))
    attach = ChannelUpdate.model_validate({"config": {"phone_number_ids": [nid]}})

    async with app.state.session_factory() as session:
        async with session.begin():
            await bind_tenant(session, scope)
            await channels_service.update(
                session,
                scope,
                uuid.UUID(line),
                attach,
                IfMatch(None),
                cipher=load_cipher(app.state.settings),
            )
            release = asyncio.create_task(client.delete(f"{URL}/{nid}", headers=t["headers"]))
            await asyncio.sleep(0.3)
            assert not release.done()
        r = await release
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "number-attached"
