"""WeChat access tokens shared by API replicas: each replica (an adapter with its own
TokenCache) fetches the stable token, which WeChat hands to every caller until it
expires, so no replica invalidates another's. A refused token is fetched again in the
normal mode first; a new one is forced only when WeChat still hands out the refused one,
within WeChat's limits (errcode 45009 leaves the message queued for the dispatcher's
retry). The app secret and the tokens stay out of logs and stored rows."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from app.conversations.delivery import deliver_one
from app.messaging.providers.base import Outgoing, ProviderError
from app.messaging.providers.wechat import WeChatAdapter
from app.messaging.providers.wechat_tokens import TokenCache
from tests.messaging.fake_providers import FakeProviders
from tests.messaging.ingress import message, reply
from tests.messaging.test_webhooks_wechat import push, wechat_channel, xml

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
FORCE_REFUSED = (
    "access token: WeChat refuses the token it hands out, and refused to force a new one: "
    "errcode 45009: reach max api daily quota limit"
)


async def send(
    replica: WeChatAdapter, providers: FakeProviders, http: httpx.AsyncClient, appid: str, secret: str
) -> None:  # fmt: skip
    result = await replica.send(
        http,
        Outgoing(
            base_url=providers.url,
            account_id=appid,
            credentials={"app_secret": secret, "token": "t"},
            to=OPENID,
            text="您的订单已发货",
            media_urls=[],
            status_callback=None,
        ),
    )
    assert result.status == "sent"


def calls(providers: FakeProviders, since: int = 0) -> list[tuple[str, Any]]:
    """The WeChat calls made: (``stable_token``, force_refresh) or (``send``, token)."""
    out: list[tuple[str, Any]] = []
    for r in providers.requests[since:]:
        if r.path == "/cgi-bin/stable_token":
            out.append(("stable_token", r.json["force_refresh"]))
        elif r.path == "/cgi-bin/message/custom/send":
            out.append(("send", r.query["access_token"][0]))
    return out


def issued(providers: FakeProviders, appid: str) -> list[str]:
    return [token for token, app in providers.wechat_tokens.items() if app == appid]


def replicas() -> tuple[WeChatAdapter, WeChatAdapter]:
    return WeChatAdapter(TokenCache()), WeChatAdapter(TokenCache())


async def stable_token(
    providers: FakeProviders, http: httpx.AsyncClient, appid: str, secret: str, force: bool = False
) -> dict[str, Any]:
    """WeChat's answer to a stable_token call made by hand (another replica's call)."""
    r = await http.post(
        f"{providers.url}/cgi-bin/stable_token",
        json={
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret,
            "force_refresh": force,
        },
    )
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


async def fetch_token(
    providers: FakeProviders, http: httpx.AsyncClient, appid: str, secret: str, force: bool = False
) -> str:
    body = await stable_token(providers, http, appid, secret, force)
    assert isinstance(body.get("access_token"), str), body
    return str(body["access_token"])


# -- the adapter ----------------------------------------------------------------------------


async def test_two_replicas_share_one_token(providers: FakeProviders, http: httpx.AsyncClient):
    appid, secret = providers.wechat_app()
    a, b = replicas()

    await asyncio.gather(
        send(a, providers, http, appid, secret), send(b, providers, http, appid, secret)
    )
    for replica in (a, b, a, b):
        await send(replica, providers, http, appid, secret)

    [token] = issued(providers, appid)
    # One normal fetch per replica, then their caches; not one send was refused.
    assert (
        sorted(calls(providers), key=str) == [("send", token)] * 6 + [("stable_token", False)] * 2
    )


async def test_a_token_renewed_in_its_last_minutes_leaves_the_old_one_working(
    providers: FakeProviders, http: httpx.AsyncClient
):
    appid, secret = providers.wechat_app()
    a, b = replicas()
    await send(a, providers, http, appid, secret)
    providers.wechat_advance(7200 - 250)  # a still holds its token (its own clock)

    await send(b, providers, http, appid, secret)  # WeChat hands b a new one
    await send(a, providers, http, appid, secret)

    old, new = issued(providers, appid)
    assert calls(providers)[-2:] == [("send", new), ("send", old)]
    assert len(providers.made("/cgi-bin/message/custom/send")) == 3  # none refused


async def test_an_expired_token_is_recovered_without_forcing(
    providers: FakeProviders, http: httpx.AsyncClient
):
    appid, secret = providers.wechat_app()
    a, b = replicas()
    await send(a, providers, http, appid, secret)
    await send(b, providers, http, appid, secret)
    [old] = issued(providers, appid)
    providers.wechat_advance(7200)  # expired at WeChat; both replicas still cache it
    mark = len(providers.requests)

    await send(a, providers, http, appid, secret)
    await send(b, providers, http, appid, secret)

    [_, new] = issued(providers, appid)
    assert calls(providers, mark) == [
        ("send", old),  # 42001
        ("stable_token", False),
        ("send", new),
        ("send", old),  # 42001: b fetches the token a already got
        ("stable_token", False),
        ("send", new),
    ]


async def test_a_refused_token_still_handed_out_is_forced_once(
    providers: FakeProviders, http: httpx.AsyncClient
):
    appid, secret = providers.wechat_app()
    a, b = replicas()
    await send(a, providers, http, appid, secret)
    await send(b, providers, http, appid, secret)
    [old] = issued(providers, appid)
    providers.wechat_refuse(old)  # leaked and reset: WeChat refuses it, yet hands it out
    mark = len(providers.requests)

    await send(a, providers, http, appid, secret)
    await send(b, providers, http, appid, secret)

    [_, new] = issued(providers, appid)
    assert calls(providers, mark) == [
        ("send", old),  # 40001
        ("stable_token", False),  # the same token again: only forcing helps
        ("stable_token", True),
        ("send", new),
        ("send", old),  # 40001 (b's cache)
        ("stable_token", False),  # a's forced token: b forces nothing
        ("send", new),
    ]
    # The replaced token stays refused, and WeChat never hands it out again.
    r = await http.post(
        f"{providers.url}/cgi-bin/message/custom/send",
        params={"access_token": old},
        json={"touser": OPENID, "msgtype": "text", "text": {"content": "x"}},
    )
    assert r.json()["errcode"] == 40001
    providers.wechat_advance(3600)
    await send(WeChatAdapter(TokenCache()), providers, http, appid, secret)
    assert calls(providers)[-1] == ("send", new)


async def test_replicas_forcing_at_once_share_the_winners_token(
    providers: FakeProviders, http: httpx.AsyncClient
):
    appid, secret = providers.wechat_app()
    a, b = replicas()
    await send(a, providers, http, appid, secret)
    await send(b, providers, http, appid, secret)
    [old] = issued(providers, appid)
    providers.wechat_refuse(old)
    await send(a, providers, http, appid, secret)  # a forces
    [_, new] = issued(providers, appid)
    # b's first two calls went out just before a's forced refresh landed, and are
    # answered as WeChat answered them then: the send refused, the same token again.
    providers.fail_next(200, body={"errcode": 40001, "errmsg": "invalid credential"})
    providers.fail_next(200, body={"access_token": old, "expires_in": 6000})
    mark = len(providers.requests)

    await send(b, providers, http, appid, secret)

    assert calls(providers, mark) == [
        ("send", old),
        ("stable_token", False),
        ("stable_token", True),  # 45009: a forced a moment ago
        ("stable_token", False),  # a's token
        ("send", new),
    ]
    assert len(issued(providers, appid)) == 2  # b replaced nothing


async def test_a_refused_forced_refresh_is_retryable_and_clear(
    providers: FakeProviders, http: httpx.AsyncClient
):
    appid, secret = providers.wechat_app()
    a = WeChatAdapter(TokenCache())
    providers.wechat_refuse(await fetch_token(providers, http, appid, secret))
    await send(a, providers, http, appid, secret)  # forces
    [_, forced] = issued(providers, appid)
    providers.wechat_refuse(forced)  # and WeChat refuses that one too
    providers.wechat_advance(10)

    with pytest.raises(ProviderError) as refused:
        await send(a, providers, http, appid, secret)

    assert refused.value.retryable and refused.value.detail == FORCE_REFUSED
    assert len(issued(providers, appid)) == 2
    # 30 s after the last forced refresh, the next attempt forces (no send with the
    # token known to be refused) and goes through.
    providers.wechat_advance(20)
    mark = len(providers.requests)
    await send(a, providers, http, appid, secret)
    [*_, newest] = issued(providers, appid)
    assert calls(providers, mark) == [
        ("stable_token", False),
        ("stable_token", True),
        ("send", newest),
    ]


async def test_forced_refreshes_are_limited_like_wechats(
    providers: FakeProviders, http: httpx.AsyncClient
):
    """The fake's limits, which the tests above lean on: 30 s apart, 20 a day."""
    appid, secret = providers.wechat_app()
    first = await fetch_token(providers, http, appid, secret)
    assert await fetch_token(providers, http, appid, secret) == first
    tokens = [await fetch_token(providers, http, appid, secret, force=True)]
    too_soon = await stable_token(providers, http, appid, secret, force=True)
    assert too_soon["errcode"] == 45009 and "access_token" not in too_soon
    for _ in range(19):
        providers.wechat_advance(30)
        tokens.append(await fetch_token(providers, http, appid, secret, force=True))
    providers.wechat_advance(30)
    assert (await stable_token(providers, http, appid, secret, force=True))["errcode"] == 45009
    assert len(set(tokens)) == 20 and first not in tokens
    assert await fetch_token(providers, http, appid, secret) == tokens[-1]  # no 21st
    providers.wechat_advance(86400)
    assert await fetch_token(providers, http, appid, secret, force=True) not in tokens


