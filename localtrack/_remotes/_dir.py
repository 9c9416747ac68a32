"""A directory remote: a local, mounted or network directory (also ``file://``).

Uploads go to ``<root>/.tmp-sync/`` first, are fsynced, then renamed into
place and the directory fsynced (localtrack._fsutil), so a reader sees each
object whole or not at all, and it survives power loss once sync moves on.
A sync killed mid-upload leaves only a temporary there; ``check()`` sweeps
temporaries older than an hour (a younger one may be another sync's).
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from pathlib import Path
from typing import Any

from .. import _fsutil
from ..errors import RemoteError
from ._base import Entry, Remote

TMP_DIR = ".tmp-sync"
_STALE_TMP_SECONDS = 3600
_PERMANENT = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)


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

    def get(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise
        except OSError as exc:
            raise self._error("read", key, exc) from exc

    def put(self, key: str, data: bytes) -> None:
        target = self.root / key
        tmp_dir = self.root / TMP_DIR
        tmp = tmp_dir / f"{target.name}.{secrets.token_hex(6)}"
        try:
            _fsutil.ensure_dir(target.parent)
            _fsutil.ensure_dir(tmp_dir)
            with open(tmp, "wb") as fh:
                fh.write(data)
            _fsutil.fsync_file(tmp)
            # If we die here: only the temporary exists; check() sweeps it later.
            _fsutil.rename_durable(tmp, target)
        except OSError as exc:
            _fsutil.unlink(tmp)
            raise self._error("write", key, exc) from exc

    def list(self, key: str) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        try:
            with os.scandir(self.root / key) as it:
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
        try:
            st = (self.root / key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error("stat", key, exc) from exc
        return Entry(os.path.isdir(self.root / key), st.st_size, st.st_mtime)

    def delete(self, key: str) -> None:
        path = self.root / key
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
        try:
            return open(self.root / key, "rb")
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
            tmp_dir = self.root / TMP_DIR
            if tmp_dir.is_dir():
                cutoff = time.time() - _STALE_TMP_SECONDS
                for entry in tmp_dir.iterdir():
                    if entry.stat().st_mtime < cutoff:
                        _fsutil.unlink(entry)
        except OSError as exc:
            raise self._error("use", "", exc) from exc
