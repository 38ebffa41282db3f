"""The embedded PostgreSQL: first start, restart with data kept, clear refusals."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from app.db.embedded import EmbeddedPostgres, EmbeddedPostgresError


@pytest.fixture
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="sb-embedded-"))
    d.chmod(0o755)  # as root the server runs as another user, who must traverse it
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def _query(pg: EmbeddedPostgres, sql: str) -> object:
    conn = await asyncpg.connect(user="postgres", database="postgres", host=str(pg.socket_dir))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_first_start_restart_keeps_data(base):
    pg = EmbeddedPostgres(base / "pg", durable=False)
    pg.start()
    try:
        await _query(pg, "CREATE TABLE kept AS SELECT 42 AS x")
    finally:
        pg.stop()
    assert not (base / "pg" / "postmaster.pid").exists()
    pg2 = EmbeddedPostgres(base / "pg", durable=False)
    pg2.start()
    try:
        assert await _query(pg2, "SELECT x FROM kept") == 42
    finally:
        pg2.stop()


async def test_second_instance_on_the_same_directory_is_refused(base):
    pg = EmbeddedPostgres(base / "pg", durable=False)
    pg.start()
    try:
        with pytest.raises(EmbeddedPostgresError, match="another Switchboard instance"):
            EmbeddedPostgres(base / "pg").start()
        assert await _query(pg, "SELECT 1") == 1  # the first is unharmed
    finally:
        pg.stop()


def test_unusable_directories_get_one_line_errors(base):
    (base / "afile").write_text("x")
    with pytest.raises(EmbeddedPostgresError, match="not a directory") as e:
        EmbeddedPostgres(base / "afile").start()
    assert "\n" not in str(e.value)
    (base / "notpg").mkdir()
    (base / "notpg" / "photo.jpg").write_text("x")
    with pytest.raises(EmbeddedPostgresError, match="not a PostgreSQL data directory"):
        EmbeddedPostgres(base / "notpg").start()


@pytest.mark.skipif(os.geteuid() != 0, reason="root-only behaviour")
async def test_as_root_the_server_runs_as_an_unprivileged_user(base):
    pg = EmbeddedPostgres(base / "pg", durable=False)
    pg.start()
    try:
        owner = pwd.getpwuid((base / "pg").stat().st_uid).pw_name
        assert owner == "switchboard-pg"
        assert await _query(pg, "SELECT current_setting('data_directory')") == str(base / "pg")
    finally:
        pg.stop()


def test_a_deep_directory_uses_a_short_socket_path(base):
    deep = base / ("d" * 60) / ("e" * 60)
    pg = EmbeddedPostgres(deep / "pg")
    assert len(str(pg.socket_dir / ".s.PGSQL.5432")) < 108
