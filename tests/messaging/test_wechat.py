"""WeChat: the sha1 signature over token, timestamp and nonce (and msg_signature over
the encrypted envelope in safe mode), the GET echo, hostile XML, and sends against a
local server speaking WeChat's stable_token and customer-service message APIs. How
replicas share tokens is in test_wechat_tokens.py."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from app.messaging.providers.base import (
    InboundMessage,
    MediaRef,
    Outgoing,
    ProviderError,
    WebhookRefused,
    from_unix,
)
from app.messaging.providers.wechat import WeChatAdapter
from app.messaging.providers.wechat_tokens import TokenCache
from app.messaging.providers.wechat_xml import MAX_XML_BYTES, parse_xml
from tests.messaging.fake_providers import FakeProviders
from tests.messaging.helpers import check, now, request

URL = "https://hooks.switchboard.example/v1/webhooks/wechat/wx4f8c2d1e9a7b3c5d"
APPID = "wx4f8c2d1e9a7b3c5d"
TOKEN = "switchboardWeChatToken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as WeChat issues
ORIGINAL_ID = "gh_3f1a2b3c4d5e"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
ADAPTER = WeChatAdapter()


def text_xml(
    content: str = "this is a test", msg_id: str = "24599513452395462", ts: int = 1348831860
) -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName>"
        f"<FromUserName><![CDATA[{OPENID}]]></FromUserName>"
        f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode(), usedforsecurity=False).hexdigest()


def signed_url(ts: int | None = None, token: str = TOKEN, extra: str = "") -> str:
    timestamp = str(ts if ts is not None else int(now().timestamp()))
    nonce = str(secrets.randbelow(10**9))
    return f"{URL}?signature={sign(token, timestamp, nonce)}&timestamp={timestamp}&nonce={nonce}{extra}"


def verify(url: str, body: bytes = b"", credentials: dict[str, str] | None = None) -> None:
    ADAPTER.verify(request(url, body), check(credentials or {"token": TOKEN, "app_secret": "x"}))


def parse(body: bytes, url: str = URL, credentials: dict[str, str] | None = None) -> list[Any]:
    return ADAPTER.parse(
        request(url, body), account_id=APPID, credentials=credentials or {}, received_at=now()
    )


# -- signatures ------------------------------------------------------------------------------


def test_valid_signature_is_accepted() -> None:
    verify(signed_url(), text_xml())


def test_signature_failures() -> None:
    good = signed_url()
    cases = {
        "wrong token": signed_url(token="another-accounts-token"),
        "nonce changed": good.replace("&nonce=", "&nonce=1"),
        "timestamp changed": good.replace("&timestamp=", "&timestamp=1"),
        "no signature": URL + "?timestamp=1&nonce=2",
        "nothing": URL,
    }
    for name, url in cases.items():
        with pytest.raises(WebhookRefused) as refused:
            verify(url, text_xml())
        assert refused.value.code == "signature-invalid", name
    with pytest.raises(WebhookRefused) as refused:
        verify(good, text_xml(), credentials={"app_secret": "x"})  # the channel has no token
    assert refused.value.code == "signature-invalid"


def test_stale_and_future_timestamps_are_refused() -> None:
    t = int(now().timestamp())
    verify(signed_url(t - 200), text_xml())
    for ts in (t - 301, t - 86400, t + 3600):
        with pytest.raises(WebhookRefused) as refused:
            verify(signed_url(ts), text_xml())
        assert refused.value.code == "stale"


def test_get_echoes_echostr() -> None:
    def handshake(url: str) -> str:
        return ADAPTER.handshake(request(url, method="GET"), check({"token": TOKEN}))

    assert handshake(signed_url(extra="&echostr=5837397520521491302")) == "5837397520521491302"
    with pytest.raises(WebhookRefused) as refused:
        handshake(signed_url(token="guess", extra="&echostr=5837397520521491302"))
    assert refused.value.code == "signature-invalid"
    with pytest.raises(WebhookRefused) as refused:
        handshake(signed_url(int(now().timestamp()) - 3600, extra="&echostr=58373975"))
    assert refused.value.code == "stale"
    with pytest.raises(WebhookRefused) as refused:
        handshake(signed_url(extra="&echostr=%3Cb%3Ehi%3C/b%3E"))
    assert refused.value.code == "malformed"


# -- payloads --------------------------------------------------------------------------------


def test_text_message() -> None:
    body = text_xml("你好我的订单还没到")
    assert ADAPTER.accounts(request(URL, body)) == [ORIGINAL_ID]
    [message] = parse(body)
    assert message == InboundMessage(
        provider_message_id="24599513452395462",
        sender_id=OPENID,
        account_id=ORIGINAL_ID,
        text="你好我的订单还没到",
        sent_at=from_unix(1348831860),
    )


def test_image_voice_and_event() -> None:
    head = f"<xml><ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName><CreateTime>1348831860</CreateTime>"
    image = (
        head
        + "<MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.qpic.cn/mmbiz_jpg/abc/0]]></PicUrl>"
        "<MediaId><![CDATA[media_id_of_picture]]></MediaId><MsgId>1234567890123456</MsgId></xml>"
    )
    [picture] = parse(image.encode())
    assert picture.media == [
        MediaRef(url="http://mmbiz.qpic.cn/mmbiz_jpg/abc/0", media_id="media_id_of_picture")
    ]
    voice = (
        head
        + "<MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[media_id_of_voice]]></MediaId>"
        "<Format><![CDATA[amr]]></Format><Recognition><![CDATA[我要退货]]></Recognition>"
        "<MsgId>1234567890123457</MsgId></xml>"
    )
    [speech] = parse(voice.encode())
    assert speech.text == "我要退货"
    assert speech.media == [MediaRef(media_id="media_id_of_voice", content_type="audio/amr")]
    follow = head + "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>"
    assert parse(follow.encode()) == []


def test_text_may_contain_markup_declarations_inside_cdata() -> None:
    [message] = parse(text_xml("what is <!DOCTYPE html> and <!ENTITY x>?"))
    assert message.text == "what is <!DOCTYPE html> and <!ENTITY x>?"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1348831860</CreateTime>
<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1348831860</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>"""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (BILLION_LAUGHS, "DOCTYPE"),
        (EXTERNAL_ENTITY, "DOCTYPE"),
        (b'<!doctype xml SYSTEM "http://evil.example/x.dtd"><xml/>', "DOCTYPE"),
        (b"<xml><![CDATA[x]]></xml><!ENTITY a 'b'>", "DOCTYPE"),
        (b"<xml>" + b"<Content>a</Content>" * 5000 + b"</xml>", "larger"),
        (
            '<?xml version="1.0" encoding="latin-1"?><xml><Content>caf\xe9</Content></xml>'.encode(
                "latin-1"
            ),
            "UTF-8",
        ),
        (
            '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><xml/>'.encode(
                "utf-16"
            ),
            "UTF-8",
        ),
        (b"<xml><ToUserName>gh_1</ToUserName>", "well-formed"),
        (b"<root><MsgType>text</MsgType></root>", "<xml>"),
        (b"", "well-formed"),
    ],
)
def test_hostile_or_broken_xml_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse(body)
    assert refused.value.code == "malformed"
    assert reason in refused.value.reason
    assert ADAPTER.accounts(request(URL, body)) == []


