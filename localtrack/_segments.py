"""Sealing closed log files into immutable Parquet segments, and reading history.

Only the holder of the run's seal lock seals (see _sealer). The order makes every crash harmless:
  1. write ``segments/.tmp-<seq>`` and fsync it; rename to ``<seq>.parquet``; fsync the dir;
  2. replace ``manifest.json`` atomically, naming the segment and ``sealed_through = seq``;
  3. unlink ``wal/<seq>.jsonl``.
Die after 1: the segment is an orphan (not in the manifest) and the log still
holds the steps; the next writer deletes the orphan. Die after 2: the log file
is covered by the manifest; the next writer deletes it. A reader sees either
the log file or the manifest entry; when a sealer races it, it retries.
pyarrow is imported here only, lazily, to keep ``import localtrack`` light.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypedDict, cast

from . import _blobs, _durable, _exitgate, _frames, _fsutil, _layout, _remotesnap, _wal
from ._codec import HIST_TAG, decode_tree, dumps, encode_tree, histogram_of, loads, untag
from ._media import Histogram
from ._naming import Ctx, log_seq, run_label, segment_seq
from ._remotes import _chunks
from ._remotes._base import Lru, PerRemote, RemotePath
from ._remotes._dir import open_file, read_file
from .errors import CorruptRunError, RemoteError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa
    from typing_extensions import NotRequired, Unpack

MANIFEST = "manifest.json"
StorePath = Path | RemotePath  # a local directory, or one in a remote store (read side only)
_JSON_META = {b"localtrack.encoding": b"json"}


# The records of manifest.json (docs/format.md, "Segments and the manifest", "Rewinds", "Forks"),
# as this module writes them. A manifest read from disk is checked by parse_manifest before it
# is one of these: the keys it checks are required here; the rest may lack in a damaged or
# older file, and the code reading them says what it does then.
class Segment(TypedDict):
    """A sealed segment: ``segments/<file>``, sealed from log ``seq``."""

    file: str
    rows: int
    seq: NotRequired[int]
    first_step: NotRequired[int]  # of its rows, archived or not
    last_step: NotRequired[int]


class Rewind(TypedDict):
    """A rewind to step ``to``: the rows after it in logs before ``seq`` are archived."""

    to: int
    seq: int
    from_step: NotRequired[int]  # the run's last step before the rewind
    time: NotRequired[float]


class Parent(TypedDict):
    """A fork's parent: run ``project/run`` through ``step``, its logs through ``seq``, under
    its first ``rewinds`` rewinds; ``last``: its last values then (None: to be computed)."""

    project: str
    run: str
    step: int
    seq: int
    rewinds: int
    last: dict[str, Any] | None
    keys: NotRequired[list[str]]  # the keys of its history, when ``last`` is None


class Manifest(TypedDict):
    """manifest.json: the sealed segments, the last values over them, rewinds, a fork's parent."""

    format: NotRequired[int]  # the version of the writer that created the run
    sealed_through: int  # every log up to this seq is sealed (or had no rows)
    last_step: int
    segments: list[Segment]
    last: dict[str, Any] | None  # None after a rewind or fork: computed when first needed
    keys: NotRequired[list[str]]  # the keys of the sealed history, when ``last`` is None
    rewinds: list[Rewind]
    parent: NotRequired[Parent]


def empty_manifest() -> Manifest:
    return {"format": _layout.FORMAT_VERSION, "sealed_through": -1, "last_step": -1,
            "segments": [], "last": {}, "rewinds": []}


def load_manifest(rdir: StorePath, **ctx: Unpack[Ctx]) -> Manifest:
    """The run's manifest, checked (see parse_manifest); an empty one when there is none yet."""
    path = rdir / MANIFEST
    try:
        data = read_file(path, **ctx) if isinstance(path, Path) else path.read_bytes()
    except FileNotFoundError:
        return empty_manifest()
    except IsADirectoryError as exc:
        raise CorruptRunError(f"{path} is a directory, not a manifest.", path=str(path), **ctx) from exc
    return parse_manifest(data, path, **ctx)


