"""One worker's slice of every configured database: provision, hand out, drop."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg

from shoal import naming, setups
from shoal.binding import DatabaseHandle, environment
from shoal.errors import ShoalError, first_line
from shoal.pg import pool, schemas, verify
from shoal.pg.connect import admin_connect
from shoal.pg.pool import Take
from shoal.pg.slots import Lease
from shoal.plan import RunPlan, Target
from shoal.setups import Setup

Conn = psycopg.Connection[tuple[Any, ...]]


@dataclass
class Timing:
    database: str
    slot_wait_s: float = 0.0
    create_s: float = 0.0
    setup_s: float = 0.0
    total_s: float = 0.0
    claimed: bool = False  # taken ready-made from the warm pool (create_s is the claim)
    start: float | None = None  # epoch seconds when provisioning began
    kind: Literal["schema", "database"] = "schema"  # "database": a whole worker database


class WorkerSchemas:
    """The schemas ``test_<namespace>_<worker>`` of one worker in every target database.

    ``tail`` is the search path after the worker schema. Built from a plan
    (:meth:`from_plan`) it is the plan's checked tail; built by hand, :meth:`check`
    creates the extensions and adds their schemas to it.
    """

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
        root: Path | None = None,
        sources: Mapping[str, str] | None = None,
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
        self.pool = pool
        self.root = root or Path.cwd()
        self._sources = dict(sources or {})
        self._leases: dict[str, Lease] = {}
        self._created: list[Target] = []
        self._fingerprints: dict[str, str | None] | None = None
        self._conns: dict[str, Conn] = {}
        self._ahead: dict[str, Take | None] = {}  # claims composed while preparing
        # Where teardown renamed schemas for the reaper: database name, URL, control URL.
        self.to_drop: list[dict[str, str]] = []

    @classmethod
    def from_plan(cls, plan: RunPlan, worker: str, targets: list[Target]) -> WorkerSchemas:
        """The worker's schemas as the plan describes them (its tail is already checked)."""
        schemas_ = cls(
            targets,
            plan.namespace,
            worker,
            tail=plan.configured_tail,
            ddl_slots=plan.ddl_slots,
            connect_timeout=plan.connect_timeout,
            pool=plan.pool_size > 0,
            root=plan.root,
            sources=plan.sources,
        )
        schemas_.search_path = (schemas_.schema, *plan.tail)
        return schemas_

    def _admin(self, target: Target) -> Conn:
        return admin_connect(
            target.url, naming.admin_label(self.worker, self.namespace), timeout=self.timeout
        )

    def check(self) -> tuple[str, ...]:
        """Create the configured extensions and verify the search-path tail; create nothing else."""
        tail = schemas.check_databases(
            [(t.name, t.url, t.extensions) for t in self.targets],
            self.configured_tail,
            self.timeout,
        )
        self.search_path = (self.schema, *tail)
        return tail

    def fingerprints(self) -> dict[str, str | None]:
        """Database name → setup fingerprint (None: no pool), as the plan computed it.

        A target built by hand (no plan) has its fingerprint computed here, once.
        """
        if self._fingerprints is None:
            self._fingerprints = {
                t.name: (t.fingerprint or self._fingerprint(t)) if self.pool else None
                for t in self.targets
            }
        return self._fingerprints

    def _fingerprint(self, target: Target) -> str | None:
        return setups.fingerprint(
            target.setup, tail=self.configured_tail, extensions=target.extensions
        )

    def setup_of(self, target: Target) -> Setup | None:
        """The target's setup, parsed in this process if the plan came from another."""
        if target.setup is not None or target.setup_spec is None:
            return target.setup
        key = f"databases.{target.name}.setup"
        source = self._sources.get(key, "the run plan")
        return setups.load(target.setup_spec, key=key, source=source, root=self.root)

    def prepare(self) -> None:
        """Do now, off the provisioning clock, what provisioning needs: the fingerprints,
        the lease (lease before create holds: it is simply taken earlier) and one
        connection to every database. Then a claim is a query and a rename.
        """
        for target in self.targets:
            self._lease(target)
            if target.name in self._conns:
                continue
            conn = self._admin(target)
            self._conns[target.name] = conn
            fingerprint = self.fingerprints().get(target.name)
            if fingerprint is None:
                continue
            # Best effort: a claim that cannot work falls back to building in place.
            try:
                ahead = pool.compose_claim(
                    conn, fingerprint, self.schema, self._owner_comment(pool.POOLED)
                )
            except psycopg.Error:
                continue
            self._ahead[target.name] = ahead
            pool.rehearse_claim(conn, fingerprint, self.schema, self._owner_comment("rehearsal"))

    def environment(self, current: Mapping[str, str]) -> dict[str, str]:
        """What to export so unmodified libpq clients land in this worker's schema."""
        return environment(self.handles(), current)

    def handles(self) -> dict[str, DatabaseHandle]:
        return {
            t.name: DatabaseHandle(
                name=t.name,
                schema=self.schema,
                search_path=self.search_path,
                label=self.label,
                base_url=t.url,
                export_env=t.export_env,
                scheme=t.scheme,
            )
            for t in self.targets
        }

    def provision(self) -> dict[str, DatabaseHandle]:
        """Create the worker schema in every database and run its setup, inside DDL slots.

        On any failure, whatever was created is dropped again before the error propagates.
        The connections stay open for teardown's renames: closed here, each would put a
        backend's exit on the server's CPU while other workers claim, and teardown would
        connect again, on the run's tail.
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
            slots: int | str = self.ddl_slots
            if slots == "auto" and target.lock_capacity:
                from shoal.pg.slots import slot_count

                # The heaviest setup of the cluster's databases decides.
                footprints = [t.lock_footprint for t in self.targets if t.cluster == target.cluster]
                known = [f for f in footprints if f]
                slots = slot_count("auto", target.lock_capacity, max(known) if known else None)
            lease = Lease.open(target.control_url, self.namespace, self.worker, slots, self.timeout)
            lease.keep_alive()  # held through the tests: seen live again after a restart
            self._leases[target.cluster] = lease
        return lease

    def _conn(self, target: Target) -> Conn:
        conn = self._conns.get(target.name)
        if conn is None or conn.closed or conn.broken:
            conn = self._conns[target.name] = self._admin(target)
        return conn

    def _provision_one(self, target: Target) -> Timing:
        timing = Timing(database=target.name, start=time.time())
        started = time.perf_counter()
        lease = self._lease(target)  # lease before create (DESIGN invariant 4)
        fingerprint = self.fingerprints().get(target.name)
        if fingerprint is not None and self._claim(target, fingerprint, timing):
            timing.total_s = time.perf_counter() - started
            return timing
        with lease.ddl_slot(self.worker) as waited:
            conn = self._conn(target)
            timing.slot_wait_s = waited
            mark = time.perf_counter()
            self._created.append(target)
            schemas.create_schema(
                conn, self.schema, schemas.owner_comment(self.namespace, self.worker)
            )
            timing.create_s = time.perf_counter() - mark
            setup = self.setup_of(target)
            if setup is not None:
                mark = time.perf_counter()
                before = verify.outside(conn)
                setups.run(setup, self.handles()[target.name])
                verify.check(
                    conn,
                    schema=self.schema,
                    database=target.name,
                    spec=setup.spec,
                    before=before,
                    expected=pool.recorded_shape(conn, fingerprint) if fingerprint else None,
                )
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
        try:
            taken = pool.claim(
                self._conn(target),
                fingerprint,
                self.schema,
                self._owner_comment,
                self._ahead.pop(target.name, None),
            )
        except psycopg.Error:
            # The pool is an optimisation: on any trouble, build in place (which first
            # drops a schema of this worker's name, should the claim have gone through).
            self._conns.pop(target.name).close()
            return False
        if taken is None:
            return False
        self._created.append(target)
        timing.claimed = True
        timing.create_s = time.perf_counter() - mark
        return True

    def _rename(self, target: Target) -> bool:
        """Rename the worker schema in ``target`` out of the way; False when it could not."""
        to_drop = naming.to_drop_name(self.namespace, self.worker, os.urandom(4).hex())
        try:
            self._lease(target).ensure()  # the rename happens inside the lease
            conn = self._conn(target)
            try:
                schemas.rename_for_drop(conn, self.schema, to_drop)
            except psycopg.OperationalError:
                if not conn.broken:
                    raise
                # The connection kept through the tests was dropped (a server restart,
                # an idle-session timeout): once more, on a new one.
                schemas.rename_for_drop(self._conn(target), self.schema, to_drop)
        except (ShoalError, psycopg.Error):
            return False
        self.to_drop.append(
            {"database": target.name, "url": target.url, "control_url": target.control_url}
        )
        return True

    def _owner_comment(self, pooled: str) -> str:
        """The owner comment of a schema this worker claimed from the pool schema ``pooled``."""
        return schemas.owner_comment(self.namespace, self.worker, pooled=pooled)

    def _close_conns(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def teardown(self, *, keep: bool, rename: bool = False) -> list[str]:
        """Drop this worker's schemas (or keep them) and close the leases; return problems.

        ``rename``: rename each schema to a to-drop name instead (milliseconds, inside the
        lease; no DDL slot, like a claim), leaving the drop to a reaper after the run.
        The databases concerned are in :attr:`to_drop`. A rename that fails falls back
        to the drop.
        """
        problems: list[str] = []
        try:
            if not keep:
                for target in self._created:
                    if rename and self._rename(target):
                        continue
                    try:
                        with self._lease(target).ddl_slot(self.worker):
                            schemas.drop_schema_chunked(self._conn(target), self.schema)
                    except (ShoalError, psycopg.Error) as exc:
                        problems.append(
                            f"{target.name}: dropping {self.schema} failed: {first_line(exc)}"
                        )
                self._created.clear()
        finally:
            self._close_conns()
            for lease in self._leases.values():
                lease.close()
            self._leases.clear()
        return problems