def test_size_cap_is_exact() -> None:
    filler = b"<xml><Content>" + b"a" * (MAX_XML_BYTES - 30) + b"</Content></xml>"
    assert len(filler) <= MAX_XML_BYTES
    assert parse_xml(filler)["Content"].startswith("aaa")


@pytest.mark.parametrize(
    "body",
    [
        text_xml(msg_id="").replace(b"<MsgId></MsgId>", b""),
        text_xml().replace(
            b"<CreateTime>1348831860</CreateTime>", b"<CreateTime>soon</CreateTime>"
        ),
        text_xml().replace(OPENID.encode(), b""),
    ],
)
def test_incomplete_messages_are_malformed(body: bytes) -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse(body)
    assert refused.value.code == "malformed"


# -- safe mode -------------------------------------------------------------------------------


def wechat_encrypt(message: bytes, appid: str, key_text: str = AES_KEY) -> str:
    """WeChat's envelope, built here from its documentation (not from our code)."""
    key = base64.b64decode(key_text + "=")
    plain = os.urandom(16) + len(message).to_bytes(4, "big") + message + appid.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def safe_push(message: bytes, appid: str = APPID) -> tuple[str, bytes]:
    envelope = wechat_encrypt(message, appid)
    timestamp, nonce = str(int(now().timestamp())), "1320562132"
    url = (
        f"{URL}?signature={sign(TOKEN, timestamp, nonce)}&timestamp={timestamp}&nonce={nonce}"
        f"&openid={OPENID}&encrypt_type=aes&msg_signature={sign(TOKEN, timestamp, nonce, envelope)}"
    )
    body = f"<xml><ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName><Encrypt><![CDATA[{envelope}]]></Encrypt></xml>"
    return url, body.encode()


