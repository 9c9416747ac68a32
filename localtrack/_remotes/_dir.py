"""A directory remote: a local, mounted or network directory (also ``file://``).

Uploads go to ``<root>/.tmp-sync/`` first, are fsynced, then renamed into
place and the directory fsynced (localtrack._fsutil), so a reader sees each
object whole or not at all, and it survives power loss once sync moves on.
A sync killed mid-upload leaves only a temporary there; ``check()`` sweeps
temporaries older than an hour (a younger one may be another sync's).

Neither a remote nor a local store is trusted to hold only what localtrack put
there: no symbolic link below the root is followed, on writes (a link could
take a put or an rmtree out of the remote) nor on reads (``open_file``, which
sync and the read side use for local store files too: a segment linked to
/etc/hostname would be uploaded, one linked to a FIFO would hang a reader).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .. import _fsutil
from .._naming import Ctx, run_label
from ..errors import CorruptRunError, RemoteError
from ._base import Entry, FileChunks, Opener, Remote, check_key

if TYPE_CHECKING:
    from typing_extensions import Unpack

TMP_DIR = ".tmp-sync"
_STALE_TMP_SECONDS = 3600
_PERMANENT = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)
# O_NONBLOCK: opening a FIFO for reading must not wait for a writer (regular files ignore it).
_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_file(path: Path, under: Path | None = None, **ctx: Unpack[Ctx]) -> BinaryIO:
    """Open a store file for reading, following no symbolic link from ``under`` down to it.

    Each name below ``under`` (default: the file's own folder) is opened with O_NOFOLLOW
    relative to the folder above, so no link and no race can redirect the read; then only a
    regular file is accepted. FileNotFoundError and IsADirectoryError pass through (a log may
    be a folder of chunks); a link or a special file is a CorruptRunError naming it.
    """
    base = path.parent if under is None else under
    # The file's own folder is the common case: no relative_to (a listing opens ~5 files a run).
    parts = (path.name,) if under is None or base == path.parent else path.relative_to(base).parts
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            flags = _NOFOLLOW if i == len(parts) - 1 else _NOFOLLOW | os.O_DIRECTORY
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:  # ELOOP on Linux, EMLINK on FreeBSD, ENOTDIR for a dir link
                if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR) and _is_link(part, fd):
                    raise _link_error(base.joinpath(*parts[:i + 1]), part, fd, ctx) from None
                raise
            os.close(fd)
            fd = child
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise CorruptRunError(f"{path} of {run_label(ctx)} is not a regular file (a FIFO, "
                                  "socket or device); localtrack reads only files it wrote. "
                                  "Remove it, or restore the file from a backup or sync remote.",
                                  path=str(path), **ctx)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_file(path: Path, under: Path | None = None, **ctx: Unpack[Ctx]) -> bytes:
    """The bytes of a store file, read without following a link (see open_file)."""
    with open_file(path, under, **ctx) as fh:
        return fh.read()


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _link_error(path: Path, name: str, dir_fd: int, ctx: Ctx) -> CorruptRunError:
    try:
        target = f" (to {os.readlink(name, dir_fd=dir_fd)!r})"
    except OSError:
        target = ""
    return CorruptRunError(f"{path} of {run_label(ctx)} is a symbolic link{target}; localtrack "
                           "never follows a link inside a store, so it reads and syncs nothing "
                           "through it. Replace the link with the file itself, or remove the run.",
                           path=str(path), **ctx)


class DirRemote(Remote):
    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = root
        self.url = url or str(root)

    def _error(self, what: str, key: str, exc: OSError) -> RemoteError:
        hint = ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = " The remote disk is full: free space there; sync resumes where it stopped."
        elif exc.errno in _PERMANENT:
            hint = " Check that the directory exists and is writable by this user."
        return RemoteError(f"Could not {what} {self.describe(key)!r}: {exc.strerror or exc}.{hint}",
                           url=self.url, path=self.describe(key),
                           transient=exc.errno not in _PERMANENT)

    def _path(self, key: str, *, write: bool = False) -> Path:
        """``root/key``; for a write, refusing a symbolic link on the way (or at the key itself):
        a remote holds no links, and one would take a put or a delete out of the remote."""
        check_key(key, self.url)
        path = self.root / key if key else self.root
        if write and key:
            at = self.root
            for part in key.split("/"):
                at = at / part
                try:
                    is_link = stat.S_ISLNK(os.lstat(at).st_mode)
                except (FileNotFoundError, NotADirectoryError):
                    break
                except OSError as exc:
                    raise self._error("look up", key, exc) from exc
                if is_link:
                    raise RemoteError(f"{str(at)!r} in the remote {self.url!r} is a symbolic link; "
                                      "sync never writes through a link (it could land outside the "
                                      "remote). Replace it with a real folder or file, or remove it.",
                                      url=self.url, path=str(at))
        return path

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return read_file(path, under=self.root)
        except (FileNotFoundError, IsADirectoryError):
            raise
        except OSError as exc:
            raise self._error("read", key, exc) from exc

    def put(self, key: str, data: bytes) -> None:
        self._write(key, lambda fh: fh.write(data))

    def put_file(self, key: str, path: Path, chunk: int, digest: str | None = None,
                 opener: Opener | None = None) -> int:
        """As put, streamed from ``path`` ``chunk`` bytes at a time (see FileChunks)."""
        def fill(fh: BinaryIO) -> int:
            chunks = FileChunks(path, chunk, digest, opener)
            for piece in chunks:
                fh.write(piece)
            return chunks.size

        return self._write(key, fill)

    def _write(self, key: str, fill: Callable[[BinaryIO], int]) -> int:
        """Create or replace ``key`` with what ``fill`` writes into a temporary, durably."""
        target = self._path(key, write=True)
        tmp_dir = self._path(TMP_DIR, write=True)
        tmp = tmp_dir / f"{target.name}.{secrets.token_hex(6)}"
        try:
            _fsutil.ensure_dir(target.parent)
            _fsutil.ensure_dir(tmp_dir)
            with open(tmp, "wb") as fh:
                size = fill(fh)
            _fsutil.fsync_file(tmp)
            # If we die here: only the temporary exists; check() sweeps it later.
            _fsutil.rename_durable(tmp, target)
        except OSError as exc:
            _fsutil.unlink(tmp)
            raise self._error("write", key, exc) from exc
        except BaseException:  # a file refused by fill (FileChunks' CorruptRunError)
            _fsutil.unlink(tmp)
            raise
        return size

    def list(self, key: str) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        try:
            with os.scandir(self._path(key)) as it:
                for e in it:
                    if e.name.startswith(_fsutil.TMP_PREFIX):
                        continue
                    try:
                        st = e.stat()
                    except FileNotFoundError:
                        continue
                    out[e.name] = Entry(e.is_dir(), st.st_size, st.st_mtime)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            raise self._error("list", key, exc) from exc
        return out

    def info(self, key: str) -> Entry | None:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error("stat", key, exc) from exc
        return Entry(stat.S_ISDIR(st.st_mode), st.st_size, st.st_mtime)

    def delete(self, key: str) -> None:
        path = self._path(key, write=True)
        try:
            if path.is_dir():
                import shutil  # here only: import localtrack need not load it (and bz2, lzma)

                shutil.rmtree(path)
            else:
                _fsutil.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error("delete", key, exc) from exc

    def open_input(self, key: str) -> Any:
        path = self._path(key)
        try:
            return open_file(path, under=self.root)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self._error("read", key, exc) from exc

    def check(self) -> None:
        """Create the root if its parent exists; sweep stale temporaries of killed syncs."""
        try:
            if not self.root.is_dir():
                if not self.root.parent.is_dir():
                    raise RemoteError(
                        f"The remote directory {self.url!r} does not exist, nor does its parent; "
                        "create it or fix the path.", url=self.url)
                _fsutil.ensure_dir(self.root)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise RemoteError(f"The remote directory {self.url!r} is not writable by this user.",
                                  url=self.url)
            tmp_dir = self._path(TMP_DIR, write=True)  # a link there would sweep another folder
            if tmp_dir.is_dir():
                cutoff = time.time() - _STALE_TMP_SECONDS
                for entry in tmp_dir.iterdir():
                    st = entry.lstat()
                    if not stat.S_ISDIR(st.st_mode) and st.st_mtime < cutoff:
                        _fsutil.unlink(entry)
        except OSError as exc:
            raise self._error("use", "", exc) from exc
