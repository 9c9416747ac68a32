"""What a listing knows of a run, read in one pass, and the per-project index that keeps it.

A listing reads of each run its run.json, events, state, config, summary, last step and
last write time (a *record*). Read from the run's files that is ~10 files per run; a project
of 10,000 runs is listed in well under a second only from ``<project>/index.json``: the
records of the runs that were neither live nor recently changed, each under a *stamp* of
eight stats (see ``stamp``). A record is used only while its stamp still matches; any other
run is read from its files (docs/format.md, "The runs index", says why
the stamp covers every change).

The index is derived: never the source of truth, rebuilt by the next listing when it is
missing, damaged or stale, and deleting it at any time loses nothing. It is written
(atomically, without fsync: a torn one is ignored) only into a local store this process can
write that is not a sync remote; elsewhere it is not used for writing, and a remote store
(objects) never has one. Two listers writing at once each replace it whole: the last wins.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any

from . import _fsutil, _labels, _layout, _segments, _store
from ._codec import dumps, loads
from ._naming import Ctx, ProjectName, RunId
from ._remotes import _chunks
from ._remotes._base import RemotePath
from .errors import LocaltrackError

log = logging.getLogger("localtrack")

INDEX = "index.json"
FORMAT = 2
KIND = "localtrack-runs-index"
#: A run whose stamp changed this recently is not indexed: file times are coarse (a change in
#: the same tick as the stamp leaves it equal), and a network file system's clock may differ.
MARGIN_NS = 2 * 10**9
#: The entries follow the header as its last member, so the checksum covers their exact bytes.
_RUNS = b',"runs":'

Record = dict[str, Any]
_REST = ("config", "summary", "last", "last_step", "updated")


_STAMPED = (_store.RUN_JSON, _store.CONFIG_JSON, _store.SUMMARY_JSON, _segments.MANIFEST, "wal",
            _store.EVENTS)


def stamp(rdir: str, lock: str) -> list[int] | None:
    """What changes whenever anything a record holds changes: the run folder's inode and
    change time, then the change time (which a write, a rename into a folder and a chmod all
    set, and no tool sets back) and size of each file a record comes from and of the writer
    lock file; -1, -1 for a missing one. None: the folder cannot be looked at (read the run)."""
    try:
        run = os.stat(rdir)
    except OSError:
        return None
    out = [run.st_ino, run.st_ctime_ns]
    for path in [*(f"{rdir}/{name}" for name in _STAMPED), lock]:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            out += (-1, -1)
            continue
        except OSError:
            return None
        out += (st.st_ctime_ns, st.st_size)
    return out


def _newest(stamp: list[int]) -> int:
    """The newest change time in a stamp."""
    return max(stamp[1], *stamp[2::2])  # [ino, ctime, then (ctime, size) per file]


def updated(rdir: _store.StorePath, created: float, events: list[dict[str, Any]]) -> float:
    """When anything of the run last changed (seconds since the epoch): its files' times, or in
    a sync copy (events and logs are folders of chunks, their times when sync copied them) the
    run's own times: its events, and the time of the last row of its newest log."""
    if isinstance(rdir, RemotePath) or os.path.isdir(f"{rdir}/{_store.EVENTS}"):
        return _copy_updated(rdir, created, events)
    base = str(rdir)
    paths = [base + "/wal", base + "/" + _store.EVENTS, base + "/" + _segments.MANIFEST]
    try:
        paths += [base + "/wal/" + name for name in os.listdir(base + "/wal")]
    except (FileNotFoundError, NotADirectoryError):
        pass
    times = []
    for path in paths:
        try:
            times.append(os.stat(path).st_mtime)
        except FileNotFoundError:
            continue
    return max(times, default=created)


def _copy_updated(rdir: _store.StorePath, created: float, events: list[dict[str, Any]]) -> float:
    times = [float(e["time"]) for e in events
             if isinstance(e.get("time"), (int, float)) and not isinstance(e.get("time"), bool)]
    listed = _segments.wal_seqs(rdir)
    if listed:
        try:
            records = _chunks.read_records(_segments.wal_log(rdir, listed[-1]))
        except FileNotFoundError:  # sealed meanwhile: the events say enough
            records = []
        stamp = records[-1].get("_timestamp") if records else None
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
            times.append(float(stamp))
    return max(times, default=created)


def read_record(root: _store.StorePath, project: ProjectName, rid: RunId) -> Record:
    """A run's record from its files. run.json, events and state raise as ApiRun's do (the
    run is not listable); a failure in the rest leaves it out of the record, so that reading
    that attribute raises the error then, as it does for a run read on its own."""
    rdir = _store.run_dir(root, project, rid)
    ctx: Ctx = {"project": project, "run_id": rid}
    meta = _store.read_meta(rdir, **ctx)
    with _store.reading(rdir, **ctx):
        live = _labels.is_live(root, project, rid, meta)  # before the events: see _store.is_live
    events = _store.events(rdir, **ctx)
    record: Record = {"meta": meta, "events": events,
                      "state": _labels.state(root, project, rid, meta, live, events)}
    try:
        with _store.reading(rdir, **ctx):
            config = _store.read_json(rdir / _store.CONFIG_JSON, "config", **ctx)
            explicit = _store.read_json(rdir / _store.SUMMARY_JSON, "summary", **ctx)
            last, last_step = (_labels.last_and_step if _labels.is_shared(meta)
                               else _segments.last_and_step)(rdir, **ctx)
            when = updated(rdir, meta.get("created", 0.0), events)
    except (LocaltrackError, OSError):
        return record
    record.update(config=config, summary=explicit, last=last, last_step=last_step, updated=when)
    return record


