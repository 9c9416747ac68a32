"""Run directories and their small metadata files: create, open, events, pointers.

Run creation is atomic: the directory is built under a temp name and renamed
into place, so a run either exists with its run.json or not at all. Metadata
files are replaced atomically; events.jsonl is a framed append-only log
fsynced on every event (events are rare and decide a run's state).

This module owns listing: list_projects/list_runs are the one rule for what a
project and a run are. A folder that is not a readable run (a stray copy, a bad
name, no run.json, no permission) is returned as a Skipped entry, never raised,
so one damaged run cannot hide the others. Reading a run's files raises only
LocaltrackErrors: bad JSON or wrong types are CorruptRunError, an unreadable
file is StorageError, each naming the file and the run.
"""

from __future__ import annotations

import errno
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _durable, _fsutil, _layout, _locks, _metrics, _naming, _segments
from ._codec import decode_tree, dumps, encode_tree, loads, unflatten
from ._naming import Ctx, ProjectName, RunId, run_label
from ._remotes import _chunks
from ._remotes._base import RemotePath
from .errors import CorruptRunError, LocaltrackError, StorageError, UsageError

if TYPE_CHECKING:
    from typing_extensions import Unpack

RUN_JSON = "run.json"
CONFIG_JSON = "config.json"
SUMMARY_JSON = "summary.json"
EVENTS = "events.jsonl"

STATES = ("running", "finished", "failed", "crashed", "preempted")

StorePath = Path | RemotePath


def runs_dir(root: StorePath, project: ProjectName) -> StorePath:
    """``_layout.runs_dir`` for a local store or a remote one (same layout)."""
    return _layout.runs_dir(root, project) if isinstance(root, Path) else root / project / "runs"


def run_dir(root: StorePath, project: ProjectName, rid: RunId) -> StorePath:
    return _layout.run_dir(root, project, rid) if isinstance(root, Path) else runs_dir(root, project) / rid


def create_run_dir(root: Path, project: ProjectName, rid: RunId, meta: dict[str, Any],
                   config: dict[str, Any], manifest: _segments.Manifest | None = None) -> Path:
    """Build the run's folder under a temporary name and rename it into place: a run appears
    complete or not at all (with ``manifest``, a fork's, in it from the start)."""
    runs = _layout.runs_dir(root, project)
    rdir = _layout.run_dir(root, project, rid)
    where = f"run {rid!r} in project {project!r}"
    with _fsutil.storage_errors("create the run directory", rdir, project=project, run_id=rid):
        _fsutil.ensure_dir(runs)
        tmp = runs / f"{_fsutil.TMP_PREFIX}{rid}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            (tmp / "wal").mkdir()
            (tmp / "wal" / _durable.NAME).touch()  # nothing is durable yet (see _durable)
            _fsutil.fsync_dir(tmp / "wal")
            # The folder is private until renamed: its files need no rename of their own, and
            # one fsync of the folder makes all its entries durable.
            files = {RUN_JSON: dumps(meta), CONFIG_JSON: dumps(encode_tree(config, where))}
            if manifest is not None:
                files[_segments.MANIFEST] = dumps(manifest)
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
            "created": time.time(), "host": _locks.hostname(), "cwd": _layout.path_text(os.getcwd()),
            "program": _layout.path_text(sys.argv[0] if sys.argv else ""), **fields}


def _failed_path(exc: OSError, path: StorePath | str) -> str:
    """The file an OSError is about: its own name when absolute, else ``path`` (readers that
    open relative to a folder with dir_fd leave only a bare name in ``exc.filename``)."""
    name = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes)) else ""
    return name if os.path.isabs(name) else str(path)


def read_error(path: StorePath | str, exc: OSError, **ctx: Unpack[Ctx]) -> LocaltrackError:
    """The error for a file of a run that is there but cannot be read, naming it and the run."""
    where = _failed_path(exc, path)
    if isinstance(exc, IsADirectoryError):
        return CorruptRunError(f"{where} of {run_label(ctx)} is a directory where localtrack keeps a "
                               "file; move it away, or run `localtrack doctor`.", path=where, **ctx)
    hint = ""
    if exc.errno in (errno.EACCES, errno.EPERM):
        hint = " Make it readable by this user (chmod), or read the store as its owner."
    return StorageError(f"Could not read {where!r} of {run_label(ctx)}: {exc.strerror or exc}.{hint}",
                        path=where, **ctx)


