"""One run's incremental upload to a remote, in an order that keeps the remote readable.

Who writes: only sync writes the remote. Locally it only reads the store,
except for its own state (``<run>/sync/<remote-key>.json``, replaced
atomically), its lock (``<root>/.sync/<remote-key>.lock``) and ``--clean``.
One pass over a run uploads, in this order:
  1. the sealed segments the manifest names, each after its blob log if it has one
     (``segments/<seq>.blob``, whole: immutable, so each goes up once);
  2. the manifest bytes read in step 1, so it never names a segment not yet there;
  3. drops the remote log folders that manifest now covers;
  4. the new complete records of each unsealed log, oldest first, then of
     events.jsonl, as a chunk named by its byte offset (objects cannot grow); before a log's
     chunk, the new bytes of its live blob log (``wal/<seq>.blob``), read after the log's
     bytes, as a chunk of the same kind (_remotes._chunks): an item is written before the
     row that refers to it, so every item the chunk's rows name is on the remote first;
  5. the writer's lock record, then the run's saved files and code (_files_upload), then
     config.json, summary.json and run.json when changed.
So at every instant the remote history is a prefix of the local one. The
state is saved after each upload: a SIGKILL loses at most the record of one
upload, and redoing it writes the same key with the same bytes (or, for a
chunk, more bytes from the same offset), so a rerun is harmless. A pass runs in
one thread and touches only its run's files, remote keys and state: passes over
different runs may run at the same time (the Syncer's pool); one is stopped
between two uploads when the sync is (``Stopped``), which is as safe as a kill.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from .. import _blobs, _frames, _fsutil, _labels, _layout, _locks, _naming, _segments, _settings, _store, _wal
from .._codec import dumps, loads
from .._naming import Ctx, ProjectName, RunId
from .._remotes import Remote
from .._remotes._base import Opener
from .._remotes._chunks import chain_end, chunk_name, read_log
from .._remotes._dir import open_file, read_file
from ..errors import CorruptRunError, LocaltrackError
from . import _files_upload

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("localtrack")

STATE_DIR = "sync"
STATE_VERSION = 1
_TAIL = 64                # bytes before the sent offset whose CRC detects a rewritten log
_MERGE_LIMIT = 1 << 20    # chunks this big are never merged again
_MAX_REREADS = 20         # passes restarted because the writer sealed under our feet
METADATA = (_store.CONFIG_JSON, _store.SUMMARY_JSON, _store.RUN_JSON)
OWNER = ".owner"          # the state's files entry recording this run's claim on the remote
_OWNER_PREFIX = ".owner-"


class Transport(Protocol):
    """What one run's upload needs from the sync that drives it (the Syncer)."""

    root: Path
    remote: Remote
    key: str                 # the remote's key: names the state file
    remote_id: str | None    # the remote's id, as recorded locally
    stop: threading.Event    # set: stop between two uploads
    new_remote: bool         # the remote had no id: no run there to look for before uploading

    def call(self, fn: Any, *args: Any) -> Any:
        """Call a remote primitive (retrying what is transient)."""

    def advance(self, nbytes: int) -> None:
        """Count uploaded bytes (a progress bar)."""


class _Reread(Exception):
    """A local file moved (the writer sealed a log): read the run again."""


class Pending(Exception):
    """This run cannot be completed now; the message says why."""


class Stopped(Pending):
    """The sync is stopping (SIGTERM, Ctrl-C): this run stopped between two uploads."""


# -- the state: what this remote holds of the run (docs/format.md, "Sync state") ------------------


class LogSent(TypedDict):
    """What the remote holds of one log."""

    sent: int                 # bytes sent: whole records only
    chunks: list[list[int]]   # [offset, size] of each chunk on the remote, oldest first
    tail: int                 # CRC-32 of the last _TAIL bytes sent: spots a log rewritten below `sent`
    frame: int                # where the checksum range holding byte `sent` starts (see _frames)


