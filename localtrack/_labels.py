"""A shared run's writers (``init(mode="shared")``, format 6), read side: their labels, the
run's state from all of them, their events side by side, and their histories merged by step
with a ``_label`` column.

Each writer (label) keeps its history in ``labels/<label>/``, laid out as a run's history
(manifest, wal/, segments/), and its lifecycle events there (the primary's are the run's own
``events.jsonl``); so one label reads with the single-writer code (``_segments``) and the run
is the labels side by side. See docs/format.md, "Shared runs".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _blobs, _layout, _locks, _naming, _segments, _store
from ._codec import loads
from ._naming import Ctx, ProjectName, RunId, run_label
from ._remotes import _chunks
from .errors import InvalidNameError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa
    from typing_extensions import Unpack

LABEL = "_label"
# How the labels' end states make the run's (the first that any label has wins): a failed
# writer fails the job; a preempted one means the job was preempted (ranks SIGKILLed after
# the grace time are part of that); a writer killed without a word is a crash; only when
# every writer finished cleanly is the run finished.
_PRECEDENCE = ("failed", "preempted", "crashed", "finished")


class Logged(tuple[int, Any]):
    """``(step, value)`` of ApiRun.media and ApiRun.histograms, and ``label``: the shared-run
    writer that logged it (None for a run of one writer). A pair, so ``for step, item in
    run.media(key)`` unpacks it."""

    label: str | None

    def __new__(cls, step: int, value: Any, label: str | None) -> Logged:
        pair = super().__new__(cls, (step, value))
        pair.label = label
        return pair

    def __getnewargs__(self) -> tuple[int, Any, str | None]:  # (pickle, copy)
        return self[0], self[1], self.label


def writers(table: pa.Table) -> list[str | None]:
    """The writer of each row of a history table: a shared run's ``_label``, else None."""
    if LABEL in table.column_names:
        return table[LABEL].to_pylist()  # type: ignore[no-any-return]
    return [None] * table.num_rows


def is_shared(meta: dict[str, Any]) -> bool:
    """Whether run.json says the run has several writers (its history is per label)."""
    return isinstance(meta.get("shared"), dict)


def primary(meta: dict[str, Any]) -> str | None:
    shared = meta.get("shared")
    value = shared.get("primary") if isinstance(shared, dict) else None
    return value if isinstance(value, str) else None


def labels(rdir: _store.StorePath) -> list[str]:
    """The labels of a shared run, sorted (a name that is not a label is not one: a .tmp- folder)."""
    folder = rdir / "labels"
    try:
        names = [p.name for p in folder.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n for n in names if _is_label(n))


def _is_label(name: str) -> bool:
    try:
        _naming.run_id(name)
    except InvalidNameError:
        return False
    return True


def label_rdir(rdir: _store.StorePath, label: str) -> _store.StorePath:
    return rdir / "labels" / label


def check_label(rdir: _store.StorePath, label: str, **ctx: Unpack[Ctx]) -> str:
    """``label`` if the shared run has it, else a UsageError naming those it has."""
    known = labels(rdir)
    if label not in known:
        raise UsageError(f"{run_label(ctx)} has no writer labelled {label!r}; its labels are "
                         f"{', '.join(known) or 'none yet'}.", **ctx)
    return label


def is_live(root: _store.StorePath, project: ProjectName, rid: RunId, meta: dict[str, Any]) -> bool:
    """Whether any writer of the run lives: its run lock or, for a shared run, a label's."""
    if _store.is_live(root, project, rid):
        return True
    if not is_shared(meta):
        return False
    if not isinstance(root, Path):  # a synced copy: sync copies each live writer's owner record
        rdir = _store.run_dir(root, project, rid)
        return any(_copied_holder(rdir / "locks" / f"{label}.lock") for label in labels(rdir))
    locks = _layout.run_dir(root, project, rid) / "locks"  # a writer locks before its folder exists
    try:
        names = [n for n in os.listdir(locks) if n.endswith(".lock")]
    except (FileNotFoundError, NotADirectoryError):
        return False
    return any(_locks.is_held(locks / name) for name in names)


