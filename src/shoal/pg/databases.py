"""Whole databases per worker: template databases built once, clones, owner comments, drops.

For suites that need a database of their own (Django's database mode). A template
``shoaltpl_<fp12>`` is built once per setup fingerprint and server, race-free across
runs and hosts: its build (and drop) holds an exclusive advisory lock in the server's
control database, every clone holds it shared. It is published by its "ready" comment,
written only after its setup finished and was checked, so a half-built template is
never cloned. Each worker then gets ``test_<name>_<namespace>_<worker>`` by ``CREATE
DATABASE … TEMPLATE``, with the same owner comment a worker schema has, so that the
sweep and ``shoal ps`` treat it exactly like a schema.

``CREATE DATABASE`` and ``DROP DATABASE`` cannot run inside a transaction: each is one
statement of its own on an autocommit connection, bounded by session timeouts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import sql

from shoal import conninfo, naming, setups
from shoal.binding import DatabaseHandle
from shoal.errors import ShoalError, first_line
from shoal.pg import schemas, verify
from shoal.pg.connect import admin_connect
from shoal.pg.slots import Lease, slot_count
from shoal.plan import Target

Conn = psycopg.Connection[tuple[Any, ...]]
TemplateState = Literal["building", "ready"]

# PostgreSQL 13 added DROP DATABASE … WITH (FORCE).
FORCE_SINCE = 130000
# A clone fails while anyone is connected to the template (autovacuum, a tool): retried.
CLONE_RETRY_S = 10.0
_CLONE_PAUSE_S = 0.2

CAN_CREATE_DATABASES = """
SELECT current_user, rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user
"""
DATABASES_LIKE = """
SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database
WHERE datname LIKE %s ORDER BY datname
"""
DATABASE_COMMENT = (
    "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"
)
LOCK_SHARED = "SELECT pg_advisory_lock_shared(%s, %s)"
UNLOCK_SHARED = "SELECT pg_advisory_unlock_shared(%s, %s)"
LOCK = "SELECT pg_advisory_lock(%s, %s)"
TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"


class CreateDatabaseRefused(ShoalError):
    """The role may not create databases, which a database per worker needs."""

    exit_code = 2


def check_can_create(conn: Conn, server: str) -> None:
    """Refuse, saying which role on which server and what to do, unless it has CREATEDB."""
    row = conn.execute(CAN_CREATE_DATABASES).fetchone()
    role, allowed = (str(row[0]), bool(row[1])) if row else ("?", False)
    if not allowed:
        raise CreateDatabaseRefused(
            f"a database per worker needs CREATEDB: role {role!r} on {server} may not create "
            f'databases. Grant it (as a superuser: ALTER ROLE "{role}" CREATEDB), or use '
            'django_mode = "schema" (a schema per worker, no CREATEDB needed)'
        )


def template_comment(
    state: TemplateState,
    fingerprint: str,
    namespace: str,
    project: str | None = None,
    shape: verify.Shape | None = None,
) -> str:
    data: dict[str, object] = {
        "shoal": 1,
        "template": state,
        "fingerprint": fingerprint,
        "namespace": namespace,
        **schemas.process_identity(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if project is not None:
        data["project"] = project
    if shape is not None:
        data["shape"] = shape.as_json()
    return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class Template:
    name: str
    fingerprint: str  # full, from the comment ("" when it is not shoal's)
    state: TemplateState | None  # None: no comment of shoal's
    namespace: str | None
    created: datetime | None
    project: str | None = None  # whose runs built it


def parse_template(name: str, comment: str | None) -> Template | None:
    """A template database from its name and comment; None when the name is not one."""
    prefix = naming.parse_template_database(name)
    if prefix is None:
        return None
    data = schemas.parse_owner_comment(comment) or {}
    state, fingerprint = data.get("template"), data.get("fingerprint")
    namespace = data.get("namespace")
    if state not in ("building", "ready") or not (
        isinstance(fingerprint, str) and fingerprint.startswith(prefix)
    ):
        return Template(name, "", None, None, None)
    return Template(
        name=name,
        fingerprint=fingerprint,
        state=state,
        namespace=namespace if isinstance(namespace, str) else None,
        created=schemas.created_at(data),
        project=str(data["project"]) if isinstance(data.get("project"), str) else None,
    )


def list_databases(conn: Conn, like: str) -> list[tuple[str, str | None]]:
    """(name, comment) of the server's databases whose name is LIKE ``like``."""
    rows = conn.execute(DATABASES_LIKE, (like,)).fetchall()
    return [(str(name), None if comment is None else str(comment)) for name, comment in rows]


