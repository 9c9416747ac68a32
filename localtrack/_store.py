"""Run directories and their small metadata files: create, open, events, pointers.

Run creation is atomic: the directory is built under a temp name and renamed
into place, so a run either exists with its run.json or not at all. Metadata
files are replaced atomically; events.jsonl is a framed append-only log
fsynced on every event (events are rare and decide a run's state).
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _fsutil, _layout, _locks
from ._codec import decode_tree, dumps, encode_tree, loads
from ._naming import Ctx, ProjectName, RunId
from ._remotes import _chunks
from ._remotes._base import RemotePath
from .errors import CorruptRunError

if TYPE_CHECKING:
    from typing_extensions import Unpack

RUN_JSON = "run.json"
CONFIG_JSON = "config.json"
SUMMARY_JSON = "summary.json"
EVENTS = "events.jsonl"

STATES = ("running", "finished", "failed", "crashed", "preempted")


def create_run_dir(root: Path, project: ProjectName, rid: RunId, meta: dict[str, Any],
                   config: dict[str, Any]) -> Path:
    runs = _layout.runs_dir(root, project)
    rdir = _layout.run_dir(root, project, rid)
    where = f"run {rid!r} in project {project!r}"
    with _fsutil.storage_errors("create the run directory", rdir, project=project, run_id=rid):
        _fsutil.ensure_dir(runs)
        tmp = runs / f"{_fsutil.TMP_PREFIX}{rid}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            (tmp / "wal").mkdir()
            # The folder is private until renamed: its files need no rename of their own, and
            # one fsync of the folder makes all its entries durable.
            files = {RUN_JSON: dumps(meta), CONFIG_JSON: dumps(encode_tree(config, where))}
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            for name in files:
                _fsutil.fsync_file(tmp / name)
            _fsutil.fsync_dir(tmp)
            # If we die here: a .tmp- dir that no reader lists; the next writer of the project sweeps it.
            _fsutil.rename_durable(tmp, rdir)
        except BaseException:
            _remove_tree(tmp)
            raise
    return rdir


def _remove_tree(path: Path) -> None:
    for child in sorted(path.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink(missing_ok=True)
    path.rmdir()


def sweep_dead_creations(root: Path, project: ProjectName) -> None:
    """Remove half-built run dirs left by a creator that died (older than a minute)."""
    runs = _layout.runs_dir(root, project)
    if not runs.is_dir():
        return
    cutoff = time.time() - 60
    for entry in runs.iterdir():
        if not entry.name.startswith(_fsutil.TMP_PREFIX):
            continue
        try:
            stale = entry.stat().st_mtime < cutoff
        except FileNotFoundError:  # another creator renamed its run into place meanwhile
            continue
        if stale:
            _remove_tree(entry)


def new_meta(project: ProjectName, rid: RunId, fields: dict[str, Any]) -> dict[str, Any]:
    return {"format": _layout.FORMAT_VERSION, "id": rid, "project": project,
            "created": time.time(), "host": _locks.hostname(), "cwd": os.getcwd(),
            "program": sys.argv[0] if sys.argv else "", **fields}


def read_json(path: Path | RemotePath, what: str, **ctx: Unpack[Ctx]) -> Any:
    try:
        return loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise CorruptRunError(f"The {what} file {path} is not valid JSON ({exc}); restore it or "
                              "run `localtrack doctor`.", path=str(path), **ctx) from exc


def read_meta(rdir: Path | RemotePath, **ctx: Unpack[Ctx]) -> dict[str, Any]:
    meta = read_json(rdir / RUN_JSON, "run", **ctx)
    if not isinstance(meta, dict) or "id" not in meta:
        raise CorruptRunError(f"{rdir / RUN_JSON} is missing or not a localtrack run file.",
                              path=str(rdir / RUN_JSON), **ctx)
    if meta.get("format", 1) > _layout.FORMAT_VERSION:
        raise CorruptRunError(f"Run at {rdir} uses format {meta['format']}, newer than this "
                              f"localtrack understands ({_layout.FORMAT_VERSION}); upgrade localtrack.",
                              path=str(rdir), **ctx)
    return meta


def read_tree(path: Path | RemotePath, what: str, **ctx: Unpack[Ctx]) -> dict[str, Any]:
    value = read_json(path, what, **ctx)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CorruptRunError(f"The {what} file {path} does not hold a JSON object.",
                              path=str(path), **ctx)
    return dict(decode_tree(value))


def events(rdir: Path | RemotePath, **ctx: Unpack[Ctx]) -> list[dict[str, Any]]:
    try:
        return _chunks.read_records(rdir / EVENTS, **ctx)
    except FileNotFoundError:
        return []


def state(root: Path | RemotePath, project: ProjectName, rid: RunId, evs: list[dict[str, Any]]) -> str:
    """running / finished / failed / crashed / preempted, from events and the lock's owner.

    A lock record that sync copied to a remote store (it has ``synced_at``) cannot be probed:
    its writer was alive when it was copied, and sync removes the copy once the writer is gone.
    """
    if isinstance(root, Path):
        lock = _layout.lock_path(root, project, rid)
        holder = _locks.read_holder(lock)
        alive = None if holder.get("synced_at") else _locks.holder_alive(holder)
        if alive is None:
            alive = bool(holder.get("pid")) if holder.get("synced_at") else not _locks.probe_free(lock)
    else:
        try:
            holder = loads((root / project / "locks" / f"{rid}.lock").read_bytes())
        except (FileNotFoundError, ValueError):
            holder = {}
        alive = isinstance(holder, dict) and bool(holder.get("pid"))
    if alive:
        return "running"
    ends = [e for e in evs if e.get("event") in ("finished", "preempted", "started", "resumed")]
    last = ends[-1] if ends else {}
    if last.get("event") == "finished":
        return "finished" if last.get("exit_code") == 0 else "failed"
    if last.get("event") == "preempted":
        return "preempted"
    return "crashed"


def read_pointer(path: Path) -> RunId | None:
    try:
        data = loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    rid = data.get("run_id") if isinstance(data, dict) else None
    return RunId(rid) if isinstance(rid, str) else None


def write_pointer(path: Path, rid: RunId) -> None:
    _fsutil.ensure_dir(path.parent)
    _fsutil.atomic_write(path, dumps({"run_id": rid, "cwd": os.getcwd(), "time": time.time()}))


def clear_pointer(path: Path, rid: RunId) -> None:
    if read_pointer(path) == rid:
        _fsutil.unlink(path)
