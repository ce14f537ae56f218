"""Which namespaces are alive, according to every cluster a run could use.

A namespace is live when any connection in ``pg_stat_activity`` carries its label: a
lease (held from before a run's first CREATE until after its last DROP) or any
labelled worker connection. Cleanup trusts this set only when *every* cluster
answered: a run may hold its lease on a cluster we could not reach.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal import naming
from shoal.errors import ServerUnreachable
from shoal.pg import conninfo
from shoal.pg.connect import admin_connect


@dataclass
class ClusterLiveness:
    cluster: str
    url: str  # masked
    reachable: bool
    error: str | None = None
    live: set[str] = field(default_factory=set)
    lease_holders: dict[str, list[str]] = field(default_factory=dict)  # namespace → holders


def probe_cluster(url: str, timeout: int) -> ClusterLiveness:
    """The live namespaces of the cluster ``url`` reaches (all its databases)."""
    result = ClusterLiveness(
        cluster=conninfo.cluster_key(url), url=conninfo.mask(url), reachable=False
    )
    try:
        conn = admin_connect(url, "shoal_sweep", timeout=timeout)
    except ServerUnreachable as exc:
        result.error = str(exc)
        return result
    with conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'pytest\\_%'"
        ).fetchall()
    result.reachable = True
    for (application_name,) in rows:
        label = naming.parse_label(str(application_name))
        if label is None:
            continue
        result.live.add(label.namespace)
        if label.is_lease:
            result.lease_holders.setdefault(label.namespace, []).append(label.suffix or "?")
    return result


def probe_clusters(urls: list[str], timeout: int) -> list[ClusterLiveness]:
    """One probe per distinct cluster among ``urls``."""
    seen: dict[str, str] = {}
    for url in urls:
        seen.setdefault(conninfo.cluster_key(url), url)
    return [probe_cluster(url, timeout) for url in seen.values()]
