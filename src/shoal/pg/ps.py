"""Every shoal namespace on the configured servers: its schemas, owners, and whether it lives.

A namespace shows up through its worker schemas (listed in every configured database)
or through a live label in ``pg_stat_activity``. Liveness comes from the same probe the
sweep trusts; when any cluster cannot be reached, a namespace not seen alive elsewhere
is "unknown", never "dead": its run may hold its lease on the server that did not
answer, and the sweep would leave it alone for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg

from shoal import conninfo, naming
from shoal.errors import ServerUnreachable, first_line
from shoal.pg import databases, pool, schemas
from shoal.pg.connect import admin_connect
from shoal.pg.live import ClusterLiveness, probe_clusters

Status = Literal["live", "dead", "unknown"]
_STATUS_ORDER: dict[Status, int] = {"live": 0, "unknown": 1, "dead": 2}


@dataclass(frozen=True)
class Owner:
    """Who created a worker schema, from its owner comment."""

    host: str | None
    pid: int | None
    created: datetime | None


@dataclass(frozen=True)
class WorkerSchema:
    database: str  # the configured name
    namespace: str
    worker: str
    owner: Owner | None
    to_drop: bool = False  # renamed by its worker for the reaper to drop


@dataclass
class DatabaseListing:
    name: str
    url: str  # masked
    cluster: str
    error: str | None = None
    schemas: list[WorkerSchema] = field(default_factory=list)
    pool: list[pool.PoolSchema] = field(default_factory=list)

    @property
    def listed(self) -> bool:
        return self.error is None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "cluster": self.cluster,
            "listed": self.listed,
            "error": self.error,
        }


@dataclass(frozen=True)
class NamespaceStatus:
    namespace: str
    status: Status
    created: datetime | None  # the earliest of its schemas'
    owners: tuple[tuple[str | None, int | None], ...]  # (host, pid), one per creating process
    workers: tuple[str, ...]
    databases: tuple[str, ...]
    lease_holders: tuple[str, ...]
    to_drop: int = 0  # of its schemas, how many are renamed for dropping

    def age_s(self, now: datetime) -> float | None:
        return None if self.created is None else max(0.0, (now - self.created).total_seconds())

    def as_json(self, now: datetime) -> dict[str, Any]:
        age = self.age_s(now)
        return {
            "namespace": self.namespace,
            "status": self.status,
            "created": None if self.created is None else self.created.isoformat(),
            "age_s": None if age is None else round(age, 1),
            "owners": [{"host": host, "pid": pid} for host, pid in self.owners],
            "workers": list(self.workers),
            "databases": list(self.databases),
            "lease_holders": list(self.lease_holders),
            "to_drop": self.to_drop,
        }


@dataclass
class PsResult:
    checked_at: datetime
    clusters: list[ClusterLiveness]
    databases: list[DatabaseListing]
    namespaces: list[NamespaceStatus]
    pool: list[pool.PoolCount] = field(default_factory=list)
    # Workers' own databases (Django's database mode); ``database`` is the database's name.
    worker_databases: list[WorkerSchema] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every cluster answered and every database was listed."""
        return all(c.reachable for c in self.clusters) and all(d.listed for d in self.databases)

    def as_json(self) -> dict[str, Any]:
        return {
            "checked_at": self.checked_at.isoformat(),
            "clusters": [
                {"cluster": c.cluster, "url": c.url, "reachable": c.reachable, "error": c.error}
                for c in self.clusters
            ],
            "databases": [d.as_json() for d in self.databases],
            "namespaces": [n.as_json(self.checked_at) for n in self.namespaces],
            "pool": [p.as_json() for p in self.pool],
            "worker_databases": [
                {"database": d.database, "namespace": d.namespace, "worker": d.worker}
                for d in self.worker_databases
            ],
        }


def parse_owner(comment: str | None, namespace: str) -> Owner | None:
    """The owner comment's host, pid and creation time; None when it is not shoal's.

    A comment naming another namespace is not this schema's owner (the sweep reads it the
    same way), and fields of the wrong type count as unknown rather than failing.
    """
    data = schemas.parse_owner_comment(comment)
    if data is None or data.get("namespace") != namespace:
        return None
    host, pid = data.get("host"), data.get("pid")
    return Owner(
        host=host if isinstance(host, str) else None,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        created=schemas.created_at(data),
    )


def worker_schemas(database: str, listed: Iterable[tuple[str, str | None]]) -> list[WorkerSchema]:
    """The worker schemas among ``(name, comment)`` pairs, those renamed for dropping
    included; other names are not shoal's."""
    found = []
    for name, comment in listed:
        to_drop = naming.parse_to_drop(name)
        parsed = to_drop or naming.parse_schema(name)
        if parsed is not None:
            owner = parse_owner(comment, parsed.namespace)
            found.append(
                WorkerSchema(
                    database, parsed.namespace, parsed.worker, owner, to_drop=to_drop is not None
                )
            )
    return found


