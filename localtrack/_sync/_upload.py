"""Sync: copy runs to a remote store, incrementally, in an order that keeps the remote readable.

Who writes: only sync writes the remote. Locally it only reads the store,
except for its own state (``<run>/sync/<remote-key>.json``, replaced
atomically), its lock (``<root>/.sync/<remote-key>.lock``) and ``--clean``.
One pass over a run uploads, in this order:
  1. the sealed segments the manifest names (immutable: each goes up once);
  2. the manifest bytes read in step 1, so it never names a segment not yet there;
  3. drops the remote log folders that manifest now covers;
  4. the new complete records of each unsealed log, oldest first, then of
     events.jsonl, as a chunk named by its byte offset (objects cannot grow);
  5. the writer's lock record, config.json, summary.json and run.json when changed.
So at every instant the remote history is a prefix of the local one. The
state is saved after each upload: a SIGKILL loses at most the record of one
upload, and redoing it writes the same key with the same bytes (or, for a
chunk, more bytes from the same offset), so a rerun is harmless.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
import time
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import portalocker

from . import _frames, _fsutil, _layout, _locks, _naming, _sealer, _segments, _settings, _store, _wal
from ._codec import dumps, loads
from ._naming import Ctx, ProjectName, RunId
from ._remotes import Remote, open_remote, remote_key
from ._remotes._chunks import chain_end, chunk_name, read_log
from ._remotes._dir import DirRemote, open_file, read_file
from .errors import (
    CorruptRunError,
    LocaltrackError,
    RemoteError,
    RunLockedError,
    RunNotFoundError,
    SyncError,
    UsageError,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("localtrack")

STATE_DIR = "sync"
STATE_VERSION = 1
_TAIL = 64                # bytes before the sent offset whose CRC detects a rewritten log
_MERGE_LIMIT = 1 << 20    # chunks this big are never merged again
_MAX_REREADS = 20         # passes restarted because the writer sealed under our feet
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 30.0
_METADATA = (_store.CONFIG_JSON, _store.SUMMARY_JSON, _store.RUN_JSON)


class Progress(Protocol):
    """What the CLI shows while uploading; the library never prints."""

    def start(self, total_bytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def close(self) -> None: ...


@dataclass
class SyncReport:
    """What one sync did: ``pending`` maps each run not fully synced to the reason."""

    remote: str
    runs: int = 0
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    deleted: int = 0
    synced_runs: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.pending


@dataclass
class RunStatus:
    path: str
    state: str
    pending_files: int
    pending_bytes: int
    synced_at: float | None
    note: str = ""


class _Reread(Exception):
    """A local file moved (the writer sealed a log): read the run again."""


class _Pending(Exception):
    """This run cannot be completed now; the message says why."""


def _sha(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _stat_sig(path: str, name: str) -> list[Any]:
    """[name, size, mtime, inode], or [name] when missing (plain strings: this runs per file per pass)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [name]
    return [name, st.st_size, st.st_mtime_ns, st.st_ino]


def _merge_count(chunks: list[list[int]]) -> int:
    """How many trailing chunks to upload as one: a binary counter over small chunks.

    Merging when the previous chunk is no bigger than the tail keeps the number of
    chunks per log logarithmic (a slow run adds a tiny chunk per pass) while each
    byte is re-sent only a few times; chunks of 1 MiB or more are never merged.
    """
    k, total = 1, chunks[-1][1]
    while k < len(chunks):
        prev = chunks[-k - 1][1]
        if prev > total or prev >= _MERGE_LIMIT:
            break
        total += prev
        k += 1
    return k


def _read_range(path: Path, under: Path, start: int, end: int | None = None,
                **ctx: Unpack[Ctx]) -> bytes:
    """Bytes of a local log (a plain file, or chunks when the source is itself a synced store),
    following no link below ``under`` (the run folder)."""
    try:
        with open_file(path, under, **ctx) as fh:
            fh.seek(start)
            return fh.read() if end is None else fh.read(end - start)
    except IsADirectoryError:
        data = read_log(path, under, **ctx)
        return data[start:] if end is None else data[start:end]


def _no_link(path: Path, **ctx: Unpack[Ctx]) -> None:
    """Refuse to write into a folder of the store that is a symbolic link (it leads elsewhere)."""
    if path.is_symlink():
        raise CorruptRunError(f"{path} of {_naming.run_label(ctx)} is a symbolic link; sync "
                              "writes its state only into real folders of the store. Replace "
                              "the link with a folder, or remove it.", path=str(path), **ctx)