@dataclass
class SyncState:
    """One run's sync state for one remote; the JSON is these fields plus ``"v"``, in this order.

    A state that is torn, of another version or remote id, or with a field of the wrong type
    is not trusted (its log names become remote keys to delete): it is replaced by a fresh
    one, which only costs re-uploads.
    """

    remote: str                        # the URL, without credentials
    remote_id: str | None              # the remote's id when this state was written
    segments: list[str] = field(default_factory=list)      # segment files sent
    manifest: str | None = None        # SHA-1 of the manifest sent
    logs: dict[str, LogSent] = field(default_factory=dict)  # "wal/<seq>.jsonl", "events.jsonl"
    files: dict[str, str] = field(default_factory=dict)     # metadata file -> SHA-1 sent
    lock: str | None = None            # id of the writer's lock record sent; None: none there
    sig: list[Any] | None = None       # the local files' (size, mtime, inode) when last complete
    synced_at: float | None = None
    blobs: dict[str, list[list[int]]] = field(default_factory=dict)  # "wal/<seq>.blob" -> chunks

    @classmethod
    def parse(cls, data: bytes | None, remote: str, remote_id: str | None) -> SyncState:
        """The state ``data`` holds if it is valid and for ``remote_id``, else a fresh one."""
        try:
            raw = loads(data) if data is not None else None
        except ValueError:  # torn: uploads are redone, harmlessly
            raw = None
        if not isinstance(raw, dict) or raw.get("v") != STATE_VERSION \
                or raw.get("remote_id") != remote_id:  # remote_id: the remote was wiped or replaced
            return cls(remote, remote_id)
        logs = raw.get("logs")
        if not (isinstance(logs, dict) and all(_log_name(n) and _log_sent(e) for n, e in logs.items())
                and _list_of(raw.get("segments"), str) and _map_of(raw.get("files"), str)
                and _optional(raw.get("manifest"), str) and _optional(raw.get("lock"), str)
                and _optional(raw.get("sig"), list) and _optional(raw.get("synced_at"), (int, float))
                and _blobs_sent(raw.get("blobs", {}))):
            return cls(remote, remote_id)
        return cls(remote, remote_id, raw["segments"], raw.get("manifest"),
                   {n: {"sent": e["sent"], "chunks": e["chunks"], "tail": e["tail"],
                        # states written before format 3 sent whole frames only
                        "frame": e.get("frame", e["sent"])} for n, e in logs.items()},
                   raw["files"], raw.get("lock"), raw.get("sig"), raw.get("synced_at"),
                   raw.get("blobs", {}))  # states written before media were synced have none

    def dump(self) -> bytes:
        return dumps({"v": STATE_VERSION, **{f.name: getattr(self, f.name) for f in fields(self)}})


_NOTHING_SENT: LogSent = {"sent": 0, "chunks": [], "tail": 0, "frame": 0}  # never mutated


def _log_name(name: str) -> bool:
    """Whether a log name is the format's (it becomes a remote key to delete)."""
    return name == _store.EVENTS or (name.startswith("wal/") and _naming.log_seq(name[4:]) is not None)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _log_sent(entry: Any) -> bool:
    return (isinstance(entry, dict) and all(_int(entry.get(k)) for k in ("sent", "tail"))
            and _int(entry.get("frame", 0)) and _chunks_of(entry.get("chunks")))


def _blob_name(name: str) -> bool:
    """Whether a blob log name is the format's ``wal/<seq>.blob`` (it becomes a remote key)."""
    stem = name[4:-len(_blobs.SUFFIX)]
    return (name.startswith("wal/") and name.endswith(_blobs.SUFFIX)
            and len(stem) == 8 and stem.isascii() and stem.isdigit())


def _blobs_sent(value: Any) -> bool:
    return isinstance(value, dict) and all(
        _blob_name(n) and _chunks_of(c) for n, c in value.items())


def _chunks_of(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(c, list) and len(c) == 2 and all(map(_int, c)) for c in value)


def _list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) for v in value)


def _map_of(value: Any, kind: type) -> bool:
    return isinstance(value, dict) and all(isinstance(v, kind) for v in value.values())


def _optional(value: Any, kind: type | tuple[type, ...]) -> bool:
    return value is None or isinstance(value, kind)


