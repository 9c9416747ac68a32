"""Every lock of a store: the per-run writer lock (with an owner record), sync's store lock,
and the short critical sections of the sealer and the sweep queue (``hold``).

An exclusive ``flock`` is dropped by the kernel when the holder dies, so a
SIGKILLed writer never blocks the next resume, and whether it is held is the
one answer to "is this run's writer alive" (is_held). It is taken with ``fcntl``
directly, not through portalocker: init() is on every script's start-up path
and importing portalocker costs ~120 ms there (importlib.metadata for its
version string), for the same one system call on POSIX, the only platform
the store supports; every lock here is that flock.
``flock`` records no owner, so, like Mercurial's lock, the holder writes ``host``/``pid``/``since``
(plus boot id, pid namespace and process start time) into the file: that is
what a second process is told. It does not decide liveness: a writer in another
pid namespace on this host (two containers sharing a store) has a pid this
process cannot see.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _fsutil
from ._codec import dumps, loads
from ._naming import Ctx
from .errors import LockUnavailableError, RunLockedError, SyncError

if TYPE_CHECKING:
    from typing_extensions import Unpack

_RETRY_SECONDS = 0.25
_NO_LOCKS = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_ns() -> str:
    """This process's pid namespace (``pid:[4026531836]``): pids mean something only inside it."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """Process start time in clock ticks since boot (Linux), to detect pid reuse.

    None for a missing process and for a zombie: a killed process whose parent
    died stays a zombie where nothing reaps orphans (PID 1 of many containers).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def hostname() -> str:
    """This host's name, as socket.gethostname() gives it (without importing socket)."""
    return os.uname().nodename


def this_process() -> dict[str, Any]:
    now = time.time()
    return {"pid": os.getpid(), "host": hostname(), "boot_id": _boot_id(), "pid_ns": _pid_ns(),
            "start_ticks": _start_ticks(os.getpid()), "since": now}


