"""Every name shoal puts into the world, built and parsed in one place.

Namespace tokens, worker ids, schema names, connection labels, lock keys and the
environment variables that carry them between processes. No other module formats or
regex-matches these strings: two real bugs came from call sites composing names by
hand (a seeder that wrote into ``public``, a slot regex that matched the PID).

Everything here is pure: no I/O, no clock, no randomness of its own.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

# PostgreSQL silently truncates identifiers and application_name to 63 bytes.
MAX_IDENTIFIER_BYTES: Final = 63

FORCED_NAMESPACE_RE: Final = re.compile(r"[a-z0-9]{1,32}")
_AUTO_NAMESPACE_RE: Final = re.compile(r"p(\d+)t(\d+)r([0-9a-f]{8})")
_WORKER_RE: Final = re.compile(r"gw(\d+)|main")
_SCHEMA_RE: Final = re.compile(r"test_([a-z0-9]{1,32})_(gw\d+|main)")
# The namespace comes before any suffix so that truncation only ever eats the suffix.
_LABEL_RE: Final = re.compile(r"pytest_(gw\d+|main|lease)_([a-z0-9]{1,32})(?:_(.*))?", re.DOTALL)
# A database name shoal may create or address by key: what PostgreSQL accepts unquoted,
# lower case, so that the key, the SQL name and the environment all agree.
_DATABASE_KEY_RE: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SCHEMA_NAME_RE: Final = re.compile(r"[a-z_][a-z0-9_$]{0,62}")

# SQL LIKE pattern matching every schema that could be a worker schema.
WORKER_SCHEMA_LIKE: Final = "test\\_%"

# SQL LIKE pattern matching every application_name shoal labels a connection with.
LABEL_LIKE: Final = "pytest\\_%"

MAIN_WORKER: Final = "main"
LEASE_WORKER: Final = "lease"

# Keys of xdist's workerinput (controller → worker) and workeroutput (worker → controller).
WORKERINPUT_PLAN: Final = "shoal_plan"
WORKEROUTPUT_KEPT: Final = "shoal_kept"
WORKEROUTPUT_PROBLEMS: Final = "shoal_problems"
WORKEROUTPUT_TIMINGS: Final = "shoal_timings"
WORKEROUTPUT_FAILURE: Final = "shoal_failure"
WORKEROUTPUT_LEFT: Final = "shoal_left"
WORKEROUTPUT_STARTUP: Final = "shoal_startup"  # where the worker's start-up went
# Where a worker renamed schemas for the reaper, and how long its schema teardown took.
WORKEROUTPUT_TO_DROP: Final = "shoal_to_drop"
WORKEROUTPUT_TEARDOWN: Final = "shoal_teardown"
WORKERINPUT_DJANGO_PLAN: Final = "shoal_django_plan"

# Environment variables that carry names between processes.
ENV_NAMESPACE: Final = "SHOAL_NAMESPACE"
ENV_NAMESPACE_FORCE: Final = "SHOAL_NAMESPACE_FORCE"
# Set to the forced namespace itself, lets runs share it (and collide): `shoal demo
# --without-shoal` shows what that does. Never needed otherwise.
ENV_NAMESPACE_SHARED: Final = "SHOAL_NAMESPACE_SHARED"
ENV_RUNNER: Final = "SHOAL_RUNNER"
# The log file a background refill writes to, so that its record can point at it.
ENV_REFILL_LOG: Final = "SHOAL_REFILL_LOG"
# The run plan, for xdist workers to export their binding before conftests load.
ENV_PLAN: Final = "SHOAL_PLAN"
# The Django part of a run's plan, for the background refill of its warm pool.
ENV_DJANGO_PLAN: Final = "SHOAL_DJANGO_PLAN"
# The databases a run renamed schemas in, for the reaper it starts at its end.
ENV_REAP: Final = "SHOAL_REAP"

# Advisory-lock class id for shoal's locks: the first key of PostgreSQL's two-int form,
# so shoal's locks never collide with an application's single-bigint advisory locks.
LOCK_CLASS: Final = zlib.crc32(b"shoal") & 0x7FFFFFFF
_EXTENSION_LOCK: Final = 1_000_000
_DATABASE_LOCK: Final = 1_000_001
# Pool locks hash a name or fingerprint into the second key, so they get classes of their
# own: a hash could otherwise land on a DDL slot number.
POOL_CLAIM_CLASS: Final = zlib.crc32(b"shoal-pool-claim") & 0x7FFFFFFF
POOL_REFILL_CLASS: Final = zlib.crc32(b"shoal-pool-refill") & 0x7FFFFFFF
NAMESPACE_CLASS: Final = zlib.crc32(b"shoal-namespace") & 0x7FFFFFFF

# Warm-pool schemas: ``shoalpool_<fp12>_<token>`` when ready to claim, ``shoalbuild_…``
# while being built or dropped. Neither can parse as a worker schema (``test_…``).
POOL_FINGERPRINT_CHARS: Final = 12
_POOL_SCHEMA_RE: Final = re.compile(r"shoal(pool|build)_([0-9a-f]{12})_([0-9a-f]{8})")
_FINGERPRINT_RE: Final = re.compile(r"[0-9a-f]{12,64}")
POOL_READY_LIKE: Final = "shoalpool\\_%"
POOL_BUILD_LIKE: Final = "shoalbuild\\_%"
_POOL_LOG_RE: Final = re.compile(r"pool-warm_([a-z0-9]{1,32})\.log")

# Schemas a worker has renamed out of the way for the reaper to drop:
# ``shoaldrop_<namespace>_<worker>_<8 hex>``. The name itself says that the run it names
# is done with the schema; it can never parse as a worker or pool schema.
_TO_DROP_RE: Final = re.compile(r"shoaldrop_([a-z0-9]{1,32})_(gw\d+|main)_([0-9a-f]{8})")
TO_DROP_LIKE: Final = "shoaldrop\\_%"
# Session advisory lock class of a to-drop schema being dropped: a reaper or sweep that
# cannot take it leaves the schema to whoever holds it.
TO_DROP_CLASS: Final = zlib.crc32(b"shoal-to-drop") & 0x7FFFFFFF


class InvalidName(ValueError):
    """A string that should be a shoal name is not one."""


def new_namespace(pid: int, epoch: int, entropy: bytes) -> str:
    """The auto namespace ``p<PID>t<EPOCH>r<8 hex>`` (entropy: 4 bytes from os.urandom)."""
    if len(entropy) != 4:
        raise ValueError("namespace entropy must be exactly 4 bytes")
    return f"p{pid}t{epoch}r{entropy.hex()}"


def runner_token(pid: int, started: float) -> str:
    """What ``shoal run`` exports in SHOAL_RUNNER: its pid and process start time."""
    return f"{pid}:{started:.2f}"


def parse_runner_token(token: str) -> tuple[int, float] | None:
    pid, sep, started = token.partition(":")
    try:
        return (int(pid), float(started)) if sep else None
    except ValueError:
        return None


def is_auto_namespace(token: str) -> bool:
    return _AUTO_NAMESPACE_RE.fullmatch(token) is not None


def is_namespace(token: str) -> bool:
    """True for any namespace shoal could have made: auto tokens and valid forced ones."""
    return FORCED_NAMESPACE_RE.fullmatch(token) is not None


def forced_namespace_problem(value: str) -> str | None:
    """Why ``value`` cannot be a forced namespace, or None when it can."""
    if value == "":
        return "it is empty"
    if not value.isascii():
        return "it contains non-ASCII characters"
    if len(value) > 32:
        return f"it is {len(value)} characters long (at most 32)"
    if "_" in value:
        return "it contains an underscore, which would make schema names ambiguous"
    if "-" in value:
        return "it contains a hyphen, which is not valid in an unquoted SQL identifier"
    if value != value.lower():
        return "it contains capital letters, which PostgreSQL would fold to lower case"
    if FORCED_NAMESPACE_RE.fullmatch(value) is None:
        return "it contains characters other than a-z and 0-9"
    return None


def worker_id(xdist_worker: str | None) -> str:
    """The worker id: the xdist worker name (``gwN``), or ``main`` without xdist."""
    if xdist_worker is None:
        return MAIN_WORKER
    if _WORKER_RE.fullmatch(xdist_worker) is None:
        raise InvalidName(f"{xdist_worker!r} is not an xdist worker id (expected gwN)")
    return xdist_worker


def worker_number(worker: str) -> int | None:
    """N for ``gwN``; None for ``main``."""
    match = _WORKER_RE.fullmatch(worker)
    if match is None:
        raise InvalidName(f"{worker!r} is not a worker id (expected gwN or main)")
    return int(match.group(1)) if match.group(1) is not None else None


def schema_name(namespace: str, worker: str) -> str:
    """The worker schema ``test_<namespace>_<worker>``; the same name in every database."""
    name = f"test_{namespace}_{worker}"
    if _SCHEMA_RE.fullmatch(name) is None:
        raise InvalidName(f"cannot build a schema name from {namespace!r} and {worker!r}")
    return name


@dataclass(frozen=True)
class SchemaName:
    namespace: str
    worker: str


def parse_schema(name: str) -> SchemaName | None:
    """(namespace, worker) for a shoal worker schema; None for anything else."""
    match = _SCHEMA_RE.fullmatch(name)
    if match is None:
        return None
    return SchemaName(namespace=match.group(1), worker=match.group(2))


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


def connection_label(worker: str, namespace: str, suffix: str | None = None) -> str:
    """``pytest_<worker>_<namespace>[_<suffix>]``, cut to 63 bytes on a character boundary."""
    if worker not in (MAIN_WORKER, LEASE_WORKER) and _WORKER_RE.fullmatch(worker) is None:
        raise InvalidName(f"{worker!r} is not a worker id")
    if FORCED_NAMESPACE_RE.fullmatch(namespace) is None:
        raise InvalidName(f"{namespace!r} is not a namespace")
    label = f"pytest_{worker}_{namespace}"
    if suffix:
        label = f"{label}_{suffix}"
    return _truncate_utf8(label, MAX_IDENTIFIER_BYTES)


# What shoal's own connections that belong to no run are labelled with (``shoal_<tool>``):
# never ``pytest_…``, so they can never make a namespace look live.
TOOLS: Final = ("admin", "probe", "sweep", "ps", "locks", "pool", "demo", "embedded")


def tool_label(tool: str) -> str:
    """``shoal_<tool>``: the label of a connection of a command, not of a run."""
    if tool not in TOOLS:
        raise InvalidName(f"{tool!r} is not one of shoal's tools {TOOLS}")
    return f"shoal_{tool}"


def admin_label(worker: str, namespace: str) -> str:
    """The label of a run's own connections that create, claim and drop its schemas."""
    return connection_label(worker, namespace, "admin")


