"""Which namespaces are alive, according to every cluster a run could use.

A namespace is live when any connection in ``pg_stat_activity`` carries its label: a
lease (held from before a run's first CREATE until after its last DROP) or any
labelled worker connection. Cleanup trusts this set only when *every* cluster
answered: a run may hold its lease on a cluster we could not reach.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psutil
import psycopg

from shoal import conninfo, naming
from shoal.errors import ServerUnreachable, first_line
from shoal.pg.connect import admin_connect

LABELS = "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s"
SERVER_STARTED = "SELECT pg_postmaster_start_time()"


@dataclass
class ClusterLiveness:
    cluster: str
    url: str  # masked
    reachable: bool
    error: str | None = None
    live: set[str] = field(default_factory=set)
    lease_holders: dict[str, list[str]] = field(default_factory=dict)  # namespace → holders
    # When the server last started: every lease is younger than that.
    server_started: datetime | None = None


def probe_cluster(urls: list[str], timeout: int) -> ClusterLiveness:
    """The live namespaces of the cluster ``urls`` reach (all its databases).

    Any of the cluster's databases will do: pg_stat_activity is cluster-wide.
    """
    result = ClusterLiveness(
        cluster=conninfo.cluster_key(urls[0]), url=conninfo.mask(urls[0]), reachable=False
    )
    for url in urls:
        try:
            with admin_connect(url, naming.tool_label("sweep"), timeout=timeout) as conn:
                rows = conn.execute(LABELS, (naming.LABEL_LIKE,)).fetchall()
                started = conn.execute(SERVER_STARTED).fetchone()
        except (ServerUnreachable, psycopg.Error) as exc:
            result.error = first_line(exc)
            continue
        result.reachable, result.error, result.url = True, None, conninfo.mask(url)
        result.server_started = started[0] if started and isinstance(started[0], datetime) else None
        break
    else:
        return result
    for (application_name,) in rows:
        label = naming.parse_label(str(application_name))
        if label is None:
            continue
        result.live.add(label.namespace)
        if label.is_lease:
            result.lease_holders.setdefault(label.namespace, []).append(label.suffix or "?")
    return result


def owner_alive(owner: Mapping[str, Any]) -> bool | None:
    """Whether the process an owner comment names still runs: True or False on this host
    (pid and start time, so a reused pid does not count), None for another host."""
    if owner.get("host") != socket.gethostname():
        return None
    pid, started = owner.get("pid"), owner.get("started")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return None
    try:
        process = psutil.Process(pid)
        # A killed process its parent has not reaped yet (or that a container's init
        # never reaps) still has its pid and start time, and is dead all the same.
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if isinstance(started, int | float):
            return abs(process.create_time() - float(started)) < 1.0
        return process.is_running()  # an older comment without a start time
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return None  # it exists, but cannot be looked at (another user's): unknown


def probe_clusters(urls: list[str], timeout: int) -> list[ClusterLiveness]:
    """One probe per distinct cluster among ``urls``."""
    by_cluster: dict[str, list[str]] = {}
    for url in urls:
        by_cluster.setdefault(conninfo.cluster_key(url), []).append(url)
    return [probe_cluster(group, timeout) for group in by_cluster.values()]
