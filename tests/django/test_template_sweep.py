"""Database mode's template databases under `shoal sweep`: the project's templates of a
fingerprint its migrations no longer have are dropped (never while one is cloned from),
the current ones and other projects' stay, and nothing goes when the current
fingerprints cannot be computed."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from shoal import naming
from shoal.pg import databases
from shoal.pg.sweep import Found, decide_database, decide_template
from tests.conftest import Server
from tests.django.project import DjangoProject, make
from tests.plugin import inner

LONG_AGO = datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture
def shop_db(tmp_path: Path, server: Server) -> Iterator[DjangoProject]:
    project = make(tmp_path, server, database_mode=True)
    yield project
    project.drop_databases()


def template_comment(fingerprint: str, project: str, state: str = "ready") -> str:
    """A template's comment as a run an hour ago would have left it."""
    data = json.loads(
        databases.template_comment(
            "ready" if state == "ready" else "building", fingerprint, "p1t1r00000000", project
        )
    )
    data["created"] = LONG_AGO.isoformat(timespec="seconds")
    return json.dumps(data, sort_keys=True)


def fake_template(server: Server, project: str) -> tuple[str, str]:
    """An empty template database of a made-up fingerprint: (name, fingerprint)."""
    fingerprint = secrets.token_hex(32)
    name = naming.template_database_name(fingerprint)
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(template_comment(fingerprint, project))
            )
        )
    return name, fingerprint


def drop(server: Server, *names: str) -> None:
    with server.connect() as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def sweep(shop: DjangoProject, **env: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "sweep", "--grace", "0", "--json"],
        cwd=shop.root,
        env=inner.clean_env(**shop.env, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.startswith("{"), done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def outcome_of(result: dict[str, Any], name: str) -> str:
    """What the sweep did with database ``name``: "dropped", or the reason it was kept."""
    for outcome in result["databases"].values():
        if name in outcome.get("dropped", []):
            return "dropped"
        for skipped in outcome["skipped"]:
            if skipped["schema"] == name:
                return str(skipped["reason"])
        for failed in outcome["failed"]:
            if failed["schema"] == name:
                return f"failed: {failed['error']}"
    return "not listed"


def existing(server: Server, *names: str) -> set[str]:
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (list(names),)
        ).fetchall()
    return {str(r[0]) for r in rows}


def test_sweep_drops_the_projects_stale_templates_only(shop_db: DjangoProject) -> None:
    shop = shop_db
    run = inner.run(shop.root, "-n", "0", "-k", "entries", env=shop.env)
    assert run.returncode == 0, run.output[-3000:]
    current = set(shop.templates())
    assert len(current) == 2, current
    stale, stale_fp = fake_template(shop.server, shop.project)
    foreign, _ = fake_template(shop.server, secrets.token_hex(6))
    try:
        # Settings that do not import here: the current fingerprints are unknown.
        unknown = sweep(shop, DJANGO_SETTINGS_MODULE="shop.no_such_settings")
        assert outcome_of(unknown, stale) == "pool_fingerprint_unknown", unknown
        assert existing(shop.server, stale, foreign, *current) == {stale, foreign, *current}

        # Being cloned from (a clone holds the template's lock shared): left alone.
        with shop.server.connect("postgres") as holder:
            holder.execute(databases.LOCK_SHARED, naming.template_lock(stale_fp))
            busy = sweep(shop)
            assert outcome_of(busy, stale) == "template_in_use", busy
            assert stale in existing(shop.server, stale)

        swept = sweep(shop)
        assert outcome_of(swept, stale) == "dropped", swept
        assert {outcome_of(swept, name) for name in current} == {"pool_current"}, swept
        assert outcome_of(swept, foreign) == "not listed", swept  # another project's business
        assert existing(shop.server, stale, foreign, *current) == {foreign, *current}
    finally:
        drop(shop.server, stale, foreign)


def found(fingerprint: str, project: str, state: str = "ready") -> Found:
    name = naming.template_database_name(fingerprint)
    return Found("django:default", name, template_comment(fingerprint, project, state), "template")


def test_decide_template_is_fail_closed() -> None:
    now = datetime.now(UTC)
    old, new, mine = secrets.token_hex(32), secrets.token_hex(32), secrets.token_hex(6)
    current = frozenset({new})

    def reason(entry: Found, **kw: Any) -> str | None:
        args: dict[str, Any] = {"live": set(), "detection_complete": True, "now": now}
        args.update(grace_s=0, current=current, project=mine)
        args.update(kw)
        decision = decide_template(entry, **args)
        return None if decision.drop else decision.reason

    assert reason(found(old, mine)) is None
    assert reason(found(new, mine)) == "pool_current"
    assert reason(found(old, mine), current=None) == "pool_fingerprint_unknown"
    assert reason(found(old, mine), detection_complete=False) == "active_detection_incomplete"
    assert reason(found(old, mine), grace_s=7200) == "too_young"
    assert reason(found(old, "0123456789ab")) == "pool_foreign"
    assert reason(found(old, "0123456789ab"), foreign_after_s=60) is None  # unused an hour
    # A half-built template goes once its builder is gone, whatever its fingerprint.
    assert reason(found(new, mine, "building")) is None
    assert reason(found(new, mine, "building"), live={"p1t1r00000000"}) == "live"
    # A comment that is not shoal's, or a name that is not a template's: kept.
    name = naming.template_database_name(old)
    assert reason(Found("d", name, None, "template")) == "not_shoal"
    assert reason(Found("d", "shoaltpl_nothex", None, "template")) == "unparseable"


def test_an_uncommented_worker_database_is_kept() -> None:
    """A worker killed between CREATE DATABASE and its COMMENT leaves a database with no
    owner record. Its name alone is no proof it is shoal's: ``test_<name>_<ns>_<worker>``
    is also how Django names its own test databases, and ``test_shop_eu_main`` parses as
    name ``shop``, namespace ``eu``, worker ``main``. Kept, as a schema without an owner
    comment is."""
    now = datetime.now(UTC)
    dead = "p1t1r00000000"
    for name in (naming.worker_database_name("test_shop", dead, "gw0"), "test_shop_eu_main"):
        assert naming.parse_worker_database(name) is not None
        found = Found("django:default", name, None, "database")
        decision = decide_database(found, set(), True, now, 0)
        assert (decision.drop, decision.reason) == (False, "not_shoal"), name
