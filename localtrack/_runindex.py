"""What a listing knows of a run, read in one pass, and the per-project index that keeps it.

A listing reads of each run its run.json, events, state, config, summary, last step and
last write time (a *record*). Read from the run's files that is ~10 files per run; a project
of 10,000 runs is listed in well under a second only from ``<project>/index.json``: the
records of the runs that were neither live nor recently changed, each under a *stamp* of
eight stats (see ``stamp``). A record is used only while its stamp still matches; any other
run is read from its files (docs/format.md, "The runs index", says why
the stamp covers every change).

Without the index (the first listing, or after it was deleted) every run is read: in one
pass (``read_local``: each file opened once, relative to the run's folder), on a few threads
when the first reads show them waiting on the disk (a read waiting lets the others go on), so
that 10,000 runs take seconds, not tens of seconds; from the page cache, on the calling
thread. A run in any unusual shape is read file by file (``read_record``), which raises or
leaves out exactly what reading that run alone does.

The index is derived: never the source of truth, rebuilt by the next listing when it is
missing, damaged or stale, and deleting it at any time loses nothing. It is written
(atomically, without fsync: a torn one is ignored) only into a local store this process can
write that is not a sync remote; elsewhere it is not used for writing, and a remote store
(objects) never has one. Two listers writing at once each replace it whole: the last wins.
"""

from __future__ import annotations

import logging
import os
import stat
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from . import (
    _durable,
    _frames,
    _fsutil,
    _labels,
    _layout,
    _locks,
    _naming,
    _segments,
    _settings,
    _store,
    _wal,
)
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
#: Threads that read the runs a listing does not find in the index (see ProjectIndex.prefetch).
THREADS = 8
#: A listing stamps this many runs of the index first, and the rest on threads if they took
#: more than SLOW_STAMP seconds each (a run's 9 stats take ~25 us from the caches, ms from a disk).
PROBE = 64
SLOW_STAMP = 200e-6
#: Without the index (LOCALTRACK_LIST_THREADS unset), the first PROBE runs are read on the
#: calling thread, and the rest on THREADS threads if those reads blocked (the thread gave up
#: the CPU at least BLOCKED times: ~7 times a run from the disk, never from the page cache; where
#: that is not counted, if they waited SLOW_READ seconds a run beyond their CPU time). From the
#: page cache a read is CPU work, and threads contending for the GIL only add theirs (a fifth
#: of a cold listing of 10,000 runs).
BLOCKED = PROBE // 8
SLOW_READ = 100e-6
#: The entries follow the header as its last member, so the checksum covers their exact bytes.
_RUNS = b',"runs":'

Record = dict[str, Any]
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_REST = frozenset(("config", "summary", "last", "last_step", "updated"))


_STAMPED = (_store.RUN_JSON, _store.CONFIG_JSON, _store.SUMMARY_JSON, _segments.MANIFEST, "wal",
            _store.EVENTS)
_STAMP_LEN = 2 + 2 * len(_STAMPED) + 2  # the folder, each file, the lock


def stamp(rdir: str, lock: str, old: list[int] | None = None,
          dirs: tuple[int, int] | None = None) -> list[int] | None:
    """What changes whenever anything a record holds changes: the run folder's inode and
    change time, then the change time (which a write, a rename into a folder and a chmod all
    set, and no tool sets back) and size of each file a record comes from and of the writer
    lock file; -1, -1 for a missing one. None: the folder cannot be looked at (read the run).

    ``old`` (the stamp the index holds): while the folder's inode and change time are still
    its, a file it shows missing is still missing (nothing enters a folder without setting
    its change time), so it is not looked at again. ``dirs``: descriptors of the project's
    ``runs/`` and ``locks/`` that ``rdir`` and ``lock`` are then relative to (shorter lookups)."""
    runs_fd, locks_fd = dirs if dirs is not None else (None, None)
    try:
        run = os.stat(rdir, dir_fd=runs_fd)
    except OSError:
        return None
    out = [run.st_ino, run.st_ctime_ns]
    same = old if old is not None and len(old) == _STAMP_LEN and old[:2] == out else None
    at = 2
    for name in _STAMPED:
        if same is not None and same[at] == -1 and same[at + 1] == -1:
            part: tuple[int, int] | None = _MISSING
        else:
            part = _file_stamp(f"{rdir}/{name}", runs_fd)
        if part is None:
            return None
        out += part
        at += 2
    part = _file_stamp(lock, locks_fd)
    return None if part is None else out + list(part)


