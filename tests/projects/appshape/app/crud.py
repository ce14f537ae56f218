import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.models import items, users


def create_user(conn: Connection, email: str, name: str) -> int:
    inserted = users.insert().values(email=email, name=name).returning(users.c.id)
    return int(conn.execute(inserted).scalar_one())


def find_user(conn: Connection, email: str) -> str | None:
    # citext compares case-insensitively only with a citext on both sides.
    query = sa.text("SELECT name FROM users WHERE email = CAST(:email AS citext)")
    return conn.execute(query, {"email": email}).scalar()


def add_item(conn: Connection, owner: int, title: str) -> None:
    conn.execute(items.insert().values(owner_id=owner, title=title))


def count_items(conn: Connection, owner: int) -> int:
    query = sa.select(sa.func.count()).where(items.c.owner_id == owner)
    return int(conn.execute(query).scalar_one())