def lease_label(namespace: str, holder: str) -> str:
    """The label of a run's lease connection; ``holder`` is the worker that holds it."""
    return connection_label(LEASE_WORKER, namespace, holder)


@dataclass(frozen=True)
class Label:
    worker: str
    namespace: str
    suffix: str | None

    @property
    def is_lease(self) -> bool:
        return self.worker == LEASE_WORKER


def parse_label(label: str) -> Label | None:
    """Parse an ``application_name``; tolerant of PostgreSQL's 63-byte truncation."""
    match = _LABEL_RE.fullmatch(label)
    if match is None:
        return None
    return Label(worker=match.group(1), namespace=match.group(2), suffix=match.group(3))


def preferred_ddl_slot(worker: str, slot_count: int) -> int:
    """The worker's preferred DDL slot, from the number in its ``gwN`` id (``main``: 0).

    Derived from the worker id itself, never from digits found elsewhere in a name:
    schema names carry the PID, and matching the first digit run put every worker of
    a run into the same slot.
    """
    if slot_count < 1:
        raise ValueError("slot_count must be at least 1")
    number = worker_number(worker)
    return 0 if number is None else number % slot_count


def ddl_slot_lock(slot: int) -> tuple[int, int]:
    """The two-int advisory lock key of DDL slot ``slot`` (taken in the control database)."""
    return (LOCK_CLASS, slot)