_MISSING = (-1, -1)


def _file_stamp(path: str, dir_fd: int | None) -> tuple[int, int] | None:
    """(change time, size) of a file, -1, -1 when missing; None when it cannot be looked at."""
    try:
        st = os.stat(path, dir_fd=dir_fd)
    except FileNotFoundError:
        return _MISSING
    except OSError:
        return None
    return st.st_ctime_ns, st.st_size


def _blocked() -> int | None:
    """How often the calling thread has given up the CPU waiting (on the disk, when reading
    runs), or None where that is not counted."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    except (ImportError, AttributeError, OSError):
        return None


def _newest(stamp: list[int]) -> int:
    """The newest change time in a stamp."""
    return max(stamp[1], *stamp[2::2])  # [ino, ctime, then (ctime, size) per file]


def updated(rdir: _store.StorePath, created: float, events: list[dict[str, Any]],
            shared: bool = False) -> float:
    """When anything of the run last changed (seconds since the epoch): its files' times, or in
    a sync copy (events and logs are folders of chunks, their times when sync copied them) the
    run's own times: its events, and the time of the last row of its newest log (of a
    ``shared`` run's, each label's: see _labels.copy_times)."""
    if isinstance(rdir, RemotePath) or os.path.isdir(f"{rdir}/{_store.EVENTS}"):
        copied = _copy_updated(rdir, created, events)
        return max(copied, *_labels.copy_times(rdir)) if shared else copied
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
    if os.path.isdir(base + "/labels"):  # a shared run: its writers log under labels/<label>/
        times += [updated(_labels.label_rdir(rdir, label), created, []) for label in _labels.labels(rdir)]
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
    run_events = _store.events(rdir, **ctx)
    events = _labels.events(rdir, meta, run_events, **ctx)  # (a shared run's: every writer's)
    record: Record = {"meta": meta, "events": events,
                      "state": _labels.state(root, project, rid, meta, live, run_events)}
    try:
        with _store.reading(rdir, **ctx):
            config = _store.read_json(rdir / _store.CONFIG_JSON, "config", **ctx)
            explicit = _store.read_json(rdir / _store.SUMMARY_JSON, "summary", **ctx)
            last, last_step = (_labels.last_and_step(rdir, _labels.primary(meta), **ctx)
                               if _labels.is_shared(meta) else _segments.last_and_step(rdir, **ctx))
            when = updated(rdir, meta.get("created", 0.0), events, _labels.is_shared(meta))
    except (LocaltrackError, OSError):
        return record
    record.update(config=config, summary=explicit, last=last, last_step=last_step, updated=when)
    return record


class _Unusual(Exception):
    """A run not in the shape ``read_local`` handles (a link, a special file, a damaged file, a
    log that changed while read, a writer in this process): read it with ``read_record``."""


_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # as _remotes._dir opens


def _read_at(dfd: int, name: str) -> tuple[bytes, os.stat_result] | None:
    """A regular file's bytes and its stat, opened relative to ``dfd`` following no link;
    None when it does not exist."""
    try:
        fd = os.open(name, _OPEN, dir_fd=dfd)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Unusual(name)
        data = os.read(fd, st.st_size + 1)
        if len(data) != st.st_size:  # written to meanwhile
            raise _Unusual(name)
        return data, st
    finally:
        os.close(fd)


def _stamped(found: tuple[bytes, os.stat_result] | None) -> tuple[int, int]:
    return (found[1].st_ctime_ns, found[1].st_size) if found else (-1, -1)


def _live(lock: str) -> tuple[bool, tuple[int, int]]:
    """Whether the lock at ``lock`` is held, as ``_locks.is_held`` probes it (the owner record
    read from the descriptor probed), and its stamp."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False, (-1, -1)
    try:
        st = os.fstat(fd)
        data = os.read(fd, st.st_size + 1)
        try:
            holder = loads(data) if data else {}
        except ValueError:
            holder = {}
        if isinstance(holder, dict) and (holder.get("synced_at") or holder.get("pid") == os.getpid()):
            raise _Unusual(lock)  # a copied record, or this process's own writer: is_held decides
        return not _locks.try_flock(fd, shared=True), (st.st_ctime_ns, st.st_size)
    finally:
        os.close(fd)


