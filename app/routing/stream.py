"""The agent desktop's WebSocket, ``GET /v1/agent/stream``, and the outbox fan-out.

Protocol (JSON text frames):

- Authenticate with ``Authorization: Bearer <access token>`` on the upgrade request, or
  send ``{"type": "auth", "token": "..."}`` first, within ``AUTH_TIMEOUT_SECONDS``
  (browsers cannot set headers); never in the URL, where logs would keep it. Closes: 4401
  a bad or expired token, or none in time; 4403 neither an agent nor a monitoring
  supervisor signing in as themselves (an API key) or a suspended tenant; 4400 a bad
  ``since``; 1013 a client too slow to take its events; 1011 a server error (reconnect,
  with ``since``).
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
- Conversations: ``conversation.reply`` / ``note`` / ``transfer`` / ``cancel_transfer`` /
  ``consult`` / ``consult_accept`` / ``consult_leave`` / ``resolve`` / ``pending`` /
  ``reopen`` / ``typing`` / ``monitor`` (``conversation_id`` plus the REST body; see
  ``app.conversations.actions``). An ``offer.created`` of a conversation carries its
  ``context`` (customer, recent interactions, page trail, flow answers, transfer note,
  last messages), read here under the tenant's row-level security.
- Supervisors, admins and owners (``conversations:monitor``) may open the stream too, to
  monitor conversations: no presence (``hello`` has ``presence: null``), and the routing
  commands answer 403 ``agent-only``.
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
import json
import logging
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, WebSocket
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import jwt_keys
from app.auth.principal import Principal, principal_from_token
from app.config import Settings
from app.core.errors import Forbidden, SwitchboardError
from app.core.notify_hub import NotifyHub, Subscription
from app.core.socket_stream import (
    AUTH_TIMEOUT_SECONDS,
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHORIZED,
    RETRY_SECONDS,
    Refused,
    StreamConnection,
    auth_message,
    refuse,
    run_session,
)
from app.db.engine import run_after_commit
from app.db.tenant import TenantScope, bind_tenant
from app.routing import presence, reservations
from app.routing.connection import raw
from app.routing.schemas import PresenceUpdate, WrapUpRequest
from app.routing.transitions import OUTBOX_CHANNEL

log = logging.getLogger("switchboard.stream")
router = APIRouter(tags=["agent desktop"])

REPLAY_LIMIT = 500

_COLUMNS = "SELECT id, topic, payload, created_at FROM outbox_events "
_ROUTING_COMMANDS = ("accept", "reject", "complete", "wrap_up")


class OutboxHub(NotifyHub):
    """Wakes the local subscribers of an agent, keyed by (tenant, agent)."""

    def __init__(self, settings: Settings, url: str) -> None:
        super().__init__(
            settings, url, channel=OUTBOX_CHANNEL, name="outbox", application_name="switchboard-hub"
        )


def _event(row: asyncpg.Record) -> dict[str, Any]:
    payload = json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
    at = row["created_at"].isoformat()
    return {"type": "event", "id": row["id"], "topic": row["topic"], "payload": payload, "at": at}


def _invalid(field: str, detail: str, code: str = "validation-failed") -> SwitchboardError:
    return SwitchboardError(f"{field}: {detail}", status=422, code=code, field=field)


class AgentConnection(StreamConnection):
    log = log
    label = "agent stream"

    def __init__(self, ws: WebSocket, principal: Principal) -> None:
        super().__init__(ws)
        self.scope: TenantScope = principal.scope
        assert principal.user_id is not None
        self.agent_id: uuid.UUID = principal.user_id
        self.grace = float(ws.app.state.settings.routing_heartbeat_grace_seconds)
        self._beat_at = -float("inf")
        self._beat_status = "offline"
        self.user_id = principal.user_id
        self.principal = principal
        # A supervisor monitoring conversations: no presence, no routing work.
        self.monitor_only = principal.role != "agent"
        self.expires_at = 0.0  # the access token's expiry (Unix time)

    def tenant_scope(self) -> TenantScope:
        return self.scope

    def session_expires_at(self) -> float:
        """A disabled agent's or a revoked session's socket lives no longer than its last
        access token."""
        return self.expires_at

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
        self.renewed()
        return {"expires_at": datetime.fromtimestamp(self.expires_at, UTC).isoformat()}

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
                        await self.send({"type": "gap", "presence": await self.presence()})
                else:
                    rows = await self._rows("id = ANY($3::bigint[]) ORDER BY id", ids)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, SQLAlchemyError) as exc:
                log.warning("reading outbox events failed: %r", exc)
                await asyncio.sleep(RETRY_SECONDS)
                sub.catch_up()
                continue
            for row in rows:
                if row["id"] not in self.sent:
                    await self.send(await self.enrich(_event(row)))
                    self._remember(row["id"])

    async def presence(self) -> dict[str, Any] | None:
        if self.monitor_only:
            return None
        now = await self.tx(lambda c: presence.read(c, self.scope, self.agent_id))
        data: dict[str, Any] = now.model_dump(mode="json")
        return data

    async def enrich(self, event: dict[str, Any]) -> dict[str, Any]:
        """An offer of a conversation carries its context, read here (the routing worker
        stays lean); an offer whose context cannot be read goes out without it."""
        payload = event["payload"]
        if event["topic"] != "offer.created" or not payload.get("conversation_id"):
            return event
        from app.conversations.context import build_context

        try:
            cid = uuid.UUID(str(payload["conversation_id"]))
            attributes = payload.get("attributes") or {}
            payload["context"] = await self.tx(
                lambda c: build_context(c, self.scope, cid, attributes)
            )
        except (ValueError, OSError, asyncpg.PostgresError, SQLAlchemyError) as exc:
            log.warning("reading an offer's context failed: %r", exc)
        return event

    async def command(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message.get("type")
        body = {k: v for k, v in message.items() if k not in ("type", "ref")}
        if kind == "heartbeat" and not self.monitor_only:
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
        if isinstance(kind, str) and kind.startswith("conversation."):
            return await self.conversation(kind, body)
        if self.monitor_only and kind in ("heartbeat", "set_state", *_ROUTING_COMMANDS):
            raise SwitchboardError(
                "Only an agent takes routing work.", status=403, code="agent-only", field="type"
            )
        if kind == "set_state":
            change = PresenceUpdate.model_validate(body)
            read = await self.tx(
                lambda c: presence.set_status_on(
                    c, self.scope, self.agent_id, change, grace_seconds=self.grace
                )
            )
            self._beat_at, self._beat_status = time.monotonic(), read.status
            return {"presence": read.model_dump(mode="json")}
        if kind not in _ROUTING_COMMANDS:
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

    async def conversation(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """A ``conversation.*`` command: the same service as REST, in its own transaction;
        work queued for after the commit (an email reply's delivery) runs after it."""
        from app.conversations.actions import Actor, Outbound, dispatch

        state = self.ws.app.state
        out = Outbound(state.object_store, state.settings, self.factory)
        async with self.factory() as session:
            async with session.begin():
                await bind_tenant(session, self.scope)
                result = await dispatch(session, Actor.of(self.principal), kind, body, out)
            await run_after_commit(session)
        return result


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
            first = await auth_message(ws, AUTH_TIMEOUT_SECONDS)
        except Refused as exc:
            return None, exc.code, exc.reason, 0.0
        token = str(first.get("token") or "")
    factory: async_sessionmaker[AsyncSession] = ws.app.state.session_factory
    try:
        async with factory() as session, session.begin():
            principal = await principal_from_token(ws, session, token)
    except Forbidden as exc:
        return None, CLOSE_FORBIDDEN, exc.code, 0.0
    if principal is None:
        return None, CLOSE_UNAUTHORIZED, "invalid-credentials", 0.0
    if principal.actor_type != "user" or principal.user_id is None:
        return None, CLOSE_FORBIDDEN, "agent-only", 0.0
    if principal.role != "agent" and "conversations:monitor" not in principal.scopes:
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
        await refuse(ws, close_code, reason)
        return
    since_raw = ws.query_params.get("since")
    if since_raw is not None and not (since_raw.isdigit() and int(since_raw) < 2**63):
        await refuse(ws, CLOSE_BAD_REQUEST, "query.since: must be an event id")
        return
    conn = AgentConnection(ws, principal)
    conn.expires_at = expires_at
    hub: OutboxHub = ws.app.state.outbox_hub
    # Subscribed before reading anything: what happens from here on is announced.
    sub = hub.subscribe(conn.scope.tenant_id, conn.agent_id)

    async def start() -> list[Coroutine[Any, Any, None]]:
        latest = await conn.latest_event_id()
        current = await conn.presence()
        conn.floor = int(since_raw) if since_raw is not None else latest
        if since_raw is not None:
            sub.catch_up()
        await conn.send(
            {
                "type": "hello",
                "agent_id": str(conn.agent_id),
                "presence": current,
                "heartbeat_seconds": conn.grace / 3,
                "grace_seconds": conn.grace,
                "latest_event_id": latest,
                "expires_at": datetime.fromtimestamp(conn.expires_at, UTC).isoformat(),
            }
        )
        return [conn.read_commands(), conn.deliver(sub), conn.session_clock()]

    try:
        await run_session(ws, conn, start)
    finally:
        hub.unsubscribe(conn.scope.tenant_id, conn.agent_id, sub)
