"""A run's saved files (``files/``, from run.save()) and code (``code/``, save_code) on a remote.

Each file is uploaded whole, as one object, so a reader of the remote sees its old or its new
bytes, never a part; it is streamed (LOCALTRACK_UPLOAD_CHUNK_BYTES at a time, as artifacts'
blobs), never held whole in memory. A file is sent again only when its (size, mtime, inode) stamp changed;
the stamp is taken before the file is read, so one that changes while it is read is sent
again on the next pass. The stamps sent are kept in the run's sync state (``files``, under
the keys ``files/<path>`` and ``code/<path>``), saved every SAVE_EVERY seconds and at the
end: a kill loses at most the record of the files sent since, which the rerun sends again
(same keys, whole bytes). The
pass sends these files before run.json (see _upload). A file removed locally stays on the
remote (sync never deletes what a user saved). Links and temp files (a copy in progress)
are left out, and no file is read through a link.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _files, _fsutil
from .._naming import Ctx
from .._remotes._base import Entry, Opener
from .._remotes._dir import open_file

if TYPE_CHECKING:
    from typing_extensions import Unpack

FOLDERS = (_files.FILES, _files.CODE)
SAVE_EVERY = 0.5  # seconds between saves of the sync state while files go up


def stamps(rdir: Path) -> list[list[str]]:
    """``[key, stamp]`` of every saved file of the run, sorted (part of the run's signature)."""
    out: list[list[str]] = []
    stack = [(rdir / top, top) for top in FOLDERS]
    while stack:
        folder, key = stack.pop()
        try:
            it = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for entry in it:
                if entry.name.startswith(_fsutil.TMP_PREFIX) or entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), f"{key}/{entry.name}"))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    out.append([f"{key}/{entry.name}", f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"])
    return sorted(out)


def upload(rdir: Path, found: list[list[str]], sent: dict[str, str],
           put_file: Callable[[str, Path, Opener], None], save: Callable[[], None],
           **ctx: Unpack[Ctx]) -> None:
    """Send each file of ``found`` (from ``stamps``) whose stamp is not the one in ``sent``;
    ``put_file(key, path, opener)`` streams it up (``opener`` opens it following no link),
    then ``sent`` is updated and ``save()`` records it, at most
    every SAVE_EVERY seconds (the state holds every file: saving it after each of thousands
    of small files would rewrite it thousands of times; a kill costs those re-uploads only)."""
    saved, unsaved = time.monotonic(), False
    try:
        for key, stamp in found:
            if sent.get(key) == stamp:
                continue
            path = rdir / key
            try:
                put_file(key, path, functools.partial(open_file, path, rdir, **ctx))
            except FileNotFoundError:  # replaced since it was listed: the next pass sends it
                continue
            sent[key], unsaved = stamp, True
            if time.monotonic() - saved >= SAVE_EVERY:
                save()
                saved, unsaved = time.monotonic(), False
    finally:
        if unsaved:  # also when a put failed or the sync stops: what went up is recorded
            save()


def pending(found: list[list[str]], sent: dict[str, str]) -> tuple[int, int]:
    """(files, bytes) of ``found`` not sent as they are now, from the stamps alone."""
    todo = [int(stamp.split(":", 1)[0]) for key, stamp in found if sent.get(key) != stamp]
    return len(todo), sum(todo)


def verify(found: list[list[str]], listing: Callable[[str], dict[str, Entry]]) -> str | None:
    """Why the remote lacks a saved file of ``found`` (its size compared; ``listing(folder)``
    lists a folder of the run on the remote), or None when it has them all."""
    folders: dict[str, dict[str, Entry]] = {}
    for key, stamp in found:
        folder, _, name = key.rpartition("/")
        if folder not in folders:
            folders[folder] = listing(folder)
        entry = folders[folder].get(name)
        if entry is None or entry.is_dir or entry.size != int(stamp.split(":", 1)[0]):
            return f"saved file {key} differs"
    return None