def parse_manifest(data: bytes, path: StorePath, **ctx: Unpack[Ctx]) -> Manifest:
    """Manifest bytes as a Manifest whose segment names are segment file names and whose numbers are ints.

    A store may come from elsewhere: a segment named ``/etc/hostname`` or ``../../x`` would
    make sync upload that file and write outside the remote, so every name is checked
    against the format (``<seq>.parquet``) before any becomes a path.
    """
    try:
        manifest = loads(data)
    except ValueError as exc:
        raise CorruptRunError(f"{path} is not valid JSON ({exc}); run `localtrack doctor`.",
                              path=str(path), **ctx) from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("segments"), list):
        raise CorruptRunError(f"{path} is not a localtrack manifest.", path=str(path), **ctx)
    for key in ("sealed_through", "last_step"):
        value = manifest.get(key, -1 if key == "last_step" else None)
        if isinstance(value, bool) or not isinstance(value, int):
            raise CorruptRunError(f"{path} of {run_label(ctx)} holds {key}={value!r}, not an "
                                  "integer; the manifest is damaged. Restore it from a backup or "
                                  "sync remote.", path=str(path), **ctx)
    if not isinstance(manifest.setdefault("last", {}), dict | None) or not isinstance(
            manifest.get("keys", []), list):
        raise CorruptRunError(f"{path} of {run_label(ctx)} holds last={manifest['last']!r}, not an "
                              "object; the manifest is damaged. Restore it from a backup or sync "
                              "remote.", path=str(path), **ctx)
    rewinds = manifest.setdefault("rewinds", [])
    if not isinstance(rewinds, list) or not all(
            isinstance(r, dict) and all(type(r.get(k)) is int and r[k] >= 0 for k in ("to", "seq"))
            for r in rewinds):
        raise CorruptRunError(f"{path} of {run_label(ctx)} holds rewinds={rewinds!r}, not a list "
                              "of {\"to\": step, \"seq\": log} records; the manifest is damaged. "
                              "Restore it from a backup or sync remote.", path=str(path), **ctx)
    parent = manifest.get("parent")
    if parent is not None and not (
            isinstance(parent, dict)
            and all(type(parent.get(k)) is int and parent[k] >= 0 for k in ("step", "seq", "rewinds"))
            and isinstance(parent.get("last"), dict | None)
            and all(isinstance(parent.get(k), str) for k in ("project", "run"))):
        raise CorruptRunError(f"{path} of {run_label(ctx)} holds parent={parent!r}, not a fork's "
                              "parent record; the manifest is damaged. Restore it from a backup "
                              "or sync remote.", path=str(path), **ctx)
    for seg in manifest["segments"]:
        name = seg.get("file") if isinstance(seg, dict) else seg
        rows = seg.get("rows") if isinstance(seg, dict) else None
        if isinstance(rows, bool) or not isinstance(rows, int):
            raise CorruptRunError(f"{path} of {run_label(ctx)} lists the segment {name!r} without "
                                  "an integer row count; the manifest is damaged. Restore it from "
                                  "a backup or sync remote.", path=str(path), **ctx)
        if segment_seq(name) is None:
            raise CorruptRunError(f"{path} of {run_label(ctx)} names the segment {name!r}, which "
                                  "is not a segment file name (8 digits and '.parquet'); nothing "
                                  "of the run is read or synced through it. Restore the manifest "
                                  "from a backup or sync remote, or remove the run.",
                                  path=str(path), **ctx)
    return cast(Manifest, manifest)


def steps_text(seg: Segment) -> str:
    """``steps 0..9`` of a manifest's segment entry, for messages (the step keys are not
    checked by parse_manifest: only messages use them, and a damaged entry may lack them)."""
    first, last = seg.get("first_step"), seg.get("last_step")
    return f"steps {first}..{last}" if first is not None and last is not None else "its steps"


def wal_seqs(rdir: StorePath) -> list[int]:
    """Sequence numbers of the log files (in a synced store a log may be a folder of chunks)."""
    wal_dir = rdir / "wal"
    if isinstance(wal_dir, Path):
        try:
            names = os.listdir(wal_dir)  # names, not Path objects: listings call this per run
        except (FileNotFoundError, NotADirectoryError):
            return []
    else:
        names = [p.name for p in wal_dir.iterdir()]
    return sorted(s for name in names if (s := log_seq(name)) is not None)


def wal_log(rdir: StorePath, seq: int) -> StorePath:
    """The log file (or chunk folder) ``seq`` of a run."""
    return _layout.wal_path(rdir, seq) if isinstance(rdir, Path) else rdir / "wal" / f"{seq:08d}.jsonl"


def seq_of(seg: Segment) -> int:
    """A manifest segment's log sequence number, from its (checked) file name."""
    seq = segment_seq(seg["file"])
    assert seq is not None  # parse_manifest refused any other name
    return seq


def _span(seg: Segment) -> tuple[float, float]:
    """A segment's first and last step, or an unbounded span when the entry lacks them."""
    first, last = seg.get("first_step"), seg.get("last_step")
    return (first if type(first) is int else -math.inf, last if type(last) is int else math.inf)


def cap(manifest: Manifest, seq: int) -> int | None:
    """The last step of log (or segment) ``seq`` that is still history, None for all of it.

    A rewind to step N, recorded in the manifest as ``{"to": N, "seq": S}`` (S: the first log
    written after it), archives every row with a step after N in the logs before S.
    """
    caps = [r["to"] for r in manifest["rewinds"] if r["seq"] > seq]
    return min(caps) if caps else None


def at_least_rewound(manifest: Manifest, last_step: int) -> int:
    """A run's last step is never before its last rewind's step: it continues after it."""
    return max(last_step, manifest["rewinds"][-1]["to"]) if manifest["rewinds"] else last_step


def last_step_at(manifest: Manifest, seq: int, step: int) -> int:
    """The run's last step when the last record of its logs is at ``step`` in log ``seq``:
    a rewind may have archived it (capped), and never goes below its own step."""
    top = cap(manifest, seq)
    return at_least_rewound(manifest, step if top is None else min(step, top))


def rewound_by(manifest: Manifest, seq: int, step: int) -> int | None:
    """Which rewind (1-based, in the manifest's order) archived a row of log ``seq`` at
    ``step``; None for a row that is history."""
    for number, rewind in enumerate(manifest["rewinds"], 1):
        if rewind["seq"] > seq and step > rewind["to"]:
            return number
    return None