# -- helpers -----------------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _stat_sig(path: str, name: str) -> list[Any]:
    """[name, size, mtime, inode], or [name] when missing (plain strings: this runs per file per pass)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [name]
    return [name, st.st_size, st.st_mtime_ns, st.st_ino]


def merge_count(chunks: list[list[int]]) -> int:
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


def _reread_range(path: Path, under: Path, start: int, end: int | None = None,
                  **ctx: Unpack[Ctx]) -> bytes:
    """_read_range of a log or blob this pass has seen: gone now means a sealer took it (into
    a segment) meanwhile, so the pass starts again from the manifest."""
    try:
        return _read_range(path, under, start, end, **ctx)
    except FileNotFoundError:
        raise _Reread from None


def no_link(path: Path, **ctx: Unpack[Ctx]) -> None:
    """Refuse to write into a folder of the store that is a symbolic link (it leads elsewhere)."""
    if path.is_symlink():
        raise CorruptRunError(f"{path} of {_naming.run_label(ctx)} is a symbolic link; sync "
                              "writes its state only into real folders of the store. Replace "
                              "the link with a folder, or remove it.", path=str(path), **ctx)


class RunUpload:
    """One run against one remote: its saved state, and the pass that uploads what is new."""

    def __init__(self, s: Transport, project: ProjectName, rid: RunId) -> None:
        self.s = s
        self.remote = s.remote
        self.project = project
        self.rid = rid
        self.path = f"{project}/{rid}"
        self.ctx: Ctx = {"project": project, "run_id": rid}
        self.rdir = _layout.run_dir(s.root, project, rid)
        self.lock_path = _layout.lock_path(s.root, project, rid)
        self.prefix = f"{project}/runs/{rid}"
        self.lock_key = f"{project}/locks/{rid}.lock"  # where the remote keeps the owner record
        self._place()

    def _place(self) -> None:
        """Load the state of the folder set up (a run's, or a shared run's label's)."""
        self.state_path = self.rdir / STATE_DIR / f"{self.s.key}.json"
        self.state = self._load_state()
        # No state: what the remote holds of the run is unknown, so the first pass lists it
        # (segments already there, log folders to drop), unless the remote was just created.
        self.fresh = not self.state.sig and not self.s.new_remote
        self._claiming = False
        self.uploaded_files = 0
        self.uploaded_bytes = 0
        self.deleted = 0

    # -- state -------------------------------------------------------------------------------

    def _load_state(self) -> SyncState:
        try:
            data: bytes | None = read_file(self.state_path, self.rdir, **self.ctx)
        except FileNotFoundError:  # lost: uploads are redone, harmlessly
            data = None
        except (CorruptRunError, OSError) as exc:  # a link, say: treated as lost, and replaced
            log.warning("ignoring the sync state of %s: %s", self.path, exc)
            data = None
        return SyncState.parse(data, self.remote.url, self.s.remote_id)

    def _save(self) -> None:
        no_link(self.state_path.parent, **self.ctx)
        with _fsutil.storage_errors("write the sync state", self.state_path, **self.ctx):
            _fsutil.ensure_dir(self.state_path.parent)
            # Not fsynced: after a power loss a lost or empty state only means re-uploading.
            _fsutil.atomic_write(self.state_path, self.state.dump(), sync=False)

    # -- what the local run looks like ---------------------------------------------------------

    def signature(self) -> list[Any]:
        """Cheap change detection: (size, mtime, inode) of every file sync reads."""
        base = f"{self.rdir}{os.sep}"
        sig: list[Any] = [_stat_sig(base + n, n) for n in (*METADATA, _segments.MANIFEST, _store.EVENTS)]
        try:
            with os.scandir(base + "wal") as it:
                wal = sorted(_stat_sig(e.path, e.name) for e in it)
        except FileNotFoundError:
            wal = []
        sig.append(wal)
        sig.append([label.signature() for label in self.labels()])  # a shared run's writers
        sig.append(_files_upload.stamps(self.rdir))  # sig[-2]: the saved files
        sig.append(_stat_sig(str(self.lock_path), "lock"))  # sig[-1]: see live_holder
        return sig

    def labels(self) -> list[LabelUpload]:
        """A shared run's writers' histories (labels/<label>/), each uploaded as a run's."""
        return [LabelUpload(self, label) for label in _labels.labels(self.rdir)]

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

    def parent(self) -> str | None:
        """``project/id`` of the run this one was forked from, if any (None when run.json cannot
        be read: the pass says why)."""
        try:
            fork = _store.read_meta(self.rdir, **self.ctx).get("fork")
        except (LocaltrackError, OSError):
            return None
        if isinstance(fork, dict) and isinstance(fork.get("run"), str):
            return f"{self.project}/{fork['run']}"
        return None

    @staticmethod
    def _lock_id(holder: dict[str, Any] | None) -> str | None:
        return None if holder is None else _sha(dumps({k: v for k, v in holder.items()
                                                        if k != "synced_at"}))

    def up_to_date(self, sig: list[Any], holder: dict[str, Any] | None) -> bool:
        if holder is not None and not holder.get("synced_at"):
            return False  # a live writer appends through a memory map: sizes and times lag
        for label in self.labels():  # a shared run's writers: each by its own state, whose
            # signature was taken before its files were read (the run's, taken after its
            # labels were uploaded, may already cover rows a label's upload did not send)
            if label.live_holder() is not None or not label.up_to_date(label.signature(), None):
                return False
        return bool(sig == self.state.sig and self._lock_id(holder) == self.state.lock)

    # -- uploads -----------------------------------------------------------------------------

    def _stopping(self) -> None:
        if self.s.stop.is_set():
            raise Stopped("stopped before it was complete; the next sync continues it")

    def _put(self, key: str, data: bytes) -> None:
        self._stopping()
        self._claimed()
        self.s.call(self.remote.put, f"{self.prefix}/{key}" if key else self.prefix, data)
        self.uploaded_files += 1
        self.uploaded_bytes += len(data)
        self.s.advance(len(data))

    def _put_file(self, key: str, path: Path, opener: Opener) -> None:
        """A local file streamed up (see Remote.put_file), not read whole."""
        self._stopping()
        self._claimed()
        size = self.s.call(self.remote.put_file, f"{self.prefix}/{key}", path,
                           _settings.upload_chunk_bytes(), None, opener)
        self.uploaded_files += 1
        self.uploaded_bytes += size
        self.s.advance(size)

    def _delete(self, key: str) -> None:
        self._stopping()
        self._claimed()
        self.s.call(self.remote.delete, f"{self.prefix}/{key}")
        self.deleted += 1

    def sync(self) -> None:
        """Upload what is new; raise Pending (or RemoteError) when something is left."""
        for label in self.labels():  # a shared run's writers first: run.json comes after them
            label.sync()
            self.uploaded_files += label.uploaded_files
            self.uploaded_bytes += label.uploaded_bytes
            self.deleted += label.deleted
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
        raise Pending("its log files kept moving while being read (sealing); retry")

    def _pass(self, sig: list[Any], holder: dict[str, Any] | None) -> None:
        st = self.state
        # Every name the manifest gives is checked before anything is uploaded (a received
        # store may name /etc/hostname or ../../x), and no local file is read through a link.
        mbytes, manifest = self._manifest()
        # 1. segments, each once (after a lost state, one of the same size is already there)
        done = set(st.segments)
        there = self.s.call(self.remote.list, f"{self.prefix}/segments") if self.fresh else {}
        for seg in manifest["segments"]:
            name = seg["file"]
            if name in done:
                continue
            self._sealed_blob(_segments.seq_of(seg), there)
            try:
                data = read_file(self.rdir / "segments" / name, self.rdir, **self.ctx)
            except FileNotFoundError:
                raise Pending(f"segment {name} named in its manifest is missing locally") from None
            if name not in there or there[name].size != len(data):
                self._put(f"segments/{name}", data)
            done.add(name)
            st.segments = sorted(done)
            self._save()
        # 2. the manifest read above: every segment it names is on the remote now
        if mbytes is not None and _sha(mbytes) != st.manifest:
            self._put(_segments.MANIFEST, mbytes)
            st.manifest = _sha(mbytes)
            self._save()
        sealed = int(manifest["sealed_through"])
        # 3. log folders the remote manifest now covers (readers ignore them already)
        for name in [n for n in st.logs if n.startswith("wal/")]:
            if int(name[4:12]) <= sealed:
                self._delete(name)
                del st.logs[name]
                self._save()
        for name in [n for n in st.blobs if int(n[4:12]) <= sealed]:  # now in segments/
            self._delete(name)
            del st.blobs[name]
            self._save()
        if self.fresh:
            for name in self.s.call(self.remote.list, f"{self.prefix}/wal"):
                seq = _naming.log_seq(name)
                if seq is None and _blob_name(f"wal/{name}"):
                    seq = int(name[:8])
                if seq is not None and seq <= sealed and f"wal/{name}" not in (*st.logs, *st.blobs):
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
        if lock_id != st.lock:
            key = self.lock_key
            self._stopping()
            self._claimed()
            if holder is None:
                self.s.call(self.remote.delete, key)
            else:
                record = dumps({**holder, "synced_at": holder.get("synced_at") or time.time()})
                self.s.call(self.remote.put, key, record)
            st.lock = lock_id
            self._save()
        _files_upload.upload(self.rdir, sig[-2], st.files, self._put_file, self._save, **self.ctx)
        for name in METADATA:
            self._file(name)
        st.sig = sig
        st.synced_at = time.time()
        self._save()

    def _claimed(self) -> None:
        """Claim the run's remote folder before this store's first write there (every write
        goes through here), after everything the pass checks first (a hostile manifest's
        names, links): a run refused for those leaves nothing on the remote, not even a claim."""
        if OWNER not in self.state.files and not self._claiming:
            self._claiming = True
            try:
                self._claim()
            finally:
                self._claiming = False

    def _claim(self) -> None:
        """Before this store first writes the run to the remote: make sure no other run of the
        same path (another store's run with the same id) is there or arriving, so two stores
        syncing to one remote can never mix two runs' files.

        A run is known by when it was created (run.json's ``created``, kept across resumes).
        The claim is an object ``.owner-<digest>.json`` in the run's folder, put and then
        checked for company: of two stores claiming at once, both see both claims, withdraw
        and report it (a later sync tries again); a remote run synced before claims existed
        is compared by its run.json. Idempotent: the same run claims the same name.
        """
        name, ident = self._claim_object()
        created = loads(ident)["created"]

        def others() -> list[str]:
            there = self.s.call(self.remote.list, self.prefix)
            if not any(n.startswith(_OWNER_PREFIX) for n in there) and _store.RUN_JSON in there:
                try:  # synced before claims: its run.json says whose it is
                    theirs = loads(self.s.call(self.remote.get, f"{self.prefix}/{_store.RUN_JSON}"))
                except (FileNotFoundError, ValueError):
                    return []
                same = isinstance(theirs, dict) and theirs.get("created") == created
                return [] if same else [_store.RUN_JSON]
            return [n for n in there if n.startswith(_OWNER_PREFIX) and n != name]

        if not self.s.new_remote and others():
            raise Pending(self._taken())
        self._put(name, ident)
        if others():  # claimed at the same time by another store: both withdraw
            self._stopping()
            self.s.call(self.remote.delete, f"{self.prefix}/{name}")
            raise Pending(self._taken())
        self.state.files[OWNER] = name
        self._save()

    def _claim_object(self) -> tuple[str, bytes]:
        """The claim's name and bytes: the same for the same run, whoever syncs it."""
        ident = dumps({"created": _store.read_meta(self.rdir, **self.ctx).get("created")})
        return f"{_OWNER_PREFIX}{hashlib.sha1(ident).hexdigest()[:16]}.json", ident

    def _taken(self) -> str:
        return (f"the remote already holds (or another store is syncing) a different run with "
                f"the id {self.path}; nothing of this run was written there. Sync this store to "
                "another remote, or move the run to another project before syncing")

    def _manifest(self) -> tuple[bytes | None, _segments.Manifest]:
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
        if self.state.files.get(name) != digest:
            self._put(name, data)
            self.state.files[name] = digest
            self._save()

    def _log(self, name: str, *, closed: bool, required: bool) -> None:
        """Send the log's new whole records as one chunk (merged with small ones before it)."""
        local = self.rdir / name
        entry = self.state.logs.get(name) or _NOTHING_SENT
        sent, frame = entry["sent"], entry["frame"]  # frame: where a checksum range starts (_wal)
        t = min(sent, _TAIL)
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
            entry, sent, t, frame, lo, k = _NOTHING_SENT, 0, 0, 0, 0, 0
            data = _reread_range(local, self.rdir, 0, **self.ctx)
        checked = _frames.validate(data[frame - lo:], anchored=frame > 0)
        frame_end = frame + checked.frame_end
        damaged = checked.corrupt or (closed and checked.bad_at is not None)
        # whole records not sent yet; of a damaged log only what its checksums vouch for
        n = max(0, frame_end - sent if damaged else frame + checked.end - sent)
        if n and name.startswith("wal/"):
            self._live_blob(int(name[4:12]))  # after reading the rows, before sending them
        if damaged:
            if n:
                self._send(name, local, entry, sent, t, memoryview(data)[k - t:], n, frame_end)
            raise Pending(f"{name} has a damaged record at byte {sent + n}; it was synced up to there")
        if n:
            self._send(name, local, entry, sent, t, memoryview(data)[k - t:], n, frame_end)

    def _send(self, name: str, local: Path, entry: LogSent, sent: int, t: int,
              data: bytes | memoryview, n: int, frame_end: int) -> None:
        new = memoryview(data)[t:]
        chunks = [*entry["chunks"], [sent, n]]
        k = merge_count(chunks)
        start = chunks[-k][0]
        payload = bytes(new[:n]) if k == 1 else _reread_range(local, self.rdir, start, sent + n,
                                                              **self.ctx)
        if len(payload) != sent + n - start:
            raise _Reread
        self._put(f"{name}/{chunk_name(start)}", payload)
        # If we die here: the merged chunk overlaps the smaller ones; readers skip overlaps.
        for offset, _ in chunks[-k + 1:] if k > 1 else []:
            self._delete(f"{name}/{chunk_name(offset)}")
        end = sent + n
        tail = bytes(data[max(0, t + n - _TAIL):t + n])  # the last bytes sent, to spot a rewrite
        self.state.logs[name] = {"sent": end, "chunks": [*chunks[:-k], [start, end - start]],
                                 "tail": zlib.crc32(tail), "frame": frame_end}
        self._save()

    def _sealed_blob(self, seq: int, there: dict[str, Any]) -> None:
        """Upload ``segments/<seq>.blob`` whole, if the log had media, before its segment."""
        name = _blobs.name(seq)
        try:
            data = read_file(_blobs.sealed_blob(self.rdir, seq), self.rdir, **self.ctx)
        except FileNotFoundError:
            return  # a log without media
        if name not in there or there[name].size != len(data):
            self._put(f"segments/{name}", data)

    def _live_blob(self, seq: int) -> None:
        """Send the new bytes of log ``seq``'s blob as a chunk (merged like a log's, see
        merge_count). The blob is append-only and unframed: every byte there is sent. Where a
        sealer just moved it (or a crash left it in segments/ with its log unsealed), it is
        read there: the same file."""
        name = f"wal/{_blobs.name(seq)}"
        path = _blobs.locate(self.rdir, seq)
        if path is None:
            return  # no media in this log
        chunks = self.state.blobs.get(name, [])
        sent = chunks[-1][0] + chunks[-1][1] if chunks else 0
        data = _reread_range(path, self.rdir, sent, **self.ctx)
        if not data:
            return
        chunks = [*chunks, [sent, len(data)]]
        k = merge_count(chunks)
        start, end = chunks[-k][0], sent + len(data)
        payload = data if k == 1 else _reread_range(path, self.rdir, start, end, **self.ctx)
        if len(payload) != end - start:
            raise _Reread
        self._put(f"{name}/{chunk_name(start)}", payload)
        # If we die here: the merged chunk overlaps the smaller ones; readers skip overlaps.
        for offset, _ in chunks[-k + 1:] if k > 1 else []:
            self._delete(f"{name}/{chunk_name(offset)}")
        self.state.blobs[name] = [*chunks[:-k], [start, end - start]]
        self._save()

    def _rewritten(self, name: str, sent: int) -> None:
        """The local log no longer starts with what was sent (power lost after sync read it)."""
        log.error("%s of run %s changed below byte %d, which was already sent to %s (was power "
                  "lost after sync read unsynced data?); uploading it again from the start",
                  name, self.path, sent, self.remote.url)
        self._delete(name)
        self.state.logs.pop(name, None)
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
            if seg["file"] not in self.state.segments:
                blob = _size(self.rdir / "segments" / _blobs.name(_segments.seq_of(seg)))
                files += 1 + (blob > 0)
                nbytes += _size(self.rdir / "segments" / seg["file"]) + blob
        if mbytes is not None and _sha(mbytes) != self.state.manifest:
            files, nbytes = files + 1, nbytes + len(mbytes)
        logs = [f"wal/{s:08d}.jsonl" for s in _segments.wal_seqs(self.rdir)
                if s > manifest["sealed_through"]] + [_store.EVENTS]
        for name in logs:
            grown = _size(self.rdir / name) - (self.state.logs.get(name) or _NOTHING_SENT)["sent"]
            if grown > 0:
                files, nbytes = files + 1, nbytes + grown
        for seq in _segments.wal_seqs(self.rdir):
            name = f"wal/{_blobs.name(seq)}"
            chunks = self.state.blobs.get(name, [])
            grown = _size(self.rdir / name) - (chunks[-1][0] + chunks[-1][1] if chunks else 0)
            if seq > manifest["sealed_through"] and grown > 0:
                files, nbytes = files + 1, nbytes + grown
        for name in METADATA:
            try:
                data = (self.rdir / name).read_bytes()
            except FileNotFoundError:
                continue
            if self.state.files.get(name) != _sha(data):
                files, nbytes = files + 1, nbytes + len(data)
        saved = _files_upload.pending(sig[-2], self.state.files)
        files, nbytes = files + saved[0], nbytes + saved[1]
        for label in self.labels():
            more = label.pending()
            files, nbytes = files + more[0], nbytes + more[1]
        if self._lock_id(holder) != self.state.lock:
            files += 1
        if OWNER not in self.state.files:
            files, nbytes = files + 1, nbytes + len(self._claim_object()[1])
        return files, nbytes

    def verify_remote(self) -> str | None:
        """Why the remote copy is not complete (sizes compared), or None when it is."""
        if self.labels():  # its writers' labels are not compared: --clean keeps the run
            return "it is a shared run, which sync --clean keeps"
        manifest = _segments.load_manifest(self.rdir, **self.ctx)
        top = self.s.call(self.remote.list, self.prefix)
        for name in (*METADATA, _segments.MANIFEST):
            size = _size(self.rdir / name)
            if size and (name not in top or top[name].size != size):
                return f"{name} differs"
        segs = self.s.call(self.remote.list, f"{self.prefix}/segments")
        for seg in manifest["segments"]:
            size = _size(self.rdir / "segments" / seg["file"])
            if seg["file"] not in segs or segs[seg["file"]].size != size:
                return f"segment {seg['file']} differs"
            blob = _blobs.name(_segments.seq_of(seg))
            size = _size(self.rdir / "segments" / blob)
            if size and (blob not in segs or segs[blob].size != size):
                return f"blob log segments/{blob} differs"
        logs = [f"wal/{s:08d}.jsonl" for s in _segments.wal_seqs(self.rdir)
                if s > manifest["sealed_through"]] + [_store.EVENTS]
        for name in logs:
            try:
                size = _frames.data_end(read_log(self.rdir / name, self.rdir, **self.ctx))
            except FileNotFoundError:
                size = 0
            if chain_end(self.s.call(self.remote.list, f"{self.prefix}/{name}")) < size:
                return f"{name} is not complete"
        for seq in _segments.wal_seqs(self.rdir):
            blob = f"wal/{_blobs.name(seq)}"
            size = _size(self.rdir / blob)
            if seq > manifest["sealed_through"] and size \
                    and chain_end(self.s.call(self.remote.list, f"{self.prefix}/{blob}")) < size:
                return f"{blob} is not complete"
        return _files_upload.verify(_files_upload.stamps(self.rdir), lambda folder: self.s.call(
            self.remote.list, f"{self.prefix}/{folder}"))


class LabelUpload(RunUpload):
    """One writer's history of a shared run (``labels/<label>/``, laid out as a run's), uploaded
    by a run's rules to the same place on the remote, with its lock record at
    ``runs/<id>/locks/<label>.lock``; the run's claim is the run's (see docs/format.md,
    "Shared runs"). Its state file is in its own folder."""

    def __init__(self, run: RunUpload, label: str) -> None:
        self.s = run.s
        self.remote = run.remote
        self.project = run.project
        self.rid = run.rid
        self.path = f"{run.path} (writer {label!r})"
        self.ctx = run.ctx
        self.rdir = _layout.label_dir(run.rdir, label)
        self.lock_path = run.rdir / "locks" / f"{label}.lock"
        self.prefix = f"{run.prefix}/labels/{label}"
        self.lock_key = f"{run.prefix}/locks/{label}.lock"
        self._run = run
        self._place()

    def labels(self) -> list[LabelUpload]:
        return []

    def _claimed(self) -> None:
        self._run._claimed()

    def _claim_object(self) -> tuple[str, bytes]:
        return self._run._claim_object()

    def pending(self) -> tuple[int, int]:
        files, nbytes = super().pending()
        if OWNER not in self.state.files:  # (the run's claim, counted by the run)
            files, nbytes = files - 1, nbytes - len(self._claim_object()[1])
        return files, nbytes


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