@contextmanager
def reading(path: StorePath | str, **ctx: Unpack[Ctx]) -> Iterator[None]:
    """Map an OSError raised while reading a run to a LocaltrackError naming the file.

    FileNotFoundError passes through: to every reader it means "not there (yet)".
    """
    try:
        yield
    except (FileNotFoundError, StorageError):
        raise
    except OSError as exc:
        raise read_error(path, exc, **ctx) from exc


def read_json(path: StorePath, what: str, **ctx: Unpack[Ctx]) -> Any:
    """The parsed file, or None when it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise read_error(path, exc, **ctx) from exc
    try:
        return loads(data)
    except ValueError as exc:
        raise CorruptRunError(f"The {what} file {path} of {run_label(ctx)} is not valid JSON ({exc}); "
                              "restore it or run `localtrack doctor`.", path=str(path), **ctx) from exc


# run.json: the keys every writer since format 1 sets, and the type of each key readers use
# (other keys are kept as they are). None is allowed where a writer may have stored "not given".
_META_REQUIRED = ("id", "project", "created")
_NUMBER = (int, float)
_META_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "format": ((int,), "an integer"), "id": ((str,), "a string"), "project": ((str,), "a string"),
    "created": (_NUMBER, "a number"), "host": ((str,), "a string"), "cwd": ((str,), "a string"),
    "program": ((str,), "a string"), "name": ((str, type(None)), "a string"),
    "tags": ((list, type(None)), "a list of strings"), "group": ((str, type(None)), "a string"),
    "job_type": ((str, type(None)), "a string"), "notes": ((str, type(None)), "a string"),
    "sweep": ((str, type(None)), "a string"),
}


def meta_problem(meta: Any) -> str | None:
    if not isinstance(meta, dict):
        return f"it holds a JSON {type(meta).__name__}, not an object"
    for key in _META_REQUIRED:
        if key not in meta:
            return f"the key {key!r} is missing"
    for key, (types, text) in _META_TYPES.items():
        value = meta.get(key)
        if key in meta and (not isinstance(value, types) or type(value) is bool):
            return f"the key {key!r} holds {value!r}, not {text}"
    tags = meta.get("tags")
    if isinstance(tags, list) and not all(type(tag) is str for tag in tags):
        return f"the key 'tags' holds {tags!r}, not a list of strings"
    return None


def read_meta(rdir: StorePath, **ctx: Unpack[Ctx]) -> dict[str, Any]:
    """run.json, checked: CorruptRunError when it is missing, malformed or from a newer format."""
    path = rdir / RUN_JSON
    meta = read_json(path, "run", **ctx)
    problem = "it is missing" if meta is None else meta_problem(meta)
    if problem:
        raise CorruptRunError(f"{path} of {run_label(ctx)} is not a valid localtrack run file: {problem}. "
                              "Restore it from a sync remote or a backup, or move the folder out "
                              "of the store.", path=str(path), **ctx)
    if meta.get("format", 1) > _layout.KNOWN_FORMAT:
        raise CorruptRunError(f"Run at {rdir} uses format {meta['format']}, newer than this "
                              f"localtrack understands ({_layout.KNOWN_FORMAT}); upgrade localtrack.",
                              path=str(rdir), **ctx)
    return dict(meta)


def read_tree(path: StorePath, what: str, **ctx: Unpack[Ctx]) -> dict[str, Any]:
    """config.json or summary.json, decoded; {} when the file does not exist."""
    return tree_of(read_json(path, what, **ctx), path, what, **ctx)


def tree_of(value: Any, path: StorePath | str, what: str, **ctx: Unpack[Ctx]) -> dict[str, Any]:
    """The parsed JSON of config.json or summary.json (None: no file), checked and decoded."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CorruptRunError(f"The {what} file {path} of {run_label(ctx)} holds a JSON "
                              f"{type(value).__name__}, not an object; restore it or run "
                              "`localtrack doctor`.", path=str(path), **ctx)
    try:
        tree = decode_tree(value)  # a new dict, unless the object is one tag (not a dict then)
        return tree if type(tree) is dict else dict(tree)
    except ValueError as exc:
        raise CorruptRunError(f"The {what} file {path} of {run_label(ctx)} holds what no writer stores "
                              f"({exc}); restore it or run `localtrack doctor`.",
                              path=str(path), **ctx) from exc


