"""run.save() / localtrack.restore() and save_code: a run's own files, copied into its folder.

W&B uploads them; here they are copied into ``<run>/files/<path>`` (the code of the main script
into ``<run>/code/<name>``). Each file is written under a temporary name, fsynced and renamed into
place, so a reader sees the old or the new copy whole, also after the writer is killed. Paths
are relative to ``base_path`` (W&B's rule): a glob that reaches outside it (``../x``) is
refused, so nothing is written outside the run. One call copies at most MAX_FILES files.

Policies (W&B's): "now" copies at the call, "end" at finish(), "live" at the call, whenever a
matching file changes while the run lives, and at finish(). "live" is a ``Saver`` thread woken
by watchdog's file events on the folders the globs name (events, not a timer, so a change is
copied within ~QUIET seconds and an idle run costs nothing) and, because events can be missed
(a network file system, an inotify limit), a rescan every RESCAN seconds. A file is copied
again only when its (inode, size, mtime) changed. The run's own folder is never a source.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from . import _fsutil
from .errors import UsageError

log = logging.getLogger("localtrack")

FILES = "files"
CODE = "code"
MAX_FILES = 10_000
POLICIES = ("live", "now", "end")
QUIET = 0.2  # seconds without events before a live copy: a file being written settles first
RESCAN = 5.0  # seconds between rescans of the live globs, for the events a file system misses


def plan(glob_str: Any, base_path: Any, policy: Any) -> tuple[str, str]:
    """``(pattern, base)`` of a save() call, checked: both absolute and normalized."""
    if not isinstance(glob_str, (str, os.PathLike)) or not os.fspath(glob_str):
        raise UsageError(f"run.save() needs a file name or glob, got {glob_str!r}.")
    if policy not in POLICIES:
        raise UsageError(f"run.save() policy={policy!r}: give 'live', 'now' or 'end'.")
    pattern = os.path.abspath(os.fspath(glob_str))
    if base_path is None:
        base = os.path.dirname(pattern) if os.path.isabs(os.fspath(glob_str)) else os.getcwd()
    elif isinstance(base_path, (str, os.PathLike)):
        base = os.path.abspath(os.fspath(base_path))
    else:
        raise UsageError(f"run.save() base_path must be a path, got {base_path!r}.")
    rel = os.path.relpath(pattern, base)
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        raise UsageError(f"run.save({os.fspath(glob_str)!r}): the files must be under base_path "
                         f"{base!r}, and are stored by their path relative to it; pass a "
                         "base_path above them.")
    return pattern, base


def copy(rdir: Path, pattern: str, base: str,
         seen: dict[str, tuple[int, int, int]] | None = None, changed: bool = False) -> list[str]:
    """Copy the files matching ``pattern`` into ``rdir/files``; returns the stored paths.
    ``seen`` keeps each copy's source (inode, size, mtime), taken before it is read; with
    ``changed``, a file whose stamp is the same is skipped (a change within the file system's
    time granularity can be missed: finish() copies without it)."""
    import glob  # (with shutil, 10 ms that `import localtrack` does not pay)

    own = os.path.realpath(rdir) + os.sep
    sources = [p for p in glob.glob(pattern, recursive=True)
               if os.path.isfile(p) and not os.path.realpath(p).startswith(own)]
    if len(sources) > MAX_FILES:
        raise UsageError(f"run.save({pattern!r}) matches {len(sources)} files, more than "
                         f"{MAX_FILES}: save an archive of them instead.")
    stored = []
    for src in sorted(sources):
        rel = os.path.relpath(src, base)
        if rel.startswith(".."):  # a glob such as a/../../x: outside base_path
            raise UsageError(f"run.save(): {src!r} is not under base_path {base!r}.")
        dst = rdir / FILES / rel
        if seen is not None:
            try:
                st = os.stat(src)
            except FileNotFoundError:  # removed since the glob
                continue
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if changed and seen.get(str(dst)) == stamp:
                continue
            seen[str(dst)] = stamp
        stored.append(_copy_file(Path(src), dst))
    if not sources:
        log.debug("run.save(%r): no file matches yet", pattern)
    return stored


class Saver:
    """A run's save() calls: every copy into ``files/`` goes through it (one at a time), and
    the "live" globs are followed by a thread until ``stop()`` (see the module docstring)."""

    def __init__(self, rdir: Path, on_error: Any) -> None:
        self._rdir = rdir
        self._on_error = on_error  # (pattern, exception): the thread has no caller to raise to
        self._copying = threading.Lock()
        self._live: list[tuple[str, str]] = []
        self._seen: dict[str, tuple[int, int, int]] = {}
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self._watched: set[tuple[str, bool]] = set()
        self._watching = threading.Lock()

    def copy(self, pattern: str, base: str, changed: bool = False) -> list[str]:
        """Copy now (only the files changed since their last copy when ``changed``)."""
        with self._copying:
            return copy(self._rdir, pattern, base, self._seen, changed)

    def follow(self, pattern: str, base: str) -> None:
        """Copy the files of ``pattern`` again whenever they change, until stop()."""
        self._live.append((pattern, base))
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="localtrack-save",
                                            daemon=True)
            self._thread.start()
        self._watch(_watch_dir(pattern))

    def stop(self) -> None:
        """End the thread (a copy under way completes first); finish() copies once more."""
        with self._watching:
            self._stopped = True
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _watch(self, folder: tuple[str, bool]) -> None:
        with self._watching:  # follow() and the thread both add watches
            if folder not in self._watched and not self._stopped:
                self._watched.add(folder)
                self._schedule(*folder)

    def _schedule(self, path: str, recursive: bool) -> None:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer

            wake = self._wake

            class _Handler(FileSystemEventHandler):
                def on_any_event(self, event: FileSystemEvent) -> None:
                    if event.event_type not in ("opened", "closed_no_write"):
                        wake.set()

            if self._observer is None:
                self._observer = Observer()
                self._observer.daemon = True
                self._observer.start()
            self._observer.schedule(_Handler(), path, recursive=recursive)
        except Exception as exc:  # noqa: BLE001 - no events (inotify limit...): the rescan copies
            log.info("save(policy='live'): no file events for %s (%s); rescanning every %s s",
                     path, exc, RESCAN)

    def _loop(self) -> None:
        while not self._stopped:
            self._wake.wait(RESCAN)
            while self._wake.is_set() and not self._stopped:  # let a burst of writes settle
                self._wake.clear()
                self._wake.wait(QUIET)
            if self._stopped:
                return
            for pattern, base in list(self._live):
                self._watch(_watch_dir(pattern))  # a folder made since: watched from now on
                try:
                    self.copy(pattern, base, changed=True)
                except Exception as exc:  # noqa: BLE001 - logged; finish() copies again
                    self._on_error(pattern, exc)


def _watch_dir(pattern: str) -> tuple[str, bool]:
    """The folder to watch for ``pattern`` (its part before the first glob character) and
    whether to watch below it too; while it does not exist, the nearest folder above it, alone
    (a wake-up then watches the folder once it is made: no recursive watch of a big tree)."""
    parts = pattern.split(os.sep)
    fixed = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")), len(parts) - 1)
    folder = os.sep.join(parts[:fixed]) or os.sep
    recursive = fixed < len(parts) - 1
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder, recursive = os.path.dirname(folder), False
    return folder, recursive


def save_code(rdir: Path) -> str | None:
    """Copy the main script (``sys.argv[0]``) into ``rdir/code``, as W&B's save_code does."""
    program = sys.argv[0] if sys.argv else ""
    if not program.endswith(".py") or not os.path.isfile(program):
        log.debug("save_code: the main program %r is not a Python file; nothing copied", program)
        return None
    return _copy_file(Path(program), rdir / CODE / os.path.basename(program))


def _copy_file(src: Path, dst: Path) -> str:
    import shutil

    _fsutil.ensure_dir(dst.parent)
    tmp = dst.with_name(f"{_fsutil.TMP_PREFIX}{dst.name}.{secrets.token_hex(4)}")
    try:
        shutil.copyfile(src, tmp)
        _fsutil.fsync_file(tmp)
        # If we die here: the old copy is whole; the tmp file is left out by readers and sync.
        _fsutil.rename_durable(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return str(dst)


def saved_name(name: Any, what: str) -> str:
    """A saved file's name checked: relative and inside ``files/`` (no ``..``, not absolute)."""
    if not isinstance(name, (str, os.PathLike)) or not os.fspath(name):
        raise UsageError(f"{what} needs the name of a saved file, got {name!r}.")
    rel = os.path.normpath(os.fspath(name))
    if os.path.isabs(rel) or rel == ".." or rel.startswith(".." + os.sep) or "\0" in rel:
        raise UsageError(f"{what}: {os.fspath(name)!r} is not a saved file's name; give a path "
                         "relative to the run's saved files (as run.save() stored it).")
    return rel


def fetch(source: Callable[[], IO[bytes]], dst: Path) -> None:
    """Copy a stored file (``source()`` opens it) to ``dst`` in chunks: written under a temp
    name, then renamed, so ``dst`` is the old file or the whole new one."""
    import shutil

    _fsutil.ensure_dir(dst.parent)
    tmp = dst.with_name(f"{_fsutil.TMP_PREFIX}{dst.name}.{secrets.token_hex(4)}")
    try:
        with source() as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        # If we die here: dst is as it was; the tmp file is left beside it.
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_saved(rdir: Any, name: Any, root: Any, replace: bool, label: str) -> IO[str]:
    """``rdir/files/name`` opened for reading; with ``root``, a copy made there first (W&B's
    restore() downloads into ``root``; a file already there is kept unless ``replace``).
    ``label`` names the run in errors."""
    rel = saved_name(name, "restore()")
    if not rdir:
        raise UsageError(f"restore({rel!r}): {label} is disabled and keeps no files.")
    dst = None if root is None else Path(os.fspath(root)) / rel
    if dst is not None and not replace and dst.is_file():
        return open(dst, encoding="utf-8")  # noqa: SIM115 - the caller owns the file
    src = rdir / FILES / rel
    if dst is None and isinstance(src, Path):
        dst = src
    else:
        try:
            data = src.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise _missing(rel, label, src) from None
        dst = dst or Path(rel)
        with _fsutil.storage_errors("restore", dst):
            _fsutil.ensure_dir(dst.parent)
            _fsutil.atomic_write(dst, data)
    with _fsutil.storage_errors("open", dst):
        try:
            return open(dst, encoding="utf-8")  # noqa: SIM115
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise _missing(rel, label, src) from None


def _missing(rel: str, label: str, src: Any) -> UsageError:
    return UsageError(f"restore({rel!r}): {label} has no saved file {rel!r} (looked for {src}); "
                      "save it with run.save() first.")
