"""Organisations, members and roles, on a session from shoal's engine (rolled back after)."""

from __future__ import annotations

import pytest
from multitenant_app import services
from multitenant_app.models import Membership, Org, Role, User
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


def _org(session: Session, unique: str, region: str = "eu") -> services.SignUp:
    return services.sign_up(
        session,
        name=f"Acme {unique}",
        region=region,
        owner_email=f"olive-{unique}@example.com",
        owner_name="Olive Owner",
    )


def _insert_in_savepoint(session: Session, row: object) -> None:
    with session.begin_nested():
        session.add(row)


def test_default_roles_are_seeded_by_the_setup_hook(platform: Session) -> None:
    roles = platform.scalars(select(Role.name).order_by(Role.rank.desc())).all()
    assert roles == ["owner", "admin", "member", "viewer"]


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("  Ærø Bikes & Co. ", "aero-bikes-co"),
        ("Café Münster", "cafe-munster"),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert services.slugify(name) == slug


def test_sign_up_makes_the_signer_owner(platform: Session, unique: str) -> None:
    signed = _org(platform, unique, region="us")
    org = platform.get_one(Org, signed.org_id)
    assert (org.slug, org.region, org.plan) == (f"acme-{unique}", "us", "free")
    assert signed.tenant == "tenant_us"
    assert services.members(platform, signed.org_id) == [(f"olive-{unique}@example.com", "owner")]


def test_org_names_that_slugify_alike_conflict(platform: Session, unique: str) -> None:
    _org(platform, unique)
    with pytest.raises(services.Conflict):
        services.create_org(
            platform,
            name=f"ACME  {unique}!",
            region="us",
            owner_email=f"other-{unique}@example.com",
            owner_name="Other",
        )


def test_unknown_region_is_refused_by_app_and_database(platform: Session, unique: str) -> None:
    with pytest.raises(services.DomainError, match="unknown region"):
        services.create_org(
            platform, name=unique, region="ap", owner_email=f"{unique}@x.io", owner_name="X"
        )
    with pytest.raises(IntegrityError, match="ck_orgs_region"):
        _insert_in_savepoint(platform, Org(name=unique, slug=unique, region="ap"))


def test_owner_and_admin_invite_within_their_rank(platform: Session, unique: str) -> None:
    signed = _org(platform, unique)
    admin = services.invite_user(
        platform,
        org_id=signed.org_id,
        inviter_id=signed.owner_id,
        email=f"ada-{unique}@example.com",
        full_name="Ada Admin",
        role="admin",
    )
    services.invite_user(
        platform,
        org_id=signed.org_id,
        inviter_id=admin.user_id,
        email=f"mo-{unique}@example.com",
        full_name="Mo Member",
        role="member",
    )
    with pytest.raises(services.PermissionDenied, match="cannot grant the owner role"):
        services.invite_user(
            platform,
            org_id=signed.org_id,
            inviter_id=admin.user_id,
            email=f"eve-{unique}@example.com",
            full_name="Eve",
            role="owner",
        )
    assert [role for _, role in services.members(platform, signed.org_id)] == [
        "owner",
        "admin",
        "member",
    ]


@pytest.mark.parametrize("inviter_role", ["member", "viewer"])
def test_members_and_viewers_cannot_invite(
    platform: Session, unique: str, inviter_role: str
) -> None:
    signed = _org(platform, unique)
    inviter = services.invite_user(
        platform,
        org_id=signed.org_id,
        inviter_id=signed.owner_id,
        email=f"in-{unique}@example.com",
        full_name="In Viter",
        role=inviter_role,
    )
    with pytest.raises(services.PermissionDenied):
        services.invite_user(
            platform,
            org_id=signed.org_id,
            inviter_id=inviter.user_id,
            email=f"friend-{unique}@example.com",
            full_name="Friend",
            role="viewer",
        )


def test_a_user_joins_many_orgs_with_one_account(platform: Session, unique: str) -> None:
    first = _org(platform, f"{unique}a")
    second = _org(platform, f"{unique}b", region="us")
    for signed in (first, second):
        services.invite_user(
            platform,
            org_id=signed.org_id,
            inviter_id=signed.owner_id,
            email=f"Consultant-{unique}@Example.com",
            full_name="Connie Consultant",
            role="member",
        )
    with pytest.raises(services.Conflict, match="already a member"):
        services.invite_user(
            platform,
            org_id=first.org_id,
            inviter_id=first.owner_id,
            email=f"consultant-{unique}@example.com",
            full_name="Connie Consultant",
            role="viewer",
        )
    accounts = platform.scalars(select(User).where(User.email.like(f"consultant-{unique}%"))).all()
    assert len(accounts) == 1


def test_the_last_owner_cannot_step_down(platform: Session, unique: str) -> None:
    signed = _org(platform, unique)
    with pytest.raises(services.Conflict, match="at least one owner"):
        services.change_role(
            platform,
            org_id=signed.org_id,
            actor_id=signed.owner_id,
            user_id=signed.owner_id,
            role="admin",
        )
    partner = services.invite_user(
        platform,
        org_id=signed.org_id,
        inviter_id=signed.owner_id,
        email=f"pat-{unique}@example.com",
        full_name="Pat Partner",
        role="owner",
    )
    services.change_role(
        platform,
        org_id=signed.org_id,
        actor_id=partner.user_id,
        user_id=signed.owner_id,
        role="admin",
    )
    owner = platform.get_one(Membership, (signed.org_id, signed.owner_id))
    assert owner.role == "admin"


def test_tenant_lookup_follows_the_org_region(platform: Session, unique: str) -> None:
    europe = _org(platform, f"{unique}eu", region="eu")
    america = _org(platform, f"{unique}us", region="us")
    assert services.tenant_for_org(platform, europe.org_id) == "tenant_eu"
    assert services.tenant_for_org(platform, america.org_id) == "tenant_us"
    with pytest.raises(services.NotFound):
        services.tenant_for_org(platform, america.org_id + 1_000_000)
