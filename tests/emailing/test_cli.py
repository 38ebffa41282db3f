"""`switchboard smtp` as operators run it: a process of its own on the database, taking
mail for the channels' addresses until SIGTERM."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg

from app.db.bootstrap import DatabaseUrls

ROOT = Path(__file__).resolve().parents[2]
SWITCHBOARD = Path(sys.executable).parent / "switchboard"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send_when_up(proc: subprocess.Popen[str], port: int, to: str, raw: bytes) -> Any:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            smtp = smtplib.SMTP("127.0.0.1", port, timeout=10)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("`switchboard smtp` did not listen in time") from None
            time.sleep(0.1)
            continue
        with smtp:
            smtp.ehlo("customer.example")
            smtp.mail("jane@customer.example")
            unknown = smtp.rcpt(f"nobody-{uuid.uuid4().hex[:6]}@inbound.switchboard.localhost")
            known = smtp.rcpt(to)
            return unknown, known, smtp.data(raw)


async def test_smtp_command_takes_mail_into_conversations(
    db_urls: DatabaseUrls,
    clean_db: asyncpg.Connection,
    mailbox: dict[str, Any],
) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="sb-smtp-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env |= {
        "SWITCHBOARD_DATABASE_URL": db_urls.admin,
        "SWITCHBOARD_APP_DATABASE_URL": db_urls.app,
        "SWITCHBOARD_DATA_DIR": str(data_dir),
    }
    port = _free_port()
    # Popen only starts the process; nothing here blocks the loop.
    proc = subprocess.Popen(  # noqa: S603, ASYNC220
        [str(SWITCHBOARD), "smtp", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    msg = EmailMessage()
    msg["From"] = "Jane <jane@customer.example>"
    msg["To"] = mailbox["address"]
    msg["Subject"] = "Sizing"
    msg.set_content("Do the boots run small?")
    try:
        unknown, known, data = await asyncio.to_thread(
            _send_when_up, proc, port, mailbox["address"], msg.as_bytes()
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    assert unknown[0] == 550 and known[0] == 250 and data[0] == 250
    row = await clean_db.fetchrow(
        "SELECT m.body, c.subject FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.channel_id = $1",
        uuid.UUID(mailbox["channel"]["id"]),
    )
    assert (row["body"], row["subject"]) == ("Do the boots run small?", "Sizing")