def extension_lock() -> tuple[int, int]:
    """Advisory lock key serialising CREATE EXTENSION within one database."""
    return (LOCK_CLASS, _EXTENSION_LOCK)


def database_lock() -> tuple[int, int]:
    """Advisory lock key serialising CREATE DATABASE on the embedded server."""
    return (LOCK_CLASS, _DATABASE_LOCK)


# SQL LIKE pattern matching every schema shoal installs an extension into.
EXTENSION_SCHEMA_LIKE: Final = "shoal\\_ext\\_%"


def extension_schema(extension: str) -> str:
    """The schema shoal installs a missing extension into (never a worker schema)."""
    return "shoal_ext_" + re.sub(r"[^a-z0-9_]", "_", extension.lower())


_REPORT_FILE_RE: Final = re.compile(r"(\d{8}T\d{6}Z)_([a-z0-9]{1,32})\.json")
_REPORT_TIME_FORMAT: Final = "%Y%m%dT%H%M%SZ"


def report_filename(namespace: str, started: datetime) -> str:
    """``<UTC timestamp>_<namespace>.json``: sorts by time; the namespace keeps two runs
    that start in the same second apart."""
    if FORCED_NAMESPACE_RE.fullmatch(namespace) is None:
        raise InvalidName(f"{namespace!r} is not a namespace")
    return f"{started.astimezone(UTC).strftime(_REPORT_TIME_FORMAT)}_{namespace}.json"


