"""The read side: Api, runs as stored, history as W&B's sampled rows or as pyarrow tables.

Readers never take the writer lock and never repair anything, so reading a
live run is safe; a torn tail is ignored (the writer may be mid-append).
A store may be local or remote (``Api(dir="s3://bucket/team")``): a remote
store, written by sync, has the same layout with logs as folders of chunks;
it is read through localtrack._remotes, and a directory remote as a path.
Listing is _store's (one rule for what a run is); a folder that is not a
readable run is left out with a warning, so one damaged run never hides the
others. Reading one run raises LocaltrackErrors only (CorruptRunError,
StorageError), naming the file.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import (
    _durable,
    _exitgate,
    _files,
    _filters,
    _fsutil,
    _labels,
    _layout,
    _metrics,
    _naming,
    _remotes,
    _runindex,
    _segments,
    _settings,
    _store,
    _wal,
)
from ._naming import Ctx
from ._remotes import _chunks
from ._remotes._base import RemotePath
from ._remotes._dir import open_file
from .errors import CorruptRunError, InvalidValueError, RunNotFoundError, StorageError, UsageError

if TYPE_CHECKING:
    import pandas
    import pyarrow as pa

    from . import _mediaread
    from ._artifacts import Artifact
    from ._sweeps._view import Sweep

log = logging.getLogger("localtrack")

StorePath = _store.StorePath
FILES = "files"  # a run's saved files (run.save()), under its folder
CODE = "code"  # its saved code (save_code), listed by files() as "code/<name>"
UI_ADDRESS = "http://127.0.0.1:8080/"  # where `localtrack ui` serves by default


def run_url(project: str, rid: str) -> str:
    """A run's page in the dashboard at its default address (the dashboard's own route)."""
    return f"{UI_ADDRESS}#/p/{project}/r/{rid}"


class Summary(dict[str, Any]):
    """A run's summary: a dict nested on '/', in which W&B's flat keys find values too
    (``summary["val/acc"]``, ``"val/acc" in summary``, ``summary.get("val/acc")``)."""

    def __missing__(self, key: str) -> Any:
        node: Any = self
        for part in key.split("/") if isinstance(key, str) and "/" in key else ():
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            if node is not self:
                return node
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True


@dataclass(frozen=True)
class RunFile:
    """A file saved with a run (W&B's File): its name under the run's ``files/``, size in
    bytes, path (local, or on the remote), ``url`` and ``download()``."""

    name: str
    size: int
    path: str
    _source: StorePath = field(compare=False, repr=False)
    _files: StorePath = field(compare=False, repr=False)  # the run's files/: no link below it
    _ctx: Ctx = field(compare=False, repr=False)

    @property
    def url(self) -> str:
        """Where the file is: a ``file://`` URL, or the remote's (``s3://...``)."""
        src = self._source
        return src.absolute().as_uri() if isinstance(src, Path) else str(src)

    def download(self, root: str | os.PathLike[str] = ".", replace: bool = False,
                 exist_ok: bool = False) -> IO[str]:
        """Copy the file to ``root/<name>`` and open it, as W&B's ``File.download``: a file
        already there is an InvalidValueError (a ValueError, as W&B's) unless ``replace``
        (copy over it) or ``exist_ok`` (open it as it is)."""
        rel = _files.saved_name(self.name, f"download() of {self.name!r}")
        if not isinstance(root, (str, os.PathLike)):
            raise UsageError(f"download(root={root!r}): give a folder path.")
        dst = Path(os.fspath(root)) / rel
        if os.path.lexists(dst) and not replace:
            if not exist_ok:
                raise InvalidValueError(
                    f"download(): {str(dst)!r} exists (the file {self.name!r} of run "
                    f"{self._ctx.get('project')}/{self._ctx.get('run_id')}); pass replace=True "
                    "to overwrite it or exist_ok=True to open it as it is.")
        else:
            src, under = self._source, self._files
            opener = (src.open_input if isinstance(src, RemotePath) else
                      lambda: open_file(src, under, **self._ctx))  # type: ignore[arg-type]
            with _store.reading(src, **self._ctx):
                try:
                    _files.fetch(opener, dst)
                except FileNotFoundError:
                    raise UsageError(f"download(): the saved file {self.name!r} is gone from "
                                     f"{src}; list the run's files() again.") from None
        with _fsutil.storage_errors("open", dst, **self._ctx):
            return open(dst, encoding="utf-8")  # noqa: SIM115 - the caller owns the file


def _saved_files(folder: StorePath, prefix: str, top: StorePath, ctx: Ctx) -> Iterator[RunFile]:
    """The plain files under ``folder`` (links, other kinds and temp files left out)."""
    if isinstance(folder, RemotePath):
        for name, entry in folder.entries().items():
            if entry.is_dir:
                yield from _saved_files(folder / name, f"{prefix}{name}/", top, ctx)
            elif not name.startswith(_fsutil.TMP_PREFIX):
                yield RunFile(f"{prefix}{name}", entry.size, str(folder / name), folder / name,
                              top, ctx)
        return
    try:
        children = sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return
    for child in children:
        if child.is_symlink() or child.name.startswith(_fsutil.TMP_PREFIX):
            continue
        if child.is_dir():
            yield from _saved_files(child, f"{prefix}{child.name}/", top, ctx)
        elif child.is_file():
            yield RunFile(f"{prefix}{child.name}", child.stat().st_size, str(child), child, top,
                          ctx)


def _check_int(name: str, value: Any, least: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or (least is not None and value < least):
        floor = "" if least is None else f" of at least {least}"
        raise UsageError(f"{name} must be an integer{floor}, not {value!r}.")


def _check_keys(keys: Any) -> list[str] | None:
    """W&B's keys argument: None, or a list of key names."""
    if keys is None:
        return None
    if not isinstance(keys, list | tuple) or not all(isinstance(k, str) for k in keys):
        raise UsageError(f"keys must be a list of key names, not {keys!r}.")
    return list(keys)


def _need_pandas(what: str, instead: str) -> None:
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise UsageError(f"{what} returns a pandas DataFrame and pandas is not installed: "
                         f"pip install pandas, {instead}.") from None


def _pandas() -> Any:
    import pandas

    return pandas


_INT64 = (-(2**63), 2**63 - 1)  # the range of a step (an int64 column)


def _logged_all(table: pa.Table, columns: list[str]) -> pa.Table:
    """The rows of ``table`` that logged every one of ``columns``."""
    import pyarrow.compute as pc

    mask = None
    for name in columns:
        valid = pc.is_valid(table[name])
        mask = valid if mask is None else pc.and_(mask, valid)
    return table if mask is None else table.filter(mask)


def _spread(count: int, samples: int) -> list[int]:
    """``samples`` row numbers spread evenly over ``count`` rows, the first and last included."""
    if samples == 1:
        return [0]
    return sorted({round(i * (count - 1) / (samples - 1)) for i in range(samples)})


def _logged(row: dict[str, Any]) -> dict[str, Any]:
    """A row as W&B gives it: only the keys logged at that step."""
    return {k: v for k, v in row.items() if v is not None}


class ApiRun:
    """A stored run, read from disk (a snapshot: call ``Api.run`` again to refresh).

    A run from a listing comes with its record (see _runindex): its config, summary, last
    step and last write are then the listing's, read once.
    """

    def __init__(self, root: StorePath, project: _naming.ProjectName, rid: _naming.RunId,
                 record: _runindex.Record | None = None) -> None:
        self._root = root
        self._names = (project, rid)
        self._ctx: Ctx = {"project": project, "run_id": rid}
        self.project: str = project
        self.id: str = rid
        self._record = record if record is not None and _runindex.complete(record) else None
        meta = record["meta"] if record is not None else _store.read_meta(self._rdir, **self._ctx)
        self.meta = meta
        self.name: str = meta.get("name") or rid
        self.entity: str | None = meta.get("entity")
        self.tags: list[str] = meta.get("tags") or []
        self.group: str | None = meta.get("group")
        self.job_type: str | None = meta.get("job_type")
        self.notes: str | None = meta.get("notes")
        self.created: float = meta.get("created", 0.0)
        if record is not None:
            self.events: list[dict[str, Any]] = record["events"]
            self.state: str = record["state"]
            return
        with _store.reading(self._rdir, **self._ctx):
            live = _labels.is_live(root, project, rid, meta)  # first: see _store.is_live
        run_events = _store.events(self._rdir, **self._ctx)
        self.state = _labels.state(root, project, rid, meta, live, run_events)
        self.events = _labels.events(self._rdir, meta, run_events, **self._ctx)  # every writer's

    @property
    def labels(self) -> list[str]:
        """The writers of a shared run (``init(mode="shared")``), by label; [] for others."""
        if not _labels.is_shared(self.meta):
            return []
        with _store.reading(self._rdir, **self._ctx):
            return _labels.labels(self._rdir)

    @functools.cached_property
    def _rdir(self) -> StorePath:
        """Made on first use: a listing of 10,000 runs reads most of them from the index only."""
        return _store.run_dir(self._root, *self._names)

    @functools.cached_property
    def _where(self) -> str:
        """``str(self._rdir)``, without making the path: a listing's runs name their folder
        in messages and ``dir`` (10,000 Paths cost a tenth of a warm listing)."""
        root = self._root
        if isinstance(root, Path) and root.is_absolute():
            return _layout.run_dir_text(str(root), *self._names)
        return str(self._rdir)

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    @property
    def created_at(self) -> str:
        """When the run was created, as W&B gives it: ISO 8601 in UTC, to the second."""
        return _filters.iso_time(self.created)

    @property
    def url(self) -> str:
        """The run's page in the dashboard that ``localtrack ui`` serves at its default address."""
        return run_url(self.project, self.id)

    @property
    def lastHistoryStep(self) -> int:  # noqa: N802 - W&B's name
        """W&B's name for ``last_step``."""
        return self.last_step

    def files(self) -> list[RunFile]:
        """The files saved with the run (``files/`` in its folder) and its saved code
        (``code/``, from ``save_code``, named ``code/<name>`` as W&B names them), by name;
        [] when none. A saved file of the same name as a code file hides it.

        A link or anything but a plain file is left out: a store may come from elsewhere.
        """
        with _store.reading(self._rdir, **self._ctx):
            found = {f.name: f for f in _saved_files(self._rdir / CODE, f"{CODE}/",
                                                      self._rdir / CODE, self._ctx)}
            found.update((f.name, f) for f in _saved_files(self._rdir / FILES, "",
                                                           self._rdir / FILES, self._ctx))
        return sorted(found.values(), key=lambda f: f.name)

    def file(self, name: str) -> RunFile:
        """The saved file ``name`` (as ``files()`` names it: ``code/train.py`` for the saved
        code), W&B's ``run.file(name)``."""
        rel = _files.saved_name(name, f"file() of run {self.path}")
        key = rel.replace(os.sep, "/")
        for f in self.files():
            if f.name == key:
                return f
        raise UsageError(f"Run {self.path} has no saved file {key!r} in {self._rdir / FILES} "
                         f"(its files: {[f.name for f in self.files()][:10]}); save it with "
                         "run.save().", **self._ctx)

    def _filter_record(self, fields: set[str] | None = None) -> _filters.Record:
        """The run as filters see it (see _filters): only ``fields`` when given, so a filter
        on ``state`` reads no config or summary."""
        want = set(_filters.FIELDS) if fields is None else fields
        record: _filters.Record = {
            "id": self.id, "name": self.id, "display_name": self.name, "state": self.state,
            "tags": self.tags, "group": self.group, "job_type": self.job_type,
            "notes": self.notes, "entity": self.entity, "project": self.project,
            "created_at": _filters.iso_time(self.created, exact=True),
            "sweep": self.meta.get("sweep")}
        if "config" in want:
            record["config"] = self.config
        if "summary_metrics" in want:
            record["summary_metrics"] = self.summary
        return record

    @property
    def dir(self) -> str:
        return self._where

    @property
    def config(self) -> dict[str, Any]:
        if self._record is not None:
            return _store.tree_of(self._record["config"], f"{self._where}/{_store.CONFIG_JSON}",
                                  "config", **self._ctx)
        return _store.read_tree(self._rdir / _store.CONFIG_JSON, "config", **self._ctx)

    @property
    def summary(self) -> Summary:
        """Last logged value of each key (or define_metric's aggregates), overridden by
        run.summary values; nested on '/' (``summary["val"]["acc"]``), where W&B's flat
        ``summary["val/acc"]`` finds it too.

        A shared run: each key's value is that of the writer furthest ahead of those that
        logged it (at equal last steps the primary's), a media value's references naming
        that writer's ``label`` (docs/format.md, "Shared runs")."""
        metrics = _metrics.fold(self.events)
        if _labels.is_shared(self.meta):  # the last values and aggregates are the labels'
            rdir, ctx = self._rdir, self._ctx
            with _store.reading(rdir, **ctx):
                if self._record is not None:
                    last, explicit = self._record["last"], self._record["summary"]
                else:
                    last = _labels.last_and_step(rdir, _labels.primary(self.meta), **ctx)[0]
                    explicit = _store.read_json(rdir / _store.SUMMARY_JSON, "summary", **ctx)
            return Summary(_store.summary_of(last, explicit, self._where, metrics,
                                             lambda keys: _labels.columns(rdir, keys, ctx), **ctx))
        if self._record is not None:
            return Summary(_store.summary_of(
                self._record["last"], self._record["summary"], self._where, metrics,
                lambda keys: _store.columns(self._rdir, keys, self._ctx), **self._ctx))
        return Summary(_store.summary(self._rdir, metrics, **self._ctx))

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """The run's define_metric() definitions by name (or glob), in the order first defined:
        ``{"val/*": {"step_metric": "epoch", "step_sync": True, "summary": ["min"], ...}}``."""
        return _metrics.fold(self.events)

    @property
    def last_step(self) -> int:
        """The last step on disk (-1 when nothing was logged), from the log's tail only."""
        if self._record is not None:
            return int(self._record["last_step"])
        with _store.reading(self._rdir, **self._ctx):
            if _labels.is_shared(self.meta):
                return _labels.last_and_step(self._rdir, None, **self._ctx)[1]
            return self._last_step()

    def _last_step(self) -> int:
        listed = _segments.wal_seqs(self._rdir)  # before the manifest: see _segments._snapshot
        manifest = _segments.load_manifest(self._rdir, **self._ctx)
        for seq in reversed(listed):
            if seq <= manifest["sealed_through"]:
                break
            path = _segments.wal_log(self._rdir, seq)
            try:
                record = self._last_record(path)
            except FileNotFoundError:  # sealed under our feet: the manifest below has it
                manifest = _segments.load_manifest(self._rdir, **self._ctx)
                return _segments.at_least_rewound(manifest, int(manifest["last_step"]))
            if record is not None:
                return _segments.last_step_at(manifest, seq,
                                              _wal.step_of(record, str(path), **self._ctx))
        return _segments.at_least_rewound(manifest, int(manifest["last_step"]))

    def _last_record(self, path: StorePath) -> dict[str, Any] | None:
        if isinstance(path, Path) and isinstance(self._rdir, Path):
            try:
                # Reads only the tail; a power cut's damage past the watermark is a torn tail.
                durable = _durable.durable_offset(_durable.read(self._rdir), _layout.seq_of(path) or 0)
                return _wal.last_record(path, durable=durable, **self._ctx).record
            except IsADirectoryError:
                pass
        records = _chunks.read_records(path, **self._ctx)
        return records[-1] if records else None

    @property
    def updated(self) -> float:
        """When anything of the run last changed on disk (seconds since the epoch)."""
        if self._record is not None:
            return float(self._record["updated"])
        with _store.reading(self._rdir, **self._ctx):
            return _runindex.updated(self._rdir, self.created, self.events,
                                     _labels.is_shared(self.meta))

    @_exitgate.gated
    def history(self, samples: int = 500, keys: list[str] | None = None, x_axis: str = "_step",
                pandas: bool = True, stream: str = "default") -> pandas.DataFrame | list[dict[str, Any]]:
        """W&B's sampled history: at most ``samples`` rows, evenly spaced over the run (the first
        and last kept), as a pandas DataFrame, or with ``pandas=False`` a list of dicts holding
        the keys each row logged.

        With ``keys``: only rows that logged every one of them (and ``x_axis``), with only
        those columns and ``_step``. ``stream="system"``: localtrack records no system metrics,
        so no rows. For every row, fast, as pyarrow: ``history_table()``.
        """
        _check_int("samples", samples, 1)
        keys = _check_keys(keys)
        if not isinstance(x_axis, str) or stream not in ("default", "system") \
                or not isinstance(pandas, bool):
            raise UsageError(f"history() takes x_axis as a key, stream 'default' or 'system' "
                             f"and pandas as a bool, not x_axis={x_axis!r}, stream={stream!r}, "
                             f"pandas={pandas!r}.", **self._ctx)
        if pandas:
            _need_pandas("history()", "or pass pandas=False for a list of dicts")
        if stream == "system":  # W&B's machine metrics: localtrack records none
            return _pandas().DataFrame() if pandas else []
        columns = None if keys is None else list(dict.fromkeys(["_step", x_axis, *keys]))
        table = self.history_table(None if columns is None else
                                   [c for c in columns if c not in ("_step", "_timestamp")])
        if columns is not None and _labels.LABEL in table.column_names:  # a shared run's
            columns.append(_labels.LABEL)
        if columns is not None:
            table = _logged_all(table.select(columns), columns)
        if table.num_rows > samples:
            table = table.take(_spread(table.num_rows, samples))
        if pandas:
            return table.to_pandas()
        return [_logged(row) for row in table.to_pylist()]

    def scan_history(self, keys: list[str] | None = None, page_size: int = 1000,
                     min_step: int | None = None, max_step: int | None = None
                     ) -> Iterator[dict[str, Any]]:
        """Every row from ``min_step`` up to (not including) ``max_step``, as dicts of the keys
        each row logged, as W&B's scan_history: read one segment at a time and turned into
        dicts ``page_size`` rows at a time, so a long run is never in memory whole. With
        ``keys``: only rows that logged every one of them, with those keys and ``_step``.

        The run is read as of the first row asked for (steps logged after that are not seen).
        """
        keys = _check_keys(keys)
        _check_int("page_size", page_size, 1)
        for name, value in (("min_step", min_step), ("max_step", max_step)):
            if value is not None:
                _check_int(name, value, None)
        low = -math.inf if min_step is None else min_step
        high = math.inf if max_step is None else max_step - 1
        columns = None if keys is None else list(dict.fromkeys(["_step", *keys]))
        return self._scan(columns, (low, high), page_size)

    def _scan(self, columns: list[str] | None, steps: _segments.Steps,
              page_size: int) -> Iterator[dict[str, Any]]:
        import pyarrow.compute as pc

        wanted = None if columns is None else ["_step", "_timestamp", *columns[1:]]
        shared = _labels.is_shared(self.meta)
        if shared and columns is not None:
            columns = [*columns, _labels.LABEL]
        with _store.reading(self._rdir, **self._ctx):
            # A shared run's labels are merged by step: read whole (not one segment at a time).
            tables = ([_labels.read_history(self._rdir, wanted and wanted[2:], **self._ctx)]
                      if shared else
                      _segments.history_tables(self._rdir, wanted, steps=steps, **self._ctx))
            for table in tables:
                if steps != _segments.ALL_STEPS:
                    low, high = (max(steps[0], _INT64[0]), min(steps[1], _INT64[1]))
                    table = table.filter(pc.and_(pc.greater_equal(table["_step"], int(low)),
                                                 pc.less_equal(table["_step"], int(high))))
                if columns is not None:
                    if not set(columns) <= set(table.column_names):
                        continue  # a key this segment never logged: none of its rows has all
                    table = _logged_all(table.select(columns), columns)
                for start in range(0, table.num_rows, page_size):
                    yield from map(_logged, table.slice(start, page_size).to_pylist())

    @_exitgate.gated
    def history_table(self, keys: list[str] | None = None, *,
                      include_rewound: bool = False, label: str | None = None) -> pa.Table:
        """Every step as a pyarrow Table: ``_step``, ``_timestamp`` and one column per key (a
        key never logged: a column of nulls). The fast read: no sampling, no pandas.

        ``include_rewound``: also the rows rewinds archived, in the order they were written,
        with a ``_rewound`` column (which rewind archived the row, 1 for the first; null for
        the history).

        A shared run (``init(mode="shared")``): every writer's rows, sorted by step then by
        the writer's label, in a ``_label`` column (a step logged by several writers is a row
        of each); ``label="rank3"``: that writer's rows only (see ``labels``).
        """
        if _labels.is_shared(self.meta):
            with _store.reading(self._rdir, **self._ctx):
                self._check_label("history_table", label)
                table = _labels.read_history(self._rdir, keys, label, **self._ctx)
            if include_rewound:  # (a shared run is never rewound)
                import pyarrow as pa

                table = table.append_column("_rewound", pa.nulls(len(table), pa.int64()))
            return table
        self._check_label("history_table", label)
        with _store.reading(self._rdir, **self._ctx):
            return _segments.read_history(self._rdir, keys, include_rewound=include_rewound,
                                          **self._ctx)

    @_exitgate.gated
    def histograms(self, key: str, *, label: str | None = None) -> list[_labels.Logged]:
        """``(step, Histogram)`` of every step that logged a histogram under ``key``, in order
        (other values under that key are left out).

        A shared run (``init(mode="shared")``): every writer's histograms, ordered by step then
        by the writer's label (a step logged by several writers once per writer), each pair's
        ``.label`` naming its writer (None for a run of one writer), as ``media()``: the
        writers' histograms of a step are separate series, never merged;
        ``label="rank3"``: that writer's only (see ``labels``).
        """
        table = self.history_table([key], label=label)
        try:
            writers = _labels.writers(table)
            return [_labels.Logged(step, hist, writers[row])
                    for row, step, hist in _segments.histogram_rows(table, key)]
        except ValueError as exc:  # counts or edges no writer stores (a damaged segment)
            raise CorruptRunError(f"The histograms under {key!r} of {_naming.run_label(self._ctx)} "
                                  f"in {self._rdir} cannot be read ({exc}); restore the run from "
                                  "a sync remote or a backup.", path=str(self._rdir),
                                  **self._ctx) from exc

    @_exitgate.gated
    def media(self, key: str, steps: Any = None, *, pandas: bool = False,
              label: str | None = None) -> list[tuple[int, Any]]:
        """``(step, item)`` of every step that logged media under ``key`` (a list of items for
        a list of media), in order; ``steps``: only those steps.

        An image is a PIL image, with ``.boxes`` and ``.masks`` (W&B's ``boxes=`` and
        ``masks=`` as logged, a mask's ``mask_data`` a numpy uint8 array; ``{}`` when none);
        audio is ``(float32 samples, sample_rate)`` (a file that was not WAV: ``(its bytes,
        None)``); HTML a str; a video its file's bytes; a table a ``localtrack.Table`` (images
        in it as PIL images), or with ``pandas=True`` a DataFrame; a chart
        (``localtrack.plot.*``) a ``localtrack.plot.CustomChart`` (``.table``, ``.spec``), or
        with ``pandas=True`` its table's DataFrame, the spec in ``.attrs["chart"]``.

        A shared run (``init(mode="shared")``): every writer's items, ordered by step then by
        the writer's label (a step logged by several writers once per writer), each pair's
        ``.label`` naming its writer (None for a run of one writer); ``label="rank3"``: that
        writer's only (see ``labels``).
        """
        return list(self._media_items(self._media_rows(key, steps, label), pandas=pandas))

    def _media_rows(self, key: str, steps: Any, label: str | None) -> list[_mediaread.Found]:
        """media()'s rows before their items are read (the dashboard looks at a row's
        references first: they are its item's ETag)."""
        from ._mediaread import find

        with _store.reading(self._rdir, **self._ctx):
            self._check_label("media", label)
            return find(self._rdir, self.meta, key, steps, self._ctx, label=label)

    def _media_items(self, rows: list[_mediaread.Found], *,
                     pandas: bool = False) -> list[_labels.Logged]:
        """The items of ``rows`` (see _media_rows), as media() gives them."""
        from ._mediaread import load

        with _store.reading(self._rdir, **self._ctx):
            return load(rows, pandas=pandas)

    def _check_label(self, call: str, label: str | None) -> None:
        """A ``label=`` given to ``call``: one of a shared run's writers (see history_table)."""
        if label is None:
            return
        if not _labels.is_shared(self.meta):
            raise UsageError(f"{call}(label={label!r}): {_naming.run_label(self._ctx)} "
                             "has one writer (labels are a shared run's); drop label=.",
                             **self._ctx)
        _labels.check_label(self._rdir, label, **self._ctx)

    @_exitgate.gated
    def history_df(self, keys: list[str] | None = None, *,
                   include_rewound: bool = False) -> pandas.DataFrame:
        """history_table() as a pandas DataFrame (needs pandas): every row, unlike history()."""
        _need_pandas("history_df()", "or use history_table() for a pyarrow Table")
        return self.history_table(keys, include_rewound=include_rewound).to_pandas()

    @property
    def rewinds(self) -> list[dict[str, Any]]:
        """The run's rewinds, oldest first: ``{"to": step, "from_step": last step before,
        "time": when, "seq": the log it continued in}``."""
        with _store.reading(self._rdir, **self._ctx):
            return [dict(r) for r in _segments.load_manifest(self._rdir, **self._ctx)["rewinds"]]

    def __repr__(self) -> str:
        return f"<localtrack.ApiRun {self.path} {self.state}>"


class Api:
    """Read runs from a store: ``Api(dir=None)`` uses the same default as init()."""

    def __init__(self, dir: str | os.PathLike[str] | None = None) -> None:
        raw = _settings.store_location(dir)
        self.root: StorePath
        if raw is not None and _remotes.is_uri(raw):
            self.root = _remotes.open_store(raw)
        else:
            self.root = _settings.root_dir(dir)
        self._warned: set[_store.Skipped] = set()
        self._warned_lock = threading.Lock()

    def _warn(self, skipped: list[_store.Skipped]) -> None:
        """Warn once per damaged folder and problem (the dashboard lists runs again and again)."""
        for item in skipped:
            with self._warned_lock:
                new = item not in self._warned
                self._warned.add(item)
            if new:
                log.warning("skipped %s", item)

    def projects(self) -> list[str]:
        """Project names, sorted; a folder that cannot be a project is left out with a warning."""
        names, skipped = _store.list_projects(self.root)
        self._warn(skipped)
        return list(names)

    def runs(self, path: str | None = None, filters: dict[str, Any] | None = None,
             order: str | None = None, per_page: int = 50,
             include_sweeps: bool = True) -> list[ApiRun]:
        """Runs of one project (``"project"`` or W&B's ``"entity/project"``), or of every
        project, oldest first; W&B's ``filters`` (MongoDB-style, see _filters) and ``order``
        (``"+created_at"``, ``"-summary_metrics.val/acc"``) narrow and sort them. A list:
        ``per_page`` (W&B's page size) and ``include_sweeps`` change nothing here.

        A folder that is not a readable run (a stray copy, a bad name, a damaged or unreadable
        run.json) is left out with a warning on the "localtrack" logger that names it and why;
        `localtrack doctor` says more. So is a run whose config or summary a filter or an
        order needs and cannot be read.
        """
        fields = set() if filters is None else _filters.check(filters)
        field, descending = ("", False) if order is None else _filters.parse_order(order)
        if field:
            fields.add(_filters.root_of(field))
        _check_int("per_page", per_page, 1)
        if path is not None and not isinstance(path, str):
            raise UsageError(f"runs() takes a path 'project' or 'entity/project', not {path!r}.")
        project = path
        if project and project.count("/") == 1:
            project = project.split("/")[1]  # W&B's "entity/project"
        runs, skipped = list_runs(self.root, project)
        if fields:
            kept = []
            for run in runs:
                try:
                    kept.append((run._filter_record(fields), run))
                except (CorruptRunError, StorageError) as exc:
                    skipped.append(_store.Skipped(run.path, exc.path or run.dir, str(exc)))
            if filters:
                kept = [(rec, run) for rec, run in kept if _filters.matches(filters, rec)]
            runs = _filters.ordered(kept, field, descending) if field else [r for _, r in kept]
        self._warn(skipped)
        return runs

    def run(self, path: str) -> ApiRun:
        """One run by ``"project/id"``, or W&B's ``"entity/project/id"``."""
        project, rid = _naming.parse_path(_without_entity(path))
        if not _store.run_exists(self.root, project, rid):
            raise RunNotFoundError(f"No run {rid!r} in project {project!r} under {str(self.root)!r}.",
                                   project=project, run_id=rid)
        return ApiRun(self.root, project, rid)

    @_exitgate.gated
    def query(self, sql: str, project: str | None = None) -> pa.Table:
        """Run a DuckDB ``sql`` query over the views ``runs``, ``history`` and ``events`` of
        this store (of one ``project``, or all), unsealed rows included; needs
        ``pip install 'localtrack[sql]'``. Columns: see "SQL" in docs/format.md."""
        from . import _sql  # a layer above, and DuckDB: imported when asked

        return _sql.query(self.root, sql, project)

    def artifact(self, name: str) -> Artifact:
        """One artifact version by ``"project/name:alias"`` (or ``:v3``, or W&B's
        ``"entity/project/name:alias"``), from a local store or a synced copy (``s3://``...)."""
        from . import _artifacts

        return _artifacts.find(self.root, name)

    def artifacts(self, type: str | None = None, name: str | None = None, *,
                  project: str | None = None) -> list[Artifact]:
        """Every artifact version (of one ``type``; of one ``name``, which may be
        ``"project/name"``; of one ``project``), by project, name and version."""
        from . import _artifacts

        root = self.root
        if project and project.count("/") == 1:
            project = project.split("/")[1]  # W&B's "entity/project"
        if project or (name and "/" in name):
            return _artifacts.list_artifacts(root, project or "", type, name)
        names, skipped = _store.list_projects(root)
        self._warn(skipped)
        return [a for p in names for a in _artifacts.list_artifacts(root, p, type, name)]

    def sweep(self, path: str) -> Sweep:
        """One sweep by ``"project/SWEEP_ID"``: its jobs, states and best run."""
        from ._sweeps._view import Sweep

        project, sweep_id = _naming.parse_path(path)
        if not isinstance(self.root, Path):
            raise UsageError("Sweeps are read from a local (or mounted) store, not from "
                             f"{str(self.root)!r}.")
        return Sweep(self.root, project, sweep_id)


def _without_entity(path: str) -> str:
    """``"project/id"`` of W&B's ``"entity/project/id"`` (or of its URL's
    ``"entity/project/runs/id"``): a store has one namespace, so the entity (recorded in
    run.json by init()) takes no part in finding a run."""
    parts = path.split("/")
    if len(parts) == 4 and parts[2] == "runs":
        return f"{parts[1]}/{parts[3]}"
    return path.split("/", 1)[1] if len(parts) == 3 else path


_gc_lock = threading.Lock()
_gc_paused = 0  # listings under way with the collector paused (several threads may list)
_gc_resume = False  # whether the collector ran when the first of them paused it


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a listing builds its objects, and resume
    it (if it ran before the first listing paused it) when the last one ends.

    A listing of 10,000 runs makes ~100,000 dicts and lists that all live on (the index's
    entries, the records, the runs): no garbage for the collector to find, yet each of them
    counted toward its next full pass over every object of the process, two passes of up to
    a third of a warm listing. Paused, they are looked at once afterwards."""
    global _gc_paused, _gc_resume
    with _gc_lock:
        if _gc_paused == 0:
            _gc_resume = gc.isenabled()
            gc.disable()
        _gc_paused += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_paused -= 1
            if _gc_paused == 0 and _gc_resume:
                gc.enable()


def list_runs(root: StorePath, project: str | None = None) -> tuple[list[ApiRun], list[_store.Skipped]]:
    """The readable runs of one project (or of all), oldest first, and what was skipped and why.

    A run whose files fail as it is opened (bad run.json, unreadable events) is skipped, not
    raised: the others are still listed. The CLI prints the skipped ones; Api.runs() logs them.
    """
    with _collector_paused():
        return _list_runs(root, project)


def _list_runs(root: StorePath, project: str | None) -> tuple[list[ApiRun], list[_store.Skipped]]:
    skipped: list[_store.Skipped] = []
    if project:
        projects = [_naming.project_name(project)]
    else:
        projects, skipped = _store.list_projects(root)
    runs = []
    for name in projects:
        index = _runindex.ProjectIndex(root, name)
        index.prestamp()
        ids, bad = _store.list_runs(root, name, index.known)
        skipped += bad
        index.prefetch(ids)
        for rid in ids:
            try:
                runs.append(ApiRun(root, name, rid, index.record(rid)))
            except (CorruptRunError, StorageError) as exc:
                rdir = _store.run_dir(root, name, rid)
                if isinstance(rdir, Path) and not rdir.exists():
                    continue  # removed since the listing (sync --clean): not there, not damaged
                skipped.append(_store.Skipped(f"{name}/{rid}", exc.path or str(rdir), str(exc)))
        index.save()
    return sorted(runs, key=lambda r: (r.project, r.created)), sorted(skipped, key=lambda s: s.where)