def live(manifest: Manifest, seq: int, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of log ``seq`` that a rewind did not archive."""
    top = cap(manifest, seq)
    return records if top is None else [r for r in records if r["_step"] <= top]


def merge_steps(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge consecutive records of one step (commit=False partials), later keys winning."""
    rows: list[dict[str, Any]] = []
    for record in records:
        if rows and rows[-1]["_step"] == record["_step"]:
            rows[-1].update(record)
        else:
            rows.append(dict(record))
    return rows


def histogram_type() -> pa.DataType:
    """The column type of a key that holds histograms (see docs/format.md)."""
    import pyarrow as pa

    return pa.struct([("counts", pa.list_(pa.int64())), ("edges", pa.list_(pa.float64()))])


def _histogram_array(values: list[Any]) -> pa.Array:
    """A histogram column of Histograms and Nones; ArrowInvalid when other values are mixed in."""
    import pyarrow as pa

    if not all(v is None or type(v) is Histogram for v in values):
        raise pa.ArrowInvalid("histograms mixed with other values")
    return pa.array([None if v is None else {"counts": v.counts, "edges": v.edges}
                     for v in values], histogram_type())


def histogram_rows(table: pa.Table, key: str) -> list[tuple[int, int, Histogram]]:
    """``(row, step, Histogram)`` of the rows of ``table`` whose ``key`` holds a histogram: in a
    histogram column, or in the JSON text of a key of mixed kinds."""
    import pyarrow as pa

    field = table.schema.field(key)
    steps = table["_step"].to_pylist()
    if field.type == histogram_type():
        values = table[key].to_pylist()
    elif field.metadata == _JSON_META and pa.types.is_string(field.type):
        values = [_histogram_text(text) for text in table[key].to_pylist()]
    else:
        return []
    return [(row, step, histogram_of(v))
            for row, (step, v) in enumerate(zip(steps, values, strict=True)) if v is not None]


def _histogram_text(text: str | None) -> Any:
    """The stored counts and edges in JSON text of a key of mixed kinds, else None."""
    if text is None or not text.startswith('{"' + HIST_TAG):
        return None
    return loads(text)[HIST_TAG]


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Columns from rows; a key whose values mix kinds (number and string, or a histogram and
    anything but None) is kept as JSON text."""
    import pyarrow as pa

    keys: dict[str, None] = {"_step": None, "_timestamp": None}
    for row in rows:
        keys.update(dict.fromkeys(row))
    fields, arrays = [], []
    for key in keys:
        values = [untag(row.get(key)) for row in rows]
        try:
            if any(type(v) is Histogram for v in values):
                array = _histogram_array(values)
            else:
                array = pa.array(values)
            meta = None
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            array = pa.array([None if v is None else _json_text(v) for v in values], pa.string())
            meta = _JSON_META
        if key == "_step":
            array = array.cast(pa.int64())
        elif key == "_timestamp":
            array = array.cast(pa.float64())
        fields.append(pa.field(key, array.type, metadata=meta))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def last_values(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Last non-null value of each key: a logged None is the same as a key not logged."""
    last: dict[str, Any] = {}
    for row in rows:
        if None in row.values():
            last.update((k, v) for k, v in row.items() if v is not None)
        else:
            last.update(row)
    last.pop("_step", None)
    last.pop("_timestamp", None)
    return last


_END_LINE = re.compile(rb'(?m)^' + re.escape(_frames.END_BODY) + rb',"_crc":\d+\}\n')
_TAG_LITERALS = ((b'{"$f":"NaN"}', b"NaN"), (b'{"$f":"Infinity"}', b"Infinity"),
                 (b'{"$f":"-Infinity"}', b"-Infinity"))


@_exitgate.gated
def log_table(data: bytes) -> pa.Table | None:
    """Checked log bytes as a table, one row per step, parsed by pyarrow's C++ JSON reader.

    Non-finite tags become the NaN/Infinity literals that reader accepts (inside
    JSON strings the quotes are escaped, so no string can match). Records that
    share a step are merged with a group-by keeping each key's last non-null
    value. Returns None when a key mixes numbers and strings: rows_to_table
    handles that.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    if _frames.END_BODY in data:  # the lines that close a log's last frame are not rows
        data = _END_LINE.sub(b"", data)
    for tag, literal in _TAG_LITERALS:
        if tag in data:
            data = data.replace(tag, literal)
    if b'"$f"' in data:
        return None
    try:
        table = pj.read_json(pa.BufferReader(_arrow_copy(data)))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if "_crc" in table.column_names:
        table = table.drop_columns(["_crc"])
    hists = [f.name for f in table.schema if pa.types.is_struct(f.type)
             and f.type.field(0).name != _blobs.TAG]  # media references stay as they are
    nested = len(hists) < sum(1 for f in table.schema if pa.types.is_struct(f.type)
                              or pa.types.is_list(f.type))
    if hists:
        table = _unwrap_histograms(table, hists)
        if table is None:
            return None
    table = _fill_plain(table)
    steps = table["_step"]
    n = len(steps)
    if n > 1 and not pc.all(pc.greater(steps.slice(1), steps.slice(0, n - 1))).as_py():
        if hists or nested:  # "last" has no struct or list kernel: merge the rows in Python
            return None
        keys = [c for c in table.column_names if c != "_step"]
        nulls = [k for k in keys if pa.types.is_null(table[k].type)]  # "last" has no null kernel
        table = table.group_by("_step", use_threads=False).aggregate(
            [(k, "last") for k in keys if k not in nulls])
        table = table.rename_columns([c.removesuffix("_last") for c in table.column_names])
        for key in nulls:
            table = table.append_column(key, pa.nulls(len(table)))
        table = table.select(["_step", *keys])
    rest = [c for c in table.column_names if c not in ("_step", "_timestamp")]
    return table.select(["_step", "_timestamp", *rest])


def _unwrap_histograms(table: pa.Table, names: list[str]) -> pa.Table | None:
    """The columns ``{"$h": {"counts", "edges"}}`` (the only objects in history) as histogram
    columns; None for any other object column (a log no localtrack writer made: the Python
    reader names the bad value)."""
    import pyarrow as pa

    for name in names:
        column = table[name].combine_chunks()
        if column.type.num_fields != 1 or column.type.field(0).name != HIST_TAG:
            return None
        inner = column.flatten()[0]  # the parent's nulls (rows without the key) carried over
        try:
            inner = inner.cast(histogram_type())
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return None
        table = table.set_column(table.column_names.index(name), name, inner)
    return table


def _fill_plain(table: pa.Table) -> pa.Table:
    """Give plain rows (no ``_step``: see _frames) the step after the row before and its time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    steps = table["_step"].combine_chunks()
    if not steps.null_count:
        return table
    index = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), len(steps))), 1)
    offset = pc.fill_null_forward(pc.subtract(steps.cast(pa.int64()), index))
    table = table.set_column(table.column_names.index("_step"), "_step", pc.add(offset, index))
    times = table["_timestamp"].combine_chunks()
    return table.set_column(table.column_names.index("_timestamp"), "_timestamp",
                            pc.fill_null_forward(times))