def _worker_key(worker: str) -> tuple[int, str]:
    number = naming.worker_number(worker)
    return (-1 if number is None else number, worker)


def summarise(
    found: Iterable[WorkerSchema], clusters: Iterable[ClusterLiveness]
) -> list[NamespaceStatus]:
    """One status per namespace seen in a schema or a live label. Pure."""
    probes = list(clusters)
    live = set().union(*(c.live for c in probes))
    complete = all(c.reachable for c in probes)
    holders: dict[str, set[str]] = {}
    for probe in probes:
        for namespace, names in probe.lease_holders.items():
            holders.setdefault(namespace, set()).update(names)
    by_namespace: dict[str, list[WorkerSchema]] = {namespace: [] for namespace in live}
    for schema in found:
        by_namespace.setdefault(schema.namespace, []).append(schema)
    statuses = []
    for namespace, found_schemas in by_namespace.items():
        owners = [s.owner for s in found_schemas if s.owner is not None]
        created = [o.created for o in owners if o.created is not None]
        status: Status = "live" if namespace in live else "dead" if complete else "unknown"
        statuses.append(
            NamespaceStatus(
                namespace=namespace,
                status=status,
                created=min(created) if created else None,
                owners=tuple(sorted({(o.host, o.pid) for o in owners}, key=_owner_key)),
                workers=tuple(sorted({s.worker for s in found_schemas}, key=_worker_key)),
                databases=tuple(sorted({s.database for s in found_schemas})),
                lease_holders=tuple(sorted(holders.get(namespace, set()))),
                to_drop=sum(s.to_drop for s in found_schemas),
            )
        )
    return sorted(statuses, key=lambda n: (_STATUS_ORDER[n.status], _created_key(n), n.namespace))


def _owner_key(owner: tuple[str | None, int | None]) -> tuple[str, int]:
    return (owner[0] or "", -1 if owner[1] is None else owner[1])


def _created_key(status: NamespaceStatus) -> float:
    # Oldest first; namespaces of unknown age (live labels without schemas) last.
    return float("inf") if status.created is None else status.created.timestamp()


def list_database(name: str, url: str, timeout: int) -> DatabaseListing:
    """The worker schemas in one configured database; an error instead when it cannot be read."""
    listing = DatabaseListing(name=name, url=conninfo.mask(url), cluster=conninfo.cluster_key(url))
    try:
        with admin_connect(url, naming.tool_label("ps"), timeout=timeout) as conn:
            listed = schemas.list_schemas(conn) + schemas.list_schemas(conn, naming.TO_DROP_LIKE)
            listing.schemas = worker_schemas(name, listed)
            listing.pool = pool.list_pool(conn, name)
    except ServerUnreachable as exc:
        listing.error = str(exc)
    except psycopg.Error as exc:
        listing.error = first_line(exc)
    return listing


def list_worker_databases(
    urls: Mapping[str, str], down: set[str], timeout: int
) -> list[WorkerSchema]:
    """The workers' own databases on every server of ``urls`` that answered, each server
    listed once (through the first of its URLs that can be read)."""
    found: list[WorkerSchema] = []
    listed: set[str] = set()
    for url in urls.values():
        cluster = conninfo.cluster_key(url)
        if cluster in down or cluster in listed:
            continue
        try:
            with admin_connect(url, naming.tool_label("ps"), timeout=timeout) as conn:
                rows = databases.worker_databases(conn)
        except (ServerUnreachable, psycopg.Error):
            continue  # the database's own listing says why
        listed.add(cluster)
        for name, comment in rows:
            parsed = naming.parse_worker_database(name)
            if parsed is not None:
                owner = parse_owner(comment, parsed.namespace)
                found.append(WorkerSchema(name, parsed.namespace, parsed.worker, owner))
    return found


def ps(urls: Mapping[str, str], timeout: int, now: datetime) -> PsResult:
    """Namespaces across the configured databases ``urls`` (name → URL)."""
    clusters = probe_clusters(list(urls.values()), timeout)
    down = {c.cluster for c in clusters if not c.reachable}
    databases = []
    for name, url in urls.items():
        cluster = conninfo.cluster_key(url)
        if cluster in down:
            # Its cluster already failed within the timeout: say so instead of waiting again.
            error = next(c.error for c in clusters if c.cluster == cluster)
            databases.append(
                DatabaseListing(name, conninfo.mask(url), cluster, error=error or "unreachable")
            )
        else:
            databases.append(list_database(name, url, timeout))
    found = [schema for listing in databases for schema in listing.schemas]
    own = list_worker_databases(urls, down, timeout)
    found += own
    return PsResult(
        worker_databases=own,
        checked_at=now,
        clusters=clusters,
        databases=databases,
        namespaces=summarise(found, clusters),
        pool=pool.counts(entry for listing in databases for entry in listing.pool),
    )
