"""Tables of the app: one platform database, and one schema shared by every tenant database.

No table names a schema: the connection's search path decides where they live.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    UniqueConstraint,
    event,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

REGIONS = ("eu", "us")
PLANS = ("free", "team", "enterprise")


class PlatformBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TenantBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


# -- platform ---------------------------------------------------------------------------


class Org(PlatformBase):
    __tablename__ = "orgs"
    __table_args__ = (
        CheckConstraint("region IN ('eu', 'us')", name="region"),
        CheckConstraint("plan IN ('free', 'team', 'enterprise')", name="plan"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(2))
    plan: Mapped[str] = mapped_column(String(20), default="free")
    created_at: Mapped[datetime] = _created_at()

    memberships: Mapped[list[Membership]] = relationship(back_populates="org")


class User(PlatformBase):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()


class Role(PlatformBase):
    """Reference data: seeded when the table is created, never changed by the app."""

    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, unique=True)
    can_invite: Mapped[bool] = mapped_column(Boolean)
    description: Mapped[str] = mapped_column(String(200))


class Membership(PlatformBase):
    __tablename__ = "memberships"

    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(ForeignKey("roles.name"))
    joined_at: Mapped[datetime] = _created_at()

    org: Mapped[Org] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship()
    role_ref: Mapped[Role] = relationship()


DEFAULT_ROLES: list[dict[str, Any]] = [
    {"name": "owner", "rank": 40, "can_invite": True, "description": "Billing and everything else"},
    {"name": "admin", "rank": 30, "can_invite": True, "description": "Manages members"},
    {"name": "member", "rank": 20, "can_invite": False, "description": "Works on projects"},
    {"name": "viewer", "rank": 10, "can_invite": False, "description": "Read-only access"},
]


@event.listens_for(Role.__table__, "after_create")
def _seed_roles(target: Table, connection: Connection, **_: Any) -> None:
    connection.execute(target.insert(), DEFAULT_ROLES)


# -- tenant (one copy per region) -------------------------------------------------------


class Project(TenantBase):
    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("org_id", "key", name="uq_projects_org_id_key"),
        CheckConstraint("key ~ '^[A-Z][A-Z0-9]{1,9}$'", name="key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The org lives in the platform database: no foreign key across databases.
    org_id: Mapped[int] = mapped_column(Integer, index=True)
    key: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()

    tasks: Mapped[list[Task]] = relationship(back_populates="project", order_by="Task.id")


class Task(TenantBase):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'done')", name="status"),
        CheckConstraint("estimate_hours >= 0", name="estimate"),
        CheckConstraint("(status = 'done') = (closed_at IS NOT NULL)", name="closed"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="open")
    estimate_hours: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    assignee_user_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    project: Mapped[Project] = relationship(back_populates="tasks")


class Invoice(TenantBase):
    __tablename__ = "invoices"
    __table_args__ = (CheckConstraint("status IN ('draft', 'issued', 'paid')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(Integer, index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    number: Mapped[str] = mapped_column(String(30), unique=True)
    # Frozen when the invoice is issued: a later change of rate does not rewrite history.
    tax_rate: Mapped[Decimal] = mapped_column(Numeric(5, 4))
    status: Mapped[str] = mapped_column(String(10), default="issued")
    issued_at: Mapped[datetime] = _created_at()

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.id", cascade="all, delete-orphan"
    )


class InvoiceLine(TenantBase):
    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    # A task is billed at most once, whatever the application gets wrong.
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), unique=True)
    description: Mapped[str] = mapped_column(String(200))
    hours: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    unit_price_cents: Mapped[int] = mapped_column(Integer)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class Event(TenantBase):
    """Append-only audit trail of what happened in a tenant."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    org_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = _created_at()


platform_metadata = PlatformBase.metadata
tenant_metadata = TenantBase.metadata

# What a test may empty between tests: everything but reference data.
PLATFORM_DATA_TABLES = ("memberships", "users", "orgs")
TENANT_DATA_TABLES = ("events", "invoice_lines", "invoices", "tasks", "projects")
