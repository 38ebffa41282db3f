"""The visitor's WebSocket, ``GET /v1/widget/stream``: one conversation, live.

Protocol (JSON text frames):

- The upgrade must come from a page (an ``Origin`` header; refused with HTTP 403
  otherwise) and within the per-address connection limit (closed 4429 ``rate-limited``).
- First message, within ``AUTH_TIMEOUT_SECONDS``: ``{"type": "auth", "token": <visitor
  token>, "conversation_id": ..., "since": <event id>?}``. Closes: 4401 a bad or expired
  token; 4403 an origin the channel does not allow, or a suspended tenant; 4404 a widget
  gone or a conversation not the visitor's; 4400 a malformed first message.
- The server sends ``hello`` (the conversation: state, place in line and estimated wait,
  agent; ``latest_event_id``; ``expires_at``), then each event of the conversation meant
  for the customer, once, in order of id: ``{"type": "event", "id", "topic", "payload",
  "at"}`` (message.created, message.status, agent.joined, typing, conversation.queued,
  transfers, conversation.resolved, ...). With ``since``, the events after that id are
  replayed first: a client that reconnects with the last id it saw misses nothing and
  gets nothing twice. While the conversation waits in line, ``{"type": "queue.position",
  "position", "estimated_wait_seconds"}`` comes whenever either changes (checked every
  ``widget_position_seconds``).
- Commands carry a ``ref`` and are answered ``{"type": "result", "ref", "ok": true, ...}``
  or ``{"type": "error", "ref", "status", "code", "detail", "field"}``: ``message``
  {text, client_message_id, attachment_ids?} (as ``POST .../messages``, same limits),
  ``typing`` {state: typing | paused} (at most one a second is passed on), ``read``
  {message_id}, ``auth`` {token} (a fresh token for the same visitor extends the
  session; otherwise it ends at the token's expiry: ``auth.expired``, close 4401).

Payloads are what a visitor may see: agents' and routing ids are left out, messages are
shaped as the REST API's (agent display names, no internal notes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.errors import SwitchboardError, TooManyRequests
from app.core.notify_hub import Subscription
from app.core.socket_stream import (
    AUTH_TIMEOUT_SECONDS,
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHORIZED,
    RETRY_SECONDS,
    Refused,
    StreamConnection,
    auth_message,
    refuse,
    run_session,
)
from app.db.tenant import TenantScope, bind_tenant
from app.routing.connection import raw
from app.webchat import limits, service
from app.webchat.auth import visitor_from_token
from app.webchat.hub import ConversationHub
from app.webchat.origins import browser_origin
from app.webchat.schemas import MessageCreate, ReadReceipt
from app.webchat.visitor import Visitor

log = logging.getLogger("switchboard.webchat.stream")
router = APIRouter(tags=["web chat widget"])

REPLAY_BATCH = 500
TYPING_INTERVAL_SECONDS = 1.0
MAX_FRAME_CHARS = 64 * 1024
# Never shown to the visitor: who works where, and how the contact is routed.
_PRIVATE_KEYS = frozenset(
    {
        "agent_id",
        "user_id",
        "contact_id",
        "queue_id",
        "reservation_id",
        "customer_id",
        "identity_id",
        "channel_id",
        "flow_id",
        "error",
        "reason",
        "wrap_up_code",
        "conversation_id",
        "participant_id",
    }
)
_EVENTS = (
    "SELECT id, topic, payload, created_at FROM conversation_events WHERE tenant_id = $1 "
    "AND conversation_id = $2 AND audience = 'all' AND "
)
_NOT_STATE = frozenset({"message.created", "message.status", "typing"})


class _Typing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["typing", "paused"]


def _close_for(exc: SwitchboardError) -> int:
    return {401: CLOSE_UNAUTHORIZED, 403: CLOSE_FORBIDDEN, 404: CLOSE_NOT_FOUND}.get(
        exc.status, CLOSE_BAD_REQUEST
    )


class CustomerConnection(StreamConnection):
    log = log
    label = "customer stream"
    bad_frame_detail = "send JSON text frames"
    max_frame_chars = MAX_FRAME_CHARS

    def __init__(self, ws: WebSocket, visitor: Visitor, conversation_id: uuid.UUID) -> None:
        super().__init__(ws)
        self.visitor = visitor
        self.conversation_id = conversation_id
        self.settings: Settings = ws.app.state.settings
        self.names: dict[uuid.UUID, str] = {}
        self.state_changed = asyncio.Event()
        self._typing_at = -float("inf")

    def tenant_scope(self) -> TenantScope:
        return self.visitor.scope

    def session_expires_at(self) -> float:
        return self.visitor.expires_at

    # -- events -------------------------------------------------------------------------

    async def latest_event_id(self, conn: asyncpg.Connection) -> int:
        found = await conn.fetchval(
            "SELECT max(id) FROM conversation_events WHERE tenant_id = $1 "
            "AND conversation_id = $2 AND audience = 'all'",
            self.visitor.scope.tenant_id,
            self.conversation_id,
        )
        return int(found or 0)

    async def _rows(self, where: str, *args: Any) -> list[asyncpg.Record]:
        sql = _EVENTS + where
        scope = self.visitor.scope
        rows = await self.tx(lambda c: c.fetch(sql, scope.tenant_id, self.conversation_id, *args))
        return list(rows)

    async def _payload(self, row: asyncpg.Record) -> dict[str, Any] | None:
        """The event as the visitor may see it; None to leave it out."""
        payload = row["payload"]
        payload = json.loads(payload) if isinstance(payload, str) else dict(payload or {})
        message = payload.get("message")
        if isinstance(message, dict):
            agent = message.get("agent_id")
            if agent:
                await self._learn_names({uuid.UUID(str(agent))})
            view = service.widget_message(message, self.names)
            if view is None:
                return None
            return {"message": view.model_dump(mode="json")}
        out = {k: v for k, v in payload.items() if k not in _PRIVATE_KEYS}
        agent = payload.get("agent_id")
        if agent and "agent_name" not in out:
            with contextlib.suppress(ValueError):
                agent_id = uuid.UUID(str(agent))
                await self._learn_names({agent_id})
                if agent_id in self.names:
                    out["agent_name"] = self.names[agent_id]
        return out

    async def _learn_names(self, ids: set[uuid.UUID]) -> None:
        missing = ids - set(self.names)
        if missing:
            scope = self.visitor.scope
            found = await self.tx(lambda c: service.agent_names(c, scope, missing))
            self.names.update(found)

    async def _send_event(self, row: asyncpg.Record) -> None:
        payload = await self._payload(row)
        topic = row["topic"]
        if topic not in _NOT_STATE:  # the conversation may have joined or left the line
            self.state_changed.set()
        if payload is not None:
            at = row["created_at"].isoformat()
            await self.send(
                {"type": "event", "id": row["id"], "topic": topic, "payload": payload, "at": at}
            )
        self._remember(row["id"])

    async def _catch_up(self) -> None:
        """Everything above the floor not yet sent, in order, in batches."""
        cursor = self.floor
        while True:
            rows = await self._rows("id > $3 ORDER BY id LIMIT $4", cursor, REPLAY_BATCH)
            for row in rows:
                if row["id"] not in self.sent:
                    await self._send_event(row)
            if len(rows) < REPLAY_BATCH:
                return
            cursor = rows[-1]["id"]

    async def deliver(self, sub: Subscription) -> None:
        while True:
            resync, ids = await sub.take()
            try:
                if resync:
                    await self._catch_up()
                else:
                    rows = await self._rows("id = ANY($3::bigint[]) ORDER BY id", ids)
                    for row in rows:
                        if row["id"] not in self.sent and row["id"] > self.floor:
                            await self._send_event(row)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, SQLAlchemyError) as exc:
                log.warning("reading conversation events failed: %r", exc)
                await asyncio.sleep(RETRY_SECONDS)
                sub.catch_up()

    # -- place in line ------------------------------------------------------------------

    async def watch_position(self, last: tuple[int | None, float | None] | None) -> None:
        """While queued, push the place in line and the estimated wait when they change;
        otherwise wait for a change of state (an event other than messages and typing)."""
        interval = self.settings.widget_position_seconds
        while True:
            self.state_changed.clear()
            try:
                state, place = await self.tx(self._place)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, SQLAlchemyError):
                log.warning("reading the place in line failed", exc_info=True)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if state != "queued":
                last = None
                await self.state_changed.wait()
                continue
            if place != last:
                last = place
                await self.send(
                    {
                        "type": "queue.position",
                        "position": place[0],
                        "estimated_wait_seconds": place[1],
                    }
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.state_changed.wait()

    async def _place(self, conn: asyncpg.Connection) -> tuple[str, tuple[int | None, float | None]]:
        row = await conn.fetchrow(
            "SELECT state, contact_id FROM conversations WHERE tenant_id = $1 AND id = $2",
            self.visitor.scope.tenant_id,
            self.conversation_id,
        )
        if row is None:
            return "resolved", (None, None)
        place = await service.queue_place(conn, self.visitor.scope, row["state"], row["contact_id"])
        return str(row["state"]), place

    # -- session ------------------------------------------------------------------------

    async def renew(self, token: str) -> dict[str, Any]:
        async with self.factory() as session, session.begin():
            fresh = await visitor_from_token(self.ws, session, token)
        if (
            fresh.identity_id != self.visitor.identity_id
            or fresh.channel.id != self.visitor.channel.id
        ):
            raise SwitchboardError(
                "token: not this visitor's", status=401, code="invalid-visitor-token", field="token"
            )
        self.visitor = fresh
        self.renewed()
        return {"expires_at": datetime.fromtimestamp(fresh.expires_at, UTC).isoformat()}

    # -- commands -----------------------------------------------------------------------

    async def command(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message.get("type")
        body = {k: v for k, v in message.items() if k not in ("type", "ref")}
        visitor, cid = self.visitor, self.conversation_id
        if kind == "auth":
            return await self.renew(str(body.get("token") or ""))
        if kind == "typing":
            state = _Typing.model_validate(body).state
            now = time.monotonic()
            if now - self._typing_at < TYPING_INTERVAL_SECONDS:
                return {"passed_on": False}
            self._typing_at = now
            await self.tx(lambda c: service.typing(c, visitor, cid, state))
            return {"passed_on": True}
        if kind == "read":
            upto = ReadReceipt.model_validate(body).message_id
            count = await self.tx(lambda c: service.mark_read(c, visitor, cid, upto))
            return {"marked_read": count}
        if kind == "message":
            data = MessageCreate.model_validate(body)
            limit = limits.messages(self.settings)
            await limits.by_visitor(self.ws.app.state.limits_factory, visitor, limit)
            async with self.factory() as session, session.begin():
                await bind_tenant(session, visitor.scope)
                posted = await service.post_message(
                    session,
                    visitor,
                    self.ws.app.state.object_store,
                    cid,
                    text=data.text,
                    client_message_id=data.client_message_id,
                    attachment_ids=data.attachment_ids,
                )
            return posted.model_dump(mode="json")
        raise SwitchboardError(
            f"type: unknown command {str(kind)[:64]!r}",
            status=422,
            code="unknown-command",
            field="type",
        )


async def _first_message(ws: WebSocket) -> tuple[str, uuid.UUID, int | None]:
    first = await auth_message(ws, AUTH_TIMEOUT_SECONDS)
    try:
        conversation_id = uuid.UUID(str(first.get("conversation_id")))
    except ValueError:
        raise Refused(CLOSE_BAD_REQUEST, "conversation_id: must be a UUID") from None
    since = first.get("since")
    if since is not None and not (
        isinstance(since, int) and not isinstance(since, bool) and 0 <= since < 2**63
    ):
        raise Refused(CLOSE_BAD_REQUEST, "since: must be an event id")
    return str(first.get("token") or ""), conversation_id, since


async def _sign_in(ws: WebSocket) -> tuple[Visitor, uuid.UUID, int | None]:
    token, conversation_id, since = await _first_message(ws)
    factory: async_sessionmaker[AsyncSession] = ws.app.state.session_factory
    try:
        async with factory() as session, session.begin():
            visitor = await visitor_from_token(ws, session, token)
            await service.owned(await raw(session), visitor, conversation_id)
    except SwitchboardError as exc:
        raise Refused(_close_for(exc), exc.code) from None
    return visitor, conversation_id, since


@router.websocket("/stream")
async def widget_stream(ws: WebSocket) -> None:
    if browser_origin(ws.headers.get("origin")) is None:
        await ws.close(code=CLOSE_FORBIDDEN, reason="origin-not-allowed")  # HTTP 403
        return
    settings: Settings = ws.app.state.settings
    address = ws.client.host if ws.client else "unknown"
    await ws.accept()
    try:
        await limits.by_address(ws.app.state.limits_factory, address, limits.streams(settings))
        visitor, conversation_id, since = await _sign_in(ws)
    except TooManyRequests as exc:
        await refuse(ws, CLOSE_RATE_LIMITED, exc.code)
        return
    except Refused as exc:
        await refuse(ws, exc.code, exc.reason)
        return
    except Exception:
        log.exception("customer stream sign-in failed")
        await refuse(ws, 1011, "internal-error")
        return
    await _serve(ws, CustomerConnection(ws, visitor, conversation_id), since)


async def _serve(ws: WebSocket, conn: CustomerConnection, since: int | None) -> None:
    hub: ConversationHub = ws.app.state.conversation_hub
    scope = conn.visitor.scope
    # Subscribed before reading anything: what happens from here on is announced.
    sub = hub.subscribe(scope.tenant_id, conn.conversation_id)

    async def hello(c: asyncpg.Connection) -> tuple[int, dict[str, Any]]:
        row = await service.owned(c, conn.visitor, conn.conversation_id)
        view = await service.conversation_view(c, scope, row)
        return await conn.latest_event_id(c), view.model_dump(mode="json")

    async def start() -> list[Coroutine[Any, Any, None]]:
        latest, view = await conn.tx(hello)
        # A since beyond the latest event names none of this conversation's: start there.
        conn.floor = min(since, latest) if since is not None else latest
        if since is not None:
            sub.catch_up()
        await conn.send(
            {
                "type": "hello",
                "conversation": view,
                "latest_event_id": latest,
                "expires_at": datetime.fromtimestamp(conn.visitor.expires_at, UTC).isoformat(),
            }
        )
        return [
            conn.read_commands(),
            conn.deliver(sub),
            conn.session_clock(),
            conn.watch_position((view["position"], view["estimated_wait_seconds"])),
        ]

    try:
        await run_session(ws, conn, start)
    finally:
        hub.unsubscribe(scope.tenant_id, conn.conversation_id, sub)
