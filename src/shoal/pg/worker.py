"""One worker's slice of every configured database: provision, export, hand out, drop."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from shoal import conninfo, naming
from shoal.errors import ShoalError
from shoal.pg import pool, schemas
from shoal.pg.connect import admin_connect, bound_connect, bound_url
from shoal.pg.fingerprint import target_fingerprint
from shoal.pg.setup import run_setup, sqlalchemy_url
from shoal.pg.slots import Lease
from shoal.pg.targets import Target

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# The server splits PGOPTIONS on unescaped whitespace; "\ " is part of a value.
_SEARCH_PATH_OPTION = re.compile(r"(?:-c\s*|--)search_path=(?:\\.|\S)*")


@dataclass(frozen=True)
class DatabaseHandle:
    """A worker's view of one configured database (what the ``shoal_databases`` fixture maps)."""

    name: str
    schema: str
    search_path: tuple[str, ...]
    label: str
    base_url: str = field(repr=False)

    @property
    def url(self) -> str:
        """libpq URL bound to the worker schema and labelled (password included)."""
        return bound_url(self.base_url, self.search_path, self.label)

    @property
    def sqlalchemy_url(self) -> str:
        return sqlalchemy_url(self.url)

    def connect(self, suffix: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection bound to the worker schema, labelled (``suffix`` appended)."""
        parsed = naming.parse_label(self.label)
        assert parsed is not None
        label = naming.connection_label(parsed.worker, parsed.namespace, suffix)
        return bound_connect(self.base_url, self.search_path, label, **kwargs)

    def create_engine(self, **kwargs: Any) -> Engine:
        """A SQLAlchemy engine (psycopg 3 driver) bound to the worker schema."""
        from sqlalchemy import create_engine

        return create_engine(self.sqlalchemy_url, **kwargs)


@dataclass
class Timing:
    database: str
    slot_wait_s: float = 0.0
    create_s: float = 0.0
    setup_s: float = 0.0
    total_s: float = 0.0
    claimed: bool = False  # taken ready-made from the warm pool (create_s is the claim)


def pgoptions(existing: str | None, search_path: tuple[str, ...]) -> str:
    """PGOPTIONS with the search path replaced and every other option kept."""
    kept = _SEARCH_PATH_OPTION.sub("", existing or "").strip()
    ours = conninfo.search_path_option(search_path).replace(" ", "")
    return f"{kept} {ours}".strip()


class WorkerSchemas:
    """The schemas ``test_<namespace>_<worker>`` of one worker in every target database."""

    def __init__(
        self,
        targets: list[Target],
        namespace: str,
        worker: str,
        *,
        tail: tuple[str, ...] = (),
        ddl_slots: int | str = "auto",
        connect_timeout: int = 5,
        pool: bool = False,
    ) -> None:
        self.targets = targets
        self.namespace = namespace
        self.worker = worker
        self.schema = naming.schema_name(namespace, worker)
        self.label = naming.connection_label(worker, namespace)
        self.configured_tail = tail
        self.ddl_slots = ddl_slots
        self.timeout = connect_timeout
        self.search_path: tuple[str, ...] = (self.schema, *tail)
        self.timings: list[Timing] = []
        self._leases: dict[str, Lease] = {}
        self._created: list[Target] = []
        self.pool = pool
        self._fingerprints: dict[str, str | None] | None = None
        self._claim_conns: dict[str, psycopg.Connection[tuple[object, ...]]] = {}
        self._candidates: dict[str, list[str]] = {}

    def _admin(self, target: Target) -> psycopg.Connection[Any]:
        return admin_connect(target.url, self.label + "_admin", timeout=self.timeout)

    def check(self) -> tuple[str, ...]:
        """Create the configured extensions and verify the search-path tail; create nothing else.

        The tail (configured schemas plus wherever the extensions live) goes into every
        libpq connection through PGOPTIONS, so it is checked in every database.
        """
        extension_homes: list[str] = []
        for target in self.targets:
            with self._admin(target) as conn:
                extension_homes += schemas.ensure_extensions(conn, target.extensions)
        tail = tuple(dict.fromkeys([*self.configured_tail, *extension_homes]))
        for target in self.targets:
            with self._admin(target) as conn:
                schemas.check_tail(conn, tail, target.name)
        self.search_path = (self.schema, *tail)
        return tail

    def fingerprints(self) -> dict[str, str | None]:
        """Database name → setup fingerprint (None: no pool), computed once.

        Rendering a large metadata's DDL takes a few hundred milliseconds, so a worker
        computes this while it prepares, not on the clock of its first provisioning.
        """
        if self._fingerprints is None:
            self._fingerprints = {
                t.name: target_fingerprint(t, self.configured_tail) if self.pool else None
                for t in self.targets
            }
        return self._fingerprints

    def prepare_pool(self) -> None:
        """Do now, off the provisioning clock, what a claim needs: the fingerprints, the
        lease (lease before create holds: it is simply taken earlier) and a connection to
        every database with a pool. Then a claim is a query and a rename.
        """
        for target in self.targets:
            if self.fingerprints().get(target.name) is None:
                continue
            self._lease(target)
            if target.name not in self._claim_conns:
                conn = self._admin(target)
                self._claim_conns[target.name] = conn
                # Also warms the new backend for the claim: its catalog caches, and
                # PL/pgSQL, which a backend loads on first use. Best effort: a claim
                # that cannot work falls back to building in place.
                try:
                    self._candidates[target.name] = pool.candidate_names(
                        conn, str(self.fingerprints()[target.name])
                    )
                    conn.execute("DO $$BEGIN NULL; END$$")
                except psycopg.Error:
                    pass

    def environment(self, current: Mapping[str, str]) -> dict[str, str]:
        """What to export so unmodified libpq clients land in this worker's schema."""
        env = {
            "PGOPTIONS": pgoptions(current.get("PGOPTIONS"), self.search_path),
            "PGAPPNAME": self.label,
        }
        for handle in self.handles().values():
            target = next(t for t in self.targets if t.name == handle.name)
            for variable in target.export_env:
                env[variable] = handle.url
        return env

    def handles(self) -> dict[str, DatabaseHandle]:
        return {
            t.name: DatabaseHandle(
                name=t.name,
                schema=self.schema,
                search_path=self.search_path,
                label=self.label,
                base_url=t.url,
            )
            for t in self.targets
        }

    def provision(self) -> dict[str, DatabaseHandle]:
        """Create the worker schema in every database and run its setup, inside DDL slots.

        On any failure, whatever was created is dropped again before the error propagates.
        """
        try:
            for target in self.targets:
                self.timings.append(self._provision_one(target))
        except BaseException:
            self.teardown(keep=False)
            raise
        return self.handles()

    def _lease(self, target: Target) -> Lease:
        lease = self._leases.get(target.cluster)
        if lease is None:
            lease = Lease.open(
                target.control_url, self.namespace, self.worker, self.ddl_slots, self.timeout
            )
            self._leases[target.cluster] = lease
        return lease

    def _provision_one(self, target: Target) -> Timing:
        timing = Timing(database=target.name)
        started = time.perf_counter()
        lease = self._lease(target)  # lease before create (DESIGN invariant 4)
        fingerprint = self.fingerprints().get(target.name)
        if fingerprint is not None and self._claim(target, fingerprint, timing):
            timing.total_s = time.perf_counter() - started
            return timing
        with lease.ddl_slot(self.worker) as waited, self._admin(target) as conn:
            timing.slot_wait_s = waited
            mark = time.perf_counter()
            self._created.append(target)
            schemas.create_schema(
                conn, self.schema, schemas.owner_comment(self.namespace, self.worker)
            )
            timing.create_s = time.perf_counter() - mark
            if target.setup is not None:
                mark = time.perf_counter()
                handle = self.handles()[target.name]
                run_setup(target.setup, handle.url, lambda: handle.connect("setup"), target.name)
                timing.setup_s = time.perf_counter() - mark
        timing.total_s = time.perf_counter() - started
        return timing

    def _claim(self, target: Target, fingerprint: str, timing: Timing) -> bool:
        """Take a ready schema from the warm pool as this worker's; False when none is left.

        No DDL slot: a claim is a rename, a one-row catalog update that takes none of the
        thousands of locks a build or a drop takes, and waiting behind builds would cost
        the very seconds the pool saves.
        """
        mark = time.perf_counter()
        conn = self._claim_conns.pop(target.name, None) or self._admin(target)
        try:
            with conn:
                taken = pool.claim(
                    conn,
                    fingerprint,
                    self.schema,
                    lambda name: schemas.owner_comment(self.namespace, self.worker, pooled=name),
                    self._candidates.pop(target.name, None),
                )
        except psycopg.Error:
            # The pool is an optimisation: on any trouble, build in place (which first
            # drops a schema of this worker's name, should the claim have gone through).
            return False
        if taken is None:
            return False
        self._created.append(target)
        timing.claimed = True
        timing.create_s = time.perf_counter() - mark
        return True

    def teardown(self, *, keep: bool) -> list[str]:
        """Drop this worker's schemas (or keep them) and close the leases; return problems."""
        problems: list[str] = []
        try:
            if not keep:
                for target in self._created:
                    try:
                        with self._lease(target).ddl_slot(self.worker), self._admin(target) as conn:
                            schemas.drop_schema_chunked(conn, self.schema)
                    except (ShoalError, psycopg.Error) as exc:
                        problems.append(f"{target.name}: dropping {self.schema} failed: {exc}")
                self._created.clear()
        finally:
            for conn in self._claim_conns.values():
                conn.close()
            self._claim_conns.clear()
            for lease in self._leases.values():
                lease.close()
            self._leases.clear()
        return problems
