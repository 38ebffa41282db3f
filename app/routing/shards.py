"""Tenants map to a fixed number of routing shards; workers lease shards, not tenants.

The count is fixed (a migration seeds the shard rows and the SQL function
``switchboard_shard_of`` computes the same mapping); rebalancing moves whole shards
between workers, never tenants between shards.
"""

from __future__ import annotations

import uuid

SHARD_COUNT = 64


def shard_of(tenant_id: uuid.UUID) -> int:
    """The tenant's shard: the UUID's last byte modulo the count (as in SQL)."""
    return (tenant_id.int & 0xFF) % SHARD_COUNT
