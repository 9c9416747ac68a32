"""Reading a run's media back: the references in its history, resolved in its blob logs.

The rows come from _segments.read_history (so rewinds leave out what they archived, as for
any key); each reference names the log whose blob holds the item (see _blobs), read and
checked against its checksum. A fork's rows up to its fork point are its parent's, whose
references point into the parent's blobs: they are read from the parent (as the parent's
history is now: a rewind the parent made below the fork point after the fork hides them).
A shared run's writers each keep their media beside their history, in their label's folder
(see _labels): a row's references point into its own label's blobs, so each label is read as
a run and the items merged by step, then label. ApiRun.media is ``load(find(...))``: find reads
the rows (one snapshot of each history folder), load their items; the dashboard looks at a
row's references (its ETag) before it reads the items, if at all.
"""

from __future__ import annotations

import contextlib
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _blobs, _labels, _plots, _remoteblobs, _segments
from ._codec import decode_tree, loads
from ._labels import Logged
from ._naming import Ctx, chunk_offset, run_label
from ._remotes import RemotePath
from ._remotes._chunks import read_range
from ._richmedia import Table, decode_audio, decode_image, decode_mask, fill_default_labels, overlays
from .errors import CorruptRunError

if TYPE_CHECKING:
    import pyarrow as pa

    from ._segments import StorePath

_JSON = {b"localtrack.encoding": b"json"}  # _segments' mark of a column of JSON text
_PREFETCH = 16 << 20  # bytes of items a remote read asks for together (see _remoteblobs)
_REREADS = 10  # listings of a live blob's chunks while sync merges them, as _remotes._chunks


def refs_column(table: pa.Table, key: str) -> list[tuple[int, Any]]:
    """(step, stored value) of each row whose ``key`` holds media references."""
    return [(step, value) for step, value, _ in refs_rows(table, key)]


def refs_rows(table: pa.Table, key: str) -> list[tuple[int, Any, str | None]]:
    """(step, stored value, writer) of each row whose ``key`` holds media references; the
    writer is the row's ``_label`` (a shared run's history, see _labels), else None."""
    if key not in table.column_names:
        return []
    field = table.schema.field(key)
    out = []
    for step, value, writer in zip(table["_step"].to_pylist(), table[key].to_pylist(),
                                   _labels.writers(table), strict=True):
        if isinstance(value, str) and field.metadata == _JSON:
            value = loads(value) if value.startswith(("{", "[")) else None
        if value is not None and next(_blobs.refs(value), None) is not None:
            out.append((step, value, writer))
    return out


class Found(NamedTuple):
    """A row of a key with media, before its items are read: its ``step``, stored references
    (``value``) and writer (``label``: a shared run's, else None), and where its items are:
    ``rdir`` and ``ctx`` (a fork's rows up to its fork point are its parent's), ``sealed`` (the
    manifest's sealed_through there: which blobs are in segments/)."""

    step: int
    value: Any
    label: str | None
    rdir: StorePath
    ctx: Ctx
    sealed: int


def find(rdir: StorePath, meta: dict[str, Any], key: str, steps: Any, ctx: Ctx, *,
         label: str | None = None) -> list[Found]:
    """The rows of ``key`` with media (of ``steps`` only, when given) in step order, from one
    read of each history folder; a shared run's from every label (or ``label``'s), a step
    logged by several labels once per label, in label order (as its history_table())."""
    wanted = None if steps is None else set(steps)
    if not _labels.is_shared(meta):
        return _found(rdir, key, wanted, ctx, None)
    names = [label] if label is not None else _labels.labels(rdir)
    out = [row for name in names
           for row in _found(_labels.label_rdir(rdir, name), key, wanted, ctx, name)]
    return sorted(out, key=lambda row: row.step)  # stable: labels stay in order within a step


def _found(rdir: StorePath, key: str, wanted: set[int] | None, ctx: Ctx,
           label: str | None) -> list[Found]:
    snap = _segments._snapshot(rdir, ctx)  # the manifest and the rows, read together
    manifest = snap[0]
    parent = manifest.get("parent")
    out: list[Found] = []
    if parent is not None:
        pdir, pctx = _segments._parent_dir(rdir, parent, ctx, 0)
        out = [row for row in _found(pdir, key, wanted, pctx, label) if row.step <= parent["step"]]
    table = _segments.read_history(rdir, [key], snap=snap, inherit=False, **ctx)
    return out + [Found(step, value, label, rdir, ctx, manifest["sealed_through"])
                  for step, value in refs_column(table, key)
                  if (parent is None or step > parent["step"])  # (else the parent's, read above)
                  and (wanted is None or step in wanted)]


def load(rows: list[Found], *, pandas: bool = False) -> list[Logged]:
    """The items of ``rows`` (see find) decoded, a list of them for a list of media; from a
    remote, read together (see _prefetch)."""
    out = []
    read: set[int] = set()
    for i, row in enumerate(rows):
        if isinstance(row.rdir, RemotePath) and i not in read:  # the next items, read together
            read |= _prefetch(rows, i)
        items = [_decode(row.rdir, ref, row.ctx, pandas) for ref in _blobs.refs(row.value)]
        out.append(Logged(row.step, items if type(row.value) is list else items[0], row.label))
    return out


