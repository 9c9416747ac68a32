"""Sealing in a child process, so a training process never imports pyarrow.

Sealing a 16 MiB log costs ~0.5 s of CPU and pyarrow's ~100 MiB of code and
allocator; in the writer's process that competed with log() for the GIL and
stayed resident. Instead a writer that closes a log file (rotation, finish)
calls request(): it marks ``seal.again`` and, if nobody holds the run's seal
lock, starts a child Python running main() with the run directory, handing
over the locked descriptor. The child seals every closed log file, releases
the lock, and looks at the mark again before it exits, so a request made while
it was busy is never lost. Closed means: every log but the newest while a
writer holds the run, and the newest too once the run is released, if its
writer closed it (see closed_logs) and it holds at least the run's seal_min_bytes (a
small tail stays JSONL: cheaper to read than to seal). A writer opening a run,
doctor and ``sync --clean`` hold the seal lock (hold()) while they repair,
read or remove the run's files. The child outlives a finished or killed
writer; what it logs goes to ``seal.log``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from . import _blobs, _fsutil, _layout, _locks, _segments, _store, _wal
from ._naming import Ctx

log = logging.getLogger("localtrack")

SEAL_LOCK = "seal.lock"
AGAIN = "seal.again"
LOG = "seal.log"
_LAST_LINE = 64 * 1024  # how much of the newest log is read to see that its last line is whole
_CHILD = "import sys; from localtrack._sealer import main; main(*sys.argv[1:])"
_children: list[int] = []  # sealers this process started, reaped when it starts the next


def _open_lock(rdir: Path) -> int:
    return os.open(rdir / SEAL_LOCK, os.O_RDWR | os.O_CREAT, 0o644)


def request(rdir: Path, min_bytes: int) -> None:
    """Ask for the closed log files of ``rdir`` to be sealed; never waits.

    ``min_bytes``: the smallest newest (finished) log worth a segment (the run's
    LOCALTRACK_SEAL_MIN_BYTES, see _settings).
    """
    _reap()
    (rdir / AGAIN).touch()
    fd = _open_lock(rdir)
    try:
        if not _locks.try_flock(fd):
            return  # a sealer is at work: it sees the mark before it stops
        os.set_inheritable(fd, True)
        with open(rdir / LOG, "ab") as err:
            pid = os.posix_spawn(sys.executable, [sys.executable, "-c", _CHILD, str(rdir), str(fd),
                                                  str(min_bytes)], os.environ,
                                 file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                               (os.POSIX_SPAWN_DUP2, err.fileno(), 1),
                                               (os.POSIX_SPAWN_DUP2, err.fileno(), 2)],
                                 setsid=True)
        _children.append(pid)
    except OSError:
        log.warning("could not start a sealer for %s; its history stays in JSONL logs", rdir,
                    exc_info=True)
    finally:
        os.close(fd)  # the child's copy of the descriptor keeps the lock


def _reap() -> None:
    for pid in list(_children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _children.remove(pid)


def hold(rdir: Path, timeout: float = 120.0, create: bool = True) -> contextlib.AbstractContextManager[None]:
    """Hold the seal lock (waiting for a running sealer) while a writer opens the run.

    ``create=False``: a run that never had a sealer (no lock file) needs no lock; readers
    use this, so that a read-only store stays readable.
    """
    return _locks.hold(rdir / SEAL_LOCK, timeout, create=create)


def wait_idle(rdir: Path, timeout: float = 120.0) -> None:
    """Return once no sealer works on ``rdir`` (tests and benchmarks that inspect files)."""
    with hold(rdir, timeout):
        pass


def closed_logs(rdir: Path, manifest: _segments.Manifest, min_bytes: int) -> list[int]:
    """Sequence numbers of the log files that no writer appends to any more and are worth sealing.

    The newest counts only once no writer holds the run and its data (before any padding)
    ends with a whole line: a newline, and no NUL in the last line (SIGKILL in the middle of
    a copy can leave the newline stored and zeros before it). A killed writer's torn record
    is left to the next writer, which cuts it (with a warning) and appends after.
    """
    seqs = [s for s in _segments.wal_seqs(rdir) if s > manifest["sealed_through"]]
    if not seqs or _locks.is_held(_layout.lock_of_run_dir(rdir)):
        return seqs[:-1]
    try:
        with open(_layout.wal_path(rdir, seqs[-1]), "rb") as fh:
            size = _wal.end_of_data(fh)
            fh.seek(max(0, size - _LAST_LINE))
            tail = fh.read(size - fh.tell())
    except FileNotFoundError:
        return seqs[:-1]
    last = tail[tail.rfind(b"\n", 0, len(tail) - 1) + 1:]
    closed = size >= max(min_bytes, 1) and tail.endswith(b"\n") and b"\0" not in last
    return seqs if closed else seqs[:-1]


def seal_closed(rdir: Path, min_bytes: int) -> None:
    """fsync the closed logs and then the events, then seal what is closed now (the caller
    holds the seal lock).

    A finishing writer leaves these fsyncs to this process (see LogStream.close); in this order, a
    durable ``finished`` event means durable history.
    """
    ctx: Ctx = {"project": rdir.parent.parent.name, "run_id": rdir.name}
    logs = _segments.wal_seqs(rdir)
    writing = _locks.is_held(_layout.lock_of_run_dir(rdir))
    # Not the log a writer appends to (its policy syncs it; an fsync from here would also make
    # the writer's ftruncate in finish() wait for this writeback on ext4), nor its events.
    for seq in logs[:-1] if writing else logs:
        _fsutil.fsync_file(_blobs.wal_blob(rdir, seq), missing_ok=True)  # media before rows
        _fsutil.fsync_file(_layout.wal_path(rdir, seq), missing_ok=True)
    if not writing:
        _fsutil.fsync_file(rdir / _store.EVENTS, missing_ok=True)
    manifest = _segments.load_manifest(rdir, **ctx)
    seqs = closed_logs(rdir, manifest, min_bytes)
    if seqs:
        _segments.seal(rdir, seqs, manifest, **ctx)


def main(run_dir: str, lock_fd: str, min_bytes: str) -> None:
    """The child: seal until no request is left, then release the lock and exit."""
    rdir, fd = Path(run_dir), int(lock_fd)
    logging.basicConfig(format="%(asctime)s localtrack sealer [pid %(process)d]: %(message)s")
    os.nice(10)  # leave the CPU to the training process while both want it
    again = rdir / AGAIN
    while True:
        _fsutil.unlink(again)
        try:
            seal_closed(rdir, int(min_bytes))
        except Exception:  # the logs stay authoritative; the next request retries
            log.warning("sealing %s failed; its history stays in the log", rdir, exc_info=True)
            _locks.unflock(fd)
            return
        _locks.unflock(fd)
        if not again.exists() or not _locks.try_flock(fd):
            return

