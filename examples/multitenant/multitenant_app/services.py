"""Business rules. Every function takes the session of the database it works on and leaves
committing to the caller, so a unit of work can span several calls."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from multitenant_app.models import (
    REGIONS,
    Event,
    Invoice,
    InvoiceLine,
    Membership,
    Org,
    Project,
    Role,
    Task,
    User,
)

# VAT on services sold from the EU entity; the US entity charges no sales tax on them.
TAX_RATES = {"eu": Decimal("0.2000"), "us": Decimal("0.0000")}
TENANT_BY_REGION = {"eu": "tenant_eu", "us": "tenant_us"}
_CENT = Decimal("1")
# Letters NFKD does not decompose into a base letter and accents.
_TRANSLITERATE = str.maketrans(
    {"Æ": "AE", "æ": "ae", "Ø": "O", "ø": "o", "ß": "ss", "Œ": "OE", "œ": "oe"}
)


class DomainError(Exception):
    """A request the business rules refuse."""


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


# -- platform ---------------------------------------------------------------------------


def slugify(name: str) -> str:
    """``"Ærø Bikes & Co."`` → ``"aero-bikes-co"``."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_TRANSLITERATE))
    ascii_name = decomposed.encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    if not slug:
        raise DomainError(f"cannot derive a slug from {name!r}")
    return slug[:63].rstrip("-")


def get_or_create_user(session: Session, email: str, full_name: str) -> User:
    email = email.strip().lower()
    if "@" not in email:
        raise DomainError(f"not an email address: {email!r}")
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, full_name=full_name)
        session.add(user)
        session.flush()
    return user


def create_org(
    session: Session,
    *,
    name: str,
    region: str,
    owner_email: str,
    owner_name: str,
    plan: str = "free",
) -> Org:
    """Sign-up: a new organisation in ``region`` and its first owner."""
    if region not in REGIONS:
        raise DomainError(f"unknown region {region!r}; expected one of {', '.join(REGIONS)}")
    slug = slugify(name)
    if session.scalar(select(Org.id).where(Org.slug == slug)) is not None:
        raise Conflict(f"an organisation called {slug!r} already exists")
    owner = get_or_create_user(session, owner_email, owner_name)
    org = Org(name=name, slug=slug, region=region, plan=plan)
    org.memberships.append(Membership(user=owner, role="owner"))
    session.add(org)
    session.flush()
    return org


@dataclass(frozen=True)
class SignUp:
    org_id: int
    owner_id: int
    tenant: str  # the tenant database holding the organisation's data


def sign_up(
    session: Session, *, name: str, region: str, owner_email: str, owner_name: str
) -> SignUp:
    """The public sign-up flow: the organisation, its owner, and where its data goes."""
    org = create_org(
        session, name=name, region=region, owner_email=owner_email, owner_name=owner_name
    )
    return SignUp(
        org_id=org.id, owner_id=org.memberships[0].user_id, tenant=TENANT_BY_REGION[region]
    )


def _membership(session: Session, org_id: int, user_id: int) -> Membership:
    membership = session.get(Membership, (org_id, user_id))
    if membership is None:
        raise NotFound(f"user {user_id} is not a member of organisation {org_id}")
    return membership


def _role(session: Session, name: str) -> Role:
    role = session.get(Role, name)
    if role is None:
        raise DomainError(f"unknown role {name!r}")
    return role


def invite_user(
    session: Session, *, org_id: int, inviter_id: int, email: str, full_name: str, role: str
) -> Membership:
    """Add a user to an organisation; only owners and admins invite, never above their rank."""
    inviter = _membership(session, org_id, inviter_id)
    granted = _role(session, role)
    if not inviter.role_ref.can_invite:
        raise PermissionDenied(f"a {inviter.role} cannot invite members")
    if granted.rank > inviter.role_ref.rank:
        raise PermissionDenied(f"a {inviter.role} cannot grant the {role} role")
    user = get_or_create_user(session, email, full_name)
    if session.get(Membership, (org_id, user.id)) is not None:
        raise Conflict(f"{user.email} is already a member")
    membership = Membership(org_id=org_id, user_id=user.id, role=role)
    session.add(membership)
    session.flush()
    return membership


def change_role(session: Session, *, org_id: int, actor_id: int, user_id: int, role: str) -> None:
    """Change a member's role; an organisation always keeps at least one owner."""
    actor = _membership(session, org_id, actor_id)
    target = _membership(session, org_id, user_id)
    granted = _role(session, role)
    if actor.role != "owner" and max(granted.rank, target.role_ref.rank) >= actor.role_ref.rank:
        raise PermissionDenied(f"a {actor.role} cannot make a {target.role} a {role}")
    if target.role == "owner" and role != "owner":
        # Lock the owners' rows: two owners demoting each other at once must not both win.
        owners = session.scalars(
            select(Membership.user_id)
            .where(Membership.org_id == org_id, Membership.role == "owner")
            .with_for_update()
        ).all()
        if len(owners) == 1:
            raise Conflict("an organisation needs at least one owner")
    target.role = role
    session.flush()


