"""The watching daemon: keep a remote in step with a store while runs are being written.

It only ever calls Syncer passes, so everything _upload guarantees holds here:
it can be killed at any instant and restarted; the runs a pass finds changed go
up on the Syncer's pool, ``jobs`` at a time, and a stop ends them between two
uploads. File events (watchdog) mark the runs they touch, and every run with a
live writer is marked each tick (its mapped log changes without events); marked
runs are synced at most once a second; a full pass every ``poll`` seconds
catches what events miss (a writer that died changes no file). Where events
cannot be trusted (NFS, Lustre, GPFS and other network file systems do not
report writes made on other nodes) or when ``poll`` is given, it polls only.
An unreachable remote is retried with exponential backoff (capped at 30 s) and
logged; the daemon never gives up. When a change waited longer than ``max_lag`` seconds
to reach the remote (too many runs for the pool, a slow remote), it says so, at most
once a minute, with what it saw: a daemon that silently trails its writers is the
failure users cannot see until a node is lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from .._fsutil import mount_type
from .._naming import ProjectName, RunId, project_name, run_id
from ..errors import LocaltrackError, RemoteError
from ._syncer import Syncer, SyncReport
from ._upload import STATE_DIR

log = logging.getLogger("localtrack")

DEFAULT_POLL = 10.0
_TICK = 1.0
_BACKOFF_BASE = 1.0
_BACKOFF_CAP = 30.0
DEFAULT_MAX_LAG = 10.0
_BEHIND_EVERY = 60.0
# File systems whose change events miss writes made on other hosts.
NETWORK_FS = frozenset({"nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "ceph", "beegfs",
                        "glusterfs", "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs", "9p", "afs",
                        "panfs", "orangefs", "pvfs2", "fuse.gcsfuse", "fuse.juicefs"})


class _Dirty:
    """Runs touched by file events since the last pass, each with when it was first touched
    (monotonic), so a pass knows how long its oldest change waited (the watchdog thread adds,
    the loop takes)."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self.runs: dict[tuple[ProjectName, RunId], float] = {}
        self.cond = threading.Condition()

    def touched(self, path: str) -> None:
        rel = os.path.relpath(os.path.realpath(path), self.root).split(os.sep)
        if len(rel) >= 3 and rel[1] == "runs" and not (len(rel) >= 4 and rel[3] == STATE_DIR):
            rid = rel[2]
        elif len(rel) == 3 and rel[1] == "locks" and rel[2].endswith(".lock"):
            rid = rel[2][:-5]
        else:
            return
        try:
            key = (project_name(rel[0]), run_id(rid))
        except LocaltrackError:
            return  # .tmp- directories of a creator, and anything not a run
        with self.cond:
            self.runs.setdefault(key, time.monotonic())
            self.cond.notify()

    def add_live(self) -> None:
        """Mark the runs whose lock file holds an owner record: a live writer appends through a
        memory map, which raises no file event, so these are looked at every tick."""
        for lock in Path(self.root).glob("*/locks/*.lock"):
            try:
                if lock.stat().st_size:
                    self.touched(str(lock))
            except OSError:
                continue

    def take(self) -> dict[tuple[ProjectName, RunId], float]:
        with self.cond:
            runs, self.runs = self.runs, {}
            return runs

    def wait(self, timeout: float) -> None:
        with self.cond:
            if not self.runs:
                self.cond.wait(timeout)


def _start_observer(root: Path, dirty: _Dirty) -> Any:
    """A watchdog observer feeding ``dirty``, or None when events cannot be had."""
    try:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        return None

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            for path in (event.src_path, getattr(event, "dest_path", "")):
                if path:
                    dirty.touched(os.fsdecode(path))

    observer = Observer()
    try:
        observer.schedule(Handler(), str(root), recursive=True)
        observer.start()
    except OSError as exc:  # e.g. the inotify watch limit
        log.warning("cannot watch %s for changes (%s); polling instead", root, exc)
        return None
    return observer