def complete(record: Record) -> bool:
    """Whether the record holds the values past run.json, events and state."""
    return all(key in record for key in _REST)


class ProjectIndex:
    """One listing's use of a project's index: records by stamp, then the index written back
    when it changed (``save``)."""

    def __init__(self, root: _store.StorePath, project: ProjectName) -> None:
        self.root = root
        self.project = project
        self.path: Path | None = None
        self._old: dict[str, Any] = {}
        self._new: dict[str, Any] = {}
        self._changed = False
        self._stamps: dict[str, list[int] | None] = {}
        self._now_ns = time.time_ns()
        if isinstance(root, Path):
            self.path = _layout.project_dir(root, project) / INDEX
            self._runs = str(_layout.runs_dir(root, project))
            self._locks = str(_layout.locks_dir(root, project))
            self._old = _load(self.path)

    def known(self, rid: RunId) -> bool:
        """Whether the index holds the run under the stamp it shows now (its run.json is then
        there: the listing need not look again). The stamp is kept for ``record``."""
        if self.path is None:
            return False
        now = stamp(f"{self._runs}/{rid}", f"{self._locks}/{rid}.lock")  # strings: cheaper than paths
        self._stamps[rid] = now
        entry = self._old.get(rid)
        return now is not None and entry is not None and entry.get("stamp") == now

    def record(self, rid: RunId) -> Record:
        """The run's record: the index's while its stamp matches, else read from the run."""
        if self.path is None:
            return read_record(self.root, self.project, rid)
        now = self._stamps.pop(rid) if rid in self._stamps else \
            stamp(f"{self._runs}/{rid}", f"{self._locks}/{rid}.lock")
        entry = self._old.get(rid)
        if now is not None and entry is not None and entry.get("stamp") == now:
            self._new[rid] = entry
            return dict(entry)
        # Read after the stamp: what is read is at least as new as the stamp says (a change
        # in between only makes the next listing read the run again).
        record = read_record(self.root, self.project, rid)
        # (A shared run's writers write under labels/, which the stamp does not cover.)
        if (now is not None and complete(record) and record["state"] != "running"
                and not _labels.is_shared(record["meta"])
                and _newest(now) < self._now_ns - MARGIN_NS):
            self._new[rid] = {**record, "stamp": now}
            self._changed = True
        return record

    def save(self) -> None:
        """Write the index back if it changed and this store takes one (else leave it)."""
        if self.path is None or not (self._changed or self._new.keys() != self._old.keys()):
            return
        assert isinstance(self.root, Path)
        if os.path.exists(self.root / _layout.REMOTE_ID) or not os.access(self.path.parent, os.W_OK):
            return  # a sync remote (sync writes it), or a store this user cannot write
        runs = dumps(self._new)
        head = dumps({"format": FORMAT, "kind": KIND, "crc": zlib.crc32(runs)})
        data = head[:-1] + _RUNS + runs + b"}"
        try:
            _sweep(self.path)
            _fsutil.atomic_write(self.path, data, sync=False)
        except OSError as exc:  # a full disk, a read-only mount: the listing stands without it
            log.debug("could not write the runs index %s: %s", self.path, exc)


def _sweep(path: Path) -> None:
    """Remove the temp files of index writers killed mid-write (a minute old: none in flight)."""
    prefix = f"{_fsutil.TMP_PREFIX}{path.name}."
    cutoff = time.time() - 60
    for name in os.listdir(path.parent):
        if not name.startswith(prefix):
            continue
        try:
            old = os.lstat(path.parent / name).st_mtime < cutoff
        except FileNotFoundError:  # renamed into place, or another lister swept it
            continue
        if old:
            _fsutil.unlink(path.parent / name)


def _load(path: Path) -> dict[str, Any]:
    """The index's entries by run id; {} for a missing, damaged or foreign index. The checksum
    over the entries is what lets a listing take each entry as written, unchecked."""
    try:
        with open(path, "rb") as fh:
            head, sep, runs = fh.read().partition(_RUNS)
        meta = loads(head + b"}")
    except (OSError, ValueError):
        return {}
    if (not sep or not runs.endswith(b"}") or not isinstance(meta, dict)
            or meta.get("kind") != KIND or meta.get("format") != FORMAT
            or meta.get("crc") != zlib.crc32(runs[:-1])):
        return {}
    try:
        entries = loads(runs[:-1])
    except ValueError:
        return {}
    return entries if isinstance(entries, dict) else {}