def report_glob() -> str:
    return "*_*.json"


def parse_report_filename(name: str) -> tuple[datetime, str] | None:
    match = _REPORT_FILE_RE.fullmatch(name)
    if match is None:
        return None
    started = datetime.strptime(match.group(1), _REPORT_TIME_FORMAT).replace(tzinfo=UTC)
    return started, match.group(2)


def database_key_problem(key: str) -> str | None:
    """Why ``key`` cannot name a database, or None when it can."""
    if len(key.encode()) > MAX_IDENTIFIER_BYTES:
        return f"it is {len(key.encode())} bytes long; PostgreSQL truncates names at 63"
    if _DATABASE_KEY_RE.fullmatch(key) is None:
        return "expected lower-case letters, digits and underscores, not starting with a digit"
    return None


def schema_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as a search-path schema, or None when it can."""
    if _SCHEMA_NAME_RE.fullmatch(name) is None:
        return "expected an unquoted lower-case SQL identifier of at most 63 bytes"
    return None


@dataclass(frozen=True)
class PoolSchemaName:
    fingerprint: str  # the first 12 hex digits of the setup's fingerprint
    token: str
    ready: bool


def pool_schema_name(fingerprint: str, token: str, *, ready: bool) -> str:
    """``shoalpool_<fp12>_<token>`` (ready) or ``shoalbuild_<fp12>_<token>`` (building).

    ``token`` is 8 hex digits (4 bytes from os.urandom); a ready schema keeps the token it
    was built under, so the rename that publishes it cannot collide with another build.
    """
    if _FINGERPRINT_RE.fullmatch(fingerprint) is None:
        raise InvalidName(f"{fingerprint!r} is not a setup fingerprint (hex digits)")
    prefix = "shoalpool" if ready else "shoalbuild"
    name = f"{prefix}_{fingerprint[:POOL_FINGERPRINT_CHARS]}_{token}"
    if _POOL_SCHEMA_RE.fullmatch(name) is None:
        raise InvalidName(f"cannot build a pool schema name from {token!r}")
    return name


def pool_ready_prefix(fingerprint: str) -> str:
    """What every ready pool schema of ``fingerprint`` starts with (``shoalpool_<fp12>_``)."""
    return pool_schema_name(fingerprint, "00000000", ready=True).removesuffix("00000000")


def parse_pool_schema(name: str) -> PoolSchemaName | None:
    """Fingerprint prefix, token and state of a pool schema; None for anything else."""
    match = _POOL_SCHEMA_RE.fullmatch(name)
    if match is None:
        return None
    return PoolSchemaName(
        fingerprint=match.group(2), token=match.group(3), ready=match.group(1) == "pool"
    )


def fingerprint_matches(name: PoolSchemaName, fingerprint: str) -> bool:
    """Whether the pool schema ``name`` was built for the full ``fingerprint``'s prefix."""
    return fingerprint[:POOL_FINGERPRINT_CHARS] == name.fingerprint