def read_local(rdir: str, lock: str, ctx: Ctx) -> tuple[Record, list[int]]:
    """A local run's complete record and its stamp, in one pass over its files: each opened
    once relative to the run's folder, following no link, its stamp taken from the open file
    before it is read (what is read is at least as new as the stamp says). What ``read_record``
    reads, with half its system calls (~45 instead of ~93: a cold listing of 10,000
    runs pays per call). _Unusual for a run in any other shape, or damaged: read_record then
    reads it, and raises or leaves out what it always did."""
    try:
        return _read_local(rdir, lock, ctx)
    except (LocaltrackError, OSError, ValueError, KeyError, TypeError) as exc:
        raise _Unusual(rdir) from exc


def _read_local(rdir: str, lock: str, ctx: Ctx) -> tuple[Record, list[int]]:
    dfd = os.open(rdir, _DIR)
    try:
        top = os.fstat(dfd)
        run = _read_at(dfd, _store.RUN_JSON)
        meta = loads(run[0]) if run else None
        if not isinstance(meta, dict) or _store.meta_problem(meta) \
                or meta.get("format", 1) > _layout.KNOWN_FORMAT or _labels.is_shared(meta):
            raise _Unusual(rdir)  # (a shared run's state and history are its writers')
        live, lock_stamp = _live(lock)  # before the events: see _store.is_live
        ev = _read_at(dfd, _store.EVENTS)
        events = [] if ev is None else _frames.records(_wal.check(ev[0], rdir, **ctx).bodies)
        _store.check_events(events, rdir, **ctx)
        config = _read_at(dfd, _store.CONFIG_JSON)
        explicit = _read_at(dfd, _store.SUMMARY_JSON)
        wfd = os.open("wal", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            wal = os.fstat(wfd)
            names = os.listdir(wfd)
            logs = {seq: found for name in names if (seq := _naming.log_seq(name)) is not None
                    and (found := _read_at(wfd, name)) is not None}
            times = [wal.st_mtime, *(found[1].st_mtime for found in logs.values())]
            mark = _durable.LEGACY
            for name in names:
                if name == _durable.NAME and (found := _read_at(wfd, name)) is not None:
                    mark = _durable.parse(found[0])
                    times.append(found[1].st_mtime)
                elif _naming.log_seq(name) is None:
                    try:
                        times.append(os.stat(name, dir_fd=wfd).st_mtime)
                    except FileNotFoundError:
                        continue
        finally:
            os.close(wfd)
        man = _read_at(dfd, _segments.MANIFEST)  # after the logs: see _segments._snapshot
    finally:
        os.close(dfd)
    path = Path(rdir)
    manifest = (_segments.empty_manifest() if man is None
                else _segments.parse_manifest(man[0], path / _segments.MANIFEST, **ctx))
    last, step = _last_and_step(path, manifest, {s: f[0] for s, f in logs.items()}, mark, ctx)
    times += [found[1].st_mtime for found in (ev, man) if found]
    record: Record = {
        "meta": meta, "events": events, "state": "running" if live else _store.end_state(events),
        "config": loads(config[0]) if config else None,
        "summary": loads(explicit[0]) if explicit else None,
        "last": last, "last_step": step, "updated": max(times)}
    stamp = [top.st_ino, top.st_ctime_ns, *_stamped(run), *_stamped(config), *_stamped(explicit),
             *_stamped(man), wal.st_ctime_ns, wal.st_size, *_stamped(ev), *lock_stamp]
    return record, stamp


def _last_and_step(rdir: Path, manifest: _segments.Manifest, read: dict[int, bytes],
                   mark: _durable.Mark, ctx: Ctx) -> tuple[dict[str, Any], int]:
    """``_segments.last_and_step`` over logs already read (and the manifest read after them)."""
    sealed = manifest["sealed_through"]
    seqs = sorted(s for s in read if s > sealed)
    if seqs != list(range(sealed + 1, sealed + 1 + len(seqs))):
        raise _Unusual(str(rdir))  # a log vanished meanwhile: _snapshot reads again
    last = _segments.manifest_last(rdir, manifest, **ctx)
    step = _segments.at_least_rewound(manifest, int(manifest["last_step"]))
    for seq in seqs:
        data = read[seq]
        durable = _durable.durable_offset(mark, seq)
        where = f"{rdir}/wal/{seq:08d}.jsonl"  # for messages: _layout.wal_path, without a Path
        checked = _wal.check(data, where, durable=durable, **ctx)
        records = _frames.records(checked.bodies)
        last.update(_segments.last_values(_segments.live(manifest, seq, records)))
        if records:
            step = _segments.last_step_at(manifest, seq, _wal.step_of(records[-1], where, **ctx))
        if checked.bad_at is not None or _durable.lost_end(data, checked.end, durable,
                                                           seq == seqs[-1]):
            break
    return last, step


def complete(record: Record) -> bool:
    """Whether the record holds the values past run.json, events and state."""
    return record.keys() >= _REST


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
        self._pending: dict[str, Future[tuple[Record, list[int] | None]]] = {}
        self._threads = _settings.list_threads()
        self._probe: list[RunId] = []  # runs prefetch left to record() to read and time
        self._probed: set[RunId] = set()
        self._waited = 0.0
        self._blocked: int | None = None
        self._now_ns = time.time_ns()
        if isinstance(root, Path):
            self.path = _layout.project_dir(root, project) / INDEX
            self._runs = str(_layout.runs_dir(root, project))
            self._locks = str(_layout.locks_dir(root, project))
            self._old = _load(self.path)

    def prestamp(self) -> None:
        """Stamp every run the index holds: on a few threads when the first stamps show the
        file system's caches cold (each stat waiting on the disk; a thread waiting lets the GIL
        go), else here (with the caches warm a stat takes microseconds, and threads would only
        add their switching to the warm listing)."""
        ids = cast(list[RunId], list(self._old)) if self.path is not None else []
        start = time.perf_counter()
        self._stamps.update(zip(ids[:PROBE], self._stamp_all(ids[:PROBE]), strict=True))
        ids = ids[PROBE:]
        if len(ids) < 2 * THREADS or time.perf_counter() - start < PROBE * SLOW_STAMP:
            self._stamps.update(zip(ids, self._stamp_all(ids), strict=True))
            return
        chunks = [ids[i:i + 256] for i in range(0, len(ids), 256)]  # a task per chunk: fewer switches
        with ThreadPoolExecutor(THREADS, thread_name_prefix="localtrack-list") as pool:
            for chunk, stamps in zip(chunks, pool.map(self._stamp_all, chunks), strict=True):
                self._stamps.update(zip(chunk, stamps, strict=True))

    def _stamp_all(self, ids: list[RunId]) -> list[list[int] | None]:
        """Stamps of ``ids``, each file looked up from descriptors of runs/ and locks/."""
        if not ids:
            return []
        try:
            runs_fd = os.open(self._runs, _DIR)
        except OSError:
            return [self._stamp(rid) for rid in ids]
        try:
            locks_fd = os.open(self._locks, _DIR)
        except OSError:  # (no locks/ yet, say): by full paths
            os.close(runs_fd)
            return [self._stamp(rid) for rid in ids]
        try:
            old = self._old
            return [stamp(rid, f"{rid}.lock", (old.get(rid) or {}).get("stamp"), (runs_fd, locks_fd))
                    for rid in ids]
        finally:
            os.close(runs_fd)
            os.close(locks_fd)

    def known(self, rid: RunId) -> bool:
        """Whether the index holds the run under the stamp it shows now (its run.json is then
        there: the listing need not look again). The stamp is kept for ``record``; a run the
        index does not hold is not stamped here (its one-pass read stamps it)."""
        entry = self._old.get(rid)
        if self.path is None or entry is None:
            return False
        now = self._stamps[rid] if rid in self._stamps else self._stamp(rid)
        self._stamps[rid] = now
        return now is not None and entry.get("stamp") == now

    def _stamp(self, rid: RunId) -> list[int] | None:
        return stamp(f"{self._runs}/{rid}", f"{self._locks}/{rid}.lock",  # strings: cheaper than paths
                     (self._old.get(rid) or {}).get("stamp"))

    def prefetch(self, ids: list[RunId]) -> None:
        """Have the runs of ``ids`` the index does not hold under the stamp ``known`` found read
        for ``record`` to take: on a few threads when the reads wait on the disk (a cold
        listing then waits on many small reads, and a thread waiting lets the GIL go), else by
        ``record`` itself (see SLOW_READ)."""
        if self.path is None:
            return
        todo = [rid for rid in ids if rid not in self._pending and not (
            (entry := self._old.get(rid)) is not None and self._stamps.get(rid) is not None
            and entry.get("stamp") == self._stamps[rid])]
        threads = THREADS if self._threads is None else self._threads
        if threads == 0 or len(todo) < 2 * threads:
            return
        if self._threads is None:
            self._probe = todo  # record() reads the first ones and decides
            return
        self._start(todo, threads)

    def _start(self, todo: list[RunId], threads: int) -> None:
        pool = ThreadPoolExecutor(threads, thread_name_prefix="localtrack-list")
        self._pending.update((rid, pool.submit(self._read, rid)) for rid in todo)
        pool.shutdown(wait=False)  # its threads end once every read is done

    def _read_here(self, rid: RunId) -> tuple[Record, list[int] | None]:
        """``_read`` on the calling thread; while probing, watched (see BLOCKED)."""
        if not self._probe:
            return self._read(rid)
        if not self._probed:
            self._blocked = _blocked()
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return self._read(rid)
        finally:
            self._waited += (time.perf_counter() - wall) - (time.thread_time() - cpu)
            self._probed.add(rid)
            if len(self._probed) >= PROBE:
                todo, self._probe = self._probe, []
                now = _blocked()
                if (self._waited > PROBE * SLOW_READ if now is None or self._blocked is None
                        else now - self._blocked >= BLOCKED):
                    self._start([r for r in todo if r not in self._probed], THREADS)

    def _read(self, rid: RunId) -> tuple[Record, list[int] | None]:
        """The run's record read from its files, and the stamp it was read under."""
        try:
            return read_local(f"{self._runs}/{rid}", f"{self._locks}/{rid}.lock",
                              {"project": self.project, "run_id": rid})
        except _Unusual:
            # Read after the stamp: what is read is at least as new as the stamp says (a change
            # in between only makes the next listing read the run again).
            now = self._stamp(rid)
            return read_record(self.root, self.project, rid), now

    def record(self, rid: RunId) -> Record:
        """The run's record: the index's while its stamp matches, else read from the run
        (raising as read_record does)."""
        if self.path is None:
            return read_record(self.root, self.project, rid)
        entry = self._old.get(rid)
        now = self._stamps.pop(rid) if rid in self._stamps else None
        future = self._pending.pop(rid, None)
        if future is not None:
            record, now = future.result()
        else:
            if entry is not None:
                now = now if now is not None else self._stamp(rid)
                if now is not None and entry.get("stamp") == now:
                    self._new[rid] = entry
                    return dict(entry)
            record, now = self._read_here(rid)
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