def _copied_holder(path: _store.StorePath) -> bool:
    try:
        holder = loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return False
    return isinstance(holder, dict) and bool(holder.get("pid"))


# A synced copy's chunk that ends a label's log: the time of its last row, by (its path, its
# size), so that a dashboard polling the run reads a label again only when its log grew.
# (A value is a 1-tuple: None is a time too; get() is safe beside another thread's clear().)
_CHUNK_TIMES: dict[tuple[str, int], tuple[float | None]] = {}
_CHUNK_TIMES_MAX = 4096


def copy_times(rdir: _store.StorePath, **ctx: Unpack[Ctx]) -> list[float]:
    """In a synced copy, the time of each label's last row (the run's last write counts
    them, see _runindex.updated): one listing of ``labels/`` (every label's log chunks, no
    read), then of each label's newest log the end of the chunk that ends it. A label whose
    rows are all sealed is left out (its events, which the run's last write counts, are
    later)."""
    ends: dict[str, tuple[int, int, str, int]] = {}  # label -> (log seq, log end, chunk, size)
    for rel, entry in _chunks.walk(rdir / "labels").items():
        parts = rel.split("/")
        if len(parts) != 4 or parts[1] != "wal" or not _is_label(parts[0]):
            continue
        seq, offset = _naming.log_seq(parts[2]), _naming.chunk_offset(parts[3])
        if seq is None or offset is None:
            continue
        end = (seq, offset + entry.size, rel, entry.size)
        if end[:2] > ends.get(parts[0], (-1, -1))[:2]:
            ends[parts[0]] = end
    times = []
    for _, _, rel, size in ends.values():
        when = _chunk_time(rdir / "labels" / rel, size, ctx)
        if when is not None:
            times.append(when)
    return times