def _table_last(table: pa.Table) -> dict[str, Any]:
    """Last non-null value of each key, encoded for JSON (non-finite floats tagged)."""
    import pyarrow.compute as pc

    last: dict[str, Any] = {}
    hist = histogram_type()
    for field in list(table.schema)[2:]:
        values = pc.drop_null(table[field.name])
        if len(values):
            value = values[-1].as_py()
            if field.metadata == _JSON_META:  # a key of mixed kinds, stored as JSON text
                value = _FROM_TEXT[value] if value in _FROM_TEXT else decode_tree(loads(value))
            elif field.type == hist:
                value = histogram_of(value)
            last[field.name] = encode_tree(value, "a segment")
    return last


def _log_to_table(path: Path, **ctx: Unpack[Ctx]) -> pa.Table | None:
    """A closed log file as a table (None when it holds no record); it must be intact."""
    data = path.read_bytes()
    checked = _wal.check(data, path, allow_torn_tail=False, **ctx)
    if not checked.bodies:
        return None
    table = log_table(data[:checked.end])
    if table is None:
        table = rows_to_table(merge_steps(_frames.records(checked.bodies)))
    return table


def _write_segment(table: pa.Table, path: Path) -> None:
    """zstd Parquet; floats byte-stream-split and no dictionaries for numbers.

    Dictionary-encoding high-cardinality floats costs time and space; splitting
    float bytes into streams lets zstd find the slowly changing exponent and
    high mantissa bytes of metrics (99 -> 66 B/step for noisy curves, 36 -> 3
    for smooth ones, and several times faster to write).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    pq.write_table(table, path, compression="zstd", use_dictionary=strings or False,
                   use_byte_stream_split=floats or False)


def seal(rdir: Path, seqs: list[int], manifest: Manifest,
         **ctx: Unpack[Ctx]) -> Manifest:
    """Seal the closed log files ``seqs`` (ascending) and return the new manifest.

    """
    seg_dir = rdir / "segments"
    if seg_dir.is_symlink():  # a segment would be written (and renamed over) elsewhere
        raise CorruptRunError(f"{seg_dir} of {run_label(ctx)} is a symbolic link; segments are "
                              "written only into the run's own folder. Replace the link with "
                              "a folder.", path=str(seg_dir), **ctx)
    for seq in seqs:
        if seq <= manifest["sealed_through"]:
            continue
        wal = _layout.wal_path(rdir, seq)
        table = _log_to_table(wal, **ctx)
        manifest = {**manifest, "sealed_through": seq, "segments": list(manifest["segments"])}
        if table is not None:
            _fsutil.ensure_dir(seg_dir)
            name = _layout.segment_name(seq)
            tmp = seg_dir / f"{_fsutil.TMP_PREFIX}{name}"
            _write_segment(table, tmp)
            _fsutil.fsync_file(tmp)
            _fsutil.rename_durable(tmp, seg_dir / name)
            steps = table["_step"]
            manifest["segments"].append({"file": name, "seq": seq, "rows": table.num_rows,
                                         "first_step": steps[0].as_py(),
                                         "last_step": steps[-1].as_py()})
            kept = _rewound(table, manifest, seq, include=False)  # a rewind's archive is no history
            if len(kept):  # (a rewind set last_step to its step: a rewound log keeps to it)
                manifest["last_step"] = max(manifest["last_step"], kept["_step"][-1].as_py())
            # A rewind or a fork may have left ``last`` to be computed: this process can read.
            manifest["last"] = {**manifest_last(rdir, manifest, **ctx), **_table_last(kept)}
            manifest.pop("keys", None)
        _blobs.seal(rdir, seq)  # its media to segments/ (see _blobs: unseal() undoes it)
        # If we die here: the segment is an orphan and the log still holds its steps.
        _fsutil.atomic_write(rdir / MANIFEST, dumps(manifest))
        # If we die here: the manifest covers this log file; the next writer deletes it.
        _fsutil.unlink(wal)
    return manifest


def cleanup(rdir: Path, manifest: Manifest, *, everything: bool = False) -> None:
    """Finish what a dead sealer left half done (lock holders only).

    A sealer that dies leaves segment files (or their temp files) only under names derived
    from a log the manifest does not cover yet, and log files the manifest covers; so opening
    a run looks at just those names, in time independent of its length. ``everything`` (for
    doctor) also removes any other segment file the manifest does not name.
    """
    seg_dir = rdir / "segments"
    _fsutil.sweep_tmp(rdir)
    linked = seg_dir.is_symlink()  # nothing is removed through a link (seal() refuses it)
    for seq in wal_seqs(rdir):
        if seq <= manifest["sealed_through"]:
            _fsutil.unlink(_layout.wal_path(rdir, seq))
        elif not linked:
            _blobs.unseal(rdir, seq)
            name = _layout.segment_name(seq)
            _fsutil.unlink(seg_dir / name)
            _fsutil.unlink(seg_dir / f"{_fsutil.TMP_PREFIX}{name}")
    if everything and seg_dir.is_dir() and not linked:
        _fsutil.sweep_tmp(seg_dir)
        named = {seg["file"] for seg in manifest["segments"]}
        for path in seg_dir.iterdir():
            if path.suffix == ".parquet" and path.name not in named:
                _fsutil.unlink(path)


Logs = list[tuple[int, list[bytes], bytes]]  # (seq, record bodies, checked bytes) per unsealed log
Snapshot = tuple[Manifest, Logs]


def _snapshot(rdir: StorePath, ctx: Ctx) -> Snapshot:
    """A consistent (manifest, [(seq, record bodies, checked bytes)] per unsealed log), however fast
    a sealer works. A torn tail is left out (a writer may be mid-append).

    The logs are read first, then the manifest: a sealer deletes a log only after a manifest
    covers it, so a log that vanished while we read is in that manifest, and a log we read
    that it covers is dropped (its steps are in a segment now). Reading the manifest first
    raced: a listing taken after the sealer deleted the last logs was empty, and the older
    manifest lacked their steps; with a backlog of logs, every pass lost its first log.
    A remote run folder is read through one listing, in the same order (see _remotesnap).
    """
    if isinstance(rdir, RemotePath):
        snap = _remotesnap.snapshot(rdir, lambda reader: _remote_snapshot(reader, ctx))
        if snap is not None:
            return snap
    else:
        for _ in range(50):
            read: dict[int, bytes] = {}
            for seq in wal_seqs(rdir):
                try:
                    read[seq] = _chunks.read_log(wal_log(rdir, seq), rdir, **ctx)
                except FileNotFoundError:  # sealed while we read
                    continue
            manifest = load_manifest(rdir, **ctx)
            logs = _unsealed(rdir, manifest, read, ctx)
            if logs is not None:
                return manifest, logs
    raise CorruptRunError(f"Could not get a consistent view of {rdir}: a log file that the "
                          "manifest does not cover keeps vanishing, or a sequence number is "
                          "missing.", path=str(rdir), **ctx)


def _remote_snapshot(reader: _remotesnap.Reader, ctx: Ctx) -> tuple[Snapshot, bool] | None:
    """_snapshot of a remote run folder from one listing (taken before the manifest is read, as
    the logs are read before it locally), and whether it may be kept: not while the listing
    holds a segment the manifest does not name (the manifest naming it is on its way)."""
    data = reader.get(MANIFEST)
    path = reader.rdir / MANIFEST
    manifest = empty_manifest() if data is None else parse_manifest(data, path, **ctx)
    read = {seq: reader.log(f"wal/{name}") for name in reader.names("wal/")
            if (seq := log_seq(name)) is not None and seq > manifest["sealed_through"]}
    logs = _unsealed(reader.rdir, manifest, read, ctx)
    if logs is None:
        return None
    named = {seg["file"] for seg in manifest["segments"]}
    return (manifest, logs), all(segment_seq(name) is None or name in named
                                 for name in reader.names("segments/"))


def _unsealed(rdir: StorePath, manifest: Manifest, read: dict[int, bytes], ctx: Ctx) -> Logs | None:
    """The logs read (``read``: bytes by seq) that ``manifest`` does not cover, checked; None
    when one of them vanished (read again)."""
    sealed = manifest["sealed_through"]
    seqs = sorted(s for s in read if s > sealed)
    if seqs != list(range(sealed + 1, sealed + 1 + len(seqs))):
        return None
    # A crash's damage past the durable watermark is a torn tail wherever it lies, and the
    # logs after a torn one follow a hole: left out, as the next writer sets them aside.
    mark = _durable.read(rdir) if isinstance(rdir, Path) else _durable.Mark(_durable.ALL, 0)
    logs = []
    for seq in seqs:
        data = read[seq]
        durable = _durable.durable_offset(mark, seq)
        checked = _wal.check(data, str(wal_log(rdir, seq)), durable=durable, **ctx)
        logs.append((seq, checked.bodies, data[:checked.end]))
        if checked.bad_at is not None or _durable.lost_end(data, checked.end, durable,
                                                           seq == seqs[-1]):
            break
    return logs


def known_last(manifest: Manifest) -> dict[str, Any] | None:
    """The last value of each key over the sealed rows that are history, when known without
    reading a segment: None when a rewind or a fork left ``last`` null (to be computed), or
    when a rewind archives sealed rows the manifest's ``last`` still counts."""
    last = manifest["last"]
    for seg in manifest["segments"]:
        top = cap(manifest, seq_of(seg))
        if last is None or (top is not None and _span(seg)[1] > top):
            return None
    return None if last is None else dict(last)


