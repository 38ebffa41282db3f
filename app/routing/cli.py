"""Routing commands of the `switchboard` CLI: erlang, simulate (and router, in app.cli)."""

from __future__ import annotations

import typer


def register(cli: typer.Typer) -> None:
    """Add the routing planning commands to the CLI."""
