"""libpq connection strings: parse, rewrite, mask, and tell which cluster they reach."""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

# Everything between "scheme://user:" and the last "@" of the URL is taken for the
# password: libpq accepts unencoded "?" and "#" there, and people write unencoded "@" and
# "/" too. Masking a little too much is harmless; showing part of a password is not.
_PASSWORD_IN_URL = re.compile(r"(\w+://[^:/@?#\s]*):[^\s'\"]*@")
# SQL that sets a role's password carries it as a literal: `PASSWORD '…'`.
_PASSWORD_LITERAL = re.compile(r"(\bpassword\s+)'(?:[^']|'')*'", re.IGNORECASE)
_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]+)", re.IGNORECASE)


def mask(url: str) -> str:
    """The text (a URL, a conninfo string, an error, a query) with every password replaced by
    ``***``, for every message and report."""
    masked = _PASSWORD_IN_URL.sub(r"\1:***@", url)
    masked = _PASSWORD_LITERAL.sub(r"\1'***'", masked)
    return _PASSWORD_PARAM.sub(r"\1***", masked)


def params(url: str) -> dict[str, str]:
    # Imported here: masking (used by the settings loader) must not cost a psycopg import.
    from psycopg.conninfo import conninfo_to_dict

    return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}


def build_url(parts: dict[str, str], *, scheme: str = "postgresql") -> str:
    """A URL from libpq parameters.

    Only a single plain TCP host goes in the authority part (with its port); socket
    directories, IPv6 addresses and host lists go in the query with their ports, where
    libpq reads them the same way. A password without a user goes in the query too.
    """
    rest = dict(parts)
    user = rest.pop("user", "")
    password = rest.pop("password", None)
    host = rest.pop("host", "")
    port = rest.pop("port", "")
    dbname = rest.pop("dbname", "")
    netloc = ""
    if user:
        netloc = quote(user, safe="")
        if password is not None:
            netloc += ":" + quote(password, safe="")
        netloc += "@"
    elif password is not None:
        rest = {"password": password, **rest}
    if host and not any(c in host for c in "/,:"):
        netloc += host + (f":{port}" if port else "")
    else:
        located = {**({"host": host} if host else {}), **({"port": port} if port else {})}
        rest = {**located, **rest}
    query = urlencode(rest, quote_via=quote) if rest else ""
    return f"{scheme}://{netloc}/{quote(dbname, safe='')}" + (f"?{query}" if query else "")


def with_params(url: str, **changes: str) -> str:
    parts = params(url)
    parts.update(changes)
    return build_url(parts)


def dbname(url: str) -> str:
    return params(url).get("dbname", "")


def cluster_key(url: str) -> str:
    """What identifies the server a URL reaches: host and port (DDL slots are per server)."""
    parts = params(url)
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    return f"{host}:{port}"


def search_path_option(schemas: tuple[str, ...]) -> str:
    """The libpq ``options`` value that pins the search path (names are plain identifiers)."""
    return "-c search_path=" + ",".join(schemas)


# SQLAlchemy's form names a driver: `postgresql+psycopg://`. libpq knows only the plain one.
_DRIVER_SCHEME = re.compile(r"(postgres(?:ql)?)\+([A-Za-z0-9_]+)://")


def is_postgres_url(url: str) -> bool:
    """``postgresql://``, ``postgres://``, or either with a driver (``postgresql+psycopg://``)."""
    return url.startswith(("postgresql://", "postgres://")) or bool(_DRIVER_SCHEME.match(url))


def split_scheme(url: str) -> tuple[str, str]:
    """``(scheme as written, libpq URL)``: a driver in the scheme is taken out of the URL."""
    match = _DRIVER_SCHEME.match(url)
    if match is None:
        scheme, sep, _ = url.partition("://")
        return (scheme if sep else "postgresql"), url
    return match.group(0).removesuffix("://"), f"{match.group(1)}://{url[match.end() :]}"


def with_scheme(url: str, scheme: str) -> str:
    """A libpq URL written with ``scheme`` (e.g. ``postgresql+psycopg``)."""
    _, sep, rest = url.partition("://")
    return f"{scheme}://{rest}" if sep else url


def sqlalchemy_url(libpq_url: str) -> str:
    """The SQLAlchemy form of a libpq URL, for the psycopg 3 driver shoal installs."""
    scheme, sep, rest = libpq_url.partition("://")
    return f"postgresql+psycopg{sep}{rest}" if scheme in ("postgresql", "postgres") else libpq_url
