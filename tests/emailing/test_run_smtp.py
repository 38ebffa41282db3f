"""`switchboard run` takes inbound mail in its own process: the API's lifespan starts
the SMTP service on `run_smtp_port` and stops it with the API."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from typing import Any

import pytest

from app.main import create_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_api_process_answers_smtp_when_asked(
    settings: Any, db_urls: Any, clean_db: Any
) -> None:
    port = _free_port()
    app = create_app(
        settings.model_copy(update={"run_smtp_port": port}), app_database_url=db_urls.app
    )
    async with app.router.lifespan_context(app):

        def unknown_recipient() -> int:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.ehlo()
                smtp.mail("someone@customer.example")
                code, _ = smtp.rcpt(f"nobody@{settings.inbound_email_domain}")
                return code

        assert await asyncio.to_thread(unknown_recipient) == 550
    with pytest.raises(OSError):  # stopped with the API
        await asyncio.to_thread(smtplib.SMTP, "127.0.0.1", port, timeout=2)
