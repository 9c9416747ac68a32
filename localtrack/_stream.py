"""LogStream: a run's append-only log, as numbered files under ``wal/``, and its durability.

One owner for what every kind of append-only data needs: opening the newest file with a
crash's damage repaired (see _durable) and its torn tail cut; appending plain and framed
lines (see _frames, _logfile); rotating to the next file between steps, ending the full one
with its closing line and asking for it to be sealed (see _sealer); and the fsync policy:
"always" syncs each record, "periodic" has a flusher thread fsync every ``fsync_interval``
and record in the durable watermark how far that reached, "never" leaves it to the OS.
The caller holds the writer's mutex (see _guard) around every call but the flusher's own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from . import _blobs, _durable, _fsutil, _layout, _sealer, _segments, _store, _wal
from ._codec import dumps
from ._frames import records
from ._logfile import Appender, MappedLog, append_framed, close_frame, mappable, open_log, put_framed
from ._naming import Ctx
from ._settings import Settings
from .errors import CorruptRunError, LockUnavailableError, StorageError, UsageError

log = logging.getLogger("localtrack")
_BLOB_RESERVE = 4 << 20  # blocks reserved ahead in a blob log (see _logfile.Appender)


class Closed(NamedTuple):
    """How ``LogStream.close`` left the files."""

    synced: bool  # every log is fsynced and the watermark says so
    sealing: bool  # a log is left for the sealer (which fsyncs it first): call request_seal()


class LogStream:
    """The history log of one run, open for appending (see the module docstring)."""

    def __init__(self, rdir: Path, settings: Settings, mutex: threading.RLock, *, where: str,
                 ctx: Ctx, run_dir: Path | None = None) -> None:
        self._rdir = rdir
        # Where run.json is: the run's folder, also for a shared run's label (``rdir`` is then
        # labels/<label>/, whose history needs no format a shared run's run.json lacks).
        self._run_dir = rdir if run_dir is None else run_dir
        self._policy = settings.fsync
        self._interval = settings.fsync_interval
        self._rotate_bytes = settings.rotate_bytes  # a log file this big is closed between steps
        self._seal_min = settings.seal_min_bytes  # a finished tail this big is sealed
        self._mutex = mutex
        self._where = where
        self._ctx = ctx
        self._mapped = mappable(rdir / "wal")  # decided once: /proc/mounts is long
        self._closed_unsynced: list[Path] = []  # rotated logs (and blobs) the flusher fsyncs
        self._blob: Appender | None = None  # the blob log of log ``_blob_seq`` (see _blobs)
        self._blob_seq = -1
        self._format = 0  # run.json's format as far as this stream has checked (_require_format)
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._last_values: tuple[int, int, dict[str, Any]] = (-1, 0, {})
        self.seq = 0
        self.rewound_from: int | None = None  # the last step before open(rewind_to=)
        self.file: MappedLog | Appender
        # The hot path's append: the file's put (ValueError when its window or the file is
        # full), or put and fsync under "always". Rebound whenever the file's put changes.
        self.put: Callable[[bytes], Any]

    # -- opening ---------------------------------------------------------------------------

    def open(self, rewind_to: int | None = None) -> int:
        """Open the newest log for appending, repaired; start the flusher. The last step on disk.

        ``rewind_to``: archive the rows after that step first (see rewind), and return it.
        """
        rdir = self._rdir
        for folder in (rdir / "wal", rdir / "segments"):  # every write and cleanup goes under them
            if folder.exists() and not folder.is_dir():
                raise CorruptRunError(f"{folder} of {self._where} is a file where localtrack keeps "
                                      "a folder of the run's history; move the file away and "
                                      "restore the folder from a sync remote or a backup.",
                                      path=str(folder), **self._ctx)
        try:
            with _sealer.hold(rdir):  # no sealer removes a log while we read and repair it
                manifest = _segments.load_manifest(rdir, **self._ctx)
                _segments.cleanup(rdir, manifest)
                last_step = self._attach(manifest)
                if rewind_to is not None:
                    self.rewound_from = last_step
                    try:
                        last_step = self._rewind(manifest, last_step, rewind_to)
                    except BaseException:
                        self.file.abandon()
                        raise
        except TimeoutError as exc:
            raise LockUnavailableError(f"Cannot open {self._where}: {exc}; is a process stuck "
                                       "on this file system?", **self._ctx) from exc
        # The durable watermark (see _durable): the flusher records what its fsyncs made durable.
        legacy = not _durable.path_of(rdir).exists()
        self._marks = _durable.Writer(rdir)
        if legacy:  # a run from before the watermark: its logs were read as synced, and are now
            for seq in _segments.wal_seqs(rdir):
                _fsutil.fsync_file(_layout.wal_path(rdir, seq), missing_ok=True)
            self._marks.record(_durable.Mark(self.seq, self.file.frame_at))
        if self._policy != "never":
            _fsutil.fsync_dir(rdir / "wal")
            self._flusher = threading.Thread(target=self._flush_periodically, daemon=True,
                                             name=f"localtrack-fsync-{self._ctx.get('run_id')}")
            self._flusher.start()
        return last_step

    def _attach(self, manifest: _segments.Manifest) -> int:
        """Open the newest log file for appending, its torn tail cut; the last step on disk."""
        self.seq, last_step, frame_at = self._newest(manifest)
        self.file = open_log(_layout.wal_path(self._rdir, self.seq), self._rotate_bytes,
                             self._mapped, frame_at)
        self._rebind()
        return last_step

    def _newest(self, manifest: _segments.Manifest) -> tuple[int, int, int]:
        """(active log seq, last step on disk, where its checksum range starts): reads only
        the tail of the newest log files."""
        rdir = self._rdir
        sealed = manifest["sealed_through"]
        seqs = [s for s in _segments.wal_seqs(rdir) if s > sealed]
        if not seqs:
            return sealed + 1, _segments.at_least_rewound(manifest, manifest["last_step"]), 0
        newest = _layout.wal_path(rdir, seqs[-1])
        if newest.is_dir():  # a log kept as a folder of chunks: this is a copy made by sync
            raise UsageError(f"{self._where} is in a store written by `localtrack sync` "
                             f"({rdir}); synced stores are read-only. Resume the original run, "
                             "or read this one with localtrack.Api.", **self._ctx)
        for seq in seqs:
            _wal.refuse_link(_layout.wal_path(rdir, seq), **self._ctx)
        seqs = _durable.repair(rdir, seqs, **self._ctx)  # a crash's damage past the watermark
        newest = _layout.wal_path(rdir, seqs[-1])
        tail = _wal.last_record(newest, **self._ctx)
        _wal.cut_torn_tail(newest, tail.end, **self._ctx)
        record, seq = tail.record, seqs[-1]  # seq: the log the record is the last of
        for older in reversed(seqs[:-1]):
            if record is not None:
                break
            record, seq = _wal.last_record(_layout.wal_path(rdir, older), **self._ctx).record, older
        if record is None:
            return seqs[-1], _segments.at_least_rewound(manifest, manifest["last_step"]), tail.frame_end
        step = _wal.step_of(record, _layout.wal_path(rdir, seq), **self._ctx)
        return seqs[-1], _segments.last_step_at(manifest, seq, step), tail.frame_end

    def rewind(self, last_step: int, to: int) -> int:
        """Rewind the open stream (see _rewind): the caller holds the writer's mutex."""
        try:
            with _sealer.hold(self._rdir):  # the manifest is the sealer's too
                to = self._rewind(_segments.load_manifest(self._rdir, **self._ctx), last_step, to)
        except TimeoutError as exc:
            raise LockUnavailableError(f"Cannot rewind {self._where}: {exc}; is a process stuck "
                                       "on this file system?", **self._ctx) from exc
        self._last_values = (-1, 0, {})
        return to

    def _rewind(self, manifest: _segments.Manifest, last_step: int, to: int) -> int:
        """Archive the history after step ``to``: the caller holds the run and the seal lock.

        Nothing is moved or rewritten, whatever the length of the history: the manifest
        records ``{"to": to, "seq": S}``, S being the log the run continues in, and readers
        leave out the rows after ``to`` in the logs and segments before S (see
        _segments.cap). The order makes a crash harmless: (1) the log being appended is
        closed and the next one opened, so no log holds rows from both sides of the rewind;
        (2) run.json's format is raised, so that older readers refuse the run rather than show
        its archive; (3) the manifest is replaced with the rewind, its last step and the last
        values of the history that stays. Before (3) the run is as it was; after, rewound.
        """
        where = f"Cannot rewind {self._where} to step {to}"
        if to < 0:
            raise UsageError(f"{where}: a step is >= 0.", **self._ctx)
        if to > last_step:
            raise UsageError(f"{where}: its last step is {last_step}; a rewind goes back, "
                             "never forward.", **self._ctx)
        if to == last_step:
            return to  # nothing after it to archive
        if self.file.offset > 0:  # (1); if we die after it: an empty new log, as a rotation
            self._close_frame(rotating=True)
            self._close_blob(sync=self._policy != "never")
            self.file.close(sync=self._policy != "never")
            self.seq += 1
            self.file = open_log(_layout.wal_path(self._rdir, self.seq), self._rotate_bytes,
                                 self._mapped)
            self._rebind()
            if self._policy != "never":
                _fsutil.fsync_dir(self._rdir / "wal")
        self._require_format(_layout.REWOUND_FORMAT)  # (2)
        rewind: _segments.Rewind = {"to": to, "seq": self.seq, "from_step": last_step,
                                    "time": time.time()}
        rewound: _segments.Manifest = {**manifest, "rewinds": [*manifest["rewinds"], rewind],
                                       "last_step": min(manifest["last_step"], to)}
        # Known at once unless the rewind archives sealed rows; then left to be computed (by a
        # reader or the next sealer, which read Parquet), so a rewind costs the same for any
        # length of history and never loads pyarrow here.
        rewound["last"] = _segments.known_last(rewound)
        if rewound["last"] is None:
            rewound["keys"] = sorted(_segments.keys_of(manifest))
        _fsutil.atomic_write(self._rdir / _segments.MANIFEST, dumps(rewound))  # (3)
        return to

    def reopen(self) -> int:
        """After an exception that a signal handler raised in the middle of an append: what is
        on disk is whole (a record is stored by one C call), but the offsets held here may lag
        behind it. Take them from the files again, as a resume does; the last step on disk."""
        self.file.abandon()
        self._abandon_blob()
        for seq in _segments.wal_seqs(self._rdir)[:-1]:  # a rotation may have been cut short
            _fsutil.fsync_file(_blobs.wal_blob(self._rdir, seq), missing_ok=True)
            _fsutil.fsync_file(_layout.wal_path(self._rdir, seq), missing_ok=True)
        self._closed_unsynced = []
        tries = 3  # a sealer may remove a closed log file as we read it
        while True:
            try:
                return self._attach(_segments.load_manifest(self._rdir, **self._ctx))
            except FileNotFoundError:
                tries -= 1
                if not tries:
                    raise

    # -- appending -------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.file.path

    def _rebind(self) -> None:
        self.put = self._put_and_sync if self._policy == "always" else self.file.put

    def _put_and_sync(self, line: bytes) -> None:
        self.file.put(line)
        self.file.sync()

    def rotation_due(self) -> bool:
        """Whether the file is big enough to be closed (the caller knows if it is between steps)."""
        return self.file.offset >= self._rotate_bytes or (
            self._blob is not None and self._blob.offset >= _blobs.ROTATE_BYTES)

    # -- media -----------------------------------------------------------------------------

    def before_media(self, *, may_rotate: bool) -> None:
        """Rotate now if due (between steps), so the row lands in the log whose blob holds
        its media."""
        if may_rotate and self.rotation_due():
            self._rotate()
            self._rebind()

    def put_blob(self, data: bytes | memoryview) -> tuple[int, int]:
        """Append one media item to the blob log of the current log file (made on first use);
        (log seq, offset). Under fsync="always" it is fsynced before this returns, so before the
        row that refers to it is written."""
        blob = self._blob
        if blob is None or self._blob_seq != self.seq:
            self._require_format(_layout.MEDIA_FORMAT)  # before the first item it describes
            self._close_blob(sync=False)
            path = _blobs.wal_blob(self._rdir, self.seq)
            new = not path.exists()
            blob = self._blob = Appender(path, reserve=_BLOB_RESERVE)
            self._blob_seq = self.seq
            if new and self._policy != "never":  # its name must survive a power cut too
                _fsutil.fsync_dir(self._rdir / "wal")
        offset = blob.offset
        blob.append(data)
        if self._policy == "always":
            blob.sync()
        return self._blob_seq, offset

    def _require_format(self, version: int) -> None:
        """Raise run.json's format to ``version`` (durably) before the run first uses a
        feature of that format, so that an older reader refuses the run rather than misread it."""
        if self._format >= version:
            return
        meta = _store.read_meta(self._run_dir, **self._ctx)
        if meta.get("format", 1) < version:
            _fsutil.atomic_write(self._run_dir / _store.RUN_JSON, dumps({**meta, "format": version}))
        self._format = max(version, meta.get("format", 1))

    def _close_blob(self, *, sync: bool) -> None:
        """Close the blob log; under "periodic" the flusher fsyncs it (before its log)."""
        blob, self._blob = self._blob, None
        if blob is not None:
            blob.close(sync=sync)
            if not sync and self._policy == "periodic":
                self._closed_unsynced.append(blob.path)

    def _abandon_blob(self) -> None:
        if self._blob is not None:
            self._blob.abandon()
            self._blob = None

    def append(self, line: bytes) -> None:
        """Append a plain line that ``put`` refused (the window or the file was full)."""
        self.file.append(line)
        if self._policy == "always":
            self.file.sync()
        self._rebind()

    def append_framed(self, body: bytes, may_rotate: bool) -> Callable[[bytes], Any]:
        """Append a framed line; when the file is full and ``may_rotate`` (between steps),
        rotate first, so that a log file starts with a framed line. Returns ``put``, which
        the rotation may have changed: log() keeps a copy of it, and calls this directly
        (a Python call less per framed row: one row in ~600, every row that is not plain)."""
        try:
            try:
                put_framed(self.file, body)
            except ValueError:  # the mapped window or the file is full
                if may_rotate and self.rotation_due():
                    self._rotate()
                append_framed(self.file, body)
                self._rebind()
            if self._policy == "always":
                self.file.sync()
        except OSError as exc:
            raise _fsutil.storage_error("append to the history log", self.file.path, exc,
                                        **self._ctx) from exc
        return self.put

    def _rotate(self) -> None:
        """Close the full log file, open the next, and have the closed one sealed."""
        # No fsync here: "always" has synced every record (and syncs the closing frame),
        # the flusher fsyncs the closed file within a period, "never" leaves it to the OS.
        self._close_frame(rotating=True)
        self._close_blob(sync=False)  # first: the flusher fsyncs a blob before its log
        self.file.close(sync=False)
        if self._policy == "periodic":
            self._closed_unsynced.append(self.file.path)
        self.seq += 1
        self.file = open_log(_layout.wal_path(self._rdir, self.seq), self._rotate_bytes,
                             self._mapped)
        if self._policy != "never":
            _fsutil.fsync_dir(self._rdir / "wal")
        _sealer.request(self._rdir, self._seal_min)

    def _close_frame(self, rotating: bool = False) -> None:
        """Frame the plain rows at the end of a log file being closed: a closed log is
        checksummed to its last byte. Failing to (a full disk) costs only that: the rows are
        written."""
        try:
            if self.file.offset > 0 or rotating:  # (an empty newest log stays empty)
                close_frame(self.file)
                if self._policy == "always":
                    self.file.sync()
        except OSError:
            log.warning("could not write the closing checksum of %s", self.file.path,
                        exc_info=True)

    # -- durability ------------------------------------------------------------------------

    def _record_mark(self) -> None:
        """Record the end of the last framed line as durable: the caller has fsynced every log."""
        if self._policy != "never":
            self._marks.record(_durable.Mark(self.seq, self.file.frame_at))

    def sync_now(self) -> None:
        """fsync every log (closed ones first) and record that in the watermark: a preemption
        signal came, and the process may be killed at any moment now."""
        for path in self._closed_unsynced:
            _fsutil.fsync_file(path, missing_ok=True)
        self._closed_unsynced = []
        if self._blob is not None:
            self._blob.sync()
        self.file.sync()
        self._record_mark()

    def _flush_periodically(self) -> None:
        """fsync the log every fsync_interval seconds (the GIL is released while it runs), then
        record in the durable watermark how far that made it durable (fsync="always": records
        are synced as written; only the watermark is left to do).

        It fsyncs a duplicate of the descriptor outside the lock, so that rotation and
        close() never wait for an fsync in progress. The mark is taken before the fsync: the
        fsync covers at least the bytes before it, so the mark is never ahead of the disk.
        """
        periodic = self._policy == "periodic"
        while not self._stop.wait(self._interval):
            fd = blob_fd = -1
            try:
                with self._mutex:
                    if self._stop.is_set():
                        return
                    paths, self._closed_unsynced = self._closed_unsynced, []
                    if self.file.fd >= 0 and periodic:
                        fd = os.dup(self.file.fd)
                    if self._blob is not None and self._blob.fd >= 0 and periodic:
                        blob_fd = os.dup(self._blob.fd)
                    mark = _durable.Mark(self.seq, self.file.frame_at)
                for path in paths:  # closed blobs come before their logs in this list
                    _fsutil.fsync_file(path, missing_ok=True)
                if blob_fd >= 0:  # the media before the rows that refer to them
                    _fsutil.fsync(blob_fd)
                if fd >= 0:
                    _fsutil.fsync(fd)
                self._marks.record(mark)
            except OSError:
                log.warning("fsync of %s failed", self.file.path, exc_info=True)
            finally:
                for dup in (blob_fd, fd):
                    if dup >= 0:
                        os.close(dup)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> Closed:
        """End the stream (finish()): the closing line, then fsync unless a sealer is to do it.

        Under "periodic" the logs are fsynced here only when no sealer is started for them:
        that process fsyncs the logs first, off the writer's exit path.
        """
        self._stop.set()
        sealing = (self.file.offset >= self._seal_min
                   or len(_segments.wal_seqs(self._rdir)) > 1)  # what the sealer would seal
        tail_sealed = self.file.offset >= self._seal_min  # the sealer will remove this file
        sync = self._policy == "periodic" and not sealing
        try:
            for path in self._closed_unsynced if sync else ():
                _fsutil.fsync_file(path, missing_ok=True)
            if self._blob is not None:  # a sealer fsyncs it when it is to seal the log
                self._blob.close(sync=sync)
                self._blob = None
            self._close_frame()
            self.file.close(sync=sync, cut=not tail_sealed)
            synced = sync or self._policy == "always"
            if synced:
                self._record_mark()
        finally:
            self._marks.close()
        return Closed(synced=synced, sealing=sealing)

    def request_seal(self) -> None:
        """Have a sealer seal the closed logs (after the writer's lock is released)."""
        _sealer.request(self._rdir, self._seal_min)

    def drop(self) -> None:
        """Let go of the files as a killed writer would: no closing line, no cut, no fsync."""
        self._stop.set()
        self.file.abandon()
        self._abandon_blob()
        self._marks.close()

    # -- reading back ----------------------------------------------------------------------

    def last_values(self) -> dict[str, Any]:
        """The last value of each key in the history, read back from the files (the caller
        holds the mutex). The manifest and the unsealed logs are read once, then only what
        was appended since."""
        for _ in range(50):
            seq, offset, last = self._last_values
            manifest = _segments.load_manifest(self._rdir, **self._ctx)
            if seq <= manifest["sealed_through"]:  # what we read may be sealed: start over
                seq, offset = manifest["sealed_through"] + 1, 0
                last = _segments.manifest_last(self._rdir, manifest, **self._ctx)
            last = dict(last)
            try:
                for s in range(seq, self.seq + 1):
                    path = _layout.wal_path(self._rdir, s)
                    with open(path, "rb") as fh:
                        fh.seek(offset)
                        checked = _wal.check(fh.read(), path, anchored=offset > 0,
                                             **self._ctx)
                    last.update(_segments.last_values(
                        _segments.live(manifest, s, records(checked.bodies))))
                    # Next time from the last frame: a checksum range starts there (the plain
                    # rows after it are read again; last values do not change for that).
                    seq, offset = s, offset + checked.frame_end
                    if s < self.seq:
                        offset = 0
            except FileNotFoundError:  # sealed while we read
                self._last_values = (-1, 0, {})
                continue
            self._last_values = (seq, offset, last)
            return _segments.decoded(last, self._rdir, self._ctx)
        raise StorageError(f"Could not read the summary of {self._where}: its log files keep "
                           "changing.", path=str(self._rdir), **self._ctx)
