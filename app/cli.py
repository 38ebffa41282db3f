"""The `switchboard` command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Annotated

import typer

from app.config import Settings, get_settings

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Switchboard: multi-tenant contact-center-as-a-service.",
)
keys_cli = typer.Typer(no_args_is_help=True, help="JWT signing keys.")
platform_cli = typer.Typer(no_args_is_help=True, help="Platform operator tasks.")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(platform_cli, name="platform")


def _fail(message: str) -> None:
    typer.secho(f"switchboard: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def database(settings: Settings, *, prepare: bool = True) -> Iterator[tuple[str, str]]:
    """Yield (admin_url, app_url): the configured server, or the embedded one started
    here; prepared (roles, database, migrations) when ``prepare``."""
    from app.db import bootstrap
    from app.db.embedded import EmbeddedPostgres, EmbeddedPostgresError

    pg: EmbeddedPostgres | None = None
    if settings.database_url:
        server_url = settings.database_url
    else:
        pg = EmbeddedPostgres(settings.pg_data_dir, system_user=settings.pg_system_user)
        try:
            pg.start()
        except EmbeddedPostgresError as exc:
            _fail(str(exc))
        server_url = pg.url(settings.db_name)
    try:
        urls = bootstrap.urls_for(settings, server_url)
        if prepare:
            from sqlalchemy.engine import make_url

            dbname = make_url(urls.admin).database or settings.db_name
            try:
                asyncio.run(bootstrap.ensure_database(settings, server_url, dbname))
            except OSError as exc:
                _fail(f"cannot reach PostgreSQL: {exc}")
            bootstrap.migrate(urls.admin)
        yield urls.admin, urls.app
    finally:
        if pg is not None:
            pg.stop()


def _serve(app_url: str, host: str, port: int, settings: Settings) -> None:
    import uvicorn

    from app.main import create_app

    app = create_app(settings, app_database_url=app_url)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", proxy_headers=True, server_header=False
    )
    uvicorn.Server(config).run()


@cli.command()
def run(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", help="Port to listen on")] = 8000,
) -> None:
    """Everything in one process: embedded PostgreSQL (unless SWITCHBOARD_DATABASE_URL),
    migrations, demo seed, and the API."""
    settings = get_settings()
    settings.public_url = f"http://{host}:{port}"
    with database(settings) as (_, app_url):
        where = (
            "embedded PostgreSQL at " + str(settings.pg_data_dir)
            if not settings.database_url
            else "PostgreSQL at SWITCHBOARD_DATABASE_URL"
        )
        typer.secho(f"Switchboard is up on http://{host}:{port}  ({where})", fg=typer.colors.GREEN)
        typer.echo(f"  API docs:  http://{host}:{port}/docs")
        typer.echo(
            f"  Sign up:   curl -X POST http://{host}:{port}/v1/signup "
            "-H 'content-type: application/json' "
            '-d \'{"company_name":"Acme","email":"you@example.com",'
            '"password":"a long passphrase here"}\''
        )
        typer.echo("  Stop:      Ctrl-C")
        _serve(app_url, host, port, settings)


@cli.command()
def api(
    host: Annotated[str, typer.Option()] = "0.0.0.0",  # noqa: S104 - a server role
    port: Annotated[int, typer.Option(envvar="PORT")] = 8000,
) -> None:
    """The API role alone, against SWITCHBOARD_DATABASE_URL (run `migrate` first)."""
    settings = get_settings()
    if not settings.database_url:
        _fail(
            "`switchboard api` needs SWITCHBOARD_DATABASE_URL; use `switchboard run` "
            "for the embedded default"
        )
    with database(settings, prepare=False) as (_, app_url):
        _serve(app_url, host, port, settings)


@cli.command()
def migrate() -> None:
    """Create roles and database when missing, then migrate to head."""
    settings = get_settings()
    with database(settings):
        from app.db.bootstrap import head_revisions

        typer.echo(f"migrated to {', '.join(sorted(head_revisions()))}")


@cli.command(
    "exec-with-db", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def exec_with_db(
    ctx: typer.Context, fast: Annotated[bool, typer.Option(help="fsync off (tests)")] = True
) -> None:
    """Run a command with SWITCHBOARD_DATABASE_URL pointing at a PostgreSQL server:
    the configured one, or an embedded one started for the command's lifetime."""
    from app.db.embedded import EmbeddedPostgres, EmbeddedPostgresError

    settings = get_settings()
    argv = list(ctx.args)
    if not argv:
        _fail("give a command to run")
    env = dict(os.environ)
    if settings.database_url:
        raise typer.Exit(subprocess.call(argv, env=env))  # noqa: S603
    pg = EmbeddedPostgres(
        settings.data_dir.resolve() / "test-pg",
        system_user=settings.pg_system_user,
        durable=not fast,
    )
    try:
        pg.start()
    except EmbeddedPostgresError as exc:
        _fail(str(exc))
    try:
        env["SWITCHBOARD_DATABASE_URL"] = pg.url("postgres")
        code = subprocess.call(argv, env=env)  # noqa: S603
    finally:
        pg.stop()
    raise typer.Exit(code)


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Add a signing key and make it the active signer (old keys still verify)."""
    from app.auth.jwt_keys import load_document, rotate

    settings = get_settings()
    _, path = load_document(settings)
    if path is None:
        _fail("keys come from SWITCHBOARD_JWT_KEYS; rotate them where that secret lives")
    assert path is not None
    typer.echo(f"active signing key: {rotate(path)}")


@keys_cli.command("prune")
def keys_prune(kid: str) -> None:
    """Remove a retired key (after the access-token lifetime has passed)."""
    from app.auth.jwt_keys import load_document, prune

    _, path = load_document(get_settings())
    if path is None:
        _fail("keys come from SWITCHBOARD_JWT_KEYS")
    assert path is not None
    try:
        prune(path, kid)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"removed {kid}")


@platform_cli.command("set-tenant-status")
def set_tenant_status(
    slug: str,
    status: Annotated[str, typer.Argument(help="trial | active | suspended | closed")],
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change a tenant's status (suspended tenants' calls answer 403 tenant-suspended)."""
    from app.tenants.models import TenantStatus

    if status not in TenantStatus.__members__:
        _fail(f"status must be one of {', '.join(TenantStatus.__members__)}")
    settings = get_settings()
    with database(settings) as (_, app_url):
        from app.tenants.platform import set_status

        changed = asyncio.run(set_status(app_url, slug, TenantStatus(status), reason))
        if not changed:
            _fail(f"no tenant with slug '{slug}'")
        typer.echo(f"{slug}: {status}")


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
