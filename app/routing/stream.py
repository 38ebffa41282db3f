"""The agent desktop's WebSocket, ``GET /v1/agent/stream``, and the outbox fan-out.

Protocol (JSON text frames):

- Authenticate with ``Authorization: Bearer <access token>`` on the upgrade request, or
  send ``{"type": "auth", "token": "..."}`` first (browsers cannot set headers); tokens
  never go in the URL, where logs would keep them. Optional ``?since=<event id>``
  replays the events after the last one received (a dropped connection resumes).
- The server sends ``hello`` (presence, heartbeat interval), then every outbox event for
  this agent as ``{"type": "event", "id", "topic", "payload", "at"}``: offers, rescinds,
  time-outs, presence and work changes.
- Commands, each answered with ``result`` or ``error`` carrying the client's ``ref``:
  ``heartbeat``, ``set_state`` (status, break_reason), ``accept`` / ``reject`` /
  ``complete`` (reservation_id), ``wrap_up`` (reservation_id, code).

A dropped connection does not sign the agent out: the heartbeat grace period does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.principal import Principal, principal_from_token
from app.config import Settings
from app.core.errors import SwitchboardError
from app.db.tenant import TenantScope, bind_tenant
from app.routing import presence, reservations
from app.routing.connection import raw
from app.routing.schemas import PresenceUpdate
from app.routing.transitions import OUTBOX_CHANNEL

log = logging.getLogger("switchboard.stream")
router = APIRouter(tags=["agent desktop"])

AUTH_TIMEOUT_SECONDS = 10.0
REPLAY_LIMIT = 500
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403


class OutboxHub:
    """One LISTEN connection per API process; wakes the local subscribers of an agent."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        self._subs: dict[tuple[str, str], set[asyncio.Queue[int]]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    async def _supervise(self) -> None:
        from app.db.bootstrap import asyncpg_kwargs

        while True:
            try:
                self._closed.clear()
                self._conn = await asyncpg.connect(**asyncpg_kwargs(self.url))
                self._conn.add_termination_listener(lambda _c: self._closed.set())
                await self._conn.add_listener(OUTBOX_CHANNEL, self._on_notify)
                await self._closed.wait()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("outbox listener lost: %s", exc)
            await asyncio.sleep(1.0)

    def _on_notify(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        tenant, _, rest = payload.partition(":")
        agent, _, event_id = rest.partition(":")
        queues = self._subs.get((tenant, agent))
        if not queues:
            return
        try:
            eid = int(event_id)
        except ValueError:
            return
        for q in queues:
            q.put_nowait(eid)

    def subscribe(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> asyncio.Queue[int]:
        q: asyncio.Queue[int] = asyncio.Queue()
        self._subs[(str(tenant_id), str(agent_id))].add(q)
        return q

    def unsubscribe(self, tenant_id: uuid.UUID, agent_id: uuid.UUID, q: asyncio.Queue[int]) -> None:
        key = (str(tenant_id), str(agent_id))
        self._subs[key].discard(q)
        if not self._subs[key]:
            del self._subs[key]


def _event(row: asyncpg.Record) -> dict[str, Any]:
    payload = row["payload"]
    return {
        "type": "event",
        "id": row["id"],
        "topic": row["topic"],
        "payload": json.loads(payload) if isinstance(payload, str) else payload,
        "at": row["created_at"].isoformat(),
    }


class AgentConnection:
    def __init__(self, ws: WebSocket, principal: Principal) -> None:
        self.ws = ws
        self.principal = principal
        self.scope: TenantScope = principal.scope
        assert principal.user_id is not None
        self.agent_id: uuid.UUID = principal.user_id
        self.factory: async_sessionmaker[AsyncSession] = ws.app.state.session_factory
        self.settings: Settings = ws.app.state.settings
        self.grace = float(self.settings.routing_heartbeat_grace_seconds)
        self._last_beat = 0.0
        self._send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_text(json.dumps(message, default=str))

    async def tx(self, work: Any) -> Any:
        """Run ``work(conn)`` in a transaction bound to the agent's tenant."""
        async with self.factory() as session, session.begin():
            await bind_tenant(session, self.scope)
            return await work(await raw(session))

    async def events_after(self, since: int) -> list[dict[str, Any]]:
        async def fetch(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await conn.fetch(
                "SELECT id, topic, payload, created_at FROM outbox_events "
                "WHERE tenant_id = $1 AND agent_id = $2 AND id > $3 ORDER BY id LIMIT $4",
                self.scope.tenant_id,
                self.agent_id,
                since,
                REPLAY_LIMIT,
            )
            return rows

        return [_event(r) for r in await self.tx(fetch)]

    async def event(self, event_id: int) -> dict[str, Any] | None:
        async def fetch(conn: asyncpg.Connection) -> asyncpg.Record | None:
            row: asyncpg.Record | None = await conn.fetchrow(
                "SELECT id, topic, payload, created_at FROM outbox_events "
                "WHERE tenant_id = $1 AND id = $2 AND agent_id = $3",
                self.scope.tenant_id,
                event_id,
                self.agent_id,
            )
            return row

        row = await self.tx(fetch)
        return _event(row) if row is not None else None

    async def pump(self, queue: asyncio.Queue[int], skip: set[int]) -> None:
        while True:
            event_id = await queue.get()
            if event_id in skip:
                continue
            message = await self.event(event_id)
            if message is not None:
                await self.send(message)

    async def command(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message.get("type")
        rid_raw = message.get("reservation_id")
        if kind == "heartbeat":
            now = time.monotonic()
            # One write per quarter of the grace period is plenty.
            if now - self._last_beat >= self.grace / 4:
                status = await self.tx(
                    lambda c: presence.heartbeat(c, self.scope, self.agent_id, self.grace)
                )
                self._last_beat = now
                return {"status": status}
            return {"status": "unchanged"}
        if kind == "set_state":
            change = PresenceUpdate.model_validate(
                {k: v for k, v in message.items() if k in ("status", "break_reason")}
            )
            read = await self.tx(
                lambda c: presence.set_status_on(
                    c, self.scope, self.agent_id, change, grace_seconds=self.grace
                )
            )
            self._last_beat = time.monotonic()
            return {"presence": read.model_dump(mode="json")}
        if kind in ("accept", "reject", "complete", "wrap_up"):
            try:
                rid = uuid.UUID(str(rid_raw))
            except ValueError:
                raise SwitchboardError(
                    "reservation_id: must be a UUID",
                    status=422,
                    code="validation-failed",
                    field="reservation_id",
                ) from None
            if kind == "accept":
                res = await self.tx(
                    lambda c: reservations.accept(c, self.scope, rid, self.agent_id)
                )
            elif kind == "reject":
                res = await self.tx(
                    lambda c: reservations.reject(c, self.scope, rid, self.agent_id)
                )
            else:
                res = await self._with_session(kind, rid, message.get("code"))
            return {"reservation": res.model_dump(mode="json")}
        raise SwitchboardError(
            f"type: unknown command {kind!r}", status=422, code="unknown-command", field="type"
        )

    async def _with_session(self, kind: str, rid: uuid.UUID, code: Any) -> Any:
        async with self.factory() as session, session.begin():
            await bind_tenant(session, self.scope)
            if kind == "complete":
                return await reservations.complete(session, self.scope, rid, self.agent_id)
            if code is not None and not isinstance(code, str):
                raise SwitchboardError(
                    "code: must be a string", status=422, code="validation-failed", field="code"
                )
            return await reservations.wrap_up(session, self.scope, rid, self.agent_id, code)


async def _authenticate(ws: WebSocket) -> Principal | None:
    header = ws.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    await ws.accept()
    if token is None:
        try:
            first = await asyncio.wait_for(ws.receive_json(), timeout=AUTH_TIMEOUT_SECONDS)
        except (TimeoutError, json.JSONDecodeError, KeyError, WebSocketDisconnect):
            return None
        if not isinstance(first, dict) or first.get("type") != "auth":
            return None
        token = str(first.get("token") or "")
    factory: async_sessionmaker[AsyncSession] = ws.app.state.session_factory
    try:
        async with factory() as session, session.begin():
            return await principal_from_token(ws, session, token)
    except SwitchboardError:
        return None


@router.websocket("/v1/agent/stream")
async def agent_stream(ws: WebSocket) -> None:
    principal = await _authenticate(ws)
    if principal is None:
        await ws.close(code=CLOSE_UNAUTHORIZED, reason="invalid-credentials")
        return
    if (
        principal.role != "agent"
        or principal.user_id is None
        or "agent:work" not in principal.scopes
    ):
        await ws.close(code=CLOSE_FORBIDDEN, reason="agent-only")
        return
    conn = AgentConnection(ws, principal)
    hub: OutboxHub = ws.app.state.outbox_hub
    queue = hub.subscribe(conn.scope.tenant_id, conn.agent_id)
    pump: asyncio.Task[None] | None = None
    try:
        since_raw = ws.query_params.get("since")
        backlog: list[dict[str, Any]] = []
        if since_raw is not None and since_raw.isdigit():
            backlog = await conn.events_after(int(since_raw))
        current = await conn.tx(lambda c: presence.read(c, conn.scope, conn.agent_id))
        await conn.send(
            {
                "type": "hello",
                "agent_id": str(conn.agent_id),
                "presence": current.model_dump(mode="json"),
                "heartbeat_seconds": conn.grace / 3,
                "grace_seconds": conn.grace,
            }
        )
        replayed = set()
        for message in backlog:
            replayed.add(message["id"])
            await conn.send(message)
        # Subscribed before the replay: an event both replayed and notified goes once.
        pump = asyncio.create_task(conn.pump(queue, replayed))
        while True:
            try:
                message = await ws.receive_json()
            except json.JSONDecodeError:
                await conn.send(
                    {"type": "error", "code": "bad-json", "detail": "send JSON objects"}
                )
                continue
            if not isinstance(message, dict):
                await conn.send({"type": "error", "code": "bad-message", "detail": "send objects"})
                continue
            ref = message.get("ref")
            try:
                result = await conn.command(message)
                await conn.send({"type": "result", "ref": ref, "ok": True, **result})
            except SwitchboardError as exc:
                await conn.send(
                    {
                        "type": "error",
                        "ref": ref,
                        "status": exc.status,
                        "code": exc.code,
                        "detail": exc.detail,
                        "field": exc.field,
                    }
                )
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                await conn.send(
                    {
                        "type": "error",
                        "ref": ref,
                        "status": 422,
                        "code": "validation-failed",
                        "detail": f"{where}: {first['msg']}",
                        "field": where,
                    }
                )
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(conn.scope.tenant_id, conn.agent_id, queue)
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