def watch(syncer: Syncer, poll: float | None = None, max_lag: float = DEFAULT_MAX_LAG) -> SyncReport:
    """Sync until ``syncer.stop`` is set; returns the totals."""
    interval = DEFAULT_POLL if poll is None else max(0.1, float(poll))
    fstype = mount_type(syncer.root)
    dirty = _Dirty(syncer.root)
    observer = None
    if poll is not None:
        mode = f"polling every {interval:g} s"
    elif fstype in NETWORK_FS:
        mode = f"polling every {interval:g} s ({fstype} does not report other hosts' writes)"
    else:
        observer = _start_observer(syncer.root, dirty)
        mode = "watching file events" if observer is not None else f"polling every {interval:g} s"
    log.info("sync daemon: %s -> %s, %s, up to %d run(s) at a time", syncer.root, syncer.remote.url,
             mode, syncer.jobs)
    syncer.retries = min(syncer.retries, 1)  # this loop retries, with backoff
    total = SyncReport(remote=syncer.remote.url)
    failures = 0
    retry_at = next_full = 0.0
    checked = False
    behind = _Behind(syncer.remote.url, max_lag, syncer.jobs)
    try:
        while not syncer.stop.is_set():
            if observer is not None:
                dirty.add_live()
            now = time.monotonic()
            if now >= retry_at and (now >= next_full or dirty.runs):
                full = now >= next_full
                taken = {} if full else dirty.take()
                runs = None if full else sorted(taken)
                try:
                    if not checked:
                        syncer.check()
                        checked = True
                    report = syncer.run_once(runs)
                    error = syncer.down
                except RemoteError as exc:
                    if not exc.transient and failures == 0 and not checked:
                        raise  # a bad bucket or credentials: say so once, do not spin
                    report, error = None, exc
                _add(total, report)
                if error is not None:
                    failures += 1
                    delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (failures - 1))
                    retry_at = next_full = time.monotonic() + delay
                    checked = False
                    pending = len(report.pending) if report is not None else "all"
                    log.warning("cannot sync to %s: %s; retrying in %.0f s (%s run(s) pending)",
                                syncer.remote.url, error, delay, pending)
                else:
                    if failures:
                        log.warning("%s is reachable again; syncing", syncer.remote.url)
                    failures = 0
                    assert report is not None
                    # A dirty pass: its oldest change waited until now. A full pass cannot
                    # know when what it found changed: its own length is the lag it adds.
                    waited = time.monotonic() - (min(taken.values()) if taken else now)
                    behind.check(waited, time.monotonic() - now, report, len(dirty.runs))
                    if full:
                        next_full = time.monotonic() + interval
            wait = max(0.05, min(retry_at, next_full) - time.monotonic())
            if observer is not None:
                dirty.wait(min(wait, _TICK))
                syncer.stop.wait(0.0 if syncer.stop.is_set() else min(_TICK, 0.3))
            else:
                syncer.stop.wait(min(wait, _TICK))
    finally:
        if observer is not None:
            observer.stop()
            observer.join()
    return total


class _Behind:
    """Says, at most once a minute, that changes wait longer than ``max_lag`` to go up."""

    def __init__(self, url: str, max_lag: float, jobs: int) -> None:
        self.url, self.max_lag, self.jobs = url, max_lag, jobs
        self.said = -_BEHIND_EVERY

    def check(self, waited: float, took: float, report: SyncReport, waiting: int) -> None:
        now = time.monotonic()
        if waited <= self.max_lag or now - self.said < _BEHIND_EVERY:
            return
        self.said = now
        log.warning("sync to %s is falling behind its writers: a change waited %.1f s to go up "
                    "(more than %g s); the last pass took %.1f s over %d run(s) (%d uploaded, %d at "
                    "a time) and %d run(s) changed meanwhile. Upload more at a time (--jobs), or "
                    "split the runs between daemons.", self.url, waited, self.max_lag, took,
                    report.runs, len(report.synced_runs), self.jobs, waiting)


def _add(total: SyncReport, report: SyncReport | None) -> None:
    if report is None:
        return
    total.runs = max(total.runs, report.runs)
    total.uploaded_files += report.uploaded_files
    total.uploaded_bytes += report.uploaded_bytes
    total.deleted += report.deleted
    total.synced_runs += [r for r in report.synced_runs if r not in total.synced_runs]
    total.cleaned += report.cleaned
    total.pending = dict(report.pending)