def summary(rdir: StorePath, metrics: dict[str, dict[str, Any]] | None = None,
            **ctx: Unpack[Ctx]) -> dict[str, Any]:
    """A run's summary: the last logged value of each key (or under define_metric's
    ``metrics``, their aggregates), overridden by the values set through run.summary; nested
    on '/'."""
    with reading(rdir, **ctx):
        last = _metrics.summarize(metrics or {}, _segments.summary_last(rdir, **ctx),
                                  lambda keys: columns(rdir, keys, ctx))
    explicit = read_tree(rdir / SUMMARY_JSON, "summary", **ctx)
    return unflatten({**last, **explicit})


def summary_of(last: dict[str, Any], explicit: Any, where: str,
               metrics: dict[str, dict[str, Any]],
               history: Callable[[list[str]], dict[str, list[Any]]], **ctx: Unpack[Ctx]) -> dict[str, Any]:
    """summary() from what a listing read: the stored last values (flat, as in the manifest)
    and the parsed summary.json (None: no file). ``where``: the run's folder, for messages;
    ``history``: the columns define_metric's aggregates are computed over (the run's
    history, or a shared run's labels'), read only when ``metrics`` has aggregates."""
    decoded = _segments.decoded(last, where, ctx)
    if metrics:
        with reading(where, **ctx):
            decoded = _metrics.summarize(metrics, decoded, history)
    return unflatten({**decoded, **tree_of(explicit, f"{where}/{SUMMARY_JSON}", "summary", **ctx)})


def columns(rdir: StorePath, keys: list[str], ctx: Ctx) -> dict[str, list[Any]]:
    """The history's values of ``keys`` (of the keys it has), as lists."""
    table = _segments.read_history(rdir, keys, **ctx)
    return {k: table.column(k).to_pylist() for k in keys if k in table.column_names}


# events.jsonl: the type of each key readers use (a checksum passes JSON of any shape).
_EVENT_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "event": ((str,), "a string"), "time": (_NUMBER, "a number"),
    "step": ((int, type(None)), "an integer"), "exit_code": ((int, type(None)), "an integer"),
}


def events(rdir: StorePath, **ctx: Unpack[Ctx]) -> list[dict[str, Any]]:
    """The run's lifecycle events; CorruptRunError naming the file for one of the wrong types."""
    path = rdir / EVENTS
    try:
        with reading(path, **ctx):
            evs = _chunks.read_records(path, **ctx)
    except FileNotFoundError:
        return []
    check_events(evs, path, **ctx)
    return evs


def check_events(evs: list[dict[str, Any]], path: StorePath | str, **ctx: Unpack[Ctx]) -> None:
    """CorruptRunError naming the file for an event holding a key of the wrong type."""
    for i, event in enumerate(evs):
        for key, (types, text) in _EVENT_TYPES.items():
            value = event.get(key)
            if key in event and (not isinstance(value, types) or type(value) is bool):
                raise CorruptRunError(f"{path} of {run_label(ctx)} holds event {i} with {key}="
                                      f"{value!r}, not {text}; restore it from a sync remote or "
                                      "a backup, or run `localtrack doctor`.", path=str(path), **ctx)


# -- listing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A folder that should be a project or a run but cannot be read as one, and why."""

    where: str    # "project/name" as found on disk (the name may not be a valid id)
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


_ID_RULE = "letters, digits, '-', '_' and '.', at most 128"


def _unreadable(where: str, path: StorePath | str, exc: OSError) -> Skipped:
    fix = ("make it readable by this user (chmod), or read the store as its owner"
           if exc.errno in (errno.EACCES, errno.EPERM) else "repair it, or move it out of the store")
    return Skipped(where, _failed_path(exc, path), f"cannot be read ({exc.strerror or exc}); {fix}")


def _sorted_entries(folder: StorePath) -> list[StorePath]:
    entries: list[StorePath] = list(folder.iterdir())
    return sorted(entries, key=lambda p: p.name)


def is_store(root: StorePath) -> bool:
    """Whether the store's folder is there (a file, a broken link or a link loop is not).

    A root that cannot even be looked at (a name too long, a folder on the way that cannot be
    searched) is a StorageError naming it: the one rule every entry point checks a root by.
    """
    try:
        return root.is_dir()
    except OSError as exc:
        raise StorageError(f"Could not read the store {str(root)!r}: {exc.strerror or exc}. Pass "
                           "another --dir / dir=, or set LOCALTRACK_DIR.", path=str(root)) from exc


