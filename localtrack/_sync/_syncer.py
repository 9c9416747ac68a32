"""Syncing a store to a remote: which runs, one pass over them, status and --clean.

The Syncer holds the store's sync lock for one remote while open (two syncs would race on
the same state files), checks the remote and its id, and drives one RunUpload per changed
run. Runs go up concurrently on a bounded pool of ``jobs`` threads, kept for the Syncer's
life (the daemon's passes share it): one run is one task, so each run's uploads stay in the
order _upload documents and the remote stays readable; a fork waits for its parent. A run
that fails is reported pending and the others go on; a pass can be stopped or killed at any
point and simply run again. It never prints: the CLI shows its reports, and progress goes
through the Progress protocol.

What the threads share, and why it is safe: the report, the progress bar and ``down`` are
changed under ``_mutex``; the remote is one object: a DirRemote writes each object through
its own temporary, and pyarrow's filesystems are called concurrently by design (their async
calls and ``copy_files`` run one instance on a thread pool; only creating an S3 filesystem
races, and that happens once, before the pool starts). Each run's state file is its own.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import _fsutil, _layout, _locks, _naming, _sealer, _settings, _store
from .._codec import dumps, loads
from .._naming import ProjectName, RunId
from .._remotes import Remote, open_remote, remote_key
from .._remotes._dir import DirRemote
from ..errors import LocaltrackError, RemoteError, RunLockedError, RunNotFoundError, UsageError
from . import _artifact_upload
from ._upload import Pending, RunUpload, Stopped, no_link

log = logging.getLogger("localtrack")

_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 30.0
# Runs uploaded at a time unless ``jobs`` says otherwise (measured in benchmarks/bench_sync.py).
# A directory: every object is written, fsynced and renamed, then its folder fsynced; a few in
# flight keep the disk busy while Python works, more only queue on the same disk.
DIR_JOBS = 4
# An object store: every object is one HTTP round trip, mostly waiting; more in flight hide
# the latency.
OBJECT_STORE_JOBS = 16


def default_jobs(remote: Remote) -> int:
    """How many runs go up at a time to ``remote`` when ``jobs`` is not given."""
    return DIR_JOBS if isinstance(remote, DirRemote) else OBJECT_STORE_JOBS


class Progress(Protocol):
    """What the CLI shows while uploading; the library never prints."""

    def start(self, total_bytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def close(self) -> None: ...


@dataclass
class SyncReport:
    """What one sync did: ``pending`` maps each run not fully synced to the reason."""

    remote: str
    runs: int = 0
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    deleted: int = 0
    synced_runs: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.pending


@dataclass
class RunStatus:
    path: str
    state: str
    pending_files: int
    pending_bytes: int
    synced_at: float | None
    note: str = ""



class Syncer:
    """Syncs the runs of one local store to one remote (holds the store's sync lock while open)."""

    def __init__(self, root: Path, remote: Remote, targets: Iterable[str] = (), *, clean: bool = False,
                 retries: int = 4, jobs: int | None = None, progress: Progress | None = None,
                 stop: threading.Event | None = None) -> None:
        if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
            raise UsageError(f"jobs={jobs!r}: give how many runs to upload at a time, a whole "
                             f"number of 1 or more (default {default_jobs(remote)} for "
                             f"{remote.url!r}).")
        self.root = root
        self.remote = remote
        self.key = remote_key(remote.url)
        self.targets = list(targets)
        self.clean = clean
        self.retries = max(0, retries)
        self.jobs = default_jobs(remote) if jobs is None else jobs
        self.progress = progress
        self.stop = stop or threading.Event()
        self._lock = _locks.SyncLock(root / ".sync" / f"{self.key}.lock", remote.url)
        self._id_path = root / ".sync" / f"{self.key}.json"
        self.remote_id = self._recorded_id()
        self.down: RemoteError | None = None  # why the remote stopped this pass (transient)
        self.new_remote = False  # check() gave the remote its id: it holds no run yet
        self._mutex = threading.Lock()  # the report, the progress bar, ``down``: see the docstring
        self._pool: ThreadPoolExecutor | None = None  # made on the first pass with two runs
        self._skipped: set[_store.Skipped] = set()

    def __enter__(self) -> Syncer:
        no_link(self._id_path.parent)  # the lock and the remote's id are written there
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        finally:
            self._lock.release()

    # -- plumbing --------------------------------------------------------------------------------

    def call(self, fn: Any, *args: Any) -> Any:
        """Call a remote primitive, retrying transient failures with exponential backoff."""
        for attempt in range(self.retries + 1):
            if self.down is not None:
                raise self.down
            try:
                return fn(*args)
            except RemoteError as exc:
                if not exc.transient or attempt == self.retries or self.stop.is_set():
                    raise
                delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** attempt)
                log.info("%s; retrying in %.1f s", exc, delay)
                if self.stop.wait(delay):
                    raise
        raise AssertionError("unreachable")

    def advance(self, nbytes: int) -> None:
        if self.progress is not None:
            with self._mutex:  # a tqdm bar's count is not safe to update from several threads
                self.progress.advance(nbytes)

    def check(self) -> None:
        """One clear error for a bad URI, a missing bucket or refused credentials.

        Also reads the remote's id (``.localtrack-remote.json``, created on the first sync):
        when it differs from the one recorded here, the remote was wiped or replaced, and
        every run's state is ignored, so everything is checked and uploaded again.
        """
        self.down = None
        self.call(self.remote.check)
        self.new_remote = False
        try:
            found = loads(self.call(self.remote.get, _layout.REMOTE_ID))
            remote_id = found.get("id") if isinstance(found, dict) else None
        except FileNotFoundError:  # a new (or emptied) remote: runs need not be looked for there
            remote_id, self.new_remote = None, True
        except ValueError:
            remote_id = None
        if not isinstance(remote_id, str):
            ours = secrets.token_hex(8)
            self.call(self.remote.put, _layout.REMOTE_ID, dumps({"id": ours, "created": time.time()}))
            # Read back: another store's first sync may have put its id at the same moment;
            # whichever stayed is the remote's, and a remote someone else also writes is not new.
            try:
                found = loads(self.call(self.remote.get, _layout.REMOTE_ID))
            except (FileNotFoundError, ValueError):
                found = None
            remote_id = found.get("id") if isinstance(found, dict) else None
            remote_id = remote_id if isinstance(remote_id, str) else ours
            if remote_id != ours:
                self.new_remote = False
        if remote_id != self.remote_id:
            with _fsutil.storage_errors("record the remote's id in", self._id_path):
                _fsutil.ensure_dir(self._id_path.parent)
                _fsutil.atomic_write(self._id_path, dumps({"id": remote_id, "remote": self.remote.url}))
            self.remote_id = remote_id

    def _recorded_id(self) -> str | None:
        try:
            found = loads(self._id_path.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        value = found.get("id") if isinstance(found, dict) else None
        return value if isinstance(value, str) else None

    def select(self) -> list[tuple[ProjectName, RunId]]:
        """The runs to sync: every run of the store, or those the targets name.

        Listed by the store's one rule (_store.list_projects / list_runs); a folder that is not
        a readable project or run is left out with a warning, once per Syncer (the daemon lists
        the store again on every full pass).
        """
        if not _store.is_store(self.root):
            raise UsageError(f"No localtrack store at {str(self.root)!r}: pass --dir (or dir=) or set "
                             "LOCALTRACK_DIR.")
        wanted: dict[ProjectName, set[RunId] | None] = {}
        for target in self.targets:
            if "/" in target:
                project, rid = _naming.parse_path(target)
                if not _store.run_exists(self.root, project, rid):
                    raise RunNotFoundError(f"No run {rid!r} in project {project!r} under "
                                           f"{str(self.root)!r}.", project=project, run_id=rid)
                ids = wanted.setdefault(project, set())
                if ids is not None:
                    ids.add(rid)
            else:
                project = _naming.project_name(target)
                if not _layout.runs_dir(self.root, project).is_dir():
                    raise UsageError(f"No project {project!r} under {str(self.root)!r}.")
                wanted[project] = None
        if not self.targets:
            projects, skipped = _store.list_projects(self.root)
            self._warn(skipped)
            wanted = dict.fromkeys(projects)
        runs: list[tuple[ProjectName, RunId]] = []
        for project, ids in sorted(wanted.items()):
            if ids is None:
                listed, skipped = _store.list_runs(self.root, project)
                self._warn(skipped)
                ids = set(listed)
            else:
                ids = self._with_parents(project, ids)
            runs += [(project, rid) for rid in sorted(ids)]
        return runs

    def _with_parents(self, project: ProjectName, ids: set[RunId]) -> set[RunId]:
        """Named runs and the runs they were forked from: a fork's history starts with its
        parent's, which the remote must hold too (a whole project holds them already)."""
        todo, out = list(ids), set(ids)
        while todo:
            rid = todo.pop()
            fork = _store.read_meta(_layout.run_dir(self.root, project, rid),
                                    project=project, run_id=rid).get("fork")
            if isinstance(fork, dict) and isinstance(fork.get("run"), str):
                parent = _naming.run_id(fork["run"])
                if parent not in out:
                    out.add(parent)
                    todo.append(parent)
        return out

    def _warn(self, skipped: list[_store.Skipped]) -> None:
        for item in skipped:
            if item not in self._skipped:
                self._skipped.add(item)
                log.warning("skipped %s", item)

    # -- passes ----------------------------------------------------------------------------------

    def run_once(self, runs: Iterable[tuple[ProjectName, RunId]] | None = None) -> SyncReport:
        """One pass over the runs; a run that fails is reported pending, the others go on."""
        selected = self.select() if runs is None else list(runs)
        report = SyncReport(remote=self.remote.url, runs=len(selected))
        self.down = None
        todo = [run for run in (self._changed(p, r, report) for p, r in selected) if run is not None]
        if self.progress is not None:
            self.progress.start(sum(_pending_bytes(run) for run in todo))
        try:
            self._upload(todo, report)
            for project in sorted({project for project, _ in selected}):
                _artifact_upload.upload(self, project, report)
        except BaseException:
            self.stop.set()  # Ctrl-C, or a bug: the runs in flight stop at their next upload
            raise
        finally:
            self.new_remote = False  # later passes look: this pass may have left objects there
            if self.progress is not None:
                self.progress.close()
        report.synced_runs.sort()  # finished in any order
        if self.clean:
            for project, rid in selected:
                if f"{project}/{rid}" not in report.pending and not self.stop.is_set():
                    self._clean(project, rid, report)
        return report

    def _upload(self, todo: list[RunUpload], report: SyncReport) -> None:
        """Upload the runs, a fork after its parent: a fork's history starts with its parent's,
        so a reader of the remote must find the parent's rows there first. Forks are rare:
        usually this is one wave of every run."""
        waiting = {run.path: run for run in todo}
        parents = {run.path: run.parent() for run in todo}
        while waiting:
            blocked = True
            while blocked:  # a fork of a run left pending waits for the next sync
                blocked = False
                for path in [p for p in waiting if parents[p] in report.pending]:
                    report.pending[path] = (f"it is a fork of {parents[path]}, which is not fully "
                                            "synced yet")
                    del waiting[path]
                    blocked = True
            wave = [run for path, run in waiting.items() if parents[path] not in waiting]
            wave = wave or list(waiting.values())  # parents in a loop (damaged): all at once
            for run in wave:
                del waiting[run.path]
            self._wave(wave, report)

    def _wave(self, runs: list[RunUpload], report: SyncReport) -> None:
        """The runs on the pool, one task per run: its uploads stay in order in one thread."""
        if self.jobs == 1 or len(runs) < 2:
            for run in runs:
                self._one(run, report)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="localtrack-sync")
        futures = [self._pool.submit(self._one, run, report) for run in runs]
        try:
            for future in futures:
                future.result()
        finally:
            for future in futures:
                future.cancel()  # after a bug's exception, or Ctrl-C: start no further run

    def _changed(self, project: ProjectName, rid: RunId, report: SyncReport) -> RunUpload | None:
        """The run if it changed since its last sync (a few stat calls; no thread, no request)."""
        try:
            run = RunUpload(self, project, rid)
            sig = run.signature()
            return None if run.up_to_date(sig, run.live_holder(sig)) else run
        except (LocaltrackError, OSError) as exc:
            report.pending[f"{project}/{rid}"] = str(exc)
            log.warning("run %s/%s cannot be read: %s", project, rid, exc)
            return None

    def _one(self, run: RunUpload, report: SyncReport) -> None:
        """One run's upload, in a pool thread: what it did and why it stopped go to ``report``."""
        path = run.path
        if self.stop.is_set():
            with self._mutex:
                report.pending[path] = "stopped"
            return
        try:
            try:
                run.sync()
            finally:
                with self._mutex:
                    report.uploaded_files += run.uploaded_files
                    report.uploaded_bytes += run.uploaded_bytes
                    report.deleted += run.deleted
                    if run.uploaded_files or run.deleted:
                        report.synced_runs.append(path)
            if run.uploaded_files:
                log.info("synced %s: %d file(s), %s", path, run.uploaded_files,
                         human_bytes(run.uploaded_bytes))
        except Stopped as exc:
            with self._mutex:
                report.pending[path] = str(exc)
            log.info("run %s: %s", path, exc)
        except RemoteError as exc:
            with self._mutex:
                report.pending[path] = str(exc)
                if exc.transient and self.down is None:
                    self.down = exc  # the remote is unreachable: the other runs wait for the next pass
        except (Pending, LocaltrackError, OSError) as exc:
            with self._mutex:
                report.pending[path] = str(exc)
            log.warning("run %s is not fully synced to %s: %s", path, self.remote.url, exc)

    def _clean(self, project: ProjectName, rid: RunId, report: SyncReport) -> None:
        """Delete the local copy of a finished run (exit code 0) whose files are all on the
        remote. A failed run stays, as a crashed or preempted one does: it may be resumed."""
        run = RunUpload(self, project, rid)
        evs = _store.events(run.rdir, **run.ctx)
        if _store.end_state(evs) != "finished" or run.live_holder() is not None:
            return
        if not run.up_to_date(run.signature(), None):
            return
        try:
            problem = run.verify_remote()
        except (RemoteError, LocaltrackError) as exc:
            problem = str(exc)
        if problem:
            log.warning("not cleaning %s: %s on %s", run.path, problem, self.remote.url)
            return
        lock = _locks.RunLock(run.lock_path, **run.ctx)
        try:
            lock.acquire()
        except (RunLockedError, LocaltrackError):
            return
        try:
            with _sealer.hold(run.rdir, timeout=0):  # not while a sealer works on it
                if (run.rdir / _sealer.AGAIN).exists():
                    return  # sealing is still to come: the remote will change
                grave = (_layout.runs_dir(self.root, project)
                         / f"{_fsutil.TMP_PREFIX}{rid}-{secrets.token_hex(4)}")
                _fsutil.rename_durable(run.rdir, grave)
            # If we die here: a .tmp- dir that no reader lists; the next writer of the project sweeps it.
            shutil.rmtree(grave, ignore_errors=True)
        except TimeoutError:
            return
        finally:
            lock.release()
        _fsutil.unlink(run.lock_path)
        report.cleaned.append(run.path)
        # (report.cleaned has it: the CLI prints it once)
        log.debug("removed the local copy of %s: it is complete on %s", run.path, self.remote.url)

    def status(self) -> list[RunStatus]:
        out = []
        for project, rid in self.select():
            run = RunUpload(self, project, rid)
            note = ""
            try:
                files, nbytes = run.pending()
            except (LocaltrackError, OSError) as exc:
                files, nbytes, note = 0, 0, str(exc)
            # The lock before the events: read first, a run finishing meanwhile showed as crashed.
            live = _store.is_live(self.root, project, rid)
            state = "running" if live else _store.end_state(_store.events(run.rdir, **run.ctx))
            out.append(RunStatus(run.path, state, files, nbytes, run.state.synced_at, note))
        return out


def _pending_bytes(run: RunUpload) -> int:
    """For the progress bar only: a run that cannot be read counts nothing (its pass says why)."""
    try:
        return run.pending()[1]
    except (LocaltrackError, OSError):
        return 0


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def open_syncer(to: str | os.PathLike[str], dir: str | os.PathLike[str] | None = None,
                runs: Iterable[str] | str | None = None, **kw: Any) -> Syncer:
    if dir is not None and "://" in os.fspath(dir):
        raise UsageError(f"sync reads a local store; {os.fspath(dir)!r} is a URI. Sync from the "
                         "directory the runs were logged to (or a copy of it).")
    root = _settings.root_dir(dir)
    _store.refuse_non_store(root)  # a missing one: nothing to sync yet
    remote = open_remote(to)
    if isinstance(remote, DirRemote) and remote.root.resolve().is_relative_to(root.resolve()):
        raise UsageError(f"The remote {remote.url!r} is the store itself or inside it; choose a "
                         "directory outside the store.")
    targets = [runs] if isinstance(runs, str) else list(runs or [])
    return Syncer(root, remote, targets, **kw)

