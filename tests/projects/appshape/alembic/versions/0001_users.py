"""users, with case-insensitive emails"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS citext")
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
    )
    op.execute("ALTER TABLE users ALTER COLUMN email TYPE citext")
    op.create_unique_constraint("users_email_key", "users", ["email"])
