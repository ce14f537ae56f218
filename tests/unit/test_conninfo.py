"""shoal.conninfo: masking, parsing and rebuilding libpq connection strings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import conninfo

# Anything libpq can carry: every character but NUL (lone surrogates cannot be encoded).
values = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=24
)
# Derandomized: the same examples every run, so a failure here is never a fluke.
fast = settings(max_examples=60, deadline=None, derandomize=True)
hosts = st.sampled_from(["localhost", "db.example.com", "10.0.0.1", "/tmp", "/run/pg sock"])


def round_trip(url: str) -> dict[str, str]:
    return conninfo.params(conninfo.build_url(conninfo.params(url)))


# -- mask ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("postgres://app:s3cret@db/app", "postgres://app:***@db/app"),
        ("postgresql://app:p%40ss%2Fw0rd@db/app", "postgresql://app:***@db/app"),
        ("postgresql://app:a:b@db/app", "postgresql://app:***@db/app"),
        ("postgresql://u:p@ss:w/rd@host/db", "postgresql://u:***@host/db"),
        ("postgresql://app:@db/app", "postgresql://app:***@db/app"),
        ("postgresql://app@db/app?password=s3cret", "postgresql://app@db/app?password=***"),
        (
            "postgresql://db/app?sslmode=require&password=s3cret&connect_timeout=5",
            "postgresql://db/app?sslmode=require&password=***&connect_timeout=5",
        ),
        ("host=db user=app password=s3cret dbname=app", "host=db user=app password=*** dbname=app"),
        ("host=db PASSWORD=s3cret", "host=db PASSWORD=***"),
        (
            "cannot connect to postgresql://app:s3cret@db/app: timeout",
            "cannot connect to postgresql://app:***@db/app: timeout",
        ),
    ],
)
def test_mask_hides_passwords(url: str, masked: str) -> None:
    assert conninfo.mask(url) == masked


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@db:5432/app",
        "postgresql://db/app",
        "postgresql:///app?host=/tmp&port=5433",
        "postgresql://[::1]:5432/app",
        "host=db user=app dbname=app",
        "env:DATABASE_URL",
    ],
)
def test_mask_leaves_password_free_strings_alone(url: str) -> None:
    assert conninfo.mask(url) == url


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(
            "postgresql://app:s3?cret@db/app",
            id="question-mark-in-url-password",
        ),
        pytest.param(
            "postgresql://app:s3#cret@db/app",
            id="hash-in-url-password",
        ),
        pytest.param(
            "host=db password='s3 cr3t' user=app",
            id="quoted-keyword-password",
        ),
        pytest.param(
            "host=db password = s3cret",
            id="spaced-keyword-password",
        ),
    ],
)
def test_mask_hides_every_password_libpq_accepts(url: str) -> None:
    password = conninfo.params(url)["password"]  # libpq itself reads this password

    assert password not in conninfo.mask(url)
    assert password.split()[-1] not in conninfo.mask(url)


@fast
@given(user=values, password=values, dbname=values, host=hosts)
def test_mask_hides_any_password_build_url_writes(
    user: str, password: str, dbname: str, host: str
) -> None:
    url = conninfo.build_url({"user": user, "password": password, "dbname": dbname, "host": host})

    assert conninfo.params(conninfo.mask(url))["password"] == "***"


# -- params and build_url -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:s3cret@db.example.com:5432/app",
        "postgresql://app@localhost/app",
        "postgresql://localhost/app?sslmode=require&connect_timeout=5",
        "postgresql://app:p%40ss%3Aw%2Fo%3Frd%23%25%20x@db/app",
        "postgresql://app:%C3%A9t%C3%A9@db/my%20app",
        "postgresql:///app?host=/tmp",
        "postgresql:///app?host=/tmp&port=5433",
        "postgresql://app:s3cret@/app?host=/var/run/postgresql",
        "postgresql:///app?host=%2Frun%2Fpg%20sock&port=6543&application_name=x",
        "host=/tmp port=5433 dbname=app user=app password='p a\\'ss'",
    ],
)
def test_build_url_round_trips(url: str) -> None:
    assert round_trip(url) == conninfo.params(url)


def test_build_url_puts_a_socket_directory_in_the_query() -> None:
    url = conninfo.build_url({"user": "app", "host": "/tmp", "port": "5433", "dbname": "app"})

    assert url == "postgresql://app@/app?host=%2Ftmp&port=5433"


def test_build_url_escapes_special_characters_in_the_password() -> None:
    url = conninfo.build_url(
        {"user": "app", "password": "p@ss:w/o?rd#", "host": "db", "dbname": "app"}
    )

    assert url == "postgresql://app:p%40ss%3Aw%2Fo%3Frd%23@db/app"
    assert conninfo.params(url)["password"] == "p@ss:w/o?rd#"


@fast
@given(
    user=values,
    password=values,
    dbname=values,
    host=hosts,
    port=st.sampled_from(["5432", "6543"]),
    extra=st.dictionaries(st.sampled_from(["sslmode", "application_name", "options"]), values),
)
def test_build_url_round_trips_any_parameters(
    user: str, password: str, dbname: str, host: str, port: str, extra: dict[str, str]
) -> None:
    parts = {"user": user, "password": password, "dbname": dbname, "host": host, "port": port}
    parts |= extra

    assert conninfo.params(conninfo.build_url(parts)) == parts


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(
            "postgresql:///app?port=5433",
            id="port-without-host",
        ),
        pytest.param(
            "postgresql://db/app?password=s3cret",
            id="password-without-user",
        ),
        pytest.param(
            "postgresql://app@[::1]:5432/app",
            id="ipv6-host",
        ),
        pytest.param(
            "postgresql://app@db1:5432,db2:5433/app",
            id="several-hosts",
        ),
    ],
)
def test_build_url_round_trips_every_url_libpq_accepts(url: str) -> None:
    assert round_trip(url) == conninfo.params(url)


# -- with_params, dbname, cluster_key -----------------------------------------------------


def test_with_params_changes_only_what_is_given() -> None:
    url = "postgresql://app:s3cret@db:5433/app?sslmode=require"

    changed = conninfo.with_params(url, dbname="postgres", application_name="pytest_gw0_x")

    assert conninfo.params(changed) == {
        "user": "app",
        "password": "s3cret",
        "host": "db",
        "port": "5433",
        "dbname": "postgres",
        "sslmode": "require",
        "application_name": "pytest_gw0_x",
    }


def test_with_params_on_a_socket_url() -> None:
    changed = conninfo.with_params("postgresql:///app?host=/tmp&port=5433", dbname="postgres")

    assert conninfo.params(changed) == {"host": "/tmp", "port": "5433", "dbname": "postgres"}


def test_with_params_carries_options_with_spaces() -> None:
    changed = conninfo.with_params(
        "postgresql://db/app", options=conninfo.search_path_option(("test_x_gw0", "public"))
    )

    assert conninfo.params(changed)["options"] == "-c search_path=test_x_gw0,public"


@pytest.mark.parametrize(
    ("url", "name"),
    [("postgresql://db/app", "app"), ("postgresql://db", ""), ("host=db dbname=x", "x")],
)
def test_dbname(url: str, name: str) -> None:
    assert conninfo.dbname(url) == name


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("postgresql://app:s3cret@db.example.com:6543/app", "db.example.com:6543"),
        ("postgresql://db.example.com/app", "db.example.com:5432"),
        ("postgresql:///app", "localhost:5432"),
        ("postgresql:///app?host=/tmp&port=5433", "/tmp:5433"),
        ("host=db port=5444 dbname=x", "db:5444"),
    ],
)
def test_cluster_key(url: str, key: str) -> None:
    assert conninfo.cluster_key(url) == key


def test_cluster_key_ignores_database_user_and_password() -> None:
    keys = {
        conninfo.cluster_key("postgresql://a:x@db:5432/one"),
        conninfo.cluster_key("postgresql://b:y@db:5432/two?sslmode=require"),
    }

    assert keys == {"db:5432"}


def test_mask_hides_password_literals_in_sql() -> None:
    masked = conninfo.mask("ALTER ROLE app WITH PASSWORD 'it''s s3cret' LOGIN")
    assert "s3cret" not in masked
    assert masked == "ALTER ROLE app WITH PASSWORD '***' LOGIN"
