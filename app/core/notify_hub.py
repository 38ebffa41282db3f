"""One LISTEN connection per API process on a NOTIFY channel whose payloads read
``<tenant>:<key>:<event id>``, waking the local subscribers of that ``(tenant, key)``.

Used for the agents' outbox (app/routing/stream.py, key: the agent) and for the
conversations (app/webchat/hub.py, key: the conversation). Each subscriber then reads its
events from the table itself, bound to its tenant. When the connection drops, or stops
answering a ping, the hub reconnects and has every subscriber catch up from the table, so
a lost notification costs a read, never an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict

import asyncpg

from app.config import Settings

log = logging.getLogger("switchboard.notify_hub")

MAX_PENDING = 256  # announced, unsent event ids per subscriber; past it, catch up from the table
RETRY_SECONDS = 1.0
PING_SECONDS = 30.0


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


class NotifyHub:
    """LISTEN on ``channel``; ``name`` names the hub in logs, ``application_name`` its
    connection (in ``pg_stat_activity``)."""

    def __init__(
        self, settings: Settings, url: str, *, channel: str, name: str, application_name: str
    ) -> None:
        self.settings = settings
        self.url = url
        self.channel = channel
        self.name = name
        self.application_name = application_name
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
                log.warning("%s listener lost its connection; reconnecting", self.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s listener failed: %r", self.name, exc)
            await asyncio.sleep(RETRY_SECONDS)

    async def _listen(self) -> None:
        """LISTEN until the connection is lost (or stops answering a ping)."""
        from app.db.bootstrap import asyncpg_kwargs

        conn = await asyncpg.connect(
            **asyncpg_kwargs(self.url),
            server_settings={"application_name": self.application_name},
        )
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(self.channel, self._on_notify)
            # Whatever was announced while nobody listened is in the table.
            for subs in self._subs.values():
                for sub in subs:
                    sub.catch_up()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=PING_SECONDS)
                if not lost.is_set():  # a silent network failure shows here
                    await asyncio.wait_for(conn.execute("SELECT 1"), PING_SECONDS)
        finally:
            conn.terminate()

    def _on_notify(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        tenant, _, rest = payload.partition(":")
        key, _, event_id = rest.partition(":")
        subs = self._subs.get((tenant, key))
        if not subs or not event_id.isdigit():
            return
        for sub in subs:
            sub.announce(int(event_id))

    def subscribe(self, tenant_id: uuid.UUID, key: uuid.UUID) -> Subscription:
        sub = Subscription()
        self._subs[(str(tenant_id), str(key))].add(sub)
        return sub

    def unsubscribe(self, tenant_id: uuid.UUID, key: uuid.UUID, sub: Subscription) -> None:
        subs = self._subs.get((str(tenant_id), str(key)))
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[(str(tenant_id), str(key))]
