"""The orphan sweep (app/storage/sweep.py) on both backends (the local directory, and S3
through moto's server): listings page through a prefix with times; referenced objects
(sent, or a grant within the grace period) stay, young orphans stay, old orphans go with
grants nobody sent in that time, a dry run deletes nothing, another tenant's objects are
never touched, and a file sent after a claimed upload still downloads afterwards. The clock is moved forward instead of sleeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from app.core.metrics import STORAGE_SWEEP
from app.db.base import uuid7
from app.db.tenant import TenantScope, mint_scope
from app.storage.base import ObjectStore, tenant_key, tenant_prefix
from app.storage.local import LocalObjectStore
from app.storage.sweep import SweepReport, every_tenant, sweep
from tests.conftest import create_tenant
from tests.storage.conftest import b64_key
from tests.webchat.conftest import open_session, start_chat, widget_tenant

GRACE = timedelta(hours=24)
LATER = timedelta(hours=25)  # past the grace period of everything written by the test
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 10
SWITCHBOARD = Path(sys.executable).parent / "switchboard"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    fixture = "local_store" if request.param == "local" else "s3_store"
    result: ObjectStore = request.getfixturevalue(fixture)
    return result


@pytest.fixture
def served(app: Any, store: ObjectStore) -> Iterator[ObjectStore]:
    """The API serves ``store`` for the test (the session's app keeps its own after)."""
    before = app.state.object_store
    app.state.object_store = store
    try:
        yield store
    finally:
        app.state.object_store = before


def _scope(tenant: dict[str, Any]) -> TenantScope:
    return mint_scope(uuid.UUID(tenant["tenant"]["id"]))


def _orphan_key(scope: TenantScope, name: str = "lost.png") -> str:
    """A key in the attachment layout that no row names (what a rolled-back inbound
    message leaves behind)."""
    return tenant_key(scope.tenant_id, "conversations", str(uuid.uuid4()), str(uuid7()), name)


async def _listed(store: ObjectStore, prefix: str, page_size: int = 1000) -> list[list[Any]]:
    return [page async for page in store.list_objects(prefix, page_size=page_size)]


async def _upload(client: httpx.AsyncClient, ticket: dict[str, Any], data: bytes) -> None:
    """As the widget uploads: PUT to the API (local) or a presigned POST to S3."""
    if ticket["method"] == "PUT":
        r = await client.put(urlsplit(ticket["url"]).path, content=data, headers=ticket["headers"])
    else:
        async with httpx.AsyncClient() as http:
            r = await http.post(
                ticket["url"],
                data=ticket["fields"],
                files={"file": ("upload", data, ticket["content_type"])},
            )
    assert r.status_code == 204, r.text


async def _fetch(client: httpx.AsyncClient, store: ObjectStore, url: str) -> httpx.Response:
    if isinstance(store, LocalObjectStore):
        parts = urlsplit(url)
        return await client.get(parts.path + (f"?{parts.query}" if parts.query else ""))
    async with httpx.AsyncClient() as http:
        return await http.get(url)


# -- listing ---------------------------------------------------------------------------


async def test_a_listing_pages_through_one_prefix_with_sizes_and_times(
    store: ObjectStore,
) -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    before = datetime.now(UTC) - timedelta(seconds=5)
    keys = {
        tenant_key(mine, "conversations", str(uuid.uuid4()), str(uuid7()), f"f{i}.txt"): b"x" * i
        for i in range(1, 6)
    }
    for key, data in keys.items():
        await store.put(key, data, "text/plain")
    await store.put(tenant_key(mine, "recordings", "call.wav"), b"RIFF", "audio/wav")
    await store.put(tenant_key(other, "conversations", "a", "b", "c.txt"), b"y", "text/plain")
    after = datetime.now(UTC) + timedelta(seconds=5)

    pages = await _listed(store, tenant_prefix(mine, "conversations"), page_size=2)

    assert all(1 <= len(page) <= 2 for page in pages) and len(pages) >= 3
    listed = [obj for page in pages for obj in page]
    assert sorted(o.key for o in listed) == sorted(keys)  # once each, store prefix stripped
    assert all(o.size == len(keys[o.key]) for o in listed)
    assert all(before <= o.last_modified <= after for o in listed)
    assert all(o.last_modified.utcoffset() == timedelta(0) for o in listed)
    assert await _listed(store, tenant_prefix(uuid.uuid4(), "conversations")) == []


async def test_the_local_sidecar_holds_the_key_only_encrypted(
    local_store: LocalObjectStore,
) -> None:
    tenant = uuid.uuid4()
    key = tenant_key(tenant, "conversations", str(uuid.uuid4()), str(uuid7()), "merger-plan.pdf")
    await local_store.put(key, b"%PDF", "application/pdf")

    on_disk = b"".join(p.read_bytes() for p in local_store.root.rglob("*") if p.is_file())
    assert b"merger-plan" not in on_disk and str(tenant).encode() not in on_disk
    (page,) = await _listed(local_store, tenant_prefix(tenant, "conversations"))
    assert [o.key for o in page] == [key]

    # A sidecar written before keys were recorded cannot be listed, so it is never swept.
    _, _, meta = local_store._paths(key)
    info = json.loads(meta.read_bytes())
    del info["name"]
    meta.write_text(json.dumps(info))
    assert await _listed(local_store, tenant_prefix(tenant, "conversations")) == []
    assert await local_store.get(key) == b"%PDF"


# -- the sweep -------------------------------------------------------------------------


async def test_the_sweep_keeps_what_is_referenced_or_young_and_deletes_old_orphans(
    app: Any,
    client: httpx.AsyncClient,
    clean_db: asyncpg.Connection,
    served: ObjectStore,
) -> None:
    store = served
    factory = app.state.session_factory
    acme, globex = await widget_tenant(client), await widget_tenant(client)
    a, b = _scope(acme), _scope(globex)

    # Acme's visitor uploads a file and sends it, and uploads another never sent.
    visitor = await open_session(client, acme)
    cid = (await start_chat(client, visitor))["conversation"]["id"]
    grants = []
    for name in ("receipt.png", "draft.png"):
        r = await client.post(
            f"/v1/widget/conversations/{cid}/attachments",
            json={"filename": name, "content_type": "image/png", "size_bytes": len(PNG)},
            headers=visitor["headers"],
        )
        assert r.status_code == 201, r.text
        grants.append(r.json())
        await _upload(client, r.json()["upload"], PNG)
    sent, pending = grants
    r = await client.post(
        f"/v1/widget/conversations/{cid}/messages",
        json={"text": "", "client_message_id": "m-1", "attachment_ids": [sent["attachment_id"]]},
        headers=visitor["headers"],
    )
    assert r.status_code == 201, r.text
    sent_key, pending_key = [
        await clean_db.fetchval(
            "SELECT object_key FROM attachments WHERE id = $1", uuid.UUID(g["attachment_id"])
        )
        for g in grants
    ]
    # What rollbacks left behind, in both tenants; objects outside the attachment layout.
    acme_orphan, globex_orphan = _orphan_key(a), _orphan_key(b)
    odd = tenant_key(a.tenant_id, "conversations", "notes.txt")  # prefix, not layout
    recording = tenant_key(a.tenant_id, "recordings", "call.wav")  # not an attachment
    for key in (acme_orphan, globex_orphan, odd, recording):
        await store.put(key, b"bytes", "application/octet-stream")
    deleted_before = STORAGE_SWEEP.value(a.tenant_id, "deleted")

    # Now: everything is younger than the grace period, nothing goes.
    report = await sweep(factory, store, [a], grace=GRACE)
    assert _counts(report, a) == {"scanned": 4, "kept_young": 4, "orphaned": 0, "deleted": 0}

    # A day later, a dry run only counts the orphan and the grant nobody sent in a day.
    report = await sweep(
        factory, store, [a], grace=GRACE, now=datetime.now(UTC) + LATER, dry_run=True
    )
    assert _counts(report, a) == {"scanned": 4, "kept_young": 0, "orphaned": 2, "deleted": 0}
    assert report.tenants[a.tenant_id].grants_expired == 1
    assert await store.head(acme_orphan) is not None and await store.head(pending_key)
    assert await clean_db.fetchval(
        "SELECT count(*) FROM attachments WHERE id = $1", uuid.UUID(pending["attachment_id"])
    )

    # The real run deletes Acme's orphan and its expired grant (row and object) alone:
    # not Globex's (another tenant), not what was sent, not keys outside the layout or
    # the prefix.
    report = await sweep(factory, store, [a], grace=GRACE, now=datetime.now(UTC) + LATER)
    assert _counts(report, a) == {"scanned": 4, "kept_young": 0, "orphaned": 2, "deleted": 2}
    assert report.tenants[a.tenant_id].grants_expired == 1
    assert (report.totals.kept_referenced, report.totals.kept_unrecognised) == (1, 1)
    assert list(report.tenants) == [a.tenant_id]
    assert await store.head(acme_orphan) is None and await store.head(pending_key) is None
    for key in (sent_key, odd, recording, globex_orphan):
        assert await store.head(key) is not None, key
    assert STORAGE_SWEEP.value(a.tenant_id, "deleted") == deleted_before + 2
    assert STORAGE_SWEEP.value(a.tenant_id, "grants_expired") >= 1
    scrape = (await client.get("/metrics")).text
    assert (
        f'switchboard_storage_sweep_objects_total{{outcome="deleted",tenant_id="{a.tenant_id}"}} '
        in scrape
    )

    # The file sent before the sweep still downloads, through the same API as before.
    r = await client.get(
        f"/v1/widget/attachments/{sent['attachment_id']}", headers=visitor["headers"]
    )
    assert r.status_code == 302, r.text
    download = await _fetch(client, store, r.headers["location"])
    assert download.status_code == 200 and download.content == PNG
    # The expired grant can no longer be sent: refused, naming it, and nothing written.
    messages_before = await clean_db.fetchval("SELECT count(*) FROM messages")
    r = await client.post(
        f"/v1/widget/conversations/{cid}/messages",
        json={
            "text": "",
            "client_message_id": "m-2",
            "attachment_ids": [pending["attachment_id"]],
        },
        headers=visitor["headers"],
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "unknown-attachment"
    assert "attachment_ids.0" in r.json()["detail"]
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == messages_before
    # A grant still within the grace period is kept, object and row, and can be sent.
    r = await client.post(
        f"/v1/widget/conversations/{cid}/attachments",
        json={"filename": "fresh.png", "content_type": "image/png", "size_bytes": len(PNG)},
        headers=visitor["headers"],
    )
    assert r.status_code == 201, r.text
    fresh = r.json()
    await _upload(client, fresh["upload"], PNG)
    report = await sweep(factory, store, [a], grace=GRACE)
    assert report.tenants[a.tenant_id].grants_expired == 0
    r = await client.post(
        f"/v1/widget/conversations/{cid}/messages",
        json={"text": "", "client_message_id": "m-3", "attachment_ids": [fresh["attachment_id"]]},
        headers=visitor["headers"],
    )
    assert r.status_code == 201, r.text

    # Every tenant: Globex's orphan goes too, Acme has nothing left to delete.
    report = await sweep(
        factory, store, every_tenant(factory), grace=GRACE, now=datetime.now(UTC) + LATER
    )
    assert report.tenants[b.tenant_id].deleted == 1
    assert report.tenants[a.tenant_id].deleted == 0
    assert await store.head(globex_orphan) is None


def _counts(report: SweepReport, scope: TenantScope) -> dict[str, int]:
    c = report.tenants[scope.tenant_id]
    return {
        "scanned": c.scanned,
        "kept_young": c.kept_young,
        "orphaned": c.orphaned,
        "deleted": c.deleted,
    }


def _backdate(store: LocalObjectStore, key: str, age: timedelta) -> None:
    _, obj, _ = store._paths(key)
    then = time.time() - age.total_seconds()
    os.utime(obj, (then, then))


async def test_in_one_run_an_old_orphan_goes_and_a_young_one_stays(
    app: Any, client: httpx.AsyncClient, local_store: LocalObjectStore
) -> None:
    scope = _scope(await create_tenant(client))
    old, young = _orphan_key(scope, "old.pdf"), _orphan_key(scope, "young.pdf")
    for key in (old, young):
        await local_store.put(key, b"%PDF", "application/pdf")
    _backdate(local_store, old, timedelta(hours=30))

    report = await sweep(app.state.session_factory, local_store, [scope], grace=GRACE)

    assert (report.totals.deleted, report.totals.kept_young) == (1, 1)
    assert await local_store.head(old) is None
    assert await local_store.get(young) == b"%PDF"


# -- the command -----------------------------------------------------------------------


def _cli(db_urls: Any, store: LocalObjectStore, key: bytes, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env |= {
        "SWITCHBOARD_DATABASE_URL": db_urls.admin,
        "SWITCHBOARD_STORAGE_DIR": str(store.root),
        "SWITCHBOARD_ENCRYPTION_KEY": b64_key(key),
    }
    r = subprocess.run(  # noqa: S603
        [str(SWITCHBOARD), "storage-sweep", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


async def test_the_command_prints_counts_and_a_dry_run_deletes_nothing(
    db_urls: Any,
    client: httpx.AsyncClient,
    local_store: LocalObjectStore,
    encryption_key: bytes,
) -> None:
    scope = _scope(await create_tenant(client))
    orphan = _orphan_key(scope)
    await local_store.put(orphan, PNG, "image/png")
    _backdate(local_store, orphan, timedelta(hours=3))

    dry = _cli(db_urls, local_store, encryption_key, "--dry-run", "--grace-hours", "2")
    assert (dry["dry_run"], dry["grace_hours"]) == (True, 2)
    assert (dry["scanned"], dry["orphaned"], dry["deleted"]) == (1, 1, 0)
    assert dry["tenants"][str(scope.tenant_id)]["orphaned"] == 1
    assert await local_store.head(orphan) is not None

    kept = _cli(db_urls, local_store, encryption_key)  # the default grace: 24 h
    assert (kept["kept_young"], kept["deleted"]) == (1, 0)
    done = _cli(db_urls, local_store, encryption_key, "--grace-hours", "2")
    assert (done["deleted"], done["tenants_failed"]) == (1, [])
    assert await local_store.head(orphan) is None