def members(session: Session, org_id: int) -> list[tuple[str, str]]:
    """(email, role) of every member, most powerful first."""
    rows = session.execute(
        select(User.email, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .join(Role, Role.name == Membership.role)
        .where(Membership.org_id == org_id)
        .order_by(Role.rank.desc(), User.email)
    )
    return [(email, role) for email, role in rows]


def tenant_for_org(session: Session, org_id: int) -> str:
    """The tenant database holding this organisation's data (its region's)."""
    region = session.scalar(select(Org.region).where(Org.id == org_id))
    if region is None:
        raise NotFound(f"no organisation {org_id}")
    return TENANT_BY_REGION[region]


# -- tenant -----------------------------------------------------------------------------


def record_event(session: Session, org_id: int, kind: str, **payload: Any) -> None:
    session.add(Event(org_id=org_id, kind=kind, payload=payload))


def create_project(session: Session, *, org_id: int, key: str, name: str) -> Project:
    key = key.strip().upper()
    if not re.fullmatch(r"[A-Z][A-Z0-9]{1,9}", key):
        raise DomainError(f"project key {key!r}: 2-10 letters and digits, starting with a letter")
    taken = select(Project.id).where(Project.org_id == org_id, Project.key == key)
    if session.scalar(taken) is not None:
        raise Conflict(f"project key {key} is already used in this organisation")
    project = Project(org_id=org_id, key=key, name=name)
    session.add(project)
    session.flush()
    record_event(session, org_id, "project.created", project_id=project.id, key=key)
    return project


def _project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"no project {project_id}")
    return project


def create_task(
    session: Session,
    *,
    project_id: int,
    title: str,
    estimate_hours: Decimal | str | int,
    assignee_user_id: int | None = None,
) -> Task:
    project = _project(session, project_id)
    hours = Decimal(estimate_hours)
    if hours < 0 or hours != hours.quantize(Decimal("0.01")):
        raise DomainError(f"estimate {estimate_hours!r}: a non-negative number of hours (0.01)")
    task = Task(
        project_id=project.id,
        title=title,
        estimate_hours=hours,
        assignee_user_id=assignee_user_id,
        status="open",
    )
    session.add(task)
    session.flush()
    record_event(session, project.org_id, "task.created", task_id=task.id)
    return task


def close_tasks(
    session: Session,
    *,
    project_id: int,
    task_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> int:
    """Close the open tasks of a project (all, or those in ``task_ids``); return how many."""
    project = _project(session, project_id)
    query = select(Task).where(Task.project_id == project_id, Task.status == "open")
    if task_ids is not None:
        query = query.where(Task.id.in_(task_ids))
    closed_at = now or datetime.now(UTC)
    tasks = session.scalars(query.order_by(Task.id).with_for_update()).all()
    for task in tasks:
        task.status = "done"
        task.closed_at = closed_at
    if tasks:
        record_event(
            session, project.org_id, "tasks.closed", project_id=project_id, count=len(tasks)
        )
    session.flush()
    return len(tasks)


@dataclass(frozen=True)
class InvoiceTotal:
    subtotal_cents: int
    tax_cents: int

    @property
    def total_cents(self) -> int:
        return self.subtotal_cents + self.tax_cents


def _cents(amount: Decimal) -> int:
    return int(amount.quantize(_CENT, rounding=ROUND_HALF_UP))


def bill_closed_tasks(
    session: Session, *, project_id: int, region: str, hourly_rate_cents: int
) -> Invoice | None:
    """Invoice every closed task of a project not billed yet; None when there is none."""
    if hourly_rate_cents <= 0:
        raise DomainError("the hourly rate must be positive")
    project = session.get(Project, project_id, with_for_update=True)
    if project is None:
        raise NotFound(f"no project {project_id}")
    billed = select(InvoiceLine.task_id)
    tasks = session.scalars(
        select(Task)
        .where(Task.project_id == project_id, Task.status == "done", Task.id.not_in(billed))
        .order_by(Task.id)
    ).all()
    if not tasks:
        return None
    previous = session.scalar(
        select(func.count()).select_from(Invoice).where(Invoice.project_id == project_id)
    )
    invoice = Invoice(
        org_id=project.org_id,
        project_id=project_id,
        number=f"{project.key}-{project.org_id}-{(previous or 0) + 1:04d}",
        tax_rate=TAX_RATES[region],
        status="issued",
    )
    invoice.lines = [
        InvoiceLine(
            task_id=task.id,
            description=f"{project.key}-{task.id} {task.title}",
            hours=task.estimate_hours,
            unit_price_cents=hourly_rate_cents,
        )
        for task in tasks
    ]
    session.add(invoice)
    session.flush()
    total = invoice_total(session, invoice.id)
    record_event(
        session, project.org_id, "invoice.issued", number=invoice.number, total=total.total_cents
    )
    return invoice


def invoice_total(session: Session, invoice_id: int) -> InvoiceTotal:
    """Lines are rounded to the cent one by one; tax is rounded once, on the subtotal."""
    invoice = session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound(f"no invoice {invoice_id}")
    subtotal = sum((_cents(line.hours * line.unit_price_cents) for line in invoice.lines), start=0)
    return InvoiceTotal(subtotal_cents=subtotal, tax_cents=_cents(subtotal * invoice.tax_rate))


def open_hours_by_assignee(session: Session, project_id: int) -> dict[int | None, Decimal]:
    """Remaining estimated work per assignee (None: unassigned)."""
    rows = session.execute(
        select(Task.assignee_user_id, func.sum(Task.estimate_hours))
        .where(Task.project_id == project_id, Task.status == "open")
        .group_by(Task.assignee_user_id)
    )
    return {assignee: Decimal(hours) for assignee, hours in rows}
