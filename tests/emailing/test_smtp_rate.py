"""A sending address past its rate of messages is asked to try later (452, a temporary
refusal: its server retries, nothing is lost); the count is shared through PostgreSQL."""

from __future__ import annotations

import asyncio
import smtplib
from functools import partial
from typing import Any

from app.emailing.ingest import accepts, allow_peer, ingest
from app.emailing.smtp_server import InboundHandler, start_smtp_server
from tests.emailing.test_ingest import customer_mail
from tests.webchat.conftest import inside_one_window


async def test_a_flooding_sender_is_told_to_try_later(
    app: Any, settings: Any, clean_db: Any, mailbox: dict[str, Any]
) -> None:
    strict = settings.model_copy(update={"smtp_messages_per_address_per_minute": 2})
    factory = app.state.session_factory
    handler = InboundHandler(
        accepts=partial(accepts, factory, strict),
        deliver=partial(ingest, factory, strict, app.state.object_store),
        domain=strict.inbound_email_domain,
        allow_peer=partial(allow_peer, factory, strict),
    )
    server = await start_smtp_server("127.0.0.1", 0, handler)
    address = mailbox["address"]

    def three() -> list[int]:
        codes = []
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
            smtp.ehlo()
            for _ in range(3):
                code, _ = smtp.mail("jane.doe@customer.example")
                codes.append(code)
                if code == 250:
                    smtp.rcpt(address)
                    smtp.data(customer_mail(address))
        return codes

    await inside_one_window(60)
    try:
        codes = await asyncio.to_thread(three)
    finally:
        await server.close()
    assert codes == [250, 250, 452]
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 2
