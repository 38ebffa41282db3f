"""`switchboard run` as a new user meets it: start, sign up, Ctrl-C, start again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SWITCHBOARD = Path(sys.executable).parent / "switchboard"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def data_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="sb-run-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _start(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["SWITCHBOARD_DATA_DIR"] = str(data_dir)
    return subprocess.Popen(  # noqa: S603
        [str(SWITCHBOARD), "run", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str], port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("not ready in time")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return out


def test_run_serves_signup_then_keeps_data_across_restarts(data_dir):
    port = _free_port()
    proc = _start(data_dir, port)
    try:
        _wait_ready(proc, port)
        base = f"http://127.0.0.1:{port}"
        body = {
            "company_name": "Run Test",
            "email": "run@example.com",
            "password": "correct horse battery staple 42",
        }
        r = httpx.post(f"{base}/v1/signup", json=body, timeout=10)
        assert r.status_code == 201, r.text
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}" in out and "Traceback" not in out
    # The demo tenant is seeded, and the banner says how to log in to it.
    assert "Log in as the demo admin: admin@northwind-outfitters.example" in out
    assert "Log in as the demo agent: sam.sales@northwind-outfitters.example" in out
    assert not (data_dir / "pg" / "postmaster.pid").exists()  # PostgreSQL stopped too

    proc = _start(data_dir, port)
    try:
        _wait_ready(proc, port)
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/auth/token",
            json={"email": body["email"], "password": body["password"]},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        h = {"Authorization": f"Bearer {r.json()['access_token']}"}
        me = httpx.get(f"http://127.0.0.1:{port}/v1/me", headers=h, timeout=10).json()
        assert me["tenant"]["name"] == "Run Test"
        demo = httpx.post(
            f"http://127.0.0.1:{port}/v1/auth/token",
            timeout=10,
            json={
                "email": "sam.sales@northwind-outfitters.example",
                "password": "demo agent passphrase 2026",
            },
        )
        assert demo.status_code == 200, demo.text
    finally:
        _stop(proc)


def test_a_second_instance_on_the_same_data_says_so(data_dir):
    port = _free_port()
    proc = _start(data_dir, port)
    try:
        _wait_ready(proc, port)
        second = _start(data_dir, _free_port())
        out, _ = second.communicate(timeout=30)
        assert second.returncode == 1
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        assert lines[-1].startswith("switchboard: another Switchboard instance"), out
    finally:
        _stop(proc)