def _chunk_time(path: _store.StorePath, size: int, ctx: Ctx) -> float | None:
    """The _timestamp of the last framed row of a chunk (see _chunks.last_row); a plain row
    after it was logged in the same millisecond (see _frames)."""
    key = (str(path), size)
    known = _CHUNK_TIMES.get(key)
    if known is not None:
        return known[0]
    try:
        row = _chunks.last_row(path, size, **ctx)
    except FileNotFoundError:  # merged into a longer chunk since the listing: next time
        return None
    stamp = row.get("_timestamp") if row is not None else None
    when = float(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else None
    if len(_CHUNK_TIMES) >= _CHUNK_TIMES_MAX:
        _CHUNK_TIMES.clear()
    _CHUNK_TIMES[key] = (when,)
    return when


def label_states(rdir: _store.StorePath, meta: dict[str, Any], run_events: list[dict[str, Any]],
                 **ctx: Unpack[Ctx]) -> dict[str, str]:
    """Each label's end state (read once no writer lives): from its events; the primary's from
    the run's events."""
    first = primary(meta)
    out = {}
    for label in labels(rdir):
        evs = run_events if label == first else _store.events(label_rdir(rdir, label), **ctx)
        out[label] = _store.end_state(evs)
    return out


def events(rdir: _store.StorePath, meta: dict[str, Any], run_events: list[dict[str, Any]],
           **ctx: Unpack[Ctx]) -> list[dict[str, Any]]:
    """What readers see of the run's events: a shared run's are the run's own (the primary's)
    and every other writer's (its lifecycle, ``metric`` and ``alert`` events), each of those
    with its ``label``, in time order (at equal times the run's first, then by label); so
    define_metric() and alert() of any writer count. A run of one writer: ``run_events``."""
    if not is_shared(meta):
        return run_events
    first = primary(meta)
    merged = list(run_events)
    for label in labels(rdir):
        if label != first:
            merged += [{**e, "label": label} for e in _store.events(label_rdir(rdir, label), **ctx)]
    return sorted(merged, key=_time_of)  # stable: the run's, then the labels' in label order


def _time_of(event: dict[str, Any]) -> float:
    when = event.get("time")
    return float(when) if isinstance(when, (int, float)) and not isinstance(when, bool) else 0.0


def state(root: _store.StorePath, project: ProjectName, rid: RunId, meta: dict[str, Any],
          live: bool, run_events: list[dict[str, Any]]) -> str:
    """The run's state: ``running`` while any writer lives (``live``, from is_live asked before
    the events were read), else the first of failed, preempted, crashed, finished that a label
    has (a run without labels: from its events, as a single writer's)."""
    if live:
        return "running"
    if not is_shared(meta):
        return _store.end_state(run_events)
    ctx: Ctx = {"project": project, "run_id": rid}
    ends = set(label_states(_store.run_dir(root, project, rid), meta, run_events, **ctx).values())
    ends.add(_store.end_state(run_events))
    return next(s for s in _PRECEDENCE if s in ends)


def history_tables(rdir: _store.StorePath, wanted: list[str] | None, label: str | None = None,
                   *, steps: _segments.Steps = _segments.ALL_STEPS,
                   **ctx: Unpack[Ctx]) -> Iterator[tuple[str, pa.Table]]:
    """Each label's history tables (see _segments.history_tables), label after label, each
    with the label that wrote it (the caller merges by step)."""
    for name in [label] if label is not None else labels(rdir):
        for table in _segments.history_tables(label_rdir(rdir, name), wanted, steps=steps, **ctx):
            yield name, table


def read_history(rdir: _store.StorePath, keys: list[str] | None = None, label: str | None = None,
                 **ctx: Unpack[Ctx]) -> pa.Table:
    """Every label's history (or one label's) as one table, sorted by step then label."""
    import pyarrow as pa

    wanted = None if keys is None else ["_step", "_timestamp", *keys]
    parts = list(history_tables(rdir, wanted, label, **ctx))
    table = _segments._concat([t for _, t in parts], wanted)
    # The writers' column goes on after the tables are joined: when a key's kind differs
    # between them, the join turns the logged keys into JSON text, never this one.
    writers = pa.array([name for name, t in parts for _ in range(t.num_rows)], pa.string())
    table = table.append_column(LABEL, writers)
    return table.sort_by([("_step", "ascending"), (LABEL, "ascending")])


def columns(rdir: _store.StorePath, keys: list[str], ctx: Ctx) -> dict[str, list[Any]]:
    """Every label's values of ``keys`` (those the history has), as lists (step order)."""
    table = read_history(rdir, keys, **ctx)
    return {k: table.column(k).to_pylist() for k in keys if k in table.column_names}


def last_and_step(rdir: _store.StorePath, first: str | None,
                  **ctx: Unpack[Ctx]) -> tuple[dict[str, Any], int]:
    """The last logged value of each key over the labels, and the run's last step: the
    greatest of the labels'. A key's value is that of the label furthest ahead (the greatest
    last step) of those that logged it; at equal last steps the primary's (``first``), else
    the later label's. By label, not by the step a key was last logged at: a label's sealed
    rows keep no such step (the manifest's ``last`` holds values), and a rule by label
    gives the same value before and after a label's logs are sealed. A media value (a
    reference into its label's blobs, see _mediaread) gets its ``label`` in its references:
    references of two labels may be equal and name different bytes."""
    ranked = []
    for label in labels(rdir):
        values, at = _segments.last_and_step(label_rdir(rdir, label), **ctx)
        ranked.append((at, label == first, label, values))
    last: dict[str, Any] = {}
    step = -1
    for at, _, label, values in sorted(ranked, key=lambda r: r[:3]):  # the winner last
        last.update((key, _labelled(value, label)) for key, value in values.items())
        step = max(step, at)
    return last, step


def _labelled(value: Any, label: str) -> Any:
    """A stored value with ``label`` added to each media reference it holds (a list of
    media: to each); any other value as it is."""
    if type(value) is dict and type(value.get(_blobs.TAG)) is dict:
        return {**value, _blobs.TAG: {**value[_blobs.TAG], "label": label}}
    if type(value) is list and next(_blobs.refs(value), None) is not None:
        return [_labelled(item, label) for item in value]
    return value
