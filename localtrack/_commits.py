"""Artifact commits on a thread of their own: log_artifact returns once its files are copied.

log_artifact copies a version's files into the store before it returns (the caller may
rewrite a checkpoint right after); this process's one commit thread then hashes each copy,
makes it durable, names it by its hash and writes the manifest (_artifacts), in the order the
calls were made, as W&B's log_artifact uploads in the background. What waits for a commit:
``Artifact.wait()`` and any read of that artifact (its version, files, download), the run's
finish(), the process's exit, and a read of that name in this process (use_artifact, Api), so
a process sees its own versions. A commit's error is raised by the first wait() or finish()
that meets it (logged at exit if neither did), never dropped. A process killed before a commit
leaves no version: only temp blobs, which ``localtrack gc`` collects once old.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from . import _guard
from .errors import ArtifactError, LocaltrackError

log = logging.getLogger("localtrack")


class Commit:
    """One log_artifact's commit: done once stored (or failed, with ``error``)."""

    def __init__(self, adir: Path, name: str, who: str | None, job: Callable[[], None]) -> None:
        self.adir, self.name, self.who = adir, name, who
        self._job: Callable[[], None] | None = job
        self.done = threading.Event()
        self.error: LocaltrackError | None = None
        self.reported = False  # its error was raised to the caller (or logged at exit)

    def run(self) -> None:
        job, self._job = self._job, None  # what it holds (the copies, the draft) is let go
        try:
            if job is not None:
                job()
        except Exception as exc:  # the commit's own failure: told by wait()/finish(), not here
            self.error = _told(self, exc)
            _failed.append(self)
        finally:
            self.done.set()

    @_guard.entry
    def wait(self, timeout: float | None = None) -> None:
        """Block until committed; raise its error (a LocaltrackError naming the artifact and
        the run), or ArtifactError when ``timeout`` seconds pass first."""
        if not self.done.wait(timeout):
            raise ArtifactError(f"Artifact {self.name!r}{_by(self)} is still being stored after "
                                f"{timeout} s (its files are copied; the commit thread hashes "
                                "and names them); wait() again or without a timeout.")
        if self.error is not None:
            self.reported = True
            raise self.error


def _by(commit: Commit) -> str:
    return f" logged by run {commit.who!r}" if commit.who else ""


def _told(commit: Commit, exc: Exception) -> LocaltrackError:
    """The commit's failure as a LocaltrackError of the same kind naming the artifact and the
    run (ArtifactError for anything that was not one)."""
    message = (f"Artifact {commit.name!r}{_by(commit)} was not stored: {exc} Its files were "
               "copied when log_artifact() returned; log it again.")
    project, _, rid = (commit.who or "").partition("/")
    ctx = {"project": project or None, "run_id": rid or None}
    if isinstance(exc, LocaltrackError) and type(exc).__init__ is LocaltrackError.__init__:
        told = type(exc)(message, path=exc.path, **ctx)
    else:
        told = ArtifactError(message, path=str(commit.adir), **ctx)
    told.__cause__ = exc
    return told


_queue: queue.SimpleQueue[Commit] = queue.SimpleQueue()
_pending: list[Commit] = []  # submitted, not yet done (this process's)
_failed: list[Commit] = []  # done with an error
_worker: threading.Thread | None = None
_starting = threading.Lock()


def submit(commit: Commit) -> Commit:
    """Queue ``commit`` behind the ones before it (the thread starts on the first).

    Once the process is exiting (the main thread has ended: atexit handlers run) the commit
    is made in the caller, after the queued ones: Python 3.12+ refuses to start a thread
    then, and an atexit handler that runs after _at_exit would leave it to a daemon thread
    that finalization stops."""
    global _worker
    if not threading.main_thread().is_alive():
        settle_all()
        commit.run()
        return commit
    _pending.append(commit)
    with _starting:
        if _worker is None:
            _worker = threading.Thread(target=_work, name="localtrack-artifacts", daemon=True)
            _worker.start()
    _queue.put(commit)
    return commit


def _work() -> None:
    while True:
        commit = _queue.get()
        commit.run()
        _pending.remove(commit)


@_guard.entry
def settle(adir: Path, name: str | None = None) -> None:
    """Wait for this process's commits into ``adir`` (of ``name``), failed or not: a read
    then sees every version this process logged before it."""
    pending = list(_pending)
    if pending:
        adir = adir.resolve()  # an Api(dir=) may spell the store's path otherwise
    for commit in pending:
        if name in (None, commit.name) and commit.adir.resolve() == adir:
            commit.done.wait()


@_guard.entry
def wait_all(commits: list[Commit]) -> LocaltrackError | None:
    """Wait for ``commits``; the first error not raised yet is returned (the others logged)."""
    first = None
    for commit in commits:
        commit.done.wait()
        if commit.error is None or commit.reported:
            continue
        commit.reported = True
        if first is None:
            first = commit.error
        else:
            log.error("%s", commit.error)
    return first


@_guard.entry
def settle_all() -> None:
    """Wait for every commit this process queued."""
    for commit in list(_pending):
        commit.done.wait()


def _at_exit() -> None:
    """The process ends: every commit is finished first; errors nobody was told are logged."""
    settle_all()
    for commit in _failed:
        if not commit.reported:
            commit.reported = True
            log.error("%s", commit.error)


def _after_fork_in_child() -> None:
    """A forked child has no commit thread: the parent's commits are the parent's to finish."""
    global _worker, _queue, _starting
    _worker, _queue, _starting = None, queue.SimpleQueue(), threading.Lock()
    _pending.clear()
    _failed.clear()


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