async def test_token_requests_in_logs_show_no_secret(
    providers: FakeProviders, caplog: pytest.LogCaptureFixture
):
    """Whatever logs a request or its body (here a debugging hook on the client) goes
    through the same redaction as httpx's own request lines."""
    appid, secret = providers.wechat_app()
    log = logging.getLogger("httpx")

    async def trace(request: httpx.Request) -> None:
        log.debug("request %s body %s", request, request.content)

    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(event_hooks={"request": [trace]}) as http:
        await send(WeChatAdapter(TokenCache()), providers, http, appid, secret)

    [token] = issued(providers, appid)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/cgi-bin/stable_token" in logged and '"secret": "REDACTED"' in logged
    assert "access_token=REDACTED" in logged
    assert secret not in logged and token not in logged


# -- through the dispatcher -----------------------------------------------------------------


async def test_a_reply_meeting_the_forced_refresh_limit_is_retried(
    app, client, clean_db, wired, http
):
    tenant, appid, webhook_token = await wechat_channel(client, wired)
    await push(client, appid, webhook_token, xml(Content="在吗"))
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")
    secret = wired.wechat_apps[appid]
    # Another replica found the token refused and forced a new one a moment ago; WeChat
    # refuses that one too.
    wired.wechat_refuse(await fetch_token(wired, http, appid, secret))
    wired.wechat_refuse(await fetch_token(wired, http, appid, secret, force=True))

    sent = await reply(app, tenant, conv_id, "稍等")

    row = await message(clean_db, sent.id)
    assert (row["status"], row["error"], row["attempts"]) == ("queued", FORCE_REFUSED, 1)
    assert row["next_attempt_at"] is not None
    # The dispatcher's first retry comes 30 s later: past WeChat's interval.
    wired.wechat_advance(30)
    await clean_db.execute("UPDATE messages SET next_attempt_at = now() WHERE id = $1", sent.id)
    args = (app.state.session_factory, app.state.settings, app.state.object_store)
    tenant_id = uuid.UUID(tenant["tenant"]["id"])

    assert await deliver_one(*args, tenant_id, sent.id) == "sent"

    row = await message(clean_db, sent.id)
    assert (row["status"], row["error"], row["attempts"]) == ("sent", None, 2)
    assert len(issued(wired, appid)) == 3
    assert calls(wired)[-1] == ("send", issued(wired, appid)[-1])


