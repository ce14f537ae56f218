"""Projects and tasks, through the app's own engines (``multitenant_app.db``): the code under
test connects with the URLs in its environment and knows nothing about shoal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from multitenant_app import db, services
from multitenant_app.models import Event, Project, Task
from sqlalchemy import func, select

from shoal import DatabaseHandle

SignUpFactory = Callable[..., services.SignUp]


def _project(tenant: str, org_id: int, key: str = "WEB") -> int:
    with db.session(tenant) as session:
        return services.create_project(session, org_id=org_id, key=key, name="Website").id


def _create_project(tenant: str, org_id: int, key: str) -> None:
    with db.session(tenant) as session:
        services.create_project(session, org_id=org_id, key=key, name="Nope")


def _count_projects(tenant: str) -> int:
    with db.session(tenant) as session:
        return session.scalar(select(func.count()).select_from(Project)) or 0


def _create_tasks(tenant: str, project_id: int, estimates: list[str]) -> None:
    """One unit of work: every task, or none."""
    with db.session(tenant) as session:
        for number, hours in enumerate(estimates):
            services.create_task(
                session, project_id=project_id, title=f"T{number}", estimate_hours=hours
            )


def _count(handle: DatabaseHandle, table: str) -> int:
    with handle.connect() as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(("region", "other"), [("eu", "tenant_us"), ("us", "tenant_eu")])
def test_tenant_data_lands_in_the_region_database(
    signup: SignUpFactory, shoal_databases: dict[str, DatabaseHandle], region: str, other: str
) -> None:
    org = signup(region)
    project_id = _project(org.tenant, org.org_id)
    with db.session(org.tenant) as session:
        services.create_task(session, project_id=project_id, title="Launch", estimate_hours=3)

    assert _count(shoal_databases[org.tenant], "tasks") == 1
    assert _count(shoal_databases[other], "tasks") == 0
    assert _count(shoal_databases[other], "projects") == 0


def test_project_keys_are_unique_per_org_only(signup: SignUpFactory) -> None:
    first, second = signup("eu"), signup("eu")
    _project(first.tenant, first.org_id, "web")
    _project(second.tenant, second.org_id, "WEB")
    with pytest.raises(services.Conflict), db.session(first.tenant) as session:
        services.create_project(session, org_id=first.org_id, key="Web", name="Again")
    with db.session(first.tenant) as session:
        keys = session.scalars(select(Project.key).order_by(Project.org_id)).all()
    assert keys == ["WEB", "WEB"]


def test_malformed_project_keys_are_refused(signup: SignUpFactory) -> None:
    org = signup("us")
    for key in ("W", "1WEB", "WEB-2", "TOOLONGKEY1"):
        with pytest.raises(services.DomainError, match="project key"):
            _create_project(org.tenant, org.org_id, key)
    assert _count_projects(org.tenant) == 0


def test_closing_tasks_is_selective_and_idempotent(signup: SignUpFactory) -> None:
    org = signup("eu")
    project_id = _project(org.tenant, org.org_id)
    with db.session(org.tenant) as session:
        ids = [
            services.create_task(session, project_id=project_id, title=t, estimate_hours=1).id
            for t in ("Design", "Build", "Ship")
        ]
    with db.session(org.tenant) as session:
        assert services.close_tasks(session, project_id=project_id, task_ids=ids[:2]) == 2
    with db.session(org.tenant) as session:
        assert services.close_tasks(session, project_id=project_id, task_ids=ids[:2]) == 0
        assert services.close_tasks(session, project_id=project_id) == 1
        statuses = session.scalars(select(Task.status).order_by(Task.id)).all()
        kinds = session.scalars(select(Event.kind).order_by(Event.id)).all()
    assert statuses == ["done", "done", "done"]
    assert kinds == ["project.created", *["task.created"] * 3, "tasks.closed", "tasks.closed"]


def test_a_failed_unit_of_work_leaves_nothing(signup: SignUpFactory) -> None:
    org = signup("us")
    project_id = _project(org.tenant, org.org_id)
    with pytest.raises(services.DomainError, match="estimate"):
        _create_tasks(org.tenant, project_id, ["2", "1.005"])
    with db.session(org.tenant) as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 0


def test_open_hours_by_assignee(signup: SignUpFactory) -> None:
    org = signup("eu")
    project_id = _project(org.tenant, org.org_id)
    plan = [(7, "2.5"), (7, "1.25"), (8, "4"), (None, "0.75"), (8, "10")]
    with db.session(org.tenant) as session:
        tasks = [
            services.create_task(
                session, project_id=project_id, title=f"T{i}", estimate_hours=h, assignee_user_id=a
            )
            for i, (a, h) in enumerate(plan)
        ]
        services.close_tasks(session, project_id=project_id, task_ids=[tasks[-1].id])
    with db.session(org.tenant) as session:
        remaining = services.open_hours_by_assignee(session, project_id)
    assert remaining == {7: Decimal("3.75"), 8: Decimal("4"), None: Decimal("0.75")}


def test_importing_a_backlog(signup: SignUpFactory) -> None:
    # A few hundred round trips: real work, so that spreading tests over workers pays.
    org = signup("us")
    project_id = _project(org.tenant, org.org_id, "BACKLOG")
    with db.session(org.tenant) as session:
        for number in range(60):
            services.create_task(
                session,
                project_id=project_id,
                title=f"Story {number}",
                estimate_hours=Decimal(number % 8) + Decimal("0.5"),
            )
    with db.session(org.tenant) as session:
        total = session.scalar(select(func.sum(Task.estimate_hours)))
        events = session.scalar(select(func.count()).where(Event.kind == "task.created"))
    assert total == sum(Decimal(n % 8) + Decimal("0.5") for n in range(60))
    assert events == 60


def test_concurrent_closes_close_each_task_once(signup: SignUpFactory) -> None:
    org = signup("eu")
    project_id = _project(org.tenant, org.org_id)
    with db.session(org.tenant) as session:
        for number in range(40):
            services.create_task(
                session, project_id=project_id, title=f"T{number}", estimate_hours=1
            )

    start = threading.Barrier(2)
    closed: list[int] = []

    def close_all() -> None:
        with db.session(org.tenant) as session:
            start.wait(timeout=10)
            closed.append(services.close_tasks(session, project_id=project_id))
            # Slow work before the commit (a webhook, say): the other closer waits on the
            # row locks all along, then finds nothing left to close.
            time.sleep(0.1)

    threads = [threading.Thread(target=close_all) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(closed) == [0, 40]