class _RunSync:
    """One run against one remote: its saved state, and the pass that uploads what is new."""

    def __init__(self, syncer: Syncer, project: ProjectName, rid: RunId) -> None:
        self.s = syncer
        self.remote = syncer.remote
        self.project = project
        self.rid = rid
        self.path = f"{project}/{rid}"
        self.ctx: Ctx = {"project": project, "run_id": rid}
        self.rdir = _layout.run_dir(syncer.root, project, rid)
        self.lock_path = _layout.lock_path(syncer.root, project, rid)
        self.prefix = f"{project}/runs/{rid}"
        self.state_path = self.rdir / STATE_DIR / f"{syncer.key}.json"
        self.state = self._load_state()
        self.fresh = not self.state.get("sig")
        self.uploaded_files = 0
        self.uploaded_bytes = 0
        self.deleted = 0

    # -- state -------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        try:
            state = loads(read_file(self.state_path, self.rdir, **self.ctx))
        except (FileNotFoundError, ValueError):  # lost or torn: uploads are redone, harmlessly
            state = None
        except (CorruptRunError, OSError) as exc:  # a link, say: treated as lost, and replaced
            log.warning("ignoring the sync state of %s: %s", self.path, exc)
            state = None
        if not isinstance(state, dict) or state.get("v") != STATE_VERSION or not _valid_logs(state):
            state = {}
        if state.get("remote_id") != self.s.remote_id:
            state = {}  # the remote was wiped or replaced since: what it holds is unknown
        base = {"v": STATE_VERSION, "remote": self.s.remote.url, "remote_id": self.s.remote_id,
                "segments": [], "manifest": None,
                "logs": {}, "files": {}, "lock": None, "sig": None, "synced_at": None}
        return {**base, **state}

    def _save(self) -> None:
        _no_link(self.state_path.parent, **self.ctx)
        with _fsutil.storage_errors("write the sync state", self.state_path, **self.ctx):
            _fsutil.ensure_dir(self.state_path.parent)
            # Not fsynced: after a power loss a lost or empty state only means re-uploading.
            _fsutil.atomic_write(self.state_path, dumps(self.state), sync=False)

    # -- what the local run looks like ---------------------------------------------------------

    def signature(self) -> list[Any]:
        """Cheap change detection: (size, mtime, inode) of every file sync reads."""
        base = f"{self.rdir}{os.sep}"
        sig: list[Any] = [_stat_sig(base + n, n) for n in (*_METADATA, _segments.MANIFEST, _store.EVENTS)]
        try:
            with os.scandir(base + "wal") as it:
                wal = sorted(_stat_sig(e.path, e.name) for e in it)
        except FileNotFoundError:
            wal = []
        sig.append(wal)
        sig.append(_stat_sig(str(self.lock_path), "lock"))
        return sig

    def live_holder(self, sig: list[Any] | None = None) -> dict[str, Any] | None:
        """The writer's owner record while it is alive (a synced copy's record is passed on).

        With ``sig``, an empty or missing lock file (a run released cleanly) is not even opened.
        """
        if sig is not None and (len(sig[-1]) == 1 or sig[-1][1] == 0):
            return None
        holder = _locks.read_holder(self.lock_path)
        if not holder.get("pid"):
            return None
        return holder if _locks.is_held(self.lock_path, holder) else None

    @staticmethod
    def _lock_id(holder: dict[str, Any] | None) -> str | None:
        return None if holder is None else _sha(dumps({k: v for k, v in holder.items()
                                                        if k != "synced_at"}))

    def up_to_date(self, sig: list[Any], holder: dict[str, Any] | None) -> bool:
        if holder is not None and not holder.get("synced_at"):
            return False  # a live writer appends through a memory map: sizes and times lag
        return bool(sig == self.state["sig"] and self._lock_id(holder) == self.state["lock"])

    # -- uploads -----------------------------------------------------------------------------

    def _put(self, key: str, data: bytes) -> None:
        self.s.call(self.remote.put, f"{self.prefix}/{key}" if key else self.prefix, data)
        self.uploaded_files += 1
        self.uploaded_bytes += len(data)
        self.s.advance(len(data))

    def _delete(self, key: str) -> None:
        self.s.call(self.remote.delete, f"{self.prefix}/{key}")
        self.deleted += 1

    def sync(self) -> None:
        """Upload what is new; raise _Pending (or RemoteError) when something is left."""
        for _ in range(_MAX_REREADS):
            sig = self.signature()
            holder = self.live_holder(sig)
            if self.up_to_date(sig, holder):
                return
            try:
                self._pass(sig, holder)
                return
            except _Reread:
                continue
        raise _Pending("its log files kept moving while being read (sealing); retry")

    def _pass(self, sig: list[Any], holder: dict[str, Any] | None) -> None:
        st = self.state
        # Every name the manifest gives is checked before anything is uploaded (a received
        # store may name /etc/hostname or ../../x), and no local file is read through a link.
        mbytes, manifest = self._manifest()
        # 1. segments, each once (after a lost state, one of the same size is already there)
        done = set(st["segments"])
        there = self.s.call(self.remote.list, f"{self.prefix}/segments") if self.fresh else {}
        for seg in manifest["segments"]:
            name = seg["file"]
            if name in done:
                continue
            try:
                data = read_file(self.rdir / "segments" / name, self.rdir, **self.ctx)
            except FileNotFoundError:
                raise _Pending(f"segment {name} named in its manifest is missing locally") from None
            if name not in there or there[name].size != len(data):
                self._put(f"segments/{name}", data)
            done.add(name)
            st["segments"] = sorted(done)
            self._save()
        # 2. the manifest read above: every segment it names is on the remote now
        if mbytes is not None and _sha(mbytes) != st["manifest"]:
            self._put(_segments.MANIFEST, mbytes)
            st["manifest"] = _sha(mbytes)
            self._save()
        sealed = int(manifest["sealed_through"])
        # 3. log folders the remote manifest now covers (readers ignore them already)
        for name in [n for n in st["logs"] if n.startswith("wal/")]:
            if int(name[4:12]) <= sealed:
                self._delete(name)
                del st["logs"][name]
                self._save()
        if self.fresh:
            for name in self.s.call(self.remote.list, f"{self.prefix}/wal"):
                seq = _naming.log_seq(name)
                if seq is not None and seq <= sealed and f"wal/{name}" not in st["logs"]:
                    self._delete(f"wal/{name}")
            self.fresh = False
        # 4. unsealed logs, oldest first: a log is complete once a newer one exists
        seqs = [s for s in _segments.wal_seqs(self.rdir) if s > sealed]
        if seqs and seqs != list(range(sealed + 1, seqs[-1] + 1)):
            raise _Reread
        for seq in seqs:
            self._log(f"wal/{seq:08d}.jsonl", closed=seq != seqs[-1], required=True)
        self._log(_store.EVENTS, closed=False, required=False)
        # 5. the lock record after the events (a reader sees "running" until both say otherwise),
        #    then metadata; run.json last, so a new run shows up once its data is there
        lock_id = self._lock_id(holder)
        if lock_id != st["lock"]:
            key = f"{self.project}/locks/{self.rid}.lock"
            if holder is None:
                self.s.call(self.remote.delete, key)
            else:
                record = dumps({**holder, "synced_at": holder.get("synced_at") or time.time()})
                self.s.call(self.remote.put, key, record)
            st["lock"] = lock_id
            self._save()
        for name in _METADATA:
            self._file(name)
        st["sig"] = sig
        st["synced_at"] = time.time()
        self._save()

    def _manifest(self) -> tuple[bytes | None, dict[str, Any]]:
        """The manifest's bytes (None when there is none) and its checked content."""
        path = self.rdir / _segments.MANIFEST
        try:
            mbytes = read_file(path, self.rdir, **self.ctx)
        except FileNotFoundError:
            return None, _segments.empty_manifest()
        return mbytes, _segments.parse_manifest(mbytes, path, **self.ctx)

    def _file(self, name: str) -> None:
        try:
            data = read_file(self.rdir / name, self.rdir, **self.ctx)
        except FileNotFoundError:
            return
        digest = _sha(data)
        if self.state["files"].get(name) != digest:
            self._put(name, data)
            self.state["files"][name] = digest
            self._save()

    def _log(self, name: str, *, closed: bool, required: bool) -> None:
        """Send the log's new whole records as one chunk (merged with small ones before it)."""
        local = self.rdir / name
        entry = self.state["logs"].get(name) or {"sent": 0, "chunks": [], "tail": 0, "frame": 0}
        sent = int(entry["sent"])
        frame = int(entry.get("frame", sent))  # where a checksum range starts (see _wal); states
        t = min(sent, _TAIL)                   # written before format 3 sent whole frames only
        lo = min(frame, sent - t)
        try:
            data = _read_range(local, self.rdir, lo, **self.ctx)
        except FileNotFoundError:
            if required:
                raise _Reread from None
            return
        k = sent - lo  # data[k] is the first byte not sent
        if len(data) < k or zlib.crc32(data[k - t:k]) != entry["tail"]:
            self._rewritten(name, sent)
            entry, sent, t, frame, lo, k = {"sent": 0, "chunks": [], "tail": 0}, 0, 0, 0, 0, 0
            data = _read_range(local, self.rdir, 0, **self.ctx)
        checked = _frames.validate(data[frame - lo:], anchored=frame > 0)
        frame_end = frame + checked.frame_end
        damaged = checked.corrupt or (closed and checked.bad_at is not None)
        # whole records not sent yet; of a damaged log only what its checksums vouch for
        n = max(0, frame_end - sent if damaged else frame + checked.end - sent)
        if damaged:
            if n:
                self._send(name, local, entry, sent, t, memoryview(data)[k - t:], n, frame_end)
            raise _Pending(f"{name} has a damaged record at byte {sent + n}; it was synced up to there")
        if n:
            self._send(name, local, entry, sent, t, memoryview(data)[k - t:], n, frame_end)

    def _send(self, name: str, local: Path, entry: dict[str, Any], sent: int, t: int,
              data: bytes | memoryview, n: int, frame_end: int) -> None:
        new = memoryview(data)[t:]
        chunks = [*entry["chunks"], [sent, n]]
        k = _merge_count(chunks)
        start = chunks[-k][0]
        payload = bytes(new[:n]) if k == 1 else _read_range(local, self.rdir, start, sent + n,
                                                            **self.ctx)
        if len(payload) != sent + n - start:
            raise _Reread
        self._put(f"{name}/{chunk_name(start)}", payload)
        # If we die here: the merged chunk overlaps the smaller ones; readers skip overlaps.
        for offset, _ in chunks[-k + 1:] if k > 1 else []:
            self._delete(f"{name}/{chunk_name(offset)}")
        end = sent + n
        tail = bytes(data[max(0, t + n - _TAIL):t + n])  # the last bytes sent, to spot a rewrite
        self.state["logs"][name] = {"sent": end, "chunks": [*chunks[:-k], [start, end - start]],
                                    "tail": zlib.crc32(tail), "frame": frame_end}
        self._save()

    def _rewritten(self, name: str, sent: int) -> None:
        """The local log no longer starts with what was sent (power lost after sync read it)."""
        log.error("%s of run %s changed below byte %d, which was already sent to %s (was power "
                  "lost after sync read unsynced data?); uploading it again from the start",
                  name, self.path, sent, self.remote.url)
        self._delete(name)
        self.state["logs"].pop(name, None)
        self._save()

    # -- status and clean ------------------------------------------------------------------------

    def pending(self) -> tuple[int, int]:
        """(files, bytes) still to upload, from local state only (the remote is not contacted)."""
        sig = self.signature()
        holder = self.live_holder(sig)
        if self.up_to_date(sig, holder):
            return 0, 0
        files = nbytes = 0
        mbytes, manifest = self._manifest()
        for seg in manifest["segments"]:
            if seg["file"] not in self.state["segments"]:
                files += 1
                nbytes += _size(self.rdir / "segments" / seg["file"])
        if mbytes is not None and _sha(mbytes) != self.state["manifest"]:
            files, nbytes = files + 1, nbytes + len(mbytes)
        logs = [f"wal/{s:08d}.jsonl" for s in _segments.wal_seqs(self.rdir)
                if s > manifest["sealed_through"]] + [_store.EVENTS]
        for name in logs:
            grown = _size(self.rdir / name) - int((self.state["logs"].get(name) or {}).get("sent", 0))
            if grown > 0:
                files, nbytes = files + 1, nbytes + grown
        for name in _METADATA:
            try:
                data = (self.rdir / name).read_bytes()
            except FileNotFoundError:
                continue
            if self.state["files"].get(name) != _sha(data):
                files, nbytes = files + 1, nbytes + len(data)
        if self._lock_id(holder) != self.state["lock"]:
            files += 1
        return files, nbytes

    def verify_remote(self) -> str | None:
        """Why the remote copy is not complete (sizes compared), or None when it is."""
        manifest = _segments.load_manifest(self.rdir, **self.ctx)
        top = self.s.call(self.remote.list, self.prefix)
        for name in (*_METADATA, _segments.MANIFEST):
            size = _size(self.rdir / name)
            if size and (name not in top or top[name].size != size):
                return f"{name} differs"
        segs = self.s.call(self.remote.list, f"{self.prefix}/segments")
        for seg in manifest["segments"]:
            size = _size(self.rdir / "segments" / seg["file"])
            if seg["file"] not in segs or segs[seg["file"]].size != size:
                return f"segment {seg['file']} differs"
        logs = [f"wal/{s:08d}.jsonl" for s in _segments.wal_seqs(self.rdir)
                if s > manifest["sealed_through"]] + [_store.EVENTS]
        for name in logs:
            try:
                size = _frames.data_end(read_log(self.rdir / name, self.rdir, **self.ctx))
            except FileNotFoundError:
                size = 0
            if chain_end(self.s.call(self.remote.list, f"{self.prefix}/{name}")) < size:
                return f"{name} is not complete"
        return None


