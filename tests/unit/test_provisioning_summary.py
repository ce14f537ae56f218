"""The provisioning line at the end of a run names what it provisioned: schemas, whole
databases (Django's database mode), or both."""

from __future__ import annotations

from shoal.pg.worker import Timing
from shoal.plugin import provisioning_summary


def test_schemas_databases_and_both() -> None:
    schema = Timing(database="app", total_s=0.5)
    database = Timing(database="default", total_s=0.25, kind="database")
    assert ": 1 schema provisioned, slowest 0.50s (app: " in provisioning_summary("ns", [schema])
    assert ": 4 databases provisioned, " in provisioning_summary("ns", [database] * 4)
    assert ": 1 database provisioned, " in provisioning_summary("ns", [database])
    both = provisioning_summary("ns", [schema, schema, database])
    assert ": 2 schemas and 1 database provisioned, slowest 0.50s" in both
