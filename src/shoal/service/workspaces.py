"""Per-job git checkouts made from one warm base clone.

Layout under the state directory::

    base.git/          bare clone of the repository (auto-gc off, so objects stay put)
    base.lock          flock: shared while a checkout reads the base, exclusive to write it
    jobs/<id>/work     the job's ``git clone --local`` (objects hardlinked to the base)
    jobs/<id>/home     the job's private HOME
    jobs/<id>/start    the commit the job started from
    pool/, trash/      ready checkouts and removed ones (:mod:`.checkout_pool`)

Concurrent ``git worktree add`` from one repository races on the repository's lock files
(measured: 6-23 failures in 160 here); each job cloning the base and working only in its
own clone leaves nothing shared to lock but the base's refs, which only refresh and
saving a branch write, under the exclusive lock. The agent itself holds no lock.

A job on the default branch takes a ready checkout from the warm pool when there is one
(a rename: milliseconds); otherwise it makes its own. Either way checkouts are made at
most ``checkout_slots`` at a time: ten at once on two cores took 10x as long each, so
capacity 2 had twice the throughput of capacity 10.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.conninfo import mask
from shoal.service.checkout_pool import CheckoutPool, pool_key, tree_stamp
from shoal.service.git import Processes, WorkspaceError, git, run

if TYPE_CHECKING:
    from shoal.service.settings import ServeSettings

__all__ = ["MAX_DIFF_FILES", "Workspace", "WorkspaceError", "Workspaces", "checkout_env", "git"]
MAX_DIFF_FILES = 200
_IDENTITY = ("-c", "user.name=shoal", "-c", "user.email=shoal@localhost")
# A pool entry is checked out on this branch; the job that takes it renames it to its own.
POOL_BRANCH = "shoal/pool"
# How often the pool's thread looks for new commits (never more often than base_refresh_s
# allows) and for room to build, when nothing wakes it sooner.
POOL_PERIOD_S = 5.0
_ENV_PREFIX = "SHOAL_SERVE_"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def checkout_env(home: Path, job_id: str | None = None) -> dict[str, str]:
    """The environment of a job's processes: HOME and XDG under ``home``, SHOAL_JOB_ID."""
    # Nothing of the service's own configuration reaches them: the token lives there.
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIX)}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_STATE_HOME=str(home / ".local/state"),
    )
    if job_id is not None:
        env["SHOAL_JOB_ID"] = job_id
    return env


@dataclass(frozen=True)
class Workspace:
    job_id: str
    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def branch(self) -> str:
        return f"shoal/job-{self.job_id}"