def refuse_non_store(root: Path) -> None:
    """A UsageError for a root that is there but is no folder (a file, a broken link, a link
    loop): everything a writer or sync does would fail under it. A missing root is made later."""
    if not is_store(root) and os.path.lexists(root):
        raise UsageError(f"{str(root)!r} is not a localtrack store (a file, a broken link or a "
                         "link loop): pass the folder the runs were logged to as --dir / dir=, or "
                         "set LOCALTRACK_DIR.")


def list_projects(root: StorePath) -> tuple[list[ProjectName], list[Skipped]]:
    """The projects of a store (folders holding ``runs/``), sorted; plus the unusable ones.

    Dot-folders (.sync, temporaries) are not projects; a root that cannot be looked at raises
    (see is_store).
    """
    if not is_store(root):
        return [], []
    names: list[ProjectName] = []
    skipped: list[Skipped] = []
    for entry in _sorted_entries(root):
        if entry.name.startswith("."):
            continue
        try:
            is_project = (entry / "runs").is_dir()
        except OSError as exc:  # a project folder this user cannot search
            skipped.append(_unreadable(entry.name, entry, exc))
            continue
        if not is_project:
            continue
        try:
            names.append(_naming.project_name(entry.name))
        except LocaltrackError:
            skipped.append(Skipped(entry.name, str(entry), f"{entry.name!r} is not a valid project "
                                   f"name ({_ID_RULE}), so it is not a project; move the folder "
                                   "out of the store, or rename it"))
    return names, skipped


_NOT_A_FOLDER = "is not a run folder (a file, or a broken link); move it out of the store"
_NO_RUN_JSON = ("has no run.json, so it is not a run (a stray folder, or a damaged run); restore "
                "run.json from a sync remote or a backup, or move the folder out of the store")


def list_runs(root: StorePath, project: ProjectName,
              known: Callable[[RunId], bool] | None = None) -> tuple[list[RunId], list[Skipped]]:
    """The run ids of a project sorted by name, plus each folder there that is not a readable run.

    Cheap on purpose (a listing and one stat per run): the files of a run are checked when it
    is read. Dot-entries are a run being created (``.tmp-``) or clutter, and not listed. In a
    remote store, or a directory sync writes to, a folder without run.json is a run whose first
    upload is under way (sync puts run.json last), so it is left out without a report.
    ``known(rid)`` true: the caller has just seen the run's run.json (the runs index's stamp),
    so it is not looked at again.
    """
    rdir = runs_dir(root, project)
    ids: list[RunId] = []
    skipped: list[Skipped] = []
    synced: bool | None = None  # whether root is a sync copy: looked up on the first such folder
    try:
        if isinstance(rdir, Path) and not rdir.is_dir():
            return [], []
        # Names, not Path objects: a local listing of 10,000 runs pays per name (issue 19).
        names = sorted(os.listdir(rdir)) if isinstance(rdir, Path) else \
            [entry.name for entry in _sorted_entries(rdir)]
    except OSError as exc:  # e.g. runs/ itself is unreadable; a remote's errors are RemoteError
        return [], [_unreadable(f"{project}/runs", rdir, exc)]
    for name in names:
        where = f"{project}/{name}"
        if name.startswith("."):
            continue
        try:
            rid = _naming.run_id(name)
        except LocaltrackError:
            skipped.append(Skipped(where, f"{rdir}/{name}", f"{name!r} is not a valid run id "
                                   f"({_ID_RULE}), so it is not a run; move the folder out of the "
                                   "store, or rename it"))
            continue
        if isinstance(rdir, RemotePath):
            if (rdir / name / RUN_JSON).exists():
                ids.append(rid)
            continue
        if known is not None and known(rid):
            ids.append(rid)
            continue
        entry = f"{rdir}/{name}"
        try:
            os.stat(f"{entry}/{RUN_JSON}")
        except NotADirectoryError:
            skipped.append(Skipped(where, entry, _NOT_A_FOLDER))
        except FileNotFoundError:
            if os.path.isdir(entry):
                if synced is None:
                    synced = os.path.exists(f"{root}/{_layout.REMOTE_ID}")
                if not synced:
                    skipped.append(Skipped(where, entry, _NO_RUN_JSON))
            elif os.path.lexists(entry):  # a dangling link
                skipped.append(Skipped(where, entry, _NOT_A_FOLDER))
            # else: removed since the listing (sync --clean, a creator's rename): not there
        except OSError as exc:
            skipped.append(_unreadable(where, entry, exc))
        else:
            ids.append(rid)
    return ids, skipped


