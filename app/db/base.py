"""Declarative base pieces: one metadata with a naming convention, UUIDv7 ids, UTC time."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import MetaData
from sqlmodel import SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata: MetaData = SQLModel.metadata


def utcnow() -> datetime:
    return datetime.now(UTC)


_UUID7_LOCK = threading.Lock()
_uuid7_last = (0, 0)  # (unix ms, 74-bit counter) of the latest id made here


def uuid7() -> uuid.UUID:
    """Time-ordered UUID (RFC 9562 v7) so hot primary-key indexes append, not scatter.

    Monotonic within the process (RFC 9562 6.2, method 3): ids made in the same
    millisecond count up from the previous one by a random step, so rows written in one
    transaction (a conversation opened, then its first message) sort in the order made.
    """
    global _uuid7_last
    ms = time.time_ns() // 1_000_000
    with _UUID7_LOCK:
        last_ms, last_counter = _uuid7_last
        if ms > last_ms:
            counter = int.from_bytes(os.urandom(10), "big") >> 6  # 74 random bits
            counter &= (1 << 73) - 1  # room to count up within the millisecond
        else:
            ms = last_ms
            counter = last_counter + 1 + (int.from_bytes(os.urandom(4), "big") & 0xFFFF)
            if counter >= 1 << 74:  # exhausted: borrow the next millisecond
                ms, counter = ms + 1, int.from_bytes(os.urandom(8), "big") >> 2
        _uuid7_last = (ms, counter)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (counter >> 62) << 64
    value |= 0b10 << 62
    value |= counter & ((1 << 62) - 1)
    return uuid.UUID(int=value)