def keys_of(manifest: Manifest) -> set[str]:
    last = manifest["last"]
    return set(last) if last is not None else set(manifest.get("keys", ()))


def manifest_last(rdir: StorePath, manifest: Manifest, **ctx: Unpack[Ctx]) -> dict[str, Any]:
    """The last value of each key over the sealed history (see known_last), computed when it
    is not known: from the newest segments back until every key is found (most runs log every
    key in every segment: one segment read), over the values a fork starts from."""
    known = known_last(manifest)
    if known is not None:
        return known
    last: dict[str, Any] = {}
    keys = keys_of(manifest)
    for seg in reversed(manifest["segments"]):
        top = cap(manifest, seq_of(seg))
        if top is not None and _span(seg)[0] > top:
            continue  # archived whole
        table = segment_table(rdir, seg, None, ctx)
        for key, value in _table_last(_rewound(table, manifest, seq_of(seg), False)).items():
            last.setdefault(key, value)
        if last.keys() >= keys:
            return last
    ref = manifest.get("parent")
    if ref is None:
        return last
    inherited = ref["last"] if ref["last"] is not None else _inherited_last(rdir, ref, ctx)
    return {**inherited, **last}


# -- forks -----------------------------------------------------------------------------------
#
# A fork's manifest names its parent: {"project", "run", "step": N, "seq": S, "rewinds": R,
# "last": {...}}. Its history starts with the parent's history through step N as it was when
# the fork was made: the rows of the parent's logs and segments up to seq S, under the parent's
# first R rewinds (later ones, or later rows, never change a fork), then the fork's own rows.
# Nothing is copied; a fork needs its parent in the same store (sync takes both).