def pool_claim_lock(schema: str) -> tuple[int, int]:
    """Transaction advisory lock taken (in the pool's database) to claim or drop ``schema``."""
    return (POOL_CLAIM_CLASS, zlib.crc32(schema.encode()) & 0x7FFFFFFF)


def pool_refill_lock(fingerprint: str) -> tuple[int, int]:
    """Session advisory lock held (in the pool's database) by the one refill of a fingerprint."""
    return (POOL_REFILL_CLASS, zlib.crc32(fingerprint.encode()) & 0x7FFFFFFF)


def pool_log_filename(namespace: str) -> str:
    """The log of the background refill started at the end of run ``namespace``."""
    if FORCED_NAMESPACE_RE.fullmatch(namespace) is None:
        raise InvalidName(f"{namespace!r} is not a namespace")
    return f"pool-warm_{namespace}.log"


def refill_record_filename(project: str) -> str:
    """The record of a project's last pool refill (``project``: :func:`project_key`)."""
    return f"pool-refill_{project}.json"


def django_databases_filename(project: str) -> str:
    """The list of Django test databases shoal has put a project's schemas in."""
    return f"{project}.json"


def django_listing_name(name: str) -> str:
    """How ``shoal ps`` and the sweep name a remembered Django test database."""
    return f"django:{name}"


def pool_log_glob() -> str:
    return "pool-warm_*.log"


def parse_pool_log_filename(name: str) -> str | None:
    match = _POOL_LOG_RE.fullmatch(name)
    return None if match is None else match.group(1)


def project_key(root: str) -> str:
    """12 hex digits naming a project by its root directory (pool ownership, refill logs)."""
    import hashlib

    return hashlib.sha256(root.encode()).hexdigest()[:12]


def namespace_lock(namespace: str) -> tuple[int, int]:
    """Session advisory lock a run forced to ``namespace`` holds (in the control database)
    for as long as it runs, so that a second run forced to the same one is refused."""
    return (NAMESPACE_CLASS, zlib.crc32(namespace.encode()) & 0x7FFFFFFF)


@dataclass(frozen=True)
class ToDropName:
    namespace: str
    worker: str
    token: str


def to_drop_name(namespace: str, worker: str, token: str) -> str:
    """``shoaldrop_<namespace>_<worker>_<token>``: a worker schema renamed for dropping.

    ``token`` is 8 hex digits (4 bytes from os.urandom), so a name never collides with
    one an earlier teardown left for the reaper.
    """
    name = f"shoaldrop_{namespace}_{worker}_{token}"
    if _TO_DROP_RE.fullmatch(name) is None or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise InvalidName(
            f"cannot build a to-drop schema name from {namespace!r}, {worker!r} and {token!r}"
        )
    return name


def parse_to_drop(name: str) -> ToDropName | None:
    """Namespace, worker and token of a to-drop schema; None for anything else."""
    match = _TO_DROP_RE.fullmatch(name)
    if match is None:
        return None
    return ToDropName(namespace=match.group(1), worker=match.group(2), token=match.group(3))


