import pytest
import sqlalchemy as sa
from app import crud

from tests.conftest import record


def test_the_engine_lands_in_this_workers_schema(conn):
    schema, app, url = conn.execute(
        sa.text("SELECT current_schema(), current_setting('application_name'), current_database()")
    ).one()
    owner = conn.execute(
        sa.text("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = :s"),
        {"s": schema},
    ).scalar()
    record(schema=schema, application_name=app, database=url, owner=owner)
    assert schema.startswith("test_")


def test_emails_are_case_insensitive(conn):
    crud.create_user(conn, "Ada@Example.com", "Ada")
    assert crud.find_user(conn, "ada@example.com") == "Ada"


def test_an_email_is_unique(conn):
    crud.create_user(conn, "grace@example.com", "Grace")
    with pytest.raises(sa.exc.IntegrityError):
        crud.create_user(conn, "GRACE@example.com", "Grace again")


@pytest.mark.parametrize("count", [0, 1, 3])
def test_items_belong_to_their_owner(conn, count):
    owner = crud.create_user(conn, f"owner{count}@example.com", "Owner")
    other = crud.create_user(conn, f"other{count}@example.com", "Other")
    for number in range(count):
        crud.add_item(conn, owner, f"item {number}")
    crud.add_item(conn, other, "not mine")
    assert crud.count_items(conn, owner) == count


def test_rows_of_other_tests_are_gone(conn):
    assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 0
