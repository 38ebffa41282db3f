"""The `switchboard` command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
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
def database(
    settings: Settings, *, prepare: bool = True, attach: bool = False
) -> Iterator[tuple[str, str]]:
    """Yield (admin_url, app_url): the configured server, or the embedded one started
    here; prepared (roles, database, migrations) when ``prepare``. With ``attach``, an
    embedded server that a running `switchboard run` holds is used as it is."""
    from app.db import bootstrap
    from app.db.embedded import (
        DataDirUnreachable,
        EmbeddedPostgres,
        EmbeddedPostgresError,
        system_data_dir,
    )

    pg: EmbeddedPostgres | None = None
    pg_owned = True
    if settings.database_url:
        server_url = settings.database_url
    else:
        pg = EmbeddedPostgres(settings.pg_data_dir, system_user=settings.pg_system_user)
        try:
            try:
                pg.start()
            except DataDirUnreachable:
                if settings.pg_dir is not None:
                    raise
                # Root, in a private directory: keep the data where the server's user
                # can reach it, instead of opening up the user's directories.
                pg = EmbeddedPostgres(
                    system_data_dir(Path.cwd()), system_user=settings.pg_system_user
                )
                typer.echo(f"PostgreSQL data: {pg.data_dir} (the project directory is private)")
                pg.start()
                settings.pg_dir = pg.data_dir
        except EmbeddedPostgresError as exc:
            # `switchboard run` holds the server: a tool command may use it meanwhile.
            if not (attach and pg.is_running()):
                _fail(str(exc))
            pg_owned = False
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
        if pg is not None and pg_owned:
            pg.stop()


def _serve(app_url: str, host: str, port: int, settings: Settings) -> None:
    import uvicorn

    from app.main import create_app

    app = create_app(settings, app_database_url=app_url)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", proxy_headers=True, server_header=False
    )
    server = uvicorn.Server(config)
    server.handle_exit = lambda *_: setattr(server, "should_exit", True)  # type: ignore[method-assign]
    # Ctrl-C / SIGTERM mean a graceful shutdown, after which the caller stops PostgreSQL.
    # Our handlers go in first: asyncio's runner then installs none of its own (which
    # would turn a clean Ctrl-C into KeyboardInterrupt and exit status 130), and uvicorn
    # does not re-raise the signal afterwards.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, server.handle_exit)
    server.run()


@cli.command()
def run(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", help="Port to listen on")] = 8000,
    seed: Annotated[bool, typer.Option(help="Apply tenants/demo.yaml (idempotent)")] = True,
    smtp_port: Annotated[
        int, typer.Option(help="Inbound mail for the email channels on 127.0.0.1 (0: off)")
    ] = 2525,
) -> None:
    """Everything in one process: embedded PostgreSQL (unless SWITCHBOARD_DATABASE_URL),
    migrations, demo seed, the API, a routing worker and inbound SMTP."""
    settings = get_settings()
    settings.public_url = f"http://{host}:{port}"
    settings.run_router = True  # one process: the API and a routing worker
    settings.run_smtp_port = smtp_port
    with database(settings) as (_, app_url):
        logins = _seed_demo(app_url) if seed else []
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
        for who, email, password in logins:
            typer.echo(
                f"  Log in as the demo {who}: {email} / {password}  "
                f"(POST http://{host}:{port}/v1/auth/token)"
            )
        if smtp_port:
            typer.echo(
                f"  Mail in:   smtp://127.0.0.1:{smtp_port} for "
                f"<channel>@{settings.inbound_email_domain}"
            )
        typer.echo("  Stop:      Ctrl-C")
        _serve(app_url, host, port, settings)


DEMO_BLUEPRINT = Path(__file__).resolve().parent.parent / "tenants" / "demo.yaml"


def _seed_demo(app_url: str) -> list[tuple[str, str, str]]:
    """Apply tenants/demo.yaml (idempotent) and say how to log in to it."""
    if not DEMO_BLUEPRINT.exists():
        return []
    from app.blueprints import service

    data = service.load(DEMO_BLUEPRINT)
    changes = _blueprint_session(app_url, lambda s: service.apply(s, data, False))
    if changes:
        typer.echo(f"Seeded the demo tenant from {DEMO_BLUEPRINT.name}: {len(changes)} changes.")
    logins = []
    admin = (data.get("tenant") or {}).get("admin") or {}
    if admin.get("password"):
        logins.append(("admin", admin["email"], admin["password"]))
    agent = next((a for a in data.get("agents") or [] if a.get("password")), None)
    if agent:
        logins.append(("agent", agent["email"], agent["password"]))
    return logins


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
def router(
    lease_seconds: Annotated[
        float | None, typer.Option(help="Shard lease time (default: settings)")
    ] = None,
    offer_timeout_seconds: Annotated[
        float | None, typer.Option(help="Ring-no-answer time of an offer (default: settings)")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port")
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option(help="This worker's name in the leases (default host:pid:random)")
    ] = None,
) -> None:
    """A routing worker (run any number): leases shards, matches contacts to agents."""
    import logging

    from app.db.bootstrap import router_url_like
    from app.routing.worker import RouterConfig, serve

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with database(settings, prepare=False, attach=True) as (_, app_url):
        config = RouterConfig(
            url=router_url_like(settings, app_url),
            lease_seconds=lease_seconds or settings.routing_lease_seconds,
            offer_timeout_seconds=offer_timeout_seconds or settings.routing_offer_timeout_seconds,
            batch_tenants=settings.routing_batch_tenants,
            max_offers_per_tenant=settings.routing_max_offers_per_tenant,
        )
        if worker_id:
            config.worker_id = worker_id[:100]
        asyncio.run(serve(config, metrics_port))


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
    from app.db.embedded import (
        DataDirUnreachable,
        EmbeddedPostgres,
        EmbeddedPostgresError,
        system_data_dir,
    )

    settings = get_settings()
    argv = list(ctx.args)
    if not argv:
        _fail("give a command to run")
    env = dict(os.environ)
    if settings.database_url:
        raise typer.Exit(subprocess.call(argv, env=env))  # noqa: S603

    def test_server(data_dir: Path) -> EmbeddedPostgres:
        return EmbeddedPostgres(data_dir, system_user=settings.pg_system_user, durable=not fast)

    pg = test_server(settings.data_dir.resolve() / "test-pg")
    try:
        try:
            pg.start()
        except DataDirUnreachable:
            pg = test_server(system_data_dir(Path.cwd()).parent / "test-pg")
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


@cli.command("storage-sweep")
def storage_sweep(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing")
    ] = False,
    grace_hours: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="Keep objects younger than this (default SWITCHBOARD_STORAGE_ORPHAN_GRACE_HOURS)",
        ),
    ] = None,
    tenant: Annotated[
        list[str] | None, typer.Option(help="Only this tenant's objects (repeatable)")
    ] = None,
) -> None:
    """Delete attachment objects no attachment row names, once past the grace period;
    prints the counts as JSON (the API also runs this hourly)."""
    import json
    import uuid
    from datetime import timedelta

    from app.db.engine import create_engine, make_session_factory
    from app.db.tenant import mint_scope
    from app.storage.factory import store_for
    from app.storage.sweep import every_tenant, sweep

    settings = get_settings()
    try:
        only = [mint_scope(uuid.UUID(t)) for t in tenant or []]
    except ValueError:
        _fail("--tenant takes a tenant id (a UUID)")
    grace = timedelta(hours=grace_hours or settings.storage_orphan_grace_hours)

    async def go(app_url: str) -> dict[str, object]:
        engine = create_engine(app_url, pool_size=2, max_overflow=0)
        try:
            factory = make_session_factory(engine)
            report = await sweep(
                factory,
                store_for(settings),
                only or every_tenant(factory),
                grace=grace,
                dry_run=dry_run,
            )
        finally:
            await engine.dispose()
        return report.as_json()

    with database(settings, prepare=False, attach=True) as (_, app_url):
        result = asyncio.run(go(app_url))
    typer.echo(json.dumps(result, indent=2, sort_keys=True))
    if result["tenants_failed"]:
        raise typer.Exit(1)


tenants_cli = typer.Typer(no_args_is_help=True, help="Tenants as code (blueprints).")
cli.add_typer(tenants_cli, name="tenants")


def _blueprint_session(app_url: str, work):  # type: ignore[no-untyped-def]
    """Run ``work(session)`` in one transaction as the runtime role; roll back on error."""
    from app.core.errors import SwitchboardError
    from app.db.engine import create_engine, make_session_factory

    async def go():  # type: ignore[no-untyped-def]
        engine = create_engine(app_url, pool_size=1, max_overflow=0)
        try:
            async with make_session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except SwitchboardError as exc:
        where = f"{exc.field}: " if exc.field and not exc.detail.startswith(exc.field) else ""
        _fail(f"{where}{exc.detail}")


def _print_changes(changes: list, verb: str) -> None:  # type: ignore[type-arg]
    if not changes:
        typer.echo("No changes.")
        return
    for c in changes:
        typer.echo(c.describe())
    counts = {a: sum(1 for c in changes if c.action == a) for a in ("create", "update", "delete")}
    typer.echo(
        f"{verb}: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['delete']} to delete."
    )


def _load_blueprint(file: Path) -> dict:  # type: ignore[type-arg]
    """Read and check the file before any database work; a bad file is one line."""
    from app.blueprints import service
    from app.core.errors import SwitchboardError

    try:
        return service.load(file)
    except SwitchboardError as exc:
        _fail(exc.detail)
        raise  # unreachable: _fail exits


@tenants_cli.command("plan")
def tenants_plan(
    file: Path, prune: Annotated[bool, typer.Option(help="Also list deletions")] = False
) -> None:
    """Show what `apply` would change (create / update / delete per resource)."""
    from app.blueprints import service

    data = _load_blueprint(file)
    with database(get_settings(), attach=True) as (_, app_url):
        changes = _blueprint_session(app_url, lambda s: service.plan(s, data, prune))
        _print_changes(changes, "Plan")


@tenants_cli.command("apply")
def tenants_apply(
    file: Path,
    prune: Annotated[bool, typer.Option(help="Delete what the blueprint no longer has")] = False,
) -> None:
    """Make the tenant match the blueprint (idempotent; all or nothing)."""
    from app.blueprints import service

    data = _load_blueprint(file)
    with database(get_settings(), attach=True) as (_, app_url):
        changes = _blueprint_session(app_url, lambda s: service.apply(s, data, prune))
        _print_changes(changes, "Applied")


@tenants_cli.command("export")
def tenants_export(
    slug: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout)")
    ] = None,
) -> None:
    """Write the tenant's live provisioning as a blueprint that applies back unchanged."""
    from app.blueprints import service

    settings = get_settings()
    with database(settings, attach=True) as (_, app_url):
        data = _blueprint_session(app_url, lambda s: service.export(s, slug))
        text = service.dump_yaml(data)
        if output:
            output.write_text(text)
        else:
            typer.echo(text, nl=False)


@tenants_cli.command("schema")
def tenants_schema() -> None:
    """Print the blueprint JSON Schema (tenants/schema.json is this, committed)."""
    import json

    from app.blueprints.jsonschema import blueprint_schema

    typer.echo(json.dumps(blueprint_schema(), indent=2, sort_keys=True))


from app.routing.cli import register as _register_routing  # noqa: E402

_register_routing(cli)

from app.emailing.cli import register as _register_emailing  # noqa: E402

_register_emailing(cli)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