def worker_databases(conn: Conn) -> list[tuple[str, str | None]]:
    """(name, comment) of every database on the server whose name parses as a worker's."""
    return [
        (name, comment)
        for name, comment in list_databases(conn, naming.WORKER_DATABASE_LIKE)
        if naming.parse_worker_database(name) is not None
    ]


def templates(conn: Conn) -> list[Template]:
    found = []
    for name, comment in list_databases(conn, naming.TEMPLATE_LIKE):
        template = parse_template(name, comment)
        if template is not None:
            found.append(template)
    return found


def _comment(conn: Conn, name: str) -> str | Literal[False] | None:
    """The database's comment; False when there is no such database."""
    row = conn.execute(DATABASE_COMMENT, (name,)).fetchone()
    return False if row is None else (None if row[0] is None else str(row[0]))


def template_ready(conn: Conn, fingerprint: str) -> bool:
    name = naming.template_database_name(fingerprint)
    comment = _comment(conn, name)
    if comment is False:
        return False
    template = parse_template(name, comment)
    return (
        template is not None and template.state == "ready" and (template.fingerprint == fingerprint)
    )


@contextmanager
def _locked(conn: Conn, key: tuple[int, int], *, shared: bool) -> Iterator[None]:
    conn.execute(LOCK_SHARED if shared else LOCK, key)
    try:
        yield
    finally:
        if not conn.closed and not conn.broken:
            with suppress(psycopg.Error):
                conn.execute(UNLOCK_SHARED if shared else UNLOCK, key)


def _bounded(conn: Conn) -> None:
    # Session settings: CREATE and DROP DATABASE cannot run in a transaction (SET LOCAL).
    conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(schemas.DROP_LOCK_TIMEOUT)))
    conn.execute(
        sql.SQL("SET statement_timeout = {}").format(sql.Literal(schemas.DROP_STATEMENT_TIMEOUT))
    )


def _unbounded(conn: Conn) -> None:
    if not conn.closed and not conn.broken:
        with suppress(psycopg.Error):
            conn.execute("RESET lock_timeout")
            conn.execute("RESET statement_timeout")


def drop_database(conn: Conn, name: str, *, force: bool) -> None:
    """``DROP DATABASE IF EXISTS`` as one statement, bounded; ``force`` ends the sessions
    still connected to it (PostgreSQL 13+: a run's own, at its teardown)."""
    statement = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    if force:
        statement += sql.SQL(" WITH (FORCE)")
    _bounded(conn)
    try:
        conn.execute(statement)
    finally:
        _unbounded(conn)


def create_database(
    conn: Conn,
    name: str,
    comment: str,
    *,
    template: str | None = None,
    retry_s: float = CLONE_RETRY_S,
) -> None:
    """``CREATE DATABASE name [TEMPLATE template]``, then its owner comment.

    Cloning needs the template to have no other connection (an autovacuum worker, a
    tool that looked at it): "source database is being accessed by other users" is
    retried for up to ``retry_s``.
    """
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    deadline = time.monotonic() + retry_s
    while True:
        try:
            conn.execute(statement)
            break
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(_CLONE_PAUSE_S)
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(comment))
    )


def build_template(
    target: Target,
    fingerprint: str,
    *,
    namespace: str,
    lease: Lease,
    worker: str = naming.MAIN_WORKER,
    project: str | None = None,
    timeout: int = 5,
) -> bool:
    """Make sure the ready template of ``fingerprint`` exists on ``target``'s server;
    True when this call built it.

    Built once: the first caller takes the template's lock exclusively and builds; the
    others wait for it and find the template ready. A template left half-built by a
    builder that died is dropped and built again.
    """
    name = naming.template_database_name(fingerprint)
    label = naming.admin_label(worker, namespace)
    with admin_connect(target.control_url, label, timeout=timeout) as conn:
        if template_ready(conn, fingerprint):
            return False
        with lease.ddl_slot(worker), _locked(conn, naming.template_lock(fingerprint), shared=False):
            if template_ready(conn, fingerprint):
                return False
            drop_database(conn, name, force=target.server_version >= FORCE_SINCE)
            create_database(
                conn, name, template_comment("building", fingerprint, namespace, project)
            )
            try:
                shape = _run_setup(target, name, namespace, worker, conn)
            except BaseException:
                drop_database(conn, name, force=target.server_version >= FORCE_SINCE)
                raise
            ready = template_comment("ready", fingerprint, namespace, project, shape)
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(ready)
                )
            )
    return True


