"""A client of the WebSocket streams (the agent desktop's and the chat widget's), as the
tests drive them: keeps every message, finds the ones asked for."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed


class StreamClient:
    """One socket: keeps every message, finds the ones asked for."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self.seen: list[dict[str, Any]] = []

    async def expect(self, within: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first unclaimed message whose keys equal ``match`` (payload keys as
        ``payload={...}``, a subset)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            for m in self.inbox:
                if _matches(m, match):
                    self.inbox.remove(m)
                    return m
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no message like {match} in {within} s; saw {self.seen}")
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except TimeoutError:
                continue
            message = json.loads(raw)
            self.inbox.append(message)
            self.seen.append(message)

    async def call(self, kind: str, **fields: Any) -> dict[str, Any]:
        ref = uuid.uuid4().hex[:8]
        await self.ws.send(json.dumps({"type": kind, "ref": ref, **fields}))
        return await self.expect(ref=ref)

    async def drain(self, seconds: float = 0.3) -> None:
        """Take whatever arrives within ``seconds``."""
        with pytest.raises(AssertionError):
            await self.expect(within=seconds, type="never")

    def events(self, topic: str | None = None) -> list[dict[str, Any]]:
        return [
            m for m in self.seen if m["type"] == "event" and (topic is None or m["topic"] == topic)
        ]


def _matches(message: dict[str, Any], match: dict[str, Any]) -> bool:
    for key, want in match.items():
        if key == "payload":
            got = message.get("payload") or {}
            if any(got.get(k) != v for k, v in want.items()):
                return False
        elif message.get(key) != want:
            return False
    return True


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """The close code and reason the server ends ``ws`` with (no other frame first)."""
    with pytest.raises(ConnectionClosed) as info:
        message = await asyncio.wait_for(ws.recv(), 10)
        raise AssertionError(f"expected a close, got {message}")
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


async def close_all(opened: list[Any]) -> None:
    """Close the clients a test opened (for a fixture's teardown)."""
    for client in opened:
        await client.ws.close()