def _view(manifest: Manifest, ref: Parent, top: int) -> Manifest:
    """The parent's manifest as a fork made at ``ref`` sees it, through step ``top``: a
    rewind to ``top`` just after the log the fork was made at, and no later segment."""
    return {**manifest, "segments": [g for g in manifest["segments"] if seq_of(g) <= ref["seq"]],
            "rewinds": [*manifest["rewinds"][:ref["rewinds"]],
                        {"to": top, "seq": ref["seq"] + 1}]}


def _parent_dir(rdir: StorePath, ref: Parent, ctx: Ctx,
                depth: int) -> tuple[StorePath, Ctx]:
    """The parent's run folder: in the same store as the fork (``depth``: forks followed so
    far, so that parents naming each other in a loop end in an error)."""
    from ._naming import project_name, run_id

    if depth > 100:
        raise CorruptRunError(f"{run_label(ctx)} is a fork of a fork ... 100 runs deep: its "
                              "parents name each other in a loop.", **ctx)
    project, rid = project_name(ref["project"]), run_id(ref["run"])
    if isinstance(rdir, Path):
        pdir: StorePath = _layout.run_dir(rdir.parents[2], project, rid)
    else:
        root = rdir.key.split("/")[:-3]
        pdir = RemotePath(rdir.remote, "/".join([*root, project, "runs", rid]))
    pctx: Ctx = {"project": project, "run_id": rid}
    if not (pdir / "run.json").exists():
        raise CorruptRunError(f"{run_label(ctx)} is a fork of run {rid!r} in project {project!r} at "
                              f"step {ref['step']}, which is not in this store ({pdir}): its "
                              "history starts with that run's. Sync or copy the parent run here "
                              "too.", path=str(pdir), **ctx)
    return pdir, pctx


def _inherited(rdir: StorePath, ref: Parent | None, wanted: list[str] | None, ctx: Ctx,
               top: int, steps: Steps, depth: int = 0) -> Iterator[pa.Table]:
    """The tables of a fork's inherited history through step ``top``, oldest first."""
    if ref is None:
        return
    pdir, pctx = _parent_dir(rdir, ref, ctx, depth)
    manifest, logs = _snapshot(pdir, pctx)
    top = min(top, ref["step"])
    view = _view(manifest, ref, top)
    yield from _inherited(pdir, manifest.get("parent"), wanted, pctx, top, steps, depth + 1)
    for seg in view["segments"]:
        if _meets(seg, steps):
            yield _rewound(segment_table(pdir, seg, wanted, pctx), view, seq_of(seg), False)
    for seq, bodies, data in logs:
        if seq <= ref["seq"] and bodies:
            yield _rewound(_log_rows(pdir, seq, bodies, data, wanted, pctx), view, seq, False)


def _inherited_last(rdir: StorePath, ref: Parent, ctx: Ctx,
                    depth: int = 0) -> dict[str, Any]:
    """The last values of a fork's inherited history (its parent's through ``ref['step']``)."""
    pdir, pctx = _parent_dir(rdir, ref, ctx, depth)
    manifest, logs = _snapshot(pdir, pctx)
    grand = manifest.get("parent")
    if grand is not None and ref["step"] <= grand["step"]:  # before the parent's own rows
        return _inherited_last(pdir, {**grand, "step": ref["step"], "last": None}, pctx, depth + 1)
    view = _view(manifest, ref, ref["step"])
    last = manifest_last(pdir, view, **pctx)
    for seq, bodies, _ in logs:
        if seq <= ref["seq"]:
            last.update(last_values(live(view, seq, _frames.records(bodies))))
    return last


def fork_point(rdir: Path, step: int, **ctx: Unpack[Ctx]) -> Parent:
    """What a fork of the run at ``rdir`` made now at ``step`` records as its parent (see
    "Forks" in docs/format.md): where the parent's logs end, how many rewinds it has, and the
    last values of its history through ``step`` when known without reading a segment (else
    null: computed when first needed, by a reader or the fork's sealer)."""
    manifest, logs = _snapshot(rdir, ctx)
    last_step = manifest["last_step"]
    for seq, bodies, _ in reversed(logs):
        rows = live(manifest, seq, _frames.records(bodies))
        if rows:
            last_step = rows[-1]["_step"]
            break
    last_step = at_least_rewound(manifest, last_step)
    if step > last_step:
        raise UsageError(f"Cannot fork {run_label(ctx)} at step {step}: its last step is "
                         f"{last_step}.", **ctx)
    seq = max([manifest["sealed_through"], *(seq for seq, _, _ in logs)])
    ref: Parent = {"project": ctx["project"], "run": ctx["run_id"], "step": step,
                   "seq": seq, "rewinds": len(manifest["rewinds"]), "last": None,
                   "keys": sorted(keys_of(manifest))}
    parent = manifest.get("parent")
    view = _view(manifest, ref, step)
    known = known_last(view)
    if known is not None and (parent is None or step > parent["step"]):
        for s, bodies, _ in logs:
            known.update(last_values(live(view, s, _frames.records(bodies))))
        ref["last"] = known
    return ref


def summary_last(rdir: StorePath, **ctx: Unpack[Ctx]) -> dict[str, Any]:
    """The last logged value of every key (flat, decoded)."""
    manifest, logs = _snapshot(rdir, ctx)
    last = manifest_last(rdir, manifest, **ctx)
    for seq, bodies, _ in logs:
        last.update(last_values(live(manifest, seq, _frames.records(bodies))))
    return decoded(last, rdir, ctx)