def _run_setup(
    target: Target, template: str, namespace: str, worker: str, control: Conn
) -> verify.Shape | None:
    """The target's setup, run in the template (its ``public`` schema first on the search
    path), then checked as a schema build is (:func:`shoal.pg.verify.check_database`):
    nothing created in the control database ``control`` (where a stray connection
    without a database name lands), something built in the template. Its shape."""
    if target.setup is None:
        return None
    url = conninfo.with_params(target.url, dbname=template)
    label = naming.connection_label(worker, namespace, "template")
    handle = DatabaseHandle(
        name=target.name,
        schema="public",
        search_path=("public",),
        label=label,
        base_url=url,
        export_env=target.export_env,
        scheme=target.scheme,
    )
    before = verify.outside(control)
    setups.run(target.setup, handle)
    # The template's own connection is closed before anyone clones it.
    with admin_connect(url, label) as conn:
        return verify.check_database(
            conn,
            template=template,
            elsewhere=control,
            elsewhere_name=conninfo.dbname(target.control_url),
            database=target.name,
            spec=target.setup.spec,
            before=before,
        )


@dataclass
class Provisioned:
    database: str  # the target's name
    name: str  # the worker database
    slot_wait_s: float
    create_s: float
    total_s: float
    start: float


class WorkerDatabases:
    """One worker's own database per target: ``test_<name>_<namespace>_<worker>``, cloned
    from the target's template (an empty database when it has no fingerprint).

    The lease (held until the last drop) and every CREATE and DROP inside a DDL slot, as
    for schemas. ``setup_of`` gives a target's setup in this process, for the rare case
    that a template must be built (again) here.
    """

    def __init__(
        self,
        targets: list[Target],
        namespace: str,
        worker: str,
        *,
        ddl_slots: int | str = "auto",
        connect_timeout: int = 5,
        project: str | None = None,
        setup_of: Callable[[Target], Target] | None = None,
    ) -> None:
        self.targets = targets
        self.namespace = namespace
        self.worker = worker
        self.ddl_slots = ddl_slots
        self.timeout = connect_timeout
        self.project = project
        self.setup_of = setup_of
        self.provisioned: list[Provisioned] = []
        self._leases: dict[str, Lease] = {}
        self._created: list[tuple[Target, str]] = []

    def name_of(self, target: Target) -> str:
        return naming.worker_database_name(conninfo.dbname(target.url), self.namespace, self.worker)

    def url_of(self, target: Target) -> str:
        return conninfo.with_params(target.url, dbname=self.name_of(target))

    def _lease(self, target: Target) -> Lease:
        lease = self._leases.get(target.cluster)
        if lease is None:
            slots: int | str = self.ddl_slots
            if slots == "auto" and target.lock_capacity:
                slots = slot_count("auto", target.lock_capacity, target.lock_footprint)
            lease = Lease.open(target.control_url, self.namespace, self.worker, slots, self.timeout)
            lease.keep_alive()
            self._leases[target.cluster] = lease
        return lease

    def _admin(self, target: Target) -> Conn:
        label = naming.admin_label(self.worker, self.namespace)
        return admin_connect(target.control_url, label, timeout=self.timeout)

    def prepare(self) -> None:
        """The leases, before anything is created (lease before create)."""
        for target in self.targets:
            self._lease(target)

    def provision(self) -> dict[str, str]:
        """Every target's worker database; target name → its URL. On any failure what was
        created is dropped again before the error propagates."""
        try:
            for target in self.targets:
                self.provisioned.append(self._provision_one(target))
        except BaseException:
            self.teardown(keep=False)
            raise
        return {t.name: self.url_of(t) for t in self.targets}

    def _provision_one(self, target: Target) -> Provisioned:
        start, started = time.time(), time.perf_counter()
        lease = self._lease(target)
        name = self.name_of(target)
        comment = schemas.owner_comment(self.namespace, self.worker)
        with self._admin(target) as conn:
            while True:
                if target.fingerprint is not None and not template_ready(conn, target.fingerprint):
                    # Gone since the run started (shoal pool clear): built again, once.
                    built = self.setup_of(target) if self.setup_of else target
                    build_template(
                        built,
                        target.fingerprint,
                        namespace=self.namespace,
                        lease=lease,
                        worker=self.worker,
                        project=self.project,
                        timeout=self.timeout,
                    )
                with lease.ddl_slot(self.worker) as waited:
                    mark = time.perf_counter()
                    if target.fingerprint is None:
                        self._create(conn, target, name, comment, None)
                        break
                    key = naming.template_lock(target.fingerprint)
                    with _locked(conn, key, shared=True):
                        if template_ready(conn, target.fingerprint):
                            template = naming.template_database_name(target.fingerprint)
                            self._create(conn, target, name, comment, template)
                            break
        return Provisioned(
            database=target.name,
            name=name,
            slot_wait_s=waited,
            create_s=time.perf_counter() - mark,
            total_s=time.perf_counter() - started,
            start=start,
        )

    def _create(
        self, conn: Conn, target: Target, name: str, comment: str, template: str | None
    ) -> None:
        # A leftover of this name is a crashed worker of this very namespace.
        drop_database(conn, name, force=target.server_version >= FORCE_SINCE)
        self._created.append((target, name))
        create_database(conn, name, comment, template=template)

    def teardown(self, *, keep: bool) -> list[str]:
        """Drop this worker's databases (or keep them) and close the leases; problems."""
        problems: list[str] = []
        try:
            if not keep:
                for target, name in self._created:
                    try:
                        with self._lease(target).ddl_slot(self.worker), self._admin(target) as c:
                            drop_database(c, name, force=target.server_version >= FORCE_SINCE)
                    except (ShoalError, psycopg.Error) as exc:
                        problems.append(
                            f"{target.name}: dropping database {name} failed: {first_line(exc)}"
                        )
                self._created.clear()
        finally:
            for lease in self._leases.values():
                lease.close()
            self._leases.clear()
        return problems