def run_exists(root: StorePath, project: ProjectName, rid: RunId) -> bool:
    """Whether the run has its run.json (a StorageError when its folder cannot be read)."""
    path = run_dir(root, project, rid) / RUN_JSON
    with reading(path, project=project, run_id=rid):
        return path.exists()


def is_live(root: Path | RemotePath, project: ProjectName, rid: RunId) -> bool:
    """Whether the run has a live writer. Ask before reading the events that say how it ended:
    a writer writes its last event before it lets go of the lock, so events read after a free
    lock are whole (read first, a listing saw a run that finished meanwhile as crashed).

    A remote store has no lock to probe: there the copied owner record says it (sync removes
    the copy once the writer is gone).
    """
    if isinstance(root, Path):
        return _locks.is_held(_layout.lock_path(root, project, rid))
    try:
        holder = loads((root / project / "locks" / f"{rid}.lock").read_bytes())
    except (FileNotFoundError, ValueError):
        holder = {}
    return isinstance(holder, dict) and bool(holder.get("pid"))


def end_state(evs: list[dict[str, Any]]) -> str:
    """How a run without a live writer ended, from the last of its lifecycle events."""
    ends = [e for e in evs if e.get("event") in ("finished", "preempted", "started", "resumed")]
    last = ends[-1] if ends else {}
    if last.get("event") == "finished":
        return "finished" if last.get("exit_code") == 0 else "failed"
    if last.get("event") == "preempted":
        return "preempted"
    return "crashed"


# -- auto-resume pointers (docs/format.md) ---------------------------------------------------


@dataclass(frozen=True)
class Pointer:
    """A run that auto-resume may continue: it was started with this directory and job identity
    and has not finished cleanly (a clean finish removes its pointer)."""

    path: Path
    rid: RunId
    time: float


def read_pointer(path: Path) -> RunId | None:
    """The run a pointer file names; None for a missing or damaged one."""
    try:
        return _parse_pointer(path).rid
    except (OSError, ValueError, LocaltrackError):
        return None


def _parse_pointer(path: Path) -> Pointer:
    data = loads(path.read_bytes())
    rid = data.get("run_id") if isinstance(data, dict) else None
    if not isinstance(rid, str):
        raise ValueError("no run_id")
    when = data.get("time")
    return Pointer(path, _naming.run_id(rid), float(when) if isinstance(when, (int, float)) else 0.0)


def read_pointers(adir: Path, legacy: Path | None = None) -> tuple[list[Pointer], list[Path]]:
    """The pointers in ``adir`` (and the single ``legacy`` pointer of format 3), newest first,
    and the files that are not pointers (damaged: bad JSON, or a run id other than the name).

    Temp files of a writer under way (or killed) are neither: their name is not ``<id>.json``.
    """
    found: list[Pointer] = []
    damaged: list[Path] = []
    try:
        paths = [p for p in adir.iterdir() if p.suffix == ".json"
                 and not p.name.startswith(_fsutil.TMP_PREFIX)]
    except FileNotFoundError:
        paths = []
    if legacy is not None and legacy.is_file():
        paths.append(legacy)
    for path in paths:
        try:
            pointer = _parse_pointer(path)
        except FileNotFoundError:  # its run finished since the listing
            continue
        except (ValueError, IsADirectoryError, LocaltrackError):
            damaged.append(path)
            continue
        if path != legacy and path.stem != pointer.rid:
            damaged.append(path)
            continue
        found.append(pointer)
    found.sort(key=lambda p: (-p.time, p.rid))
    newest: dict[RunId, Pointer] = {}  # a legacy pointer and its replacement (a claimer died
    for pointer in found:              # between writing one and removing the other): one run
        newest.setdefault(pointer.rid, pointer)
    return list(newest.values()), damaged


def set_aside_pointer(path: Path) -> Path:
    """Move a damaged pointer out of auto-resume's way, kept for inspection."""
    aside = path.with_name(path.name + ".damaged")
    try:
        _fsutil.rename_durable(path, aside)
    except FileNotFoundError:  # another process set it aside first
        pass
    return aside


def write_pointer(path: Path, rid: RunId, key: str | None) -> None:
    _fsutil.ensure_dir(path.parent)
    _fsutil.atomic_write(path, dumps({"run_id": rid, "cwd": _layout.path_text(os.getcwd()),
                                      "key": key, "time": time.time()}))


def clear_pointer(path: Path, rid: RunId) -> None:
    if read_pointer(path) == rid:
        _fsutil.unlink(path)
