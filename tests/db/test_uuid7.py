"""Ids made in one millisecond still sort in the order they were made (rows written
together, such as a conversation and its first message, list in that order)."""

from __future__ import annotations

from app.db.base import uuid7


def test_uuid7_is_monotonic_and_unique_within_a_millisecond() -> None:
    ids = [uuid7() for _ in range(50_000)]
    assert [u.int for u in ids] == sorted(u.int for u in ids)
    assert len(set(ids)) == len(ids)
    assert {u.version for u in ids} == {7}
    assert {u.variant for u in ids} == {"specified in RFC 4122"}
