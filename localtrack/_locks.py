"""The per-run writer lock, with an owner record in the lock file.

An exclusive ``flock`` is dropped by the kernel when the holder dies, so a
SIGKILLed writer never blocks the next resume. It is taken with ``fcntl``
directly, not through portalocker: init() is on every script's start-up path
and importing portalocker costs ~120 ms there (importlib.metadata for its
version string), for the same one system call on POSIX, the only platform
the store supports. The sweep queue and sync, off that path, use portalocker.
``flock`` records no owner, so, like Mercurial's lock, the holder writes ``host``/``pid``/``since``
(plus boot id and process start time against pid reuse) into the file; that
is what a second process is told, and what readers use to tell a live run
from a crashed one without touching the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import _fsutil
from ._codec import dumps, loads
from ._naming import Ctx
from .errors import LockUnavailableError, RunLockedError

if TYPE_CHECKING:
    from typing_extensions import Unpack

_RETRY_SECONDS = 0.25
_NO_LOCKS = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
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
    return {"pid": os.getpid(), "host": hostname(), "boot_id": _boot_id(),
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
    """True/False when this host can tell; None for a holder on another host."""
    if not holder.get("pid"):
        return False
    if holder.get("host") != hostname() or holder.get("boot_id") != _boot_id():
        return None
    ticks = _start_ticks(int(holder["pid"]))
    return ticks is not None and ticks == holder.get("start_ticks")


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock at ``path``: by its owner record on this host,
    by a shared probe for an owner on another host."""
    alive = holder_alive(read_holder(path))
    return (not probe_free(path)) if alive is None else alive


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
    """Whether nobody holds the lock (a shared, non-blocking probe; used for remote holders)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        return try_flock(fd, shared=True)  # closing the descriptor drops the probe's lock
    finally:
        os.close(fd)


class RunLock:
    """Exclusive writer lock for one run; ``describe`` strings go into every error."""

    def __init__(self, path: Path, **ctx: Unpack[Ctx]) -> None:
        self.path = path
        self._ctx = ctx
        self._fh: IO[bytes] | None = None

    def acquire(self) -> None:
        with _fsutil.storage_errors("create the lock file", self.path, **self._ctx):
            _fsutil.ensure_dir(self.path.parent)
            fh = open(self.path, "a+b")
        deadline = time.monotonic() + _RETRY_SECONDS
        while True:
            try:
                if try_flock(fh.fileno()):
                    break
            except OSError as exc:
                fh.close()
                if exc.errno in _NO_LOCKS:
                    raise LockUnavailableError(
                        f"The file system under {str(self.path.parent)!r} does not support file "
                        f"locks ({os.strerror(exc.errno)}), so localtrack cannot keep two "
                        "writers apart. Mount it with locking enabled (Lustre: -o flock) or use "
                        "a local dir=.", path=str(self.path), **self._ctx) from exc
                raise
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            fh.close()
            self._raise_locked()
        fh.seek(0)
        fh.truncate()
        fh.write(dumps(this_process()))
        fh.flush()
        self._fh = fh

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
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.truncate(0)
            fh.flush()
        finally:
            unflock(fh.fileno())
            fh.close()