def last_and_step(rdir: StorePath, **ctx: Unpack[Ctx]) -> tuple[dict[str, Any], int]:
    """summary_last's values as stored (flat, not decoded) and the run's last step, from one
    snapshot: what a listing reads of a run (the step by the rule of ``last_step_at``)."""
    manifest, logs = _snapshot(rdir, ctx)
    last = manifest_last(rdir, manifest, **ctx)
    step = at_least_rewound(manifest, int(manifest["last_step"]))
    for seq, bodies, _ in logs:
        records = _frames.records(bodies)
        last.update(last_values(live(manifest, seq, records)))
        if records:
            step = last_step_at(manifest, seq, _wal.step_of(records[-1], str(wal_log(rdir, seq)),
                                                            **ctx))
    return last, step


def decoded(last: dict[str, Any], rdir: StorePath | str, ctx: Ctx) -> dict[str, Any]:
    """Stored last values decoded (see _codec.untag): a tag no writer makes is a damaged or
    foreign file, a CorruptRunError naming the run."""
    try:
        return {k: untag(v) for k, v in last.items()}
    except ValueError as exc:
        raise _foreign(rdir, exc, ctx) from exc


def read_history(rdir: StorePath, keys: list[str] | None = None, *, include_rewound: bool = False,
                 snap: Snapshot | None = None, inherit: bool = True,
                 **ctx: Unpack[Ctx]) -> pa.Table:
    """The whole history as one table: sealed segments, then the unsealed logs.

    Rows a rewind archived are left out, or with ``include_rewound`` kept in the order they
    were written, with a ``_rewound`` column: the number of the rewind that archived the row
    (1 for the run's first rewind), null for a row of the history. ``snap``: the run's
    snapshot, when the caller took it; ``inherit=False``: a fork's own rows only.
    """
    import pyarrow as pa

    wanted = None if keys is None else ["_step", "_timestamp", *keys]
    tables = list(history_tables(rdir, wanted, include_rewound=include_rewound, snap=snap,
                                 inherit=inherit, **ctx))
    if not include_rewound:
        return _concat(tables, wanted)
    tables = [t if "_rewound" in t.column_names
              else t.append_column("_rewound", pa.nulls(len(t), pa.int64())) for t in tables]
    table = _concat(tables, None if wanted is None else [*wanted, "_rewound"])
    if "_rewound" not in table.column_names:  # (no rows at all)
        table = table.append_column("_rewound", pa.nulls(len(table), pa.int64()))
    return table


Steps = tuple[float, float]  # a range of steps, first and last included
ALL_STEPS: Steps = (-math.inf, math.inf)


def _meets(seg: Segment, steps: Steps) -> bool:
    first, last = _span(seg)
    return first <= steps[1] and last >= steps[0]


def history_tables(rdir: StorePath, wanted: list[str] | None, *, include_rewound: bool = False,
                   steps: Steps = ALL_STEPS, snap: Snapshot | None = None, inherit: bool = True,
                   **ctx: Unpack[Ctx]) -> Iterator[pa.Table]:
    """The history's tables (``wanted`` columns as found), one per segment or unsealed log,
    oldest first, each read as the caller iterates: a scan holds one segment at a time. The
    logs are read up front (the snapshot, or ``snap``); segments, immutable, later. Segments
    wholly outside ``steps`` are not read; the tables' rows are not cut to ``steps``.
    ``inherit=False``: without a fork's rows from its parent."""
    manifest, logs = _snapshot(rdir, ctx) if snap is None else snap
    if inherit:
        yield from _inherited(rdir, manifest.get("parent"), wanted, ctx, sys.maxsize, steps)
    for seg in manifest["segments"]:
        if _meets(seg, steps):
            yield _rewound(segment_table(rdir, seg, wanted, ctx), manifest, seq_of(seg),
                           include_rewound)
    for seq, bodies, data in logs:
        if bodies:
            yield _rewound(_log_rows(rdir, seq, bodies, data, wanted, ctx), manifest, seq,
                           include_rewound)


def _log_rows(rdir: StorePath, seq: int, bodies: list[bytes], data: bytes,
              wanted: list[str] | None, ctx: Ctx) -> pa.Table:
    """An unsealed log's checked rows (``wanted`` columns), one per step: pyarrow's C++ reader,
    Python rows only for keys of mixed kinds; a foreign or damaged file is a CorruptRunError."""
    import pyarrow as pa

    try:
        table = log_table(data)
        if table is None:
            table = rows_to_table(merge_steps(_frames.records(bodies)))
    except (pa.ArrowException, ValueError) as exc:  # a _step not a number, a bad tag
        raise _foreign(wal_log(rdir, seq), exc, ctx) from exc
    if wanted is not None:
        table = table.select([c for c in wanted if c in table.column_names])
    return _check_steps(table, wal_log(rdir, seq), ctx)


def segment_table(rdir: StorePath, seg: Segment, wanted: list[str] | None,
                  ctx: Ctx) -> pa.Table:
    """A manifest segment's rows (``wanted`` columns), its steps checked: a missing, damaged or
    foreign file is a CorruptRunError naming it (on a remote, a failed read a RemoteError)."""
    import pyarrow as pa

    path = rdir / "segments" / seg["file"]
    try:
        return _check_steps(_read_segment(path, wanted, rdir, ctx), path, ctx)
    except FileNotFoundError as exc:
        raise CorruptRunError(f"Segment {path} named in the manifest is missing; "
                              f"{steps_text(seg)} are lost. Restore it from a sync remote or "
                              "backup.", path=str(path), **ctx) from exc
    except (pa.ArrowException, OSError) as exc:
        if isinstance(path, RemotePath):  # a network failure, not a damaged file
            raise RemoteError(f"Could not read {path}: {exc}", url=path.remote.url,
                              path=str(path), transient=True, **ctx) from exc
        raise CorruptRunError(f"Segment {path} cannot be read ({exc}).",
                              path=str(path), **ctx) from exc