def clear_templates(
    control_url: str,
    *,
    namespace: str,
    live: set[str],
    complete: bool,
    project: str | None,
    ddl_slots: int | str,
    timeout: int,
) -> tuple[int, int]:
    """Drop the project's template databases on one server (``shoal pool clear``):
    (dropped, left). Left: a template being cloned or built (its lock is held), one whose
    builder is live, and everything while some server did not answer."""
    dropped = left = 0
    label = naming.connection_label(naming.MAIN_WORKER, namespace, "poolctl")
    with admin_connect(control_url, label, timeout=timeout) as conn:
        found = [t for t in templates(conn) if t.state is not None and t.project == project]
        if not found:
            return 0, 0
        lease = Lease.open(control_url, namespace, "pool", ddl_slots, timeout)
        try:
            for template in found:
                building = template.state == "building" and template.namespace in live
                if not complete or building:
                    left += 1
                    continue
                try:
                    if drop_template(conn, template, lease):
                        dropped += 1
                    else:
                        left += 1
                except psycopg.Error:
                    left += 1
        finally:
            lease.close()
    return dropped, left


def drop_template(conn: Conn, template: Template, lease: Lease) -> bool:
    """Drop one template database inside a DDL slot, ``conn`` on the server's control
    database; False, dropping nothing, when it is being cloned from or built (its
    per-fingerprint lock is held): a try, so a drop never queues behind a clone."""
    key = naming.template_lock(template.fingerprint)
    row = conn.execute(TRY_LOCK, key).fetchone()
    if not (row and row[0]):
        return False
    try:
        with lease.ddl_slot(naming.MAIN_WORKER):
            drop_database(conn, template.name, force=False)
    finally:
        if not conn.closed and not conn.broken:
            with suppress(psycopg.Error):
                conn.execute(UNLOCK, key)
    return True
