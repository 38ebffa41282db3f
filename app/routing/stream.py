"""The agent desktop's WebSocket, ``GET /v1/agent/stream``, and the outbox fan-out.

Protocol (JSON text frames):

- Authenticate with ``Authorization: Bearer <access token>`` on the upgrade request, or
  send ``{"type": "auth", "token": "..."}`` first, within ``AUTH_TIMEOUT_SECONDS``
  (browsers cannot set headers); never in the URL, where logs would keep it. Closes: 4401
  a bad or expired token, or none in time; 4403 not an agent signing in as themselves (an
  admin, an API key) or a suspended tenant; 4400 a bad ``since``; 1013 a client too slow
  to take its events; 1011 a server error (reconnect, with ``since``).
- ``?since=<event id>`` replays the agent's events after that one (resume after a drop);
  past ``REPLAY_LIMIT`` of them, a ``gap`` message (with the current presence) and the
  newest ones.
- The server sends ``hello`` (presence, ``heartbeat_seconds``, ``grace_seconds``,
  ``latest_event_id`` to resume from), then each of the agent's outbox events once, in
  order of id: ``{"type": "event", "id", "topic", "payload", "at"}`` (offer.created,
  offer.timed_out, offer.rescinded, presence.changed, work.wrap_up, ...).
- Commands carry a ``ref`` and are answered ``{"type": "result", "ref", "ok": true, ...}``
  or ``{"type": "error", "ref", "status", "code", "detail", "field"}`` (``field``: a key
  of the command): ``heartbeat``; ``set_state`` (status, break_reason); ``accept`` /
  ``reject`` / ``complete`` (reservation_id); ``wrap_up`` (reservation_id, code). A frame
  that is not a JSON object gets an error (bad-json, bad-message); the connection stays.
- The session lasts as long as its access token (``expires_at`` in ``hello``): send
  ``{"type": "auth", "token": "<fresh access token>"}`` before then to extend it (same
  agent only). Otherwise the server sends ``auth.expired`` and closes with 4401
  ``token-expired``, so a disabled agent's socket does not outlive their last token.

A dropped connection does not sign the agent out: the heartbeat grace period does.

Delivery: one LISTEN connection per API process (``OutboxHub``) announces event ids; each
connection reads its own from ``outbox_events`` (row-level security bound to the tenant).
One that falls behind (``MAX_PENDING`` unsent ids), or whose hub lost its LISTEN
connection, catches up from the table instead: nothing lost, nothing sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import jwt_keys
from app.auth.principal import Principal, principal_from_token
from app.config import Settings
from app.core.errors import Forbidden, SwitchboardError
from app.db.tenant import TenantScope, bind_tenant
from app.routing import presence, reservations
from app.routing.connection import raw
from app.routing.schemas import PresenceUpdate, WrapUpRequest
from app.routing.transitions import OUTBOX_CHANNEL

log = logging.getLogger("switchboard.stream")
router = APIRouter(tags=["agent desktop"])

AUTH_TIMEOUT_SECONDS = 10.0
REPLAY_LIMIT = 500
MAX_PENDING = 256  # announced, unsent event ids per connection; past it, catch up from the table
SENT_WINDOW = 512  # ids remembered to send each event once
SEND_TIMEOUT_SECONDS = 30.0
HUB_RETRY_SECONDS = 1.0
HUB_PING_SECONDS = 30.0
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 1013
UNSTORABLE_TEXT = frozenset({"22021", "22P05"})  # NUL; a character without a UTF-8 form

_COLUMNS = "SELECT id, topic, payload, created_at FROM outbox_events "


class Subscription:
    """The event ids announced to one connection, bounded: when too many wait, or the hub
    lost its LISTEN connection, ``resync`` asks the connection to read what it missed."""

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.resync = False
        self.wake = asyncio.Event()

    def announce(self, event_id: int) -> None:
        if not self.resync:
            if len(self.pending) >= MAX_PENDING:
                self.catch_up()
                return
            self.pending.add(event_id)
        self.wake.set()

    def catch_up(self) -> None:
        self.resync = True
        self.pending.clear()
        self.wake.set()

    async def take(self) -> tuple[bool, list[int]]:
        await self.wake.wait()
        self.wake.clear()
        resync, ids = self.resync, sorted(self.pending)
        self.resync = False
        self.pending.clear()
        return resync, ids


class OutboxHub:
    """One LISTEN connection per API process; wakes the local subscribers of an agent.
    Reconnects when the connection drops (or stops answering), then has every subscriber
    catch up on what was announced meanwhile."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        self._subs: dict[tuple[str, str], set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _supervise(self) -> None:
        while True:
            try:
                await self._listen()
                log.warning("outbox listener lost its connection; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox listener failed: %r", exc)
            await asyncio.sleep(HUB_RETRY_SECONDS)

    async def _listen(self) -> None:
        """LISTEN until the connection is lost (or stops answering a ping)."""
        from app.db.bootstrap import asyncpg_kwargs

        conn = await asyncpg.connect(
            **asyncpg_kwargs(self.url), server_settings={"application_name": "switchboard-hub"}
        )
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(OUTBOX_CHANNEL, self._on_notify)
            # Whatever was announced while nobody listened is in the table.
            for subs in self._subs.values():
                for sub in subs:
                    sub.catch_up()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=HUB_PING_SECONDS)
                if not lost.is_set():  # a silent network failure shows here
                    await asyncio.wait_for(conn.execute("SELECT 1"), HUB_PING_SECONDS)
        finally:
            conn.terminate()

    def _on_notify(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        tenant, _, rest = payload.partition(":")
        agent, _, event_id = rest.partition(":")
        subs = self._subs.get((tenant, agent))
        if not subs or not event_id.isdigit():
            return
        for sub in subs:
            sub.announce(int(event_id))

    def subscribe(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Subscription:
        sub = Subscription()
        self._subs[(str(tenant_id), str(agent_id))].add(sub)
        return sub

    def unsubscribe(self, tenant_id: uuid.UUID, agent_id: uuid.UUID, sub: Subscription) -> None:
        key = (str(tenant_id), str(agent_id))
        self._subs[key].discard(sub)
        if not self._subs[key]:
            del self._subs[key]


def _event(row: asyncpg.Record) -> dict[str, Any]:
    payload = json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
    at = row["created_at"].isoformat()
    return {"type": "event", "id": row["id"], "topic": row["topic"], "payload": payload, "at": at}


class SessionExpired(Exception):
    """The access token the socket signed in with expired and was not renewed."""


class Gone(Exception):
    """The client left, or does not read what it is sent."""


def _problem(ref: Any, status: int, code: str, detail: str, field: str | None) -> dict[str, Any]:
    field = field.removeprefix("body.") if field else None  # a command's keys are its body
    return dict(type="error", ref=ref, status=status, code=code, detail=detail, field=field)


def _invalid(field: str, detail: str, code: str = "validation-failed") -> SwitchboardError:
    return SwitchboardError(f"{field}: {detail}", status=422, code=code, field=field)


def _sqlstate(exc: BaseException) -> str | None:
    cause: BaseException | None = exc
    while cause is not None:
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            return state
        cause = getattr(cause, "orig", None) or cause.__cause__
    return None


class AgentConnection:
    def __init__(self, ws: WebSocket, principal: Principal) -> None:
        self.ws = ws
        self.scope: TenantScope = principal.scope
        assert principal.user_id is not None
        self.agent_id: uuid.UUID = principal.user_id
        self.factory: async_sessionmaker[AsyncSession] = ws.app.state.session_factory
        self.grace = float(ws.app.state.settings.routing_heartbeat_grace_seconds)
        self._beat_at = -float("inf")
        self._beat_status = "offline"
        self._send_lock = asyncio.Lock()
        self.floor = 0  # events up to this id are behind the client
        self.sent: set[int] = set()  # ids above the floor already sent
        self.user_id = principal.user_id
        self.expires_at = 0.0  # the access token's expiry (Unix time)
        self._renewed = asyncio.Event()

    async def session_clock(self) -> None:
        """End the session when its access token expires, unless the desktop sent a
        fresh one (``{"type": "auth", "token": ...}``) before: a disabled agent's or a
        revoked session's socket lives no longer than its last token."""
        while True:
            left = self.expires_at - time.time()
            if left <= 0:
                with contextlib.suppress(Gone):
                    await self.send({"type": "auth.expired"})
                raise SessionExpired
            self._renewed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._renewed.wait()

    async def renew(self, token: str) -> dict[str, Any]:
        async with self.factory() as session, session.begin():
            principal = await principal_from_token(self.ws, session, token)
        if (
            principal is None
            or principal.actor_type != "user"
            or principal.user_id != self.user_id
            or principal.tenant_id != self.scope.tenant_id
        ):
            raise SwitchboardError(
                "token: invalid, expired, or not this agent's",
                status=401,
                code="invalid-credentials",
                field="token",
            )
        self.expires_at = _token_expiry(self.ws, token)
        self._renewed.set()
        return {"expires_at": datetime.fromtimestamp(self.expires_at, UTC).isoformat()}

    async def send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, default=str)
        async with self._send_lock:
            try:
                await asyncio.wait_for(self.ws.send_text(text), SEND_TIMEOUT_SECONDS)
            except (WebSocketDisconnect, RuntimeError, OSError, TimeoutError) as exc:
                raise Gone from exc

    async def tx(self, work: Any) -> Any:
        """Run ``work(conn)`` in a transaction bound to the agent's tenant."""
        async with self.factory() as session, session.begin():
            await bind_tenant(session, self.scope)
            return await work(await raw(session))

    async def _rows(self, where: str, *args: Any) -> list[asyncpg.Record]:
        sql = _COLUMNS + "WHERE tenant_id = $1 AND agent_id = $2 AND " + where
        rows = await self.tx(lambda c: c.fetch(sql, self.scope.tenant_id, self.agent_id, *args))
        return list(rows)

    async def latest_event_id(self) -> int:
        rows = await self._rows("true ORDER BY id DESC LIMIT 1")
        return int(rows[0]["id"]) if rows else 0

    async def deliver(self, sub: Subscription) -> None:
        """Send announced events, or on ``resync`` everything above the floor not sent."""
        while True:
            resync, ids = await sub.take()
            try:
                if resync:
                    rows = await self._rows(
                        "id > $3 AND NOT id = ANY($4::bigint[]) ORDER BY id DESC LIMIT $5",
                        self.floor,
                        list(self.sent),
                        REPLAY_LIMIT + 1,
                    )
                    rows.reverse()
                    if len(rows) > REPLAY_LIMIT:
                        rows = rows[1:]
                        now = await self.tx(lambda c: presence.read(c, self.scope, self.agent_id))
                        await self.send({"type": "gap", "presence": now.model_dump(mode="json")})
                else:
                    rows = await self._rows("id = ANY($3::bigint[]) ORDER BY id", ids)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, SQLAlchemyError) as exc:
                log.warning("reading outbox events failed: %r", exc)
                await asyncio.sleep(HUB_RETRY_SECONDS)
                sub.catch_up()
                continue
            for row in rows:
                if row["id"] not in self.sent:
                    await self.send(_event(row))
                    self._remember(row["id"])

    def _remember(self, event_id: int) -> None:
        self.sent.add(event_id)
        if len(self.sent) > SENT_WINDOW:
            ordered = sorted(self.sent)
            keep = SENT_WINDOW // 2
            self.floor = max(self.floor, ordered[-keep - 1])
            self.sent = set(ordered[-keep:])

    async def read_commands(self) -> None:
        """Answer commands until the client leaves."""
        while True:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            if frame.get("text") is None:
                await self.send(_problem(None, 400, "bad-message", "send text frames", None))
                continue
            try:
                message = json.loads(frame["text"])
            except (ValueError, RecursionError):
                await self.send(_problem(None, 400, "bad-json", "send JSON objects", None))
                continue
            if isinstance(message, dict):
                await self.send(await self.answer(message))
            else:
                await self.send(_problem(None, 400, "bad-message", "send JSON objects", None))

    async def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        ref = message.get("ref")
        try:
            return {"type": "result", "ref": ref, "ok": True, **await self.command(message)}
        except SwitchboardError as exc:
            return _problem(ref, exc.status, exc.code, exc.detail, exc.field)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or None
            detail = f"{where}: {first['msg']}" if where else str(first["msg"])
            return _problem(ref, 422, "validation-failed", detail, where)
        except Exception as exc:
            if _sqlstate(exc) in UNSTORABLE_TEXT:  # client input PostgreSQL cannot hold
                return _problem(ref, 422, "invalid-text", "A text value cannot be stored.", None)
            log.exception("agent stream command failed")
            return _problem(ref, 500, "internal-error", "An unexpected error occurred.", None)

    async def command(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message.get("type")
        body = {k: v for k, v in message.items() if k not in ("type", "ref")}
        if kind == "heartbeat":
            now = time.monotonic()
            # A chatty client costs one write per tenth of the grace period at most.
            if now - self._beat_at >= self.grace / 10:
                self._beat_status = await self.tx(
                    lambda c: presence.heartbeat(c, self.scope, self.agent_id, self.grace)
                )
                self._beat_at = now
            return {"status": self._beat_status}
        if kind == "auth":
            return await self.renew(str(body.get("token") or ""))
        if kind == "set_state":
            change = PresenceUpdate.model_validate(body)
            read = await self.tx(
                lambda c: presence.set_status_on(
                    c, self.scope, self.agent_id, change, grace_seconds=self.grace
                )
            )
            self._beat_at, self._beat_status = time.monotonic(), read.status
            return {"presence": read.model_dump(mode="json")}
        if kind not in ("accept", "reject", "complete", "wrap_up"):
            raise _invalid("type", f"unknown command {str(kind)[:64]!r}", "unknown-command")
        try:
            rid = uuid.UUID(str(body.pop("reservation_id")))
        except (KeyError, ValueError):
            raise _invalid("reservation_id", "must be a UUID") from None
        if kind == "wrap_up":
            code = WrapUpRequest.model_validate(body).code
        elif body:
            raise _invalid(sorted(body)[0], "unexpected key")
        async with self.factory() as session, session.begin():
            await bind_tenant(session, self.scope)
            conn, scope, agent = await raw(session), self.scope, self.agent_id
            if kind == "accept":
                res = await reservations.accept(conn, scope, rid, agent)
            elif kind == "reject":
                res = await reservations.reject(conn, scope, rid, agent)
            elif kind == "complete":
                res = await reservations.complete(session, scope, rid, agent)
            else:
                res = await reservations.wrap_up(session, scope, rid, agent, code)
        return {"reservation": res.model_dump(mode="json")}


def _token_expiry(ws: WebSocket, token: str) -> float:
    """When a (verified) access token expires, as a Unix time."""
    claims = jwt_keys.decode(ws.app.state.signing_keys, token, ws.app.state.settings.jwt_issuer)
    return float(claims["exp"]) if claims and "exp" in claims else time.time()


async def _authenticate(ws: WebSocket) -> tuple[Principal | None, int, str, float]:
    """The principal (and when its token expires), or None with the close code and
    reason."""
    header = ws.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    await ws.accept()
    if token is None:
        try:
            frame = await asyncio.wait_for(ws.receive(), timeout=AUTH_TIMEOUT_SECONDS)
        except TimeoutError:
            return None, CLOSE_UNAUTHORIZED, "auth-timeout", 0.0
        try:
            first = json.loads(frame.get("text") or "")
        except (ValueError, RecursionError):
            first = None
        if not isinstance(first, dict) or first.get("type") != "auth":
            return None, CLOSE_UNAUTHORIZED, "auth-required", 0.0
        token = str(first.get("token") or "")
    factory: async_sessionmaker[AsyncSession] = ws.app.state.session_factory
    try:
        async with factory() as session, session.begin():
            principal = await principal_from_token(ws, session, token)
    except Forbidden as exc:
        return None, CLOSE_FORBIDDEN, exc.code, 0.0
    if principal is None:
        return None, CLOSE_UNAUTHORIZED, "invalid-credentials", 0.0
    if principal.actor_type != "user" or principal.role != "agent" or principal.user_id is None:
        return None, CLOSE_FORBIDDEN, "agent-only", 0.0
    return principal, 1000, "", _token_expiry(ws, token)


@router.websocket("/v1/agent/stream")
async def agent_stream(ws: WebSocket) -> None:
    try:
        principal, close_code, reason, expires_at = await _authenticate(ws)
    except Exception:  # the database, most likely: the client may retry
        log.exception("agent stream sign-in failed")
        principal, close_code, reason, expires_at = None, 1011, "internal-error", 0.0
    if principal is None:
        with contextlib.suppress(Exception):
            await ws.close(code=close_code, reason=reason)
        return
    since_raw = ws.query_params.get("since")
    if since_raw is not None and not (since_raw.isdigit() and int(since_raw) < 2**63):
        with contextlib.suppress(Exception):
            await ws.close(code=CLOSE_BAD_REQUEST, reason="query.since: must be an event id")
        return
    conn = AgentConnection(ws, principal)
    conn.expires_at = expires_at
    hub: OutboxHub = ws.app.state.outbox_hub
    # Subscribed before reading anything: what happens from here on is announced.
    sub = hub.subscribe(conn.scope.tenant_id, conn.agent_id)
    tasks: list[asyncio.Task[None]] = []
    close_code = 1000
    try:
        latest = await conn.latest_event_id()
        current = await conn.tx(lambda c: presence.read(c, conn.scope, conn.agent_id))
        conn.floor = int(since_raw) if since_raw is not None else latest
        if since_raw is not None:
            sub.catch_up()
        await conn.send(
            {
                "type": "hello",
                "agent_id": str(conn.agent_id),
                "presence": current.model_dump(mode="json"),
                "heartbeat_seconds": conn.grace / 3,
                "grace_seconds": conn.grace,
                "latest_event_id": latest,
                "expires_at": datetime.fromtimestamp(conn.expires_at, UTC).isoformat(),
            }
        )
        # Commands and events run side by side; either ending (the client left, or does
        # not read) ends the other.
        tasks = [
            asyncio.create_task(conn.read_commands()),
            asyncio.create_task(conn.deliver(sub)),
            asyncio.create_task(conn.session_clock()),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if (exc := task.exception()) is not None:
                raise exc
    except SessionExpired:
        close_code, reason = CLOSE_UNAUTHORIZED, "token-expired"
    except Gone as exc:
        close_code = CLOSE_TOO_SLOW if isinstance(exc.__cause__, TimeoutError) else 1000
    except Exception:
        log.exception("agent stream failed")
        close_code = 1011
    finally:
        hub.unsubscribe(conn.scope.tenant_id, conn.agent_id, sub)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=close_code, reason=reason), timeout=1.0)