def to_drop_like(namespace: str) -> str:
    """SQL LIKE pattern of the to-drop schemas of one run."""
    if FORCED_NAMESPACE_RE.fullmatch(namespace) is None:
        raise InvalidName(f"{namespace!r} is not a namespace")
    return f"shoaldrop\\_{namespace}\\_%"


def to_drop_lock(schema: str) -> tuple[int, int]:
    """Session advisory lock held (in the schema's database) while ``schema`` is dropped."""
    return (TO_DROP_CLASS, zlib.crc32(schema.encode()) & 0x7FFFFFFF)


# ``shoal serve --queue postgresql://…``: the schema the fleet's tables live in (never
# ``public``), the name of each node, the label of its connections, and the advisory locks
# that make the schema's creation and the line's order race-free across nodes.
SERVE_SCHEMA: Final = "shoal_serve"
SERVE_LOCK_CLASS: Final = zlib.crc32(b"shoal-serve") & 0x7FFFFFFF
# NOTIFY channels: a job joined the line (idle nodes look at its head), a cancel was asked
# (the node running the job stops it).
SERVE_LINE_CHANNEL: Final = "shoal_serve_line"
SERVE_CANCEL_CHANNEL: Final = "shoal_serve_cancel"
_SERVE_SCHEMA_LOCK: Final = 1
SERVE_LINE_CLASS: Final = zlib.crc32(b"shoal-serve-line") & 0x7FFFFFFF
_SERVE_NODE_CHARS: Final = re.compile(r"[^A-Za-z0-9.-]+")
_SERVE_NODE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,39}-[0-9]{1,5}-[0-9a-f]{8}")
_SERVE_LABEL_PREFIX: Final = "shoal_serve_"


def serve_node_id(name: str, port: int, token: str) -> str:
    """``<name>-<port>-<token>``: one ``shoal serve`` process of a fleet.

    ``name`` is the host name (or the configured node name), cut to 40 characters of
    ``[A-Za-z0-9.-]``; ``token`` is 8 hex digits (4 bytes from os.urandom), so a restarted
    node is a new node and never inherits the jobs of the process it replaces.
    """
    cleaned = _SERVE_NODE_CHARS.sub("-", name).strip("-.")[:40].strip("-.") or "node"
    node = f"{cleaned}-{port}-{token}"
    if _SERVE_NODE_RE.fullmatch(node) is None:
        raise InvalidName(f"cannot build a node name from {name!r}, {port!r} and {token!r}")
    return node


def is_serve_node_id(node: str) -> bool:
    return _SERVE_NODE_RE.fullmatch(node) is not None


def serve_label(node: str) -> str:
    """``shoal_serve_<node>``: the application_name of a node's queue connections.

    Never ``pytest_…``: a node can never make a test namespace look live.
    """
    if not is_serve_node_id(node):
        raise InvalidName(f"{node!r} is not a shoal serve node name")
    return _truncate_utf8(_SERVE_LABEL_PREFIX + node, MAX_IDENTIFIER_BYTES)


def parse_serve_label(label: str) -> str | None:
    """The node a queue connection belongs to; None for any other label (or a cut one)."""
    node = label.removeprefix(_SERVE_LABEL_PREFIX)
    return node if label.startswith(_SERVE_LABEL_PREFIX) and is_serve_node_id(node) else None


def serve_schema_lock() -> tuple[int, int]:
    """Transaction advisory lock under which a node creates or upgrades the queue's schema."""
    return (SERVE_LOCK_CLASS, _SERVE_SCHEMA_LOCK)


def serve_line_lock(schema: str) -> tuple[int, int]:
    """Transaction advisory lock taken to join the line kept in ``schema`` or to leave it
    from its head: one node at a time, so sequence order, commit order and start order are
    one order. Fleets in other schemas of the same database take other locks."""
    return (SERVE_LINE_CLASS, zlib.crc32(schema.encode()) & 0x7FFFFFFF)


