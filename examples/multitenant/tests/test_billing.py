"""Invoicing closed work: amounts, tax by region, numbering, never billing a task twice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import pytest
from multitenant_app import db, services
from multitenant_app.models import Invoice, InvoiceLine, Org, Project
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

SignUpFactory = Callable[..., services.SignUp]


def _closed_work(tenant: str, org_id: int, hours: Sequence[str], key: str = "OPS") -> int:
    """A project whose tasks of ``hours`` each are all done; returns the project id."""
    with db.session(tenant) as session:
        project = services.create_project(session, org_id=org_id, key=key, name="Operations")
        for number, estimate in enumerate(hours):
            services.create_task(
                session, project_id=project.id, title=f"Job {number}", estimate_hours=estimate
            )
        services.close_tasks(session, project_id=project.id)
        return project.id


@pytest.mark.parametrize(
    ("region", "tax_cents"), [("eu", 9_000), ("us", 0)], ids=["eu-vat", "us-no-tax"]
)
def test_invoice_total_applies_the_region_tax(
    signup: SignUpFactory, region: str, tax_cents: int
) -> None:
    org = signup(region)
    project_id = _closed_work(org.tenant, org.org_id, ["1.5", "2.25"])
    with db.session(org.tenant) as session:
        invoice = services.bill_closed_tasks(
            session, project_id=project_id, region=region, hourly_rate_cents=12_000
        )
        assert invoice is not None
        total = services.invoice_total(session, invoice.id)
    assert (total.subtotal_cents, total.tax_cents) == (45_000, tax_cents)
    assert total.total_cents == 45_000 + tax_cents


def test_lines_round_half_up_to_the_cent(signup: SignUpFactory) -> None:
    org = signup("eu")
    # 0.5 h x 10.01 = 5.005 → 5.01 per line; 3 lines 15.03; VAT 3.006 → 3.01.
    project_id = _closed_work(org.tenant, org.org_id, ["0.5", "0.5", "0.5"])
    with db.session(org.tenant) as session:
        invoice = services.bill_closed_tasks(
            session, project_id=project_id, region="eu", hourly_rate_cents=1_001
        )
        assert invoice is not None
        total = services.invoice_total(session, invoice.id)
    assert total == services.InvoiceTotal(subtotal_cents=1_503, tax_cents=301)


def test_only_closed_unbilled_tasks_are_billed(signup: SignUpFactory) -> None:
    org = signup("us")
    project_id = _closed_work(org.tenant, org.org_id, ["2", "3"])
    with db.session(org.tenant) as session:
        late = services.create_task(session, project_id=project_id, title="Late", estimate_hours=5)
        services.create_task(session, project_id=project_id, title="Open", estimate_hours=8)
    with db.session(org.tenant) as session:
        first = services.bill_closed_tasks(
            session, project_id=project_id, region="us", hourly_rate_cents=10_000
        )
        assert (
            services.bill_closed_tasks(
                session, project_id=project_id, region="us", hourly_rate_cents=10_000
            )
            is None
        )
    with db.session(org.tenant) as session:
        services.close_tasks(session, project_id=project_id, task_ids=[late.id])
        second = services.bill_closed_tasks(
            session, project_id=project_id, region="us", hourly_rate_cents=10_000
        )
    assert first is not None
    assert second is not None
    assert first.number.endswith("-0001")
    assert second.number.endswith("-0002")
    with db.session(org.tenant) as session:
        assert services.invoice_total(session, first.id).subtotal_cents == 50_000
        assert services.invoice_total(session, second.id).subtotal_cents == 50_000


def test_the_database_refuses_to_bill_a_task_twice(signup: SignUpFactory) -> None:
    org = signup("eu")
    project_id = _closed_work(org.tenant, org.org_id, ["1"])
    with db.session(org.tenant) as session:
        invoice = services.bill_closed_tasks(
            session, project_id=project_id, region="eu", hourly_rate_cents=5_000
        )
        assert invoice is not None
        invoice_id, task_id = invoice.id, invoice.lines[0].task_id
    with (
        pytest.raises(IntegrityError, match="uq_invoice_lines_task_id"),
        db.session(org.tenant) as session,
    ):
        session.add(
            InvoiceLine(
                invoice_id=invoice_id,
                task_id=task_id,
                description="again",
                hours=Decimal(1),
                unit_price_cents=5_000,
            )
        )


def test_rates_must_be_positive(signup: SignUpFactory) -> None:
    org = signup("us")
    project_id = _closed_work(org.tenant, org.org_id, ["1"])
    with pytest.raises(services.DomainError, match="positive"), db.session(org.tenant) as s:
        services.bill_closed_tasks(s, project_id=project_id, region="us", hourly_rate_cents=0)


def test_shoal_engine_and_app_engine_see_the_same_rows(
    signup: SignUpFactory, engines: dict[str, Engine]
) -> None:
    # Written through shoal's engine, read back through the app's: one schema, two paths.
    org = signup("eu")
    with Session(engines["tenant_eu"]) as session, session.begin():
        project = services.create_project(session, org_id=org.org_id, key="MIX", name="Mixed")
        services.create_task(session, project_id=project.id, title="Both", estimate_hours=4)
        services.close_tasks(session, project_id=project.id)
        project_id = project.id
    with db.session("tenant_eu") as session:
        invoice = services.bill_closed_tasks(
            session, project_id=project_id, region="eu", hourly_rate_cents=2_500
        )
        assert invoice is not None
        number = invoice.number
    with Session(engines["tenant_eu"]) as session:
        stored = session.scalars(select(Invoice).where(Invoice.number == number)).one()
        assert services.invoice_total(session, stored.id).total_cents == 12_000


def test_month_end_billing_run_across_regions(signup: SignUpFactory) -> None:
    # The month-end job: for every organisation, find its tenant, bill its closed work.
    orgs = [signup(region) for region in ("eu", "us", "eu", "us")]
    for number, org in enumerate(orgs):
        _closed_work(org.tenant, org.org_id, [str(1 + number % 3)] * 6, key=f"P{number}")

    totals: dict[str, int] = {"tenant_eu": 0, "tenant_us": 0}
    for org in orgs:
        with db.session("platform") as platform:
            region = platform.get_one(Org, org.org_id).region
            tenant = services.tenant_for_org(platform, org.org_id)
        with db.session(tenant) as session:
            projects = select(Project.id).where(Project.org_id == org.org_id)
            for project_id in session.scalars(projects).all():
                invoice = services.bill_closed_tasks(
                    session, project_id=project_id, region=region, hourly_rate_cents=8_000
                )
                assert invoice is not None
                totals[tenant] += services.invoice_total(session, invoice.id).total_cents

    # EU orgs 0 and 2 bill 1 and 3 hours per task, plus VAT; US orgs 1 and 3, 2 and 1.
    assert totals == {
        "tenant_eu": 6 * (1 + 3) * 8_000 * 12 // 10,
        "tenant_us": 6 * (2 + 1) * 8_000,
    }