def describe(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "another process (it has not written its name yet)"
    since = datetime.fromtimestamp(holder.get("since", 0)).strftime("%Y-%m-%d %H:%M:%S")
    return f"pid {holder['pid']} on {holder.get('host', '?')} since {since}"


def read_holder(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
        holder = loads(data) if data else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """Whether the process an owner record names runs, for records with no lock to probe
    (sweep agents): None where this process cannot tell (another host, another pid namespace,
    or a record without one)."""
    if not holder.get("pid"):
        return False
    if (holder.get("host"), holder.get("boot_id"), holder.get("pid_ns")) \
            != (hostname(), _boot_id(), _pid_ns()):
        return None
    ticks = _start_ticks(int(holder["pid"]))
    return ticks is not None and ticks == holder.get("start_ticks")


def is_held(path: Path, holder: dict[str, Any] | None = None) -> bool:
    """Whether the run whose writer lock is ``path`` has a live writer: from the flock itself.

    ``holder`` is the lock file's owner record when the caller has read it already. Two records
    answer without a probe: this process's own (where flock is emulated with fcntl locks, as on
    NFS, a probe from the holding process would succeed and its close would drop the writer's
    lock), and a record sync copied from another store (``synced_at``): no process here holds
    that lock; its writer was alive when it was copied, and sync removes the copy once the
    writer is gone.
    """
    if holder is None:
        holder = read_holder(path)
    if holder.get("synced_at"):
        return bool(holder.get("pid"))
    if holder.get("pid") == os.getpid() and holder_alive(holder):
        return True
    try:
        return not probe_free(path)
    except OSError:  # an unreadable lock file, or no locks on this file system: the record is all
        alive = holder_alive(holder)
        return bool(holder.get("pid")) if alive is None else alive


def try_flock(fd: int, *, shared: bool = False) -> bool:
    """Take an flock on ``fd`` without waiting: False when another open file holds it."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def unflock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


def probe_free(path: Path) -> bool:
    """Whether nobody holds the lock at ``path`` (a shared, non-blocking probe)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        return try_flock(fd, shared=True)  # closing the descriptor drops the probe's lock
    finally:
        os.close(fd)


@contextlib.contextmanager
def hold(path: Path, timeout: float, *, create: bool = True) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` for a short critical section, waiting up to
    ``timeout`` seconds for whoever holds it (TimeoutError after that).

    ``create=False``: a missing file means nobody ever took this lock, and the caller goes
    ahead without one (readers use this, so that a read-only store stays readable).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT if create else os.O_RDONLY, 0o644)
    except FileNotFoundError:
        if create:
            raise
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        while not _try_or_explain(fd, path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} has been locked by another process for {timeout:g} s")
            time.sleep(0.01)
        yield
    finally:
        os.close(fd)


def _try_or_explain(fd: int, path: Path) -> bool:
    """try_flock, with a file system that has no locks told as such."""
    try:
        return try_flock(fd)
    except OSError as exc:
        if exc.errno in _NO_LOCKS:
            raise LockUnavailableError(
                f"The file system under {str(path.parent)!r} does not support file locks "
                f"({os.strerror(exc.errno)}), so localtrack cannot keep two processes apart. "
                "Mount it with locking enabled (Lustre: -o flock) or use a local dir=.",
                path=str(path)) from exc
        raise


class RunLock:
    """Exclusive writer lock for one run; ``describe`` strings go into every error.

    Every OSError becomes a StorageError naming the lock file and the run (a full disk strikes
    when the owner record is written), or LockUnavailableError where the file system has no locks.
    """

    def __init__(self, path: Path, **ctx: Unpack[Ctx]) -> None:
        self.path = path
        self._ctx = ctx
        self._fd: int | None = None

    def acquire(self, *, wait: bool = True) -> None:
        """Take the lock; a held one is retried for a moment (``wait``) before RunLockedError."""
        fd = self._open()
        try:
            self._flock(fd, _RETRY_SECONDS if wait else 0.0)
        except BaseException:
            os.close(fd)  # not ours: the holder's owner record stays as it is
            raise
        try:
            with _fsutil.storage_errors("write the owner record into the lock file", self.path,
                                        **self._ctx):
                os.ftruncate(fd, 0)
                data, done = dumps(this_process()), 0
                while done < len(data):  # short only on a full disk, and the next write raises
                    done += os.pwrite(fd, data[done:], done)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no half-written record outlives us
            os.close(fd)  # drops the flock
            raise
        self._fd = fd

    def _open(self) -> int:
        with _fsutil.storage_errors("create the lock file", self.path, **self._ctx):
            _fsutil.ensure_dir(self.path.parent)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)

    def _flock(self, fd: int, patience: float) -> None:
        deadline = time.monotonic() + patience
        while True:
            try:
                if try_flock(fd):
                    return
            except OSError as exc:
                if exc.errno in _NO_LOCKS:
                    raise LockUnavailableError(
                        f"The file system under {str(self.path.parent)!r} does not support file "
                        f"locks ({os.strerror(exc.errno)}), so localtrack cannot keep two "
                        "writers apart. Mount it with locking enabled (Lustre: -o flock) or use "
                        "a local dir=.", path=str(self.path), **self._ctx) from exc
                raise _fsutil.storage_error("lock", self.path, exc, **self._ctx) from exc
            if time.monotonic() >= deadline:
                self._raise_locked()
            time.sleep(0.02)

    def _raise_locked(self) -> None:
        holder = read_holder(self.path)
        run = self._ctx.get("run_id")
        project = self._ctx.get("project")
        raise RunLockedError(
            f"Run {run!r} in project {project!r} is being written by {describe(holder)}; finish "
            "that process or choose another id.", holder=holder, path=str(self.path),
            **self._ctx)

    def release(self) -> None:
        """Clear the owner record, then unlock (so nobody reads a stale owner)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with _fsutil.storage_errors("clear the owner record in the lock file", self.path,
                                        **self._ctx):
                try:
                    os.ftruncate(fd, 0)
                finally:
                    unflock(fd)  # also for a copy of the descriptor a fork() left in a child
        finally:
            os.close(fd)


class SyncLock(RunLock):
    """One sync per (store, remote) at a time: two would race on the same state files.

    The writer lock's flock, owner record and release, with two differences: the lock file
    is never opened through a symbolic link (a received store may hold one, and taking the
    lock truncates the file), and a busy lock is a SyncError naming the remote.
    """

    def __init__(self, path: Path, url: str) -> None:
        super().__init__(path)
        self.url = url

    def _open(self) -> int:
        with _fsutil.storage_errors("create the sync lock", self.path):
            _fsutil.ensure_dir(self.path.parent)
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if not self.path.is_symlink():
                    raise
                raise SyncError(f"The sync lock {str(self.path)!r} is a symbolic link; sync does "
                                "not open (and truncate) a file through a link. Remove the link.",
                                path=str(self.path)) from exc

    def _raise_locked(self) -> None:
        raise SyncError(f"Another localtrack sync to {self.url!r} is running from this store "
                        f"({describe(read_holder(self.path))}); stop it or wait for it.",
                        path=str(self.path))
