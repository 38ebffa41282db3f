"""Plumbing shared by the WebSocket streams (the agent desktop's, app/routing/stream.py,
and the chat widget's, app/webchat/stream.py): JSON text frames, sends bounded in time,
commands answered with a result or a problem frame, each event sent once, a session that
lasts as long as its token, and the life of one connection's tasks."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import SwitchboardError
from app.db.tenant import TenantScope, bind_tenant
from app.routing.connection import raw

SENT_WINDOW = 512  # ids remembered to send each event once
SEND_TIMEOUT_SECONDS = 30.0
AUTH_TIMEOUT_SECONDS = 10.0  # for the first frame, {"type": "auth", ...}, when it is needed
RETRY_SECONDS = 1.0  # before reading events again after the database failed a read
# Close codes: 4000 plus the HTTP status that means the same, and the standard ones.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_RATE_LIMITED = 4429
CLOSE_TOO_SLOW = 1013
UNSTORABLE_TEXT = frozenset({"22021", "22P05"})  # NUL; a character without a UTF-8 form


class Gone(Exception):
    """The client left, or does not read what it is sent."""


class SessionExpired(Exception):
    """The token the socket signed in with expired and was not renewed."""


class Refused(Exception):
    """Sign-in refused: the socket closes with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def problem(ref: Any, status: int, code: str, detail: str, field: str | None) -> dict[str, Any]:
    field = field.removeprefix("body.") if field else None  # a command's keys are its body
    return dict(type="error", ref=ref, status=status, code=code, detail=detail, field=field)


def sqlstate(exc: BaseException) -> str | None:
    cause: BaseException | None = exc
    while cause is not None:
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            return state
        cause = getattr(cause, "orig", None) or cause.__cause__
    return None


async def auth_message(ws: WebSocket, within: float) -> dict[str, Any]:
    """The first frame, ``{"type": "auth", ...}``, within ``within`` seconds; else
    ``Refused`` (4401 ``auth-timeout`` or ``auth-required``)."""
    try:
        frame = await asyncio.wait_for(ws.receive(), timeout=within)
    except TimeoutError:
        raise Refused(CLOSE_UNAUTHORIZED, "auth-timeout") from None
    try:
        first = json.loads(frame.get("text") or "")
    except (ValueError, RecursionError):
        first = None
    if not isinstance(first, dict) or first.get("type") != "auth":
        raise Refused(CLOSE_UNAUTHORIZED, "auth-required")
    return first


class StreamConnection(abc.ABC):
    """One client's socket. Subclasses give ``tenant_scope``, ``session_expires_at`` and
    ``command``; ``log`` and ``label`` name them in the logs."""

    log = logging.getLogger("switchboard.stream")
    label = "stream"
    bad_frame_detail = "send text frames"
    max_frame_chars: int | None = None

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.factory: async_sessionmaker[AsyncSession] = ws.app.state.session_factory
        self.floor = 0  # events up to this id are behind the client
        self.sent: set[int] = set()  # ids above the floor already sent
        self._send_lock = asyncio.Lock()
        self._renewed = asyncio.Event()

    @abc.abstractmethod
    def tenant_scope(self) -> TenantScope:
        """The tenant the connection's transactions are bound to."""

    @abc.abstractmethod
    def session_expires_at(self) -> float:
        """When the session ends (Unix time) unless renewed."""

    @abc.abstractmethod
    async def command(self, message: dict[str, Any]) -> dict[str, Any]:
        """Answer one client command (the ``result`` fields, or raise a problem)."""

    async def send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, default=str)
        async with self._send_lock:
            try:
                await asyncio.wait_for(self.ws.send_text(text), SEND_TIMEOUT_SECONDS)
            except (WebSocketDisconnect, RuntimeError, OSError, TimeoutError) as exc:
                raise Gone from exc

    async def tx(self, work: Any) -> Any:
        """Run ``work(conn)`` in a transaction bound to the connection's tenant."""
        async with self.factory() as session, session.begin():
            await bind_tenant(session, self.tenant_scope())
            return await work(await raw(session))

    def _remember(self, event_id: int) -> None:
        self.sent.add(event_id)
        if len(self.sent) > SENT_WINDOW:
            ordered = sorted(self.sent)
            keep = SENT_WINDOW // 2
            self.floor = max(self.floor, ordered[-keep - 1])
            self.sent = set(ordered[-keep:])

    async def session_clock(self) -> None:
        """End the session when its token expires, unless the client sent a fresh one
        (``{"type": "auth", "token": ...}``) before: ``auth.expired``, then
        ``SessionExpired``."""
        while True:
            left = self.session_expires_at() - time.time()
            if left <= 0:
                with contextlib.suppress(Gone):
                    await self.send({"type": "auth.expired"})
                raise SessionExpired
            self._renewed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._renewed.wait()

    def renewed(self) -> None:
        """The session was extended: the clock reads the new expiry."""
        self._renewed.set()

    async def read_commands(self) -> None:
        """Answer commands until the client leaves."""
        while True:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            text = frame.get("text")
            if text is None or (self.max_frame_chars and len(text) > self.max_frame_chars):
                await self.send(problem(None, 400, "bad-message", self.bad_frame_detail, None))
                continue
            try:
                message = json.loads(text)
            except (ValueError, RecursionError):
                await self.send(problem(None, 400, "bad-json", "send JSON objects", None))
                continue
            if isinstance(message, dict):
                await self.send(await self.answer(message))
            else:
                await self.send(problem(None, 400, "bad-message", "send JSON objects", None))

    async def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        ref = message.get("ref")
        try:
            return {"type": "result", "ref": ref, "ok": True, **await self.command(message)}
        except SwitchboardError as exc:
            return problem(ref, exc.status, exc.code, exc.detail, exc.field)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or None
            detail = f"{where}: {first['msg']}" if where else str(first["msg"])
            return problem(ref, 422, "validation-failed", detail, where)
        except Exception as exc:
            if sqlstate(exc) in UNSTORABLE_TEXT:  # client input PostgreSQL cannot hold
                return problem(ref, 422, "invalid-text", "A text value cannot be stored.", None)
            self.log.exception("%s command failed", self.label)
            return problem(ref, 500, "internal-error", "An unexpected error occurred.", None)


async def run_session(
    ws: WebSocket,
    conn: StreamConnection,
    start: Callable[[], Awaitable[list[Coroutine[Any, Any, None]]]],
) -> None:
    """``start()`` (the ``hello``), then its jobs side by side until one ends (the client
    left, does not read, or the session expired), which ends the others; then close."""
    tasks: list[asyncio.Task[None]] = []
    close_code, reason = 1000, ""
    try:
        tasks = [asyncio.create_task(job) for job in await start()]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if (exc := task.exception()) is not None:
                raise exc
    except SessionExpired:
        close_code, reason = CLOSE_UNAUTHORIZED, "token-expired"
    except Gone as exc:
        close_code = CLOSE_TOO_SLOW if isinstance(exc.__cause__, TimeoutError) else 1000
    except Exception:
        conn.log.exception("%s failed", conn.label)
        close_code = 1011
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=close_code, reason=reason), timeout=1.0)


async def refuse(ws: WebSocket, code: int, reason: str) -> None:
    """Close a socket that may already be gone."""
    with contextlib.suppress(Exception):
        await ws.close(code=code, reason=reason)