# Django's database mode: a whole database per worker, ``test_<name>_<namespace>_<worker>``
# (``<name>`` the alias's test database name without Django's ``test_``), cloned from a
# template database ``shoaltpl_<fp12>`` built once per setup fingerprint. The namespace
# holds no underscore, so the last two parts of a name are always namespace and worker.
_WORKER_DATABASE_RE: Final = re.compile(r"test_([a-z0-9_]+?)_([a-z0-9]{1,32})_(gw\d+|main)")
WORKER_DATABASE_LIKE: Final = "test\\_%"
_TEMPLATE_RE: Final = re.compile(r"shoaltpl_([0-9a-f]{12})")
TEMPLATE_LIKE: Final = "shoaltpl\\_%"
# Taken shared by every clone of a template and exclusively by its build or drop.
TEMPLATE_CLASS: Final = zlib.crc32(b"shoal-template") & 0x7FFFFFFF
_NAME_HASH_CHARS: Final = 8


@dataclass(frozen=True)
class WorkerDatabaseName:
    name: str  # the (possibly shortened) name part
    namespace: str
    worker: str


def worker_database_name(test_database: str, namespace: str, worker: str) -> str:
    """``test_<name>_<namespace>_<worker>`` for the test database ``test_database``.

    At most 63 bytes: a name part that does not fit (or is not lower-case ``[a-z0-9_]``)
    is shortened and ends in 8 hex digits of a hash of the whole test database name, so
    two long names sharing a beginning still get two databases.
    """
    if FORCED_NAMESPACE_RE.fullmatch(namespace) is None:
        raise InvalidName(f"{namespace!r} is not a namespace")
    if _WORKER_RE.fullmatch(worker) is None:
        raise InvalidName(f"{worker!r} is not a worker id")
    part = test_database.removeprefix("test_")
    suffix = f"_{namespace}_{worker}"
    budget = MAX_IDENTIFIER_BYTES - len("test_") - len(suffix)
    clean = re.sub(r"[^a-z0-9_]", "_", part.lower())
    if clean != part or len(clean) > budget or not clean:
        digest = f"{zlib.crc32(test_database.encode()) & 0xFFFFFFFF:08x}"
        clean = f"{clean[: budget - _NAME_HASH_CHARS - 1].rstrip('_')}_{digest}".lstrip("_")
    name = f"test_{clean}{suffix}"
    if parse_worker_database(name) is None or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise InvalidName(f"cannot build a worker database name from {test_database!r}")
    return name


def parse_worker_database(name: str) -> WorkerDatabaseName | None:
    """Name part, namespace and worker of a worker database; None for anything else."""
    match = _WORKER_DATABASE_RE.fullmatch(name)
    if match is None:
        return None
    return WorkerDatabaseName(name=match.group(1), namespace=match.group(2), worker=match.group(3))


def template_database_name(fingerprint: str) -> str:
    """``shoaltpl_<fp12>``: the template worker databases of ``fingerprint`` are cloned from."""
    if _FINGERPRINT_RE.fullmatch(fingerprint) is None:
        raise InvalidName(f"{fingerprint!r} is not a setup fingerprint (hex digits)")
    return f"shoaltpl_{fingerprint[:POOL_FINGERPRINT_CHARS]}"


def parse_template_database(name: str) -> str | None:
    """The fingerprint prefix of a template database's name; None for anything else."""
    match = _TEMPLATE_RE.fullmatch(name)
    return None if match is None else match.group(1)


def template_lock(fingerprint: str) -> tuple[int, int]:
    """Advisory lock (control database) on the template of ``fingerprint``: shared while
    cloning it, exclusive while building or dropping it."""
    return (TEMPLATE_CLASS, zlib.crc32(fingerprint.encode()) & 0x7FFFFFFF)
