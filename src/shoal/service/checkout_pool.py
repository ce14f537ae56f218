"""A warm pool of ready checkouts of the default branch, built while nobody waits for one.

Layout under the state directory::

    pool/<commit>-<key>-<nonce>/   a ready entry, laid out like a job's: work/, home/, start
    pool/.build-<nonce>/           an entry being built (at startup: a crash's leftover)
    trash/<name>/                  removed checkouts, deleted by the pool's thread

An entry gets its ready name only by the rename that ends its build, and a job takes one
by renaming it to ``jobs/<id>``. Both renames are atomic, so no half-built entry is ever
taken and no two jobs get the same one; a job that finds none makes its own checkout.
``key`` fingerprints what an entry was built with besides the commit (sparse paths,
prepare command, the HOME template's files) and the machine's boot: after a reboot an
entry may hold files the kernel never wrote out, so entries from before one no longer
match and go. With a prepare command the key is new in every process: what the command
did depends on things no fingerprint sees (its scripts, keys, the network), so only
entries prepared by this process are taken, and a restart builds the pool anew.

One thread builds the entries, one at a time, and only while no job waits for a
checkout slot: building is CPU work (2,000 files: ~0.2 s of a core), and a job's own
checkout comes first. The same thread deletes removed checkouts, off the jobs' path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shoal.service.git import Processes, WorkspaceError

log = logging.getLogger("shoal.serve")
Build = Callable[[Path, str, Processes], None]
BUILDING = ".build-"
MAX_BACKOFF_S = 300.0


def pool_key(*parts: object) -> str:
    """A short fingerprint of ``parts`` and of this boot of the machine."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: entries survive a reboot there, as they would a crash
        boot = ""
    return hashlib.sha256(repr((boot, *parts)).encode()).hexdigest()[:12]


def tree_stamp(root: Path | None) -> list[tuple[str, int, int]]:
    """Path, size and mtime of every file under ``root``: changes when its content does."""
    if root is None:
        return []
    stamp = []
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                stamp.append((os.path.relpath(path, root), info.st_size, info.st_mtime_ns))
    return sorted(stamp)