async def stored_rows(db: asyncpg.Connection, tenant_id: str) -> str:
    """Every row of every table, as text (the tenant's rows under row-level security)."""
    tables = await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    parts = []
    async with db.transaction():
        await db.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
        for (name,) in tables:
            parts.append(await db.fetchval(f'SELECT string_agg(t::text, chr(10)) FROM "{name}" t'))
    return "\n".join(p for p in parts if p)


async def test_the_secret_and_tokens_never_reach_stored_rows_or_logs(
    app, client, clean_db, wired, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    tenant, appid, webhook_token = await wechat_channel(client, wired)
    secret = wired.wechat_apps[appid]
    await push(client, appid, webhook_token, xml(Content="在吗"))
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")
    await reply(app, tenant, conv_id, "您好")
    [access_token] = issued(wired, appid)
    # WeChat's errmsgs may echo the request: a send refused naming the token...
    wired.fail_next(
        200, body={"errcode": 45015, "errmsg": f"out of time, access_token={access_token}"}
    )
    token_echoed = await reply(app, tenant, conv_id, "还在吗")
    # ... and, once the token is refused, the token call refused naming the secret.
    wired.fail_next(200, body={"errcode": 42001, "errmsg": "access_token expired"})
    wired.fail_next(200, body={"errcode": 40125, "errmsg": f"invalid appsecret {secret}"})
    secret_echoed = await reply(app, tenant, conv_id, "请回复")

    first, second = [await message(clean_db, m.id) for m in (token_echoed, secret_echoed)]
    assert (first["status"], first["error"]) == (
        "failed",
        "send: errcode 45015: out of time, access_token=REDACTED",
    )
    assert (second["status"], second["error"]) == (
        "failed",
        "access token: errcode 40125: invalid appsecret REDACTED",
    )
    stored = await stored_rows(clean_db, tenant["tenant"]["id"])
    assert "还在吗" in stored and "请回复" in stored  # the rows are all there
    logged = caplog.text
    assert "/cgi-bin/stable_token" in logged
    for credential in (secret, access_token):
        assert credential not in stored and credential not in logged