class Workspaces:
    def __init__(
        self,
        state_dir: Path,
        repo: str,
        *,
        refresh_s: float = 30.0,
        pool_size: int = 0,
        pool_max_bytes: int = 4 << 30,
        checkout_slots: int | None = None,
        sparse_paths: Sequence[str] | None = None,
        prepare: Sequence[str] | None = None,
        home_template: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.repo = repo
        self.base = state_dir / "base.git"
        self.jobs_dir = state_dir / "jobs"
        self._lock_path = state_dir / "base.lock"
        self._refresh_s = refresh_s
        self._refreshed = 0.0
        self.sparse_paths = tuple(sparse_paths or ())
        # What pool entries are prepared with; a job asking for anything else makes its own.
        self._prepare = tuple(prepare) if prepare else None
        self._home_template = home_template
        self._slots = threading.BoundedSemaphore(checkout_slots or cores())
        self._waiting_lock = threading.Lock()
        self._waiting = 0  # jobs waiting for a checkout slot: the pool builds only at 0
        self.pool = CheckoutPool(
            state_dir / "pool",
            state_dir / "trash",
            size=pool_size,
            max_bytes=pool_max_bytes,
            key=pool_key(
                self.sparse_paths,
                self._prepare,
                tree_stamp(home_template),
                # See checkout_pool: prepared entries are never taken by another process.
                secrets.token_hex(8) if self._prepare else "",
            ),
            build=self._build_entry,
            tick=lambda: self.refresh(every=max(self._refresh_s, POOL_PERIOD_S)),
            may_build=lambda: self._waiting == 0,
            period_s=POOL_PERIOD_S,
        )

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> Workspaces:
        pool_size = settings.max_concurrency if settings.pool_size is None else settings.pool_size
        return cls(
            settings.state_dir,
            settings.repo,
            refresh_s=settings.base_refresh_s,
            pool_size=pool_size,
            pool_max_bytes=settings.pool_max_disk_mb << 20,
            checkout_slots=settings.checkout_concurrency,
            sparse_paths=settings.sparse_paths,
            prepare=settings.prepare,
            home_template=settings.home_template,
        )

    def start(self) -> None:
        """Start the pool's thread: it fills the pool and deletes removed checkouts."""
        self.pool.start()

    def close(self) -> None:
        self.pool.close()

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ensure_base(self) -> None:
        """Clone the repository once; later calls fetch it (at most every ``refresh_s``)."""
        with self._locked(exclusive=True):
            if not (self.base / "HEAD").exists():
                self._clone_base()
                cloned = True
            else:
                cloned = False
        if cloned:
            self.pool.retarget(self._resolve("HEAD"))
        else:
            self.refresh(force=True)

    def _clone_base(self) -> None:
        staging = self.state_dir / f"base.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        source = self.repo
        if "://" not in source and not Path(source).is_absolute():
            source = str(Path(source).resolve())
        settings = (
            # Automatic gc or maintenance would repack the objects every checkout links to.
            "gc.auto=0",
            "maintenance.auto=false",
        )
        configs = [arg for setting in settings for arg in ("--config", setting)]
        git("clone", "--bare", "--quiet", *configs, "--", source, str(staging))
        # A bare clone has no fetch refspec; refresh keeps branches under their own names.
        git("config", "remote.origin.fetch", "+refs/heads/*:refs/heads/*", cwd=staging)
        staging.rename(self.base)
        self._refreshed = time.monotonic()

    def refresh(self, *, force: bool = False, every: float | None = None) -> None:
        """Fetch new commits if the last fetch is older than ``every`` (``refresh_s``)."""
        interval = self._refresh_s if every is None else every
        if not force and time.monotonic() - self._refreshed < interval:
            return
        with self._locked(exclusive=True):
            # No --prune: it would delete the shoal/job-* branches saved here.
            git("fetch", "--quiet", "--tags", "origin", cwd=self.base)
            self._refreshed = time.monotonic()
        # New commits on the default branch make the pool's entries stale.
        self.pool.retarget(self._resolve("HEAD"))

    def _resolve(self, ref: str) -> str | None:
        try:
            found = git(
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                f"{ref}^{{commit}}",
                cwd=self.base,
            )
        except WorkspaceError:
            return None
        return found.strip()

    def workspace(self, job_id: str) -> Workspace:
        return Workspace(job_id, self.jobs_dir / job_id)

    def prepare(
        self,
        job_id: str,
        ref: str | None,
        *,
        prepare: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        home_template: Path | None = None,
        prepare_timeout_s: float = 600,
    ) -> Workspace:
        space = self.workspace(job_id)
        shutil.rmtree(space.root, ignore_errors=True)
        wanted = ref or "HEAD"
        self.refresh()
        # Only a fetch moves HEAD, and every fetch tells the pool where it went: no git
        # process to ask again.
        commit = self.pool.target if ref is None else None
        commit = commit or self._resolve(wanted)
        if commit is None:
            self.refresh(force=True)
            commit = self._resolve(wanted)
        if commit is None:
            raise WorkspaceError(f"ref {wanted!r} was not found in {mask(self.repo)}")
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        same = (tuple(prepare) if prepare else None) == self._prepare
        if same and home_template == self._home_template and self.pool.claim(commit, space.root):
            git("branch", "--move", POOL_BRANCH, space.branch, cwd=space.work)
            return space
        space.root.mkdir(parents=True)
        _make_home(space.home, home_template)
        self._checkout(space.work, commit, space.branch, for_job=True)
        (space.root / "start").write_text(commit)
        if prepare:
            with self._locked(exclusive=False):
                self._run_prepare(prepare, space.work, env, prepare_timeout_s)
        return space

    def _build_entry(self, root: Path, commit: str, processes: Processes) -> None:
        """A pool entry: what :meth:`prepare` makes, before any job is known."""
        root.mkdir(parents=True)
        _make_home(root / "home", self._home_template)
        self._checkout(root / "work", commit, POOL_BRANCH, for_job=False, processes=processes)
        (root / "start").write_text(commit)
        if self._prepare:
            # HOME is the one the job will have; SHOAL_JOB_ID is unknown this early.
            with self._locked(exclusive=False):
                env = checkout_env(root / "home")
                self._run_prepare(self._prepare, root / "work", env, 600, processes)

    @contextlib.contextmanager
    def _checkout_slot(self, *, for_job: bool) -> Iterator[None]:
        if for_job:
            with self._waiting_lock:
                self._waiting += 1
        try:
            self._slots.acquire()
        finally:
            if for_job:
                with self._waiting_lock:
                    self._waiting -= 1
                    idle = self._waiting == 0
                if idle:
                    self.pool.poke()
        try:
            yield
        finally:
            self._slots.release()

    def _checkout(
        self,
        work: Path,
        commit: str,
        branch: str,
        *,
        for_job: bool,
        processes: Processes | None = None,
    ) -> None:
        with self._checkout_slot(for_job=for_job):
            with self._locked(exclusive=False):
                # --no-checkout: only the hardlinking reads the base; the checkout happens
                # outside the lock, in the job's own repository.
                clone = ("clone", "--local", "--no-checkout", "--quiet")
                git(*clone, str(self.base), str(work), processes=processes)
            if self.sparse_paths:
                cone = ("sparse-checkout", "set", "--cone", "--", *self.sparse_paths)
                git(*cone, cwd=work, processes=processes)
            git("checkout", "--quiet", "-b", branch, commit, cwd=work, processes=processes)

    def _run_prepare(
        self,
        argv: Sequence[str],
        work: Path,
        env: Mapping[str, str] | None,
        timeout: float,
        processes: Processes | None = None,
    ) -> None:
        try:
            done = run(argv, cwd=work, env=env, timeout=timeout, processes=processes)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WorkspaceError(f"prepare command {argv[0]!r} failed: {exc}") from None
        if done.returncode != 0:
            tail = mask((done.stderr or done.stdout).strip()[-2000:])
            raise WorkspaceError(f"prepare command exited {done.returncode}: {tail}")

    def finish(
        self, space: Workspace, *, save_branch: bool
    ) -> tuple[dict[str, object], str | None]:
        """The diff summary of the job's changes, and the branch they were saved to (if asked)."""
        start = (space.root / "start").read_text().strip()
        git("add", "--all", cwd=space.work)
        numstat = git("diff", "--cached", "--numstat", "--no-renames", start, cwd=space.work)
        files: list[dict[str, str | int]] = []
        for line in numstat.splitlines():
            added, deleted, path = line.split("\t", 2)
            # Binary files have "-" counts.
            files.append(
                {
                    "path": path,
                    "insertions": int(added) if added.isdigit() else 0,
                    "deletions": int(deleted) if deleted.isdigit() else 0,
                }
            )
        summary: dict[str, object] = {
            "files_changed": len(files),
            "insertions": sum(int(f["insertions"]) for f in files),
            "deletions": sum(int(f["deletions"]) for f in files),
            "files": files[:MAX_DIFF_FILES],
        }
        if not save_branch or not files:
            return summary, None
        if git("status", "--porcelain", cwd=space.work).strip():
            message = f"shoal job {space.job_id}"
            git(*_IDENTITY, "commit", "--quiet", "--no-verify", "-m", message, cwd=space.work)
        with self._locked(exclusive=True):
            target = f"HEAD:refs/heads/{space.branch}"
            git("push", "--quiet", "--no-verify", "--force", str(self.base), target, cwd=space.work)
        return summary, space.branch

    def remove(self, job_id: str) -> None:
        # A rename now, the deletion later on the pool's thread: 2,000 files take ~40 ms to
        # delete, time the job's slot would otherwise stay taken.
        self.pool.discard(self.jobs_dir / job_id)

    def leftovers(self) -> list[str]:
        """Job ids with a directory under ``jobs/`` (at startup: all of them are orphans)."""
        if not self.jobs_dir.is_dir():
            return []
        return sorted(p.name for p in self.jobs_dir.iterdir())


def _make_home(home: Path, template: Path | None) -> None:
    if template is not None:
        shutil.copytree(template, home, symlinks=True)
    else:
        home.mkdir()