def _valid_logs(state: dict[str, Any]) -> bool:
    """Whether the state's log names are the format's (its keys become remote keys to delete)."""
    logs = state.get("logs")
    return isinstance(logs, dict) and all(
        name == _store.EVENTS or (name.startswith("wal/") and _naming.log_seq(name[4:]) is not None)
        for name in logs)


def _size(path: Path) -> int:
    """Bytes of a file (without a mapped log's NUL padding), or of a chunked log folder; a link
    counts nothing (a pass refuses it)."""
    try:
        if path.is_symlink():
            return 0
        if path.is_dir():
            return len(read_log(path))
        if path.suffix == ".jsonl":
            return _wal.data_size(path)
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class _StoreLock:
    """One sync per (store, remote) at a time: two would race on the same state files."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        self._fh: Any = None

    def acquire(self) -> None:
        _no_link(self.path.parent)  # the remote's id is written there too
        with _fsutil.storage_errors("create the sync lock", self.path):
            _fsutil.ensure_dir(self.path.parent)
            try:  # not through a link: the lock file is truncated below
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                if not self.path.is_symlink():
                    raise
                raise SyncError(f"The sync lock {str(self.path)!r} is a symbolic link; sync does not "
                                "open (and truncate) a file through a link. Remove the link.",
                                path=str(self.path)) from exc
            fh = os.fdopen(fd, "r+b")
        try:
            portalocker.lock(fh, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            fh.close()
            holder = _locks.read_holder(self.path)
            raise SyncError(f"Another localtrack sync to {self.url!r} is running from this store "
                            f"({_locks.describe(holder)}); stop it or wait for it.",
                            path=str(self.path)) from None
        fh.seek(0)
        fh.truncate()
        fh.write(dumps(_locks.this_process()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.truncate(0)
            portalocker.unlock(fh)
            fh.close()


class Syncer:
    """Syncs the runs of one local store to one remote (holds the store's sync lock while open)."""

    def __init__(self, root: Path, remote: Remote, targets: Iterable[str] = (), *, clean: bool = False,
                 retries: int = 4, workers: int = 4, progress: Progress | None = None,
                 stop: threading.Event | None = None) -> None:
        self.root = root
        self.remote = remote
        self.key = remote_key(remote.url)
        self.targets = list(targets)
        self.clean = clean
        self.retries = max(0, retries)
        self.workers = max(1, workers)
        self.progress = progress
        self.stop = stop or threading.Event()
        self._lock = _StoreLock(root / ".sync" / f"{self.key}.lock", remote.url)
        self._id_path = root / ".sync" / f"{self.key}.json"
        self.remote_id = self._recorded_id()
        self._down: RemoteError | None = None
        self._mutex = threading.Lock()

    def __enter__(self) -> Syncer:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    # -- plumbing --------------------------------------------------------------------------------

    def call(self, fn: Any, *args: Any) -> Any:
        """Call a remote primitive, retrying transient failures with exponential backoff."""
        for attempt in range(self.retries + 1):
            if self._down is not None:
                raise self._down
            try:
                return fn(*args)
            except RemoteError as exc:
                if not exc.transient or attempt == self.retries or self.stop.is_set():
                    raise
                delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** attempt)
                log.info("%s; retrying in %.1f s", exc, delay)
                if self.stop.wait(delay):
                    raise
        raise AssertionError("unreachable")

    def advance(self, nbytes: int) -> None:
        if self.progress is not None:
            self.progress.advance(nbytes)

    def check(self) -> None:
        """One clear error for a bad URI, a missing bucket or refused credentials.

        Also reads the remote's id (``.localtrack-remote.json``, created on the first sync):
        when it differs from the one recorded here, the remote was wiped or replaced, and
        every run's state is ignored, so everything is checked and uploaded again.
        """
        self._down = None
        self.call(self.remote.check)
        try:
            found = loads(self.call(self.remote.get, _layout.REMOTE_ID))
            remote_id = found.get("id") if isinstance(found, dict) else None
        except (FileNotFoundError, ValueError):
            remote_id = None
        if not isinstance(remote_id, str):
            remote_id = secrets.token_hex(8)
            self.call(self.remote.put, _layout.REMOTE_ID, dumps({"id": remote_id, "created": time.time()}))
        if remote_id != self.remote_id:
            with _fsutil.storage_errors("record the remote's id in", self._id_path):
                _fsutil.ensure_dir(self._id_path.parent)
                _fsutil.atomic_write(self._id_path, dumps({"id": remote_id, "remote": self.remote.url}))
            self.remote_id = remote_id

    def _recorded_id(self) -> str | None:
        try:
            found = loads(self._id_path.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        value = found.get("id") if isinstance(found, dict) else None
        return value if isinstance(value, str) else None

    def select(self) -> list[tuple[ProjectName, RunId]]:
        """The runs to sync: every run of the store, or those the targets name."""
        if not self.root.is_dir():
            raise UsageError(f"No localtrack store at {str(self.root)!r}: pass --dir (or dir=) or set "
                             "LOCALTRACK_DIR.")
        wanted: dict[ProjectName, set[RunId] | None] = {}
        for target in self.targets:
            if "/" in target:
                project, rid = _naming.parse_path(target)
                if not (_layout.run_dir(self.root, project, rid) / _store.RUN_JSON).exists():
                    raise RunNotFoundError(f"No run {rid!r} in project {project!r} under "
                                           f"{str(self.root)!r}.", project=project, run_id=rid)
                ids = wanted.setdefault(project, set())
                if ids is not None:
                    ids.add(rid)
            else:
                project = _naming.project_name(target)
                if not _layout.runs_dir(self.root, project).is_dir():
                    raise UsageError(f"No project {project!r} under {str(self.root)!r}.")
                wanted[project] = None
        if not self.targets:
            for entry in sorted(self.root.iterdir()):
                if (entry / "runs").is_dir() and not entry.name.startswith("."):
                    try:
                        wanted[_naming.project_name(entry.name)] = None
                    except LocaltrackError:
                        continue
        runs: list[tuple[ProjectName, RunId]] = []
        for project, ids in sorted(wanted.items()):
            if ids is not None:
                runs += [(project, rid) for rid in sorted(ids)]
                continue
            for entry in sorted(_layout.runs_dir(self.root, project).iterdir()):
                if entry.name.startswith(".") or not (entry / _store.RUN_JSON).exists():
                    continue
                try:
                    runs.append((project, _naming.run_id(entry.name)))
                except LocaltrackError:
                    continue
        return runs

    # -- passes ----------------------------------------------------------------------------------

    def run_once(self, runs: Iterable[tuple[ProjectName, RunId]] | None = None) -> SyncReport:
        """One pass over the runs; a run that fails is reported pending, the others go on."""
        selected = self.select() if runs is None else list(runs)
        report = SyncReport(remote=self.remote.url, runs=len(selected))
        self._down = None
        todo = [run for run in (self._changed(p, r, report) for p, r in selected) if run is not None]
        if self.progress is not None:
            self.progress.start(sum(_pending_bytes(run) for run in todo))
        try:
            if self.workers == 1 or len(todo) < 2:
                for run in todo:
                    self._one(run, report)
            else:  # runs are independent; each run's uploads stay in order in one thread
                with ThreadPoolExecutor(self.workers, thread_name_prefix="localtrack-sync") as pool:
                    list(pool.map(lambda run: self._one(run, report), todo))
        finally:
            if self.progress is not None:
                self.progress.close()
        if self.clean:
            for project, rid in selected:
                if f"{project}/{rid}" not in report.pending and not self.stop.is_set():
                    self._clean(project, rid, report)
        return report

    def _changed(self, project: ProjectName, rid: RunId, report: SyncReport) -> _RunSync | None:
        """The run if it changed since its last sync (a few stat calls; no thread, no request)."""
        try:
            run = _RunSync(self, project, rid)
            sig = run.signature()
            return None if run.up_to_date(sig, run.live_holder(sig)) else run
        except (LocaltrackError, OSError) as exc:
            report.pending[f"{project}/{rid}"] = str(exc)
            log.warning("run %s/%s cannot be read: %s", project, rid, exc)
            return None

    def _one(self, run: _RunSync, report: SyncReport) -> None:
        path = run.path
        if self.stop.is_set():
            report.pending[path] = "stopped"
            return
        try:
            try:
                run.sync()
            finally:
                with self._mutex:
                    report.uploaded_files += run.uploaded_files
                    report.uploaded_bytes += run.uploaded_bytes
                    report.deleted += run.deleted
                    if run.uploaded_files or run.deleted:
                        report.synced_runs.append(path)
            if run.uploaded_files:
                log.info("synced %s: %d file(s), %s", path, run.uploaded_files, _human(run.uploaded_bytes))
        except RemoteError as exc:
            report.pending[path] = str(exc)
            if exc.transient and self._down is None:
                self._down = exc  # the remote is unreachable: the other runs wait for the next pass
        except (_Pending, LocaltrackError, OSError) as exc:
            report.pending[path] = str(exc)
            log.warning("run %s is not fully synced to %s: %s", path, self.remote.url, exc)

    def _clean(self, project: ProjectName, rid: RunId, report: SyncReport) -> None:
        """Delete the local copy of a finished run whose files are all on the remote."""
        run = _RunSync(self, project, rid)
        evs = _store.events(run.rdir, **run.ctx)
        ends = [e for e in evs if e.get("event") in ("finished", "preempted", "started", "resumed")]
        if not ends or ends[-1].get("event") != "finished" or run.live_holder() is not None:
            return
        if not run.up_to_date(run.signature(), None):
            return
        try:
            problem = run.verify_remote()
        except (RemoteError, LocaltrackError) as exc:
            problem = str(exc)
        if problem:
            log.warning("not cleaning %s: %s on %s", run.path, problem, self.remote.url)
            return
        lock = _locks.RunLock(run.lock_path, **run.ctx)
        try:
            lock.acquire()
        except (RunLockedError, LocaltrackError):
            return
        try:
            with _sealer.hold(run.rdir, timeout=0):  # not while a sealer works on it
                if (run.rdir / _sealer.AGAIN).exists():
                    return  # sealing is still to come: the remote will change
                grave = (_layout.runs_dir(self.root, project)
                         / f"{_fsutil.TMP_PREFIX}{rid}-{secrets.token_hex(4)}")
                _fsutil.rename_durable(run.rdir, grave)
            # If we die here: a .tmp- dir that no reader lists; the next writer of the project sweeps it.
            shutil.rmtree(grave, ignore_errors=True)
        except TimeoutError:
            return
        finally:
            lock.release()
        _fsutil.unlink(run.lock_path)
        report.cleaned.append(run.path)
        log.info("removed the local copy of %s: it is complete on %s", run.path, self.remote.url)

    def status(self) -> list[RunStatus]:
        out = []
        for project, rid in self.select():
            run = _RunSync(self, project, rid)
            note = ""
            try:
                files, nbytes = run.pending()
            except (LocaltrackError, OSError) as exc:
                files, nbytes, note = 0, 0, str(exc)
            state = _store.state(self.root, project, rid, _store.events(run.rdir, **run.ctx))
            out.append(RunStatus(run.path, state, files, nbytes, run.state["synced_at"], note))
        return out


def _pending_bytes(run: _RunSync) -> int:
    """For the progress bar only: a run that cannot be read counts nothing (its pass says why)."""
    try:
        return run.pending()[1]
    except (LocaltrackError, OSError):
        return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def open_syncer(to: str | os.PathLike[str], dir: str | os.PathLike[str] | None = None,
                runs: Iterable[str] | str | None = None, **kw: Any) -> Syncer:
    if dir is not None and "://" in os.fspath(dir):
        raise UsageError(f"sync reads a local store; {os.fspath(dir)!r} is a URI. Sync from the "
                         "directory the runs were logged to (or a copy of it).")
    root = _settings.root_dir(dir)
    remote = open_remote(to)
    if isinstance(remote, DirRemote) and remote.root.resolve().is_relative_to(root.resolve()):
        raise UsageError(f"The remote {remote.url!r} is the store itself or inside it; choose a "
                         "directory outside the store.")
    targets = [runs] if isinstance(runs, str) else list(runs or [])
    return Syncer(root, remote, targets, **kw)


def sync(to: str | os.PathLike[str], *, dir: str | os.PathLike[str] | None = None,
         runs: Iterable[str] | str | None = None, watch: bool = False, poll: float | None = None,
         clean: bool = False, retries: int = 4, progress: Progress | None = None,
         stop: threading.Event | None = None) -> SyncReport:
    """Upload what is pending (or keep uploading, with ``watch``); see localtrack.sync."""
    syncer = open_syncer(to, dir, runs, clean=clean, retries=retries, progress=progress, stop=stop)
    with syncer:
        if watch:
            from ._daemon import watch as watch_loop

            return watch_loop(syncer, poll=poll)
        syncer.check()
        report = syncer.run_once()
    if report.pending:
        lines = "\n".join(f"  {path}: {why}" for path, why in sorted(report.pending.items()))
        raise SyncError(f"{len(report.pending)} run(s) not fully synced to {report.remote}:\n{lines}\n"
                        "Run the same sync again to continue where it stopped.",
                        pending=report.pending)
    return report


# -- the command line: `localtrack sync` (the only place sync prints) ---------------------------


class _Bar:
    """A tqdm progress bar over the bytes of one pass (only on a terminal)."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total_bytes: int) -> None:
        from tqdm import tqdm

        if total_bytes:
            self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                             desc="sync", leave=False, file=sys.stderr)

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.update(nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def main(args: Any) -> int:
    """Run ``localtrack sync`` from parsed arguments; exit 1 when anything is left pending."""
    tty = sys.stderr.isatty()
    if args.poll is not None and not args.watch:
        raise UsageError("--poll only applies to --watch.")
    if not tty or args.watch:
        logging.getLogger("localtrack").setLevel(logging.INFO)
    if args.status:
        return _print_status(open_syncer(args.to, args.dir, args.targets))
    stop = threading.Event()
    progress = _Bar() if tty and not args.watch else None
    syncer = open_syncer(args.to, args.dir, args.targets, clean=args.clean, retries=args.retries,
                         progress=progress, stop=stop)
    if args.watch:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    with syncer:
        if args.watch:
            from ._daemon import watch

            report = watch(syncer, poll=args.poll)
            print(f"sync daemon stopped: {report.uploaded_files} file(s), "
                  f"{_human(report.uploaded_bytes)} uploaded to {report.remote}", file=sys.stderr)
            return 0
        try:
            syncer.check()
        except RemoteError as exc:
            if not exc.transient:
                raise
            print(f"error: {exc}\nNothing was uploaded: every run is pending. Run the same command "
                  "again when the remote is reachable.", file=sys.stderr)
            return 1
        if progress is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm():
                report = syncer.run_once()
        else:
            report = syncer.run_once()
    if report.uploaded_files or report.deleted:
        print(f"synced {len(report.synced_runs)} of {report.runs} run(s) to {report.remote}: "
              f"{report.uploaded_files} file(s), {_human(report.uploaded_bytes)}")
    else:
        print(f"nothing to upload: {report.runs - len(report.pending)} run(s) up to date on "
              f"{report.remote}")
    for path in report.cleaned:
        print(f"removed local copy of {path} (complete on the remote)")
    if report.pending:
        print(f"error: {len(report.pending)} run(s) not fully synced to {report.remote}:",
              file=sys.stderr)
        for path, why in sorted(report.pending.items()):
            print(f"  {path}: {why}", file=sys.stderr)
        print("Run the same command again to continue where it stopped.", file=sys.stderr)
        return 1
    return 0


def _print_status(syncer: Syncer) -> int:
    rows = syncer.status()
    print(f"remote {syncer.remote.url} (from local sync state; the remote was not contacted)")
    width = max([len(r.path) for r in rows] + [3])
    print(f"{'RUN'.ljust(width)}  {'STATE':<9}  {'PENDING':<22}  LAST SYNC")
    for r in rows:
        pending = "up to date" if not r.pending_files else \
            f"{r.pending_files} file(s), {_human(r.pending_bytes)}"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.synced_at)) if r.synced_at else "never"
        print(f"{r.path.ljust(width)}  {r.state:<9}  {(r.note or pending):<22}  {when}")
    waiting = sum(1 for r in rows if r.pending_files or r.note)
    print(f"{waiting} of {len(rows)} run(s) pending" if waiting else f"all {len(rows)} run(s) up to date")
    return 0
