"""`switchboard smtp`: the inbound SMTP service of the email channels."""

from __future__ import annotations

import asyncio
import logging
import signal
from functools import partial
from typing import Annotated

import typer

from app.config import Settings, get_settings


async def serve(settings: Settings, app_url: str, host: str, port: int) -> None:
    """Listen until SIGINT/SIGTERM, then stop taking connections and close the pool."""
    import app.models  # noqa: F401 - every table mapped before the first ORM query
    from app.db.engine import create_engine, make_session_factory
    from app.emailing.ingest import accepts, allow_peer, ingest
    from app.emailing.smtp_server import InboundHandler, start_smtp_server
    from app.storage.factory import store_for

    engine = create_engine(
        app_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
    )
    factory = make_session_factory(engine)
    handler = InboundHandler(
        accepts=partial(accepts, factory, settings),
        deliver=partial(ingest, factory, settings, store_for(settings)),
        domain=settings.inbound_email_domain,
        max_recipients=settings.smtp_max_recipients,
        allow_peer=partial(allow_peer, factory, settings),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await start_smtp_server(
        host,
        port,
        handler,
        data_size_limit=settings.smtp_max_message_bytes,
        hostname=settings.inbound_email_domain,
    )
    typer.secho(
        f"Inbound SMTP for @{settings.inbound_email_domain} on {host}:{server.port}",
        fg=typer.colors.GREEN,
    )
    try:
        await stop.wait()
    finally:
        await server.close()
        await engine.dispose()


def smtp(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(help="Port to listen on (25 behind the MX)")] = 2525,
) -> None:
    """The inbound SMTP service: mail to the email channels' addresses becomes
    conversations (run any number behind the inbound domain's MX)."""
    from app.cli import database

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with database(settings, prepare=False, attach=True) as (_, app_url):
        asyncio.run(serve(settings, app_url, host, port))


def register(cli: typer.Typer) -> None:
    """Add `smtp` to the CLI."""
    cli.command("smtp")(smtp)