def _rewound(table: pa.Table, manifest: Manifest, seq: int, include: bool) -> pa.Table:
    """The rows of log ``seq`` that are history, or all of them marked (see read_history)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    top = cap(manifest, seq)
    if top is None or not len(table):
        return table
    if not include:
        return table.filter(pc.less_equal(table["_step"], top))
    marks = [rewound_by(manifest, seq, step) for step in table["_step"].to_pylist()]
    return table.append_column("_rewound", pa.array(marks, pa.int64()))


def _foreign(path: StorePath | str, exc: Exception, ctx: Ctx) -> CorruptRunError:
    return CorruptRunError(f"{path} of {run_label(ctx)} holds history no localtrack writer stores "
                           f"({exc}); restore it from a sync remote or a backup, or run "
                           "`localtrack doctor`.", path=str(path), **ctx)


def _check_steps(table: pa.Table, path: StorePath, ctx: Ctx) -> pa.Table:
    """``table``, once its ``_step`` is an integer column and its ``_timestamp`` a number column:
    anything else (a file from elsewhere, or hand-edited) would fail the concatenation later,
    far from the file to blame."""
    import pyarrow as pa

    kinds = {"_step": (pa.types.is_integer, "integers"),
             "_timestamp": (lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)
                            or pa.types.is_null(t), "numbers")}
    for key, (ok, text) in kinds.items():
        if key not in table.column_names or not ok(table.schema.field(key).type):
            found = table.schema.field(key).type if key in table.column_names else "no such column"
            raise _foreign(path, ValueError(f"{key} must hold {text}, found {found}"), ctx)
    return table


@_exitgate.gated
def _read_segment(path: StorePath, wanted: list[str] | None, rdir: StorePath, ctx: Ctx) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def read(source: Any) -> pa.Table:
        pf = pq.ParquetFile(source)
        cols = None if wanted is None else [c for c in wanted if c in pf.schema_arrow.names]
        return pf.read(columns=cols)

    if isinstance(path, Path):
        # Arrow gets the bytes, not the Python file: its I/O threads would call back into
        # Python for them, and a process exiting while a daemon thread (the dashboard's)
        # was in such a read hung for good in Arrow's thread-pool shutdown.
        with open_file(path, rdir if isinstance(rdir, Path) else None, **ctx) as fh:
            return read(pa.BufferReader(_arrow_copy(fh)))
    key = (path.key, None if wanted is None else tuple(wanted))
    kept = _remote_segments(path.remote)
    table = kept.get(key)
    if table is None:
        with path.open_input() as fh:
            table = read(fh)
        kept.put(key, table)
    return table


def _arrow_copy(source: bytes | BinaryIO) -> pa.Buffer:
    """The bytes (or a file's) in memory of Arrow's own. A buffer over a Python object takes
    the GIL when Arrow frees it, possibly in one of Arrow's threads after the read returned;
    at interpreter exit that thread is then ended by pthread_exit in a destructor, and the
    process dies of SIGABRT (see _exitgate)."""
    import pyarrow as pa

    if isinstance(source, bytes):
        buf = pa.allocate_buffer(len(source))
        memoryview(buf).cast("B")[:] = source
        return buf
    fd = source.fileno()
    size = os.fstat(fd).st_size
    buf = pa.allocate_buffer(size)
    view, got = memoryview(buf), 0
    while got < size and (n := os.preadv(fd, [view[got:]], got)):
        got += n
    return buf if got == size else buf.slice(0, got)


_REMOTE_SEGMENT_BYTES = 64 << 20
# Segments read from remotes, kept per remote object (an Api's, the dashboard's): a segment
# named in a manifest is written once and never changed, and a dashboard reads a key's history
# again for every media item it shows (three requests a segment: a HEAD and two ranged GETs).
_remote_segments = PerRemote(lambda: Lru[tuple[str, tuple[str, ...] | None], "pa.Table"](
    size=_REMOTE_SEGMENT_BYTES, size_of=lambda table: table.nbytes))


def _concat(tables: list[pa.Table], wanted: list[str] | None) -> pa.Table:
    import pyarrow as pa

    if not tables:
        tables = [rows_to_table([])]
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = pa.concat_tables([_as_json_text(t) for t in tables], promote_options="permissive")
    for key in wanted or []:
        if key not in table.column_names:
            table = table.append_column(key, pa.nulls(len(table)))
    return table if wanted is None else table.select(wanted)


def _as_json_text(table: pa.Table) -> pa.Table:
    """Fallback when a key changed kind between segments: every user column as JSON text."""
    import pyarrow as pa

    cols, fields = [], []
    hist = histogram_type()
    for field, column in zip(table.schema, table.columns, strict=True):
        if field.name in ("_step", "_timestamp") or field.metadata == _JSON_META:
            cols.append(column)
            fields.append(field)
            continue
        values = column.to_pylist()
        if field.type == hist:
            values = [None if v is None else histogram_of(v) for v in values]
        values = [None if v is None else _json_text(v) for v in values]
        cols.append(pa.array(values, pa.string()))
        fields.append(pa.field(field.name, pa.string(), metadata=_JSON_META))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


_FROM_TEXT = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _json_text(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return dumps(encode_tree(value, "a segment") if type(value) is Histogram else value).decode()
