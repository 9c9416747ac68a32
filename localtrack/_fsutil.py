"""Durability primitives: the only module that calls fsync, rename and unlink.

Everything the store makes durable goes through fsync() here, so that a fault-injection
layer (tests/test_powerloss.py snapshots each file at every fsync) sees every one of them.

Every rewritten file is replaced atomically: write a temp file in the same
directory, fsync it, rename it over the target, fsync the directory. A reader
or a crash at any instant sees the old content or the new one, never a mix.
OS errors are mapped to StorageError here, naming the path.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._naming import Ctx
from .errors import StorageError

if TYPE_CHECKING:
    from typing_extensions import Unpack

TMP_PREFIX = ".tmp-"


def storage_error(what: str, path: Path | str, exc: OSError, **ctx: Unpack[Ctx]) -> StorageError:
    """A StorageError that says what failed, where, and what to do about it."""
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = " The disk is full: free space and retry; nothing stored was lost."
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = " The store is not writable: choose another dir= or fix its permissions."
    elif exc.errno == errno.EFBIG:
        hint = " A file size limit was hit (ulimit -f)."
    run = f" of run {ctx['run_id']!r} in project {ctx['project']!r}" if "run_id" in ctx else ""
    return StorageError(f"Could not {what} {str(path)!r}{run}: {exc.strerror or exc}.{hint}",
                        path=str(path), **ctx)


@contextmanager
def storage_errors(what: str, path: Path | str, **ctx: Unpack[Ctx]) -> Iterator[None]:
    """Map an OSError raised inside the block to a StorageError."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise storage_error(what, path, exc, **ctx) from exc


def fsync(fd: int) -> None:
    """fsync an open file: the store's one call of os.fsync besides the helpers below."""
    os.fsync(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """mkdir -p, fsyncing each parent whose entry was created, so the dir survives power loss."""
    if path.is_dir():
        return
    ensure_dir(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (durably when ``sync``)."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        # If we die here: the target is intact; the tmp file is swept by the next writer.
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


def rename_durable(src: Path, dst: Path) -> None:
    os.replace(src, dst)
    fsync_dir(dst.parent)


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` durably, only if no such name exists: False if it does.

    The data is fsynced under a temp name, then hard-linked to ``path`` (link, unlike rename,
    fails on an existing name, also over NFS): a reader sees the whole file or none.
    """
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def remove_tree(path: Path) -> None:
    """Remove a folder a dead writer left behind, whole (what cannot be removed stays)."""
    shutil.rmtree(path, ignore_errors=True)


def sweep_tmp(directory: Path) -> None:
    """Remove temp files a dead writer left behind (only the lock holder calls this)."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name.startswith(TMP_PREFIX) and entry.is_file():
            entry.unlink(missing_ok=True)


_KEEP_SIZE = 1  # FALLOC_FL_KEEP_SIZE (linux/falloc.h)
_WRITE = 2  # SYNC_FILE_RANGE_WRITE (linux/fs.h)
_libc_funcs: dict[str, Any] = {}  # libc functions looked up on first use; False where missing


def _libc(name: str) -> Any:
    """libc's ``name`` (fallocate, sync_file_range: Linux calls Python's os lacks), typed for
    (int, int, int64, int64) or (int, int64, int64, uint), or False where there is none."""
    if name not in _libc_funcs:
        import ctypes

        func = getattr(ctypes.CDLL(None, use_errno=True), name, None)
        if func is not None:
            func.argtypes = ((ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
                             if name == "fallocate" else
                             (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint))
        _libc_funcs[name] = func or False
    return _libc_funcs[name]


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing those bytes of a file to disk, without waiting for it (sync_file_range
    with SYNC_FILE_RANGE_WRITE): an fsync that comes later then has less left to do. A hint,
    never a durability step (that stays the fsync); nothing where there is no such call."""
    func = _libc("sync_file_range")
    if func is not False:
        func(fd, offset, length, _WRITE)


def reserve(fd: int, offset: int, length: int) -> bool:
    """Reserve the blocks of ``length`` bytes at ``offset`` past a file's end, leaving its size
    as it is (fallocate with FALLOC_FL_KEEP_SIZE): an append into them then allocates nothing,
    a third cheaper for an image-sized write() on ext4, and a full disk is an error here rather
    than a short write. False where the system or file system has no such call (nothing to do,
    appends allocate as usual); OSError (ENOSPC, ...) otherwise. Truncating the file to its size
    gives the rest back."""
    fallocate = _libc("fallocate")
    if fallocate is False:
        return False
    if fallocate(fd, _KEEP_SIZE, offset, length) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))


def fsync_file(path: Path, *, missing_ok: bool = False) -> None:
    """fsync a file by name; with ``missing_ok`` a file removed meanwhile (a log that a sealer
    sealed and deleted) needs none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_durable(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` (created if need be) and fsync it."""
    with open(path, "ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def mount_type(path: Path, mounts: str | None = None) -> str | None:
    """The file system type of the mount holding ``path``, from /proc/mounts (None if unknown)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    real = os.path.realpath(path)
    best, fstype = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        if "\\" in point:  # octal escapes of spaces and the like
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype
