"""run.save() / localtrack.restore() and save_code: a run's own files, copied into its folder.

W&B uploads them; here they are copied into ``<run>/files/<path>`` (the code of the main script
into ``<run>/code/<name>``). Each file is written under a temporary name, fsynced and renamed into
place, so a reader sees the old or the new copy whole. Paths are relative to ``base_path`` (W&B's
rule): a glob that reaches outside it (``../x``) is refused, so nothing is written outside the
run. One call copies at most MAX_FILES files (one inode each).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import IO, Any

from . import _fsutil
from .errors import UsageError

log = logging.getLogger("localtrack")

FILES = "files"
CODE = "code"
MAX_FILES = 10_000
POLICIES = ("live", "now", "end")


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


def copy(rdir: Path, pattern: str, base: str) -> list[str]:
    """Copy the files matching ``pattern`` into ``rdir/files``; returns the stored paths."""
    import glob  # (with shutil, 10 ms that `import localtrack` does not pay)

    sources = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    if len(sources) > MAX_FILES:
        raise UsageError(f"run.save({pattern!r}) matches {len(sources)} files, more than "
                         f"{MAX_FILES}: save an archive of them instead.")
    stored = []
    for src in sorted(sources):
        rel = os.path.relpath(src, base)
        if rel.startswith(".."):  # a glob such as a/../../x: outside base_path
            raise UsageError(f"run.save(): {src!r} is not under base_path {base!r}.")
        stored.append(_copy_file(Path(src), rdir / FILES / rel))
    if not sources:
        log.debug("run.save(%r): no file matches yet", pattern)
    return stored


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
    tmp = dst.with_name(f"{_fsutil.TMP_PREFIX}{dst.name}")
    try:
        shutil.copyfile(src, tmp)
        _fsutil.fsync_file(tmp)
        _fsutil.rename_durable(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return str(dst)


def open_saved(rdir: Any, name: Any, root: Any, replace: bool, label: str) -> IO[str]:
    """``rdir/files/name`` opened for reading; with ``root``, a copy made there first (W&B's
    restore() downloads into ``root``; a file already there is kept unless ``replace``).
    ``label`` names the run in errors."""
    if not isinstance(name, (str, os.PathLike)) or not os.fspath(name):
        raise UsageError(f"restore() needs the name of a saved file, got {name!r}.")
    rel = os.path.normpath(os.fspath(name))
    if os.path.isabs(rel) or rel == ".." or rel.startswith(".." + os.sep):
        raise UsageError(f"restore({os.fspath(name)!r}): give a path relative to the run's "
                         "saved files (as run.save() stored it).")
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