def _prefetch(rows: list[Found], first: int) -> set[int]:
    """Read the items of row ``first`` and of the rows after it in the same folder (their masks
    too) from a remote together, up to _PREFETCH bytes of them; the indexes of the rows read."""
    rdir = rows[first].rdir
    assert isinstance(rdir, RemotePath)
    refs: list[dict[str, Any]] = []
    size = 0
    read = set()
    for i in range(first, len(rows)):
        if size >= _PREFETCH:
            break
        if rows[i].rdir != rdir:
            continue
        row = []
        for ref in _blobs.refs(rows[i].value):
            row.append(ref)
            if type(ref.get("masks")) is str:
                with contextlib.suppress(ValueError):
                    row += _blobs._table_refs(loads(ref["masks"]))
        refs += row
        size += sum(r["len"] for r in row if type(r.get("len")) is int)
        read.add(i)
    _remoteblobs.prefetch(rdir, refs, rows[first].sealed)
    return read


def _bytes(rdir: StorePath, ref: dict[str, Any], ctx: Ctx) -> bytes:
    seq = ref.get("log")
    path: StorePath | None = None
    try:
        if type(seq) is not int or seq < 0:
            raise FileNotFoundError(f"no blob file for log {seq!r}")
        if isinstance(rdir, Path):
            path = _blobs.locate(rdir, seq)
            if path is None:
                raise FileNotFoundError(f"no blob file for log {seq!r}")
            if path.is_dir():  # a store synced to a directory: a live blob is a folder of chunks
                return _blobs.check(read_range(path, *_blobs.span(ref), rdir, **ctx), ref, path)
            return _blobs.read(path, ref)
        return _remote_item(rdir, seq, ref)
    except (OSError, ValueError) as exc:
        raise CorruptRunError(f"A stored {ref.get('type')} of {run_label(ctx)} cannot be read ({exc}). "
                              "If the run crashed, resuming it (or `localtrack doctor --fix`) "
                              "cuts the rows whose media were lost; else restore the run from a "
                              "backup.", path=str(path or rdir), **ctx) from exc


def _remote_item(rdir: RemotePath, seq: int, ref: dict[str, Any]) -> bytes:
    """An item from a synced copy: the live blob is a folder of chunks (sync uploads it
    before the rows that refer to it), the sealed one a plain object; looked up in the order
    sync moves it (wal/, then segments/ once the manifest covers the log, then wal/ again).
    Only the item's range is read (a ranged GET on S3), not the whole blob."""
    off, length = _blobs.span(ref)
    data = _remoteblobs.cached(rdir, ref)
    if data is not None:  # read with its neighbours (see _prefetch), checked
        return data
    name = _blobs.name(seq)
    for path in (rdir / "wal" / name, rdir / "segments" / name, rdir / "wal" / name):
        for _ in range(_REREADS):
            try:
                return _blobs.check(_read_range(path, off, length), ref, path)
            except _ChunkGone:
                continue  # merged into a bigger chunk since it was listed: list again
            except FileNotFoundError:
                break
    raise FileNotFoundError(f"no blob file for log {seq} in {rdir}")


class _ChunkGone(Exception):
    pass


def _read_range(path: RemotePath, off: int, length: int) -> bytes:
    """Bytes ``off`` to ``off + length`` of a remote log, plain or a folder of chunks (see
    _remotes._chunks: overlapping chunks hold the same bytes there). Short at a gap or the
    end, for check() to report; FileNotFoundError when the log is not there."""
    entries = path.entries()
    if not entries:  # a plain object, or nothing
        with path.open_input() as fh:
            fh.seek(off)
            return bytes(fh.read(length))
    chunks = sorted((o, e.size, n) for n, e in entries.items() if (o := chunk_offset(n)) is not None)
    try:
        return _remoteblobs.read_chunk_range(path, chunks, off, length)
    except FileNotFoundError:
        raise _ChunkGone from None


def _decode(rdir: StorePath, ref: dict[str, Any], ctx: Ctx, pandas: bool) -> Any:
    """A stored item as Python values: see ApiRun.media."""
    ref = {k: v for k, v in ref.items() if v is not None}  # a column's struct has every field
    data = _bytes(rdir, ref, ctx)
    kind = ref.get("type")
    try:
        if kind == "image":
            image = decode_image(ref, data)
            image.boxes, image.masks = overlays(ref)  # W&B's arguments, as logged
            for spec in image.masks.values():
                mask = next(_blobs.refs(spec.pop("mask")), None)
                if mask is None:
                    raise ValueError("a mask without a media reference")
                spec["mask_data"] = decode_mask(mask, _bytes(rdir, mask, ctx))
            fill_default_labels(image.boxes, image.masks)  # runs written with {} for them
            return image
        if kind == "audio":
            return decode_audio(ref, data)
        if kind == "html":
            return data.decode()
        if kind == "video":
            return data
        if kind == "table":
            stored = loads(data)
            if isinstance(rdir, RemotePath):  # its images, read together
                _remoteblobs.prefetch(rdir, list(_blobs._table_refs(stored["data"])))
            table = Table(columns=stored["columns"])
            table.data = [[_cell(rdir, v, ctx) for v in row] for row in stored["data"]]
            if "chart" in stored:  # a chart: its spec beside the table (see _plots)
                return _plots.read_chart(table, stored["chart"], pandas)
            return table.get_dataframe() if pandas else table
    except (ValueError, KeyError, TypeError, OSError, EOFError, wave.Error) as exc:
        raise CorruptRunError(f"A stored {kind} of {run_label(ctx)} cannot be decoded ({exc}).",
                              path=str(rdir), **ctx) from exc
    raise CorruptRunError(f"{run_label(ctx)} holds a media reference of unknown type {kind!r}; "
                          "it was written by a newer localtrack.", path=str(rdir), **ctx)


def _cell(rdir: StorePath, value: Any, ctx: Ctx) -> Any:
    ref = next(_blobs.refs(value), None) if type(value) is dict else None
    return _decode(rdir, ref, ctx, False) if ref is not None else decode_tree(value)
