"""`switchboard tenants plan|apply|export` as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.blueprints.test_blueprints import demo

SWITCHBOARD = Path(sys.executable).parent / "switchboard"
ROOT = Path(__file__).resolve().parents[2]


def _cli(db_urls, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["SWITCHBOARD_DATABASE_URL"] = db_urls.admin
    return subprocess.run(  # noqa: S603
        [str(SWITCHBOARD), "tenants", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plan_apply_plan_export(db_urls, clean_db, tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump(demo("cli-shop")))
    r = _cli(db_urls, "plan", str(path))
    assert r.returncode == 0, r.stderr
    assert "+ tenant 'cli-shop'" in r.stdout and "Plan: 26 to create" in r.stdout
    r = _cli(db_urls, "apply", str(path))
    assert r.returncode == 0, r.stderr
    assert "Applied: 26 to create, 0 to update, 0 to delete." in r.stdout
    r = _cli(db_urls, "apply", str(path))
    assert r.stdout.strip() == "No changes."
    out = tmp_path / "exported.yaml"
    r = _cli(db_urls, "export", "cli-shop", "-o", str(out))
    assert r.returncode == 0, r.stderr
    r = _cli(db_urls, "plan", "--prune", str(out))
    assert r.stdout.strip() == "No changes."


def test_errors_are_one_line_with_the_path(db_urls, clean_db, tmp_path):
    bad = demo("cli-bad")
    bad["queues"][0]["channels"] = ["telegraph"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    r = _cli(db_urls, "apply", str(path))
    assert r.returncode == 1
    assert r.stderr.strip().startswith("switchboard: queues.0.channels.0")
    r = _cli(db_urls, "export", "no-such-tenant")
    assert r.returncode == 1 and "no tenant with slug 'no-such-tenant'" in r.stderr
    path.write_text("tenant: [unclosed")
    r = _cli(db_urls, "plan", str(path))
    assert r.returncode == 1 and "cannot read" in r.stderr