def disk_bytes(root: Path) -> int:
    """Bytes of the files only ``root`` holds: objects hardlinked to the base cost nothing."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if info.st_nlink == 1:
                total += info.st_blocks * 512
    return total


class CheckoutPool:
    def __init__(
        self,
        root: Path,
        trash: Path,
        *,
        size: int,
        max_bytes: int,
        key: str,
        build: Build,
        tick: Callable[[], None],
        may_build: Callable[[], bool],
        period_s: float,
    ) -> None:
        self.root = root
        self.trash = trash
        self.size = size
        self.max_bytes = max_bytes
        self.key = key
        self._build = build
        self._tick = tick  # e.g. fetch new commits, at most as often as configured
        self._may_build = may_build
        self._period_s = period_s
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._woken = False
        self._target: str | None = None
        self._entry_bytes = 0  # of the last entry built: what one more would cost
        self._failures = 0  # builds failed in a row (e.g. the prepare command fails)
        self._retry_at = 0.0
        self._processes = Processes()
        self._thread: threading.Thread | None = None
        self.claimed = 0
        self.missed = 0

    # -- what jobs do -----------------------------------------------------------------------

    def claim(self, commit: str, dest: Path) -> bool:
        """Move a ready entry of ``commit`` to ``dest`` (which must not exist); False if none."""
        if self.size == 0 or commit != self._target:  # only the default branch is pooled
            return False
        prefix = f"{commit}-{self.key}-"
        for name in sorted(self._names()):
            if not name.startswith(prefix):
                continue
            try:
                os.rename(self.root / name, dest)
            except FileNotFoundError:  # another job took it first, or it was just discarded
                continue
            with self._lock:
                self.claimed += 1
            self.poke()
            return True
        with self._lock:
            self.missed += 1
        return False

    def discard(self, path: Path) -> None:
        """Take ``path`` out of the way at once; the pool's thread deletes it later."""
        if not self._to_trash(path):
            return
        if self._thread is None:  # nobody would come to delete it
            self._empty_trash()
        else:
            self.poke()

    def _to_trash(self, path: Path) -> bool:
        self.trash.mkdir(parents=True, exist_ok=True)
        try:
            path.rename(self.trash / f"{path.name}-{secrets.token_hex(4)}")
        except FileNotFoundError:
            return False
        return True

    def retarget(self, commit: str | None) -> None:
        """Entries are of ``commit`` from now on: the ones of any other commit go."""
        with self._lock:
            if commit == self._target:
                return
            self._target = commit
            stale = [n for n in self._names() if not n.startswith(f"{commit}-{self.key}-")]
        for name in stale:
            if not name.startswith(BUILDING):  # a build in progress checks the target itself
                self._to_trash(self.root / name)  # deleted by the thread, off this path
        self.poke()

    @property
    def target(self) -> str | None:
        """The commit entries are built of: the default branch's, as of the last fetch."""
        return self._target

    def ready(self) -> int:
        prefix = f"{self._target}-{self.key}-"
        return sum(1 for name in self._names() if name.startswith(prefix))

    def status(self) -> dict[str, object]:
        return {
            "size": self.size,
            "ready": self.ready(),
            "commit": self._target,
            "entry_bytes": self._entry_bytes,
            "claimed": self.claimed,
            "missed": self.missed,
        }

    def poke(self) -> None:
        with self._wake:
            self._woken = True
            self._wake.notify_all()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Throw away what cannot be trusted (half-built, other settings or boot), then fill."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name in self._names():
            if name.startswith(BUILDING) or f"-{self.key}-" not in name:
                self._to_trash(self.root / name)  # deleted by the thread, first thing
        self._thread = threading.Thread(target=self._run, name="shoal-checkout-pool", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop building (killing the build in progress) and wait for the thread to end."""
        self._processes.stop()
        self.poke()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the thread -------------------------------------------------------------------------

    def _names(self) -> list[str]:
        try:
            return os.listdir(self.root)
        except FileNotFoundError:
            return []

    def _run(self) -> None:
        while not self._processes.stopped:
            self._empty_trash()
            try:
                self._tick()
            except WorkspaceError as exc:  # e.g. the remote is unreachable: try again later
                log.warning("checkout pool: %s", exc)
            built = False
            try:
                built = self._fill_one()
                self._failures = 0 if built else self._failures
            except (WorkspaceError, OSError) as exc:
                if not self._processes.stopped:
                    self._failed()
                    log.warning("checkout pool: could not build a checkout: %s", exc)
            except Exception:  # a bug: say so, and keep deleting and serving what is there
                self._failed()
                log.exception("checkout pool: building a checkout failed")
            if built:
                continue
            with self._wake:
                if not self._woken and not self._processes.stopped:
                    self._wake.wait(self._period_s)
                self._woken = False

    def _failed(self) -> None:
        # What failed once will likely fail again: back off to one try in 5 minutes.
        self._failures += 1
        backoff = min(self._period_s * 2 ** min(self._failures, 10), MAX_BACKOFF_S)
        self._retry_at = time.monotonic() + backoff

    def _capacity(self) -> int:
        if self.max_bytes <= 0:
            return 0
        if self._entry_bytes <= 0:
            return self.size
        return min(self.size, self.max_bytes // self._entry_bytes)

    def _fill_one(self) -> bool:
        target = self._target
        if self.size == 0 or target is None or self.ready() >= self._capacity():
            return False
        if not self._may_build() or time.monotonic() < self._retry_at:
            return False
        nonce = secrets.token_hex(6)
        building = self.root / f"{BUILDING}{nonce}"
        try:
            self._build(building, target, self._processes)
            self._entry_bytes = disk_bytes(building)
        except BaseException:
            self.discard(building)
            raise
        with self._lock:
            # Under the lock retarget takes: an entry of a superseded commit never shows.
            if target == self._target and not self._processes.stopped:
                building.rename(self.root / f"{target}-{self.key}-{nonce}")
                return True
        self.discard(building)
        return True

    def _empty_trash(self) -> None:
        try:
            names = os.listdir(self.trash)
        except FileNotFoundError:
            return
        for name in names:
            if self._processes.stopped and self._thread is not None:
                return
            shutil.rmtree(self.trash / name, ignore_errors=True)