SAFE = {"token": TOKEN, "app_secret": "x", "encoding_aes_key": AES_KEY}


def test_safe_mode_push_is_verified_and_decrypted() -> None:
    url, body = safe_push(text_xml("加密的消息"))
    verify(url, body, SAFE)
    [message] = parse(body, url, SAFE)
    assert (message.text, message.sender_id) == ("加密的消息", OPENID)


def test_safe_mode_refusals() -> None:
    url, body = safe_push(text_xml())
    tampered = body.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[AAAA")
    with pytest.raises(WebhookRefused) as refused:
        verify(url, tampered, SAFE)
    assert refused.value.code == "signature-invalid"
    with pytest.raises(WebhookRefused) as refused:
        verify(url.replace("&msg_signature=", "&msg_signature=0"), body, SAFE)
    assert refused.value.code == "signature-invalid"
    other_url, other_body = safe_push(text_xml(), appid="wx0000000000000000")
    with pytest.raises(WebhookRefused, match="another AppID"):
        parse(other_body, other_url, SAFE)
    with pytest.raises(WebhookRefused, match="encoding_aes_key"):
        parse(body, url, {"token": TOKEN})
    wrong_key = {**SAFE, "encoding_aes_key": "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"}
    with pytest.raises(WebhookRefused) as refused:
        parse(body, url, wrong_key)
    assert refused.value.code == "malformed"
    # A safe-mode channel takes no plaintext push, however well its query is signed
    # (that signature does not cover the body).
    verify(signed_url(), text_xml())  # a plaintext channel does
    with pytest.raises(WebhookRefused, match="encrypted pushes only") as refused:
        verify(signed_url(), text_xml(), SAFE)
    assert refused.value.code == "signature-invalid"
    # The decrypted message is screened like any other.
    hostile_url, hostile_body = safe_push(EXTERNAL_ENTITY)
    with pytest.raises(WebhookRefused, match="DOCTYPE"):
        parse(hostile_body, hostile_url, SAFE)


# -- sending ---------------------------------------------------------------------------------


async def send(
    adapter: WeChatAdapter, providers: FakeProviders, http: httpx.AsyncClient, appid: str, secret: str,
    text: str = "您好。订单今天发货。", media: list[str] | None = None,
) -> str:  # fmt: skip
    result = await adapter.send(
        http,
        Outgoing(
            base_url=providers.url,
            account_id=appid,
            credentials={"app_secret": secret, "token": TOKEN},
            to=OPENID,
            text=text,
            media_urls=media or [],
            status_callback=None,
        ),
    )
    assert result.status == "sent"
    return result.provider_message_id


async def test_send_fetches_and_caches_the_token(
    providers: FakeProviders, http: httpx.AsyncClient
) -> None:
    appid, secret = providers.wechat_app()
    adapter = WeChatAdapter(TokenCache())
    first = await send(adapter, providers, http, appid, secret)
    second = await send(
        adapter, providers, http, appid, secret, media=["https://files.example/label.png"]
    )
    assert first.startswith("wechat-") and second.startswith("wechat-") and first != second
    [token_request] = providers.made("/cgi-bin/stable_token")
    assert (token_request.method, token_request.query) == ("POST", {})  # nothing in the URL
    assert token_request.json == {
        "grant_type": "client_credential",
        "appid": appid,
        "secret": secret,
        "force_refresh": False,
    }
    sends = providers.made("/cgi-bin/message/custom/send")
    assert len(sends) == 2
    issued = next(iter(providers.wechat_tokens))
    assert all(s.query["access_token"] == [issued] for s in sends)
    assert sends[0].json == {
        "touser": OPENID,
        "msgtype": "text",
        "text": {"content": "您好。订单今天发货。"},
    }
    assert "您好".encode() in sends[0].body  # raw UTF-8, not \u escapes
    assert (
        sends[1].json["text"]["content"] == "您好。订单今天发货。\nhttps://files.example/label.png"
    )


async def test_expired_token_is_refetched_once(
    providers: FakeProviders, http: httpx.AsyncClient
) -> None:
    appid, secret = providers.wechat_app()
    adapter = WeChatAdapter(TokenCache())
    await send(adapter, providers, http, appid, secret)
    providers.wechat_advance(7200)  # WeChat's clock: the token expired (ours still had it)
    await send(adapter, providers, http, appid, secret)
    paths = [r.path for r in providers.requests]
    assert paths == [
        "/cgi-bin/stable_token",
        "/cgi-bin/message/custom/send",
        "/cgi-bin/message/custom/send",  # 42001
        "/cgi-bin/stable_token",
        "/cgi-bin/message/custom/send",
    ]
    assert [r.json["force_refresh"] for r in providers.made("/cgi-bin/stable_token")] == [
        False,
        False,
    ]
    # The fresh token stays cached.
    await send(adapter, providers, http, appid, secret)
    assert len(providers.made("/cgi-bin/stable_token")) == 2


async def test_token_refused_twice_gives_up(
    providers: FakeProviders, http: httpx.AsyncClient
) -> None:
    appid, secret = providers.wechat_app()
    adapter = WeChatAdapter(TokenCache())
    bad = {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
    providers.fail_next(200, body={"access_token": "t1", "expires_in": 7200})
    providers.fail_next(200, body=bad)
    providers.fail_next(200, body={"access_token": "t2", "expires_in": 7200})
    providers.fail_next(200, body=bad)
    with pytest.raises(ProviderError, match="errcode 40001") as refused:
        await send(adapter, providers, http, appid, secret)
    assert not refused.value.retryable
    assert len(providers.requests) == 4


async def test_send_errors_are_mapped(providers: FakeProviders, http: httpx.AsyncClient) -> None:
    appid, secret = providers.wechat_app()
    adapter = WeChatAdapter(TokenCache())
    with pytest.raises(ProviderError) as bad_secret:
        await send(adapter, providers, http, appid, "not-the-secret")
    assert not bad_secret.value.retryable
    assert "errcode 40125" in bad_secret.value.detail and "not-the-secret" not in str(
        bad_secret.value
    )
    with pytest.raises(ProviderError, match="40013"):
        await send(adapter, providers, http, "wx0000000000000000", secret)

    await send(adapter, providers, http, appid, secret)  # a cached token from here on
    providers.fail_next(200, body={"errcode": -1, "errmsg": "system error"})
    with pytest.raises(ProviderError) as busy:
        await send(adapter, providers, http, appid, secret)
    assert busy.value.retryable
    providers.fail_next(
        200,
        body={"errcode": 45015, "errmsg": "response out of time limit or subscription is canceled"},
    )
    with pytest.raises(ProviderError) as late:
        await send(adapter, providers, http, appid, secret)
    assert not late.value.retryable and "45015" in late.value.detail
    for status in (500, 503):
        providers.fail_next(status)
        with pytest.raises(ProviderError) as down:
            await send(adapter, providers, http, appid, secret)
        assert down.value.retryable


async def test_secrets_stay_out_of_httpx_logs(
    providers: FakeProviders, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    appid, secret = providers.wechat_app()
    with caplog.at_level(logging.INFO, logger="httpx"):
        await send(WeChatAdapter(TokenCache()), providers, http, appid, secret)
    token = next(iter(providers.wechat_tokens))
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "httpx")
    assert "/cgi-bin/stable_token" in logged and "/cgi-bin/message/custom/send" in logged
    assert secret not in logged and token not in logged
    assert "access_token=REDACTED" in logged


def test_token_cache_expiry() -> None:
    cache = TokenCache()
    key = cache.key("https://api.weixin.qq.com", APPID, "s1")
    assert key != cache.key("https://api.weixin.qq.com", APPID, "s2")  # a rotated secret refetches
    cache.put(key, "tok", 7200)
    assert cache.get(key) == "tok"
    cache.refuse(key, "another")  # only the token that failed is dropped
    assert cache.get(key) == "tok"
    cache.refuse(key, "tok")
    assert cache.get(key) is None
    assert cache.refused(key, "tok") and not cache.refused(key, "new")
    cache.put(key, "new", 7200)  # a token other than the refused one ends the suspicion
    assert not cache.refused(key, "tok")
    cache.put(key, "short", 0.0)
    assert cache.get(key) is None
