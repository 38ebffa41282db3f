"""WeChat webhooks end to end: the echostr handshake, signed XML pushes (plain and safe
mode), stale and replayed requests (the nonce is taken once), media by MediaId (with a
token WeChat refuses), and replies through the customer-service message API."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from tests.messaging.fake_providers import FakeProviders
from tests.messaging.ingress import (
    counts,
    create_channel,
    message,
    messaging_tenant,
    only_message,
    reply,
    wechat_query,
)
from tests.messaging.test_wechat import wechat_encrypt

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
ORIGINAL_ID = "gh_3f1a2b3c4d5e"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def xml(kind: str = "text", msg_id: str | None = None, **fields: str) -> bytes:
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (
        f"<xml><ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName>"
        f"<FromUserName><![CDATA[{OPENID}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[{kind}]]></MsgType>"
        f"{body}<MsgId>{msg_id or secrets.randbelow(10**17)}</MsgId></xml>"
    ).encode()


async def wechat_channel(
    client, providers: FakeProviders, **extra: str
) -> tuple[dict[str, Any], str, str]:
    tenant = await messaging_tenant(client)
    appid, secret = providers.wechat_app()
    token = "tok" + secrets.token_hex(8)
    await create_channel(
        client, tenant, "wechat", "wechat", appid, {"app_secret": secret, "token": token} | extra
    )
    return tenant, appid, token


async def push(
    client, appid: str, token: str, body: bytes, *, at: int | None = None, nonce: str | None = None
):
    query = wechat_query(token, at if at is not None else int(time.time()), nonce)
    return await client.post(
        f"/v1/webhooks/wechat/wechat/{appid}",
        params=query | {"openid": OPENID},
        content=body,
        headers={"Content-Type": "text/xml"},
    )


async def test_the_echostr_handshake(client, clean_db, wired):
    _, appid, token = await wechat_channel(client, wired)
    path = f"/v1/webhooks/wechat/wechat/{appid}"

    ok = await client.get(path, params=wechat_query(token, int(time.time())) | {"echostr": "e1x2"})
    forged = await client.get(
        path, params=wechat_query("wrong", int(time.time())) | {"echostr": "e1x2"}
    )
    stale = await client.get(
        path, params=wechat_query(token, int(time.time()) - 3600) | {"echostr": "e1x2"}
    )

    assert ok.status_code == 200 and ok.text == "e1x2"
    assert forged.status_code == 403 and forged.json()["code"] == "signature-invalid"
    assert stale.status_code == 403 and stale.json()["code"] == "stale-request"


async def test_a_handshakes_signed_query_cannot_carry_a_push(client, clean_db, wired):
    """A handshake is signed like a plaintext push (the body is not covered): whoever
    saw its query must not be able to post a message with it."""
    _, appid, token = await wechat_channel(client, wired)
    path = f"/v1/webhooks/wechat/wechat/{appid}"
    now = int(time.time())
    query = wechat_query(token, now, "n0nce1")
    seen = await client.get(path, params=query | {"echostr": "e1x2"})
    assert seen.status_code == 200 and seen.text == "e1x2"

    r = await push(client, appid, token, xml(Content="not from WeChat"), at=now, nonce="n0nce1")

    assert r.status_code == 200  # answered as a replay: WeChat stops resending
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 0
    # A fresh nonce still goes through.
    r = await push(client, appid, token, xml(Content="hello"), at=now, nonce="n0nce2")
    assert r.status_code == 200
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 1


async def test_a_signed_push_opens_a_routed_conversation(client, clean_db, wired):
    tenant, appid, token = await wechat_channel(client, wired)

    r = await push(client, appid, token, xml(Content="你好我的订单还没到"))

    assert r.status_code == 200 and r.text == "success"
    msg = await only_message(clean_db)
    assert msg["body"] == "你好我的订单还没到" and msg["channel"] == "wechat"
    assert msg["to_address"] == ORIGINAL_ID
    identity = await clean_db.fetchrow("SELECT * FROM customer_identities")
    assert (identity["kind"], identity["value"]) == ("wechat", OPENID)
    assert await clean_db.fetchval("SELECT state FROM conversations") == "queued"
    meters = await clean_db.fetch("SELECT meter, tenant_id FROM usage_events")
    assert [(m["meter"], str(m["tenant_id"])) for m in meters] == [
        ("messages.wechat", tenant["tenant"]["id"])
    ]


async def test_stale_forged_and_replayed_pushes_change_nothing(client, clean_db, wired):
    _, appid, token = await wechat_channel(client, wired)
    before = await counts(clean_db)

    stale = await push(client, appid, token, xml(Content="old"), at=int(time.time()) - 3600)
    ahead = await push(client, appid, token, xml(Content="future"), at=int(time.time()) + 3600)
    forged = await push(client, appid, "not-the-token", xml(Content="forged"))

    assert stale.status_code == 403 and stale.json()["code"] == "stale-request"
    assert ahead.status_code == 403 and ahead.json()["code"] == "stale-request"
    assert forged.status_code == 403 and forged.json()["code"] == "signature-invalid"
    assert await counts(clean_db) == before

    # WeChat's signature covers the timestamp and nonce, not the body: a second request
    # with the same ones is a replay, whatever its body says.
    at, nonce = int(time.time()), "887766"
    first = await push(client, appid, token, xml(Content="once"), at=at, nonce=nonce)
    after_first = await counts(clean_db)
    replay = await push(client, appid, token, xml(Content="injected"), at=at, nonce=nonce)

    assert first.status_code == 200 and replay.status_code == 200 and replay.text == "success"
    assert await counts(clean_db) == after_first
    assert [r["body"] for r in await clean_db.fetch("SELECT body FROM messages")] == ["once"]


async def test_wechats_retry_of_a_message_is_taken_once(client, clean_db, wired):
    _, appid, token = await wechat_channel(client, wired)
    body = xml(msg_id="24599513452395462", Content="retry me")
    assert (await push(client, appid, token, body)).status_code == 200
    # WeChat retries a push it got no answer to (a new nonce): the MsgId dedupes it.
    assert (await push(client, appid, token, body)).status_code == 200
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 1


async def test_a_safe_mode_push_is_decrypted(client, clean_db, wired):
    _, appid, token = await wechat_channel(client, wired, encoding_aes_key=AES_KEY)
    envelope = wechat_encrypt(xml(Content="加密的消息"), appid, AES_KEY)
    body = (
        f"<xml><ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{envelope}]]></Encrypt></xml>"
    ).encode()
    query = wechat_query(token, int(time.time()))
    parts = sorted([token, query["timestamp"], query["nonce"], envelope])
    msg_signature = hashlib.sha1("".join(parts).encode(), usedforsecurity=False).hexdigest()

    r = await client.post(
        f"/v1/webhooks/wechat/wechat/{appid}",
        params=query | {"encrypt_type": "aes", "msg_signature": msg_signature},
        content=body,
    )

    assert r.status_code == 200, r.text
    assert (await only_message(clean_db))["body"] == "加密的消息"


async def test_an_image_is_fetched_by_media_id(app, client, clean_db, wired):
    _, appid, token = await wechat_channel(client, wired)
    photo = b"\xff\xd8\xff" + b"wx" * 200
    media_id = wired.wechat_file(photo, "image/jpeg")
    body = xml("image", PicUrl="http://mmbiz.qpic.cn/mmbiz/x/0", MediaId=media_id)

    r = await push(client, appid, token, body)

    assert r.status_code == 200
    msg = await only_message(clean_db)
    assert msg["body"] == ""
    [stored] = await clean_db.fetch("SELECT * FROM attachments")
    assert stored["filename"] == f"{media_id}.jpg" and stored["content_type"] == "image/jpeg"
    assert await app.state.object_store.get(stored["object_key"]) == photo
    # An unknown MediaId: the message is kept, with a note.
    await push(client, appid, token, xml("image", MediaId="nope"))
    bodies = [r["body"] for r in await clean_db.fetch("SELECT body FROM messages")]
    assert "[attachment not accepted: WeChat answered errcode 40007]" in bodies


async def test_media_behind_a_refused_token_forces_a_new_one(app, client, clean_db, wired):
    _, appid, token = await wechat_channel(client, wired)
    photos = [b"\xff\xd8\xff" + bytes([n]) * 300 for n in (1, 2)]
    await push(
        client, appid, token, xml("image", MediaId=wired.wechat_file(photos[0], "image/jpeg"))
    )
    [cached] = [t for t, app_id in wired.wechat_tokens.items() if app_id == appid]
    # Leaked and reset on WeChat's side: refused, yet still what stable_token hands out.
    wired.wechat_refuse(cached)

    r = await push(
        client, appid, token, xml("image", MediaId=wired.wechat_file(photos[1], "image/jpeg"))
    )

    assert r.status_code == 200
    stored = await clean_db.fetch("SELECT object_key FROM attachments ORDER BY created_at")
    assert [await app.state.object_store.get(row["object_key"]) for row in stored] == photos
    assert [rec.json["force_refresh"] for rec in wired.made("/cgi-bin/stable_token")] == [
        False,  # the first image
        False,  # the refused token again
        True,
    ]


async def test_a_reply_goes_through_the_customer_service_api(app, client, clean_db, wired):
    tenant, appid, token = await wechat_channel(client, wired)
    await push(client, appid, token, xml(Content="在吗"))
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")

    sent = await reply(app, tenant, conv_id, "您好请问有什么可以帮您")

    [call] = wired.made(r"/cgi-bin/message/custom/send")
    assert call.json == {
        "touser": OPENID,
        "msgtype": "text",
        "text": {"content": "您好请问有什么可以帮您"},
    }
    assert wired.wechat_tokens[call.query["access_token"][0]] == appid
    row = await message(clean_db, sent.id)
    assert row["status"] == "sent" and row["provider_message_id"].startswith("wechat-")
