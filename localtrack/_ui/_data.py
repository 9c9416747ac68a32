"""What the dashboard's JSON API returns, built only from the public read API (Api, ApiRun).

The runs list is polled every few seconds, so per-run work that reads files
(config, summary, last step) is cached under a signature of the run's files:
the newest mtime of its logs and events (``ApiRun.updated``), the run
directory's own mtime (config.json and summary.json are replaced by rename,
which touches it) and the state. A finished run is therefore read once; a live
one again only when it wrote something. Downsampled history is cached the same
way, so a finished 10^6-step run costs one Parquet read however often it is shown.
The listing itself comes from Api.runs, whose runs carry their record (the runs index,
_runindex), and ``poll`` sends a poller only the rows changed since its last listing.
The media routes keep the runs they read (``media_run``): one image at a time costs the
item's history check and its bytes only.
Files are listed and served only for a local store.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .. import _metrics, _naming
from .._query import Api, ApiRun
from ..errors import CorruptRunError, LocaltrackError, RunNotFoundError, StorageError, UsageError
from . import _downsample

if TYPE_CHECKING:
    import pyarrow as pa

#: Strings longer than this are cut in the runs list (the run page shows them whole).
_LIST_STR_MAX = 200
_HISTORY_CACHE = 256
_RUNS_KEPT = 64  # runs the media routes keep (see StoreView.media_run)
_X_COLUMNS = {"step": "_step", "time": "_timestamp"}
_LABEL = "_label"  # a shared run's history: which writer logged the row (docs/format.md)

Signature = tuple[float, int, str]


def flatten(tree: dict[str, Any], sep: str, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a<sep>b": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, sep, name))
        else:
            out[name] = value
    return out


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _LIST_STR_MAX:
        return value[:_LIST_STR_MAX] + "…"
    if isinstance(value, (list, dict)):
        text = orjson.dumps(value, default=str).decode()
        return text if len(text) <= _LIST_STR_MAX else text[:_LIST_STR_MAX] + "…"
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def chart_keys(summary: dict[str, Any], defs: dict[str, dict[str, Any]]) -> list[str]:
    """The keys a chart asks the history for: the summary's numeric keys, where an aggregate
    define_metric(summary=...) made (``val/loss/min``) stands for its key (``val/loss``), and
    the exactly named definitions (a ``summary="none"`` key is in no summary). A key the
    history lacks just draws no panel."""
    keys = set()
    for key, value in summary.items():
        if not _is_number(value):
            continue
        base, _, agg = key.rpartition("/")
        defined = _metrics.match(defs, base) if base else None
        keys.add(base if defined and agg in defined.get("summary", ()) else key)
    keys.update(name for name in defs if "*" not in name)
    return sorted(keys)


def _unsummarised(run: ApiRun) -> list[str]:
    """The history's keys a glob define_metric(summary="none") keeps out of the summary (so
    out of chart_keys): read from the history's columns, only when the run has such a glob."""
    defs = run.metrics
    if not any("*" in name and d.get("summary") == ["none"] for name, d in defs.items()):
        return []
    return [key for key in run.history_table().column_names
            if (d := _metrics.match(defs, key)) and d.get("summary") == ["none"]]


def signature(run: ApiRun, updated: float) -> Signature:
    """Changes whenever anything of the run changes in the store.

    A remote store has no directory times, but there ``updated`` already lists
    every object of the run (config and summary included)."""
    try:
        dir_mtime = os.stat(run.dir).st_mtime_ns
    except OSError:
        dir_mtime = 0
    return (updated, dir_mtime, run.state)


def _duration(run: ApiRun, updated: float, now: float) -> float:
    """Wall-clock seconds from creation to the last write (to now while running)."""
    end = now if run.state == "running" else updated
    return max(0.0, end - run.created) if run.created else 0.0


def _damaged(exc: LocaltrackError) -> dict[str, Any]:
    """What the list and the status poll say of a run whose files cannot be read (the same,
    so the page does not reload it on every poll); the error names the file and the fix."""
    return {"state": "damaged", "steps": 0, "updated": 0.0, "error": str(exc)}


def _damaged_row(run: ApiRun, exc: LocaltrackError) -> dict[str, Any]:
    """A runs-table row from run.json alone (listing read it): one damaged run hides no other."""
    return {"path": run.path, "id": run.id, "name": run.name, "created": run.created,
            "tags": list(run.tags), "group": run.group, "job_type": run.job_type,
            "host": run.meta.get("host"), "config": {}, "summary": {}, "metrics": [],
            "duration": 0.0, **_damaged(exc)}


class StoreView:
    """The dashboard's view of one store; safe to share between request threads."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[Signature, dict[str, Any]]] = {}
        self._listing: dict[str, threading.Lock] = {}
        # Polling (poll): each listing is numbered; a row remembers the listing that last
        # changed it. The token tells this server's numbers from another's (a restart).
        self._token = secrets.token_hex(4)
        self._tick = 0
        self._changed: dict[str, int] = {}
        self._history: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._runs_kept: OrderedDict[str, ApiRun] = OrderedDict()

    @property
    def root(self) -> str:
        return str(self.api.root)

    # -- lists -------------------------------------------------------------------------------

    def projects(self) -> list[dict[str, Any]]:
        out = []
        for name in self.api.projects():
            rows = self.runs(name)
            out.append({"name": name, "runs": len(rows),
                        "running": sum(r["state"] == "running" for r in rows),
                        "updated": max((r["updated"] for r in rows), default=0.0)})
        return out

    def runs(self, project: str) -> list[dict[str, Any]]:
        """One row per run of ``project``: what the runs table shows, config and summary flat."""
        return self._listed(project)[0]

    def poll(self, project: str, since: str | None = None) -> dict[str, Any]:
        """The runs list for polling: ``paths`` of every run in order, ``runs`` the rows that
        changed after the listing ``since`` names (every row when it is None or another
        server's; rows of running or damaged runs always, their duration or error moves), and
        ``stamp`` to pass as ``since`` next time."""
        rows, tick = self._listed(project)
        token, _, number = (since or "").partition(".")
        base = int(number) if token == self._token and number.isdigit() else -1
        with self._lock:
            changed = [row for row in rows if row["state"] in ("running", "damaged")
                       or self._changed.get(row["path"], tick) > base]
        return {"since": since if base >= 0 else None, "stamp": f"{self._token}.{tick}",
                "paths": [row["path"] for row in rows], "runs": changed}

    def _listed(self, project: str) -> tuple[list[dict[str, Any]], int]:
        name = _naming.project_name(project)
        with self._lock:
            listing = self._listing.setdefault(name, threading.Lock())
        # One listing of a project at a time: a second caller (the warm-up and the first
        # page, or two tabs) waits and then finds the cache filled instead of reading twice.
        with listing:
            with self._lock:
                self._tick += 1
                tick = self._tick
            return self._runs(name, tick), tick

    def _runs(self, project: _naming.ProjectName, tick: int) -> list[dict[str, Any]]:
        now = time.time()
        rows = []
        for run in self.api.runs(project):
            try:
                updated = run.updated
                sig = signature(run, updated)
            except (CorruptRunError, StorageError) as exc:
                rows.append(_damaged_row(run, exc))
                continue
            with self._lock:
                cached = self._rows.get(run.path)
            if cached is None or cached[0] != sig:
                try:
                    row = self._row(run, updated)
                except (CorruptRunError, StorageError) as exc:
                    rows.append(_damaged_row(run, exc))
                    continue
                with self._lock:
                    self._rows[run.path] = (sig, row)
                    self._changed[run.path] = tick
            else:
                row = cached[1]
            rows.append({**row, "duration": _duration(run, row["updated"], now)})
        return rows

    def _row(self, run: ApiRun, updated: float) -> dict[str, Any]:
        summary = flatten(run.summary, "/")
        return {
            "path": run.path, "id": run.id, "name": run.name, "state": run.state,
            "steps": run.last_step + 1, "created": run.created, "updated": updated,
            "tags": list(run.tags), "group": run.group, "job_type": run.job_type,
            "host": run.meta.get("host"),
            "config": {k: _short(v) for k, v in flatten(run.config, ".").items()},
            "summary": {k: _short(v) for k, v in summary.items()},
            "metrics": chart_keys(summary, run.metrics),
        }

    def status(self, paths: Iterable[str]) -> dict[str, Any]:
        """State, steps and last write of a few runs: the cheap poll behind live charts."""
        out: dict[str, Any] = {}
        for path in paths:
            try:
                run = self.api.run(path)
            except RunNotFoundError:
                out[path] = None
                continue
            try:
                out[path] = {"state": run.state, "steps": run.last_step + 1, "updated": run.updated}
            except (CorruptRunError, StorageError) as exc:
                out[path] = _damaged(exc)
        return out

    # -- one run -----------------------------------------------------------------------------

    def run(self, path: str) -> dict[str, Any]:
        run = self.api.run(path)
        summary = flatten(run.summary, "/")
        updated = run.updated
        return {
            "path": run.path, "id": run.id, "name": run.name, "state": run.state,
            "project": run.project, "steps": run.last_step + 1, "created": run.created,
            "updated": updated, "duration": _duration(run, updated, time.time()),
            "tags": list(run.tags), "group": run.group, "job_type": run.job_type, "notes": run.notes,
            "meta": run.meta, "config": flatten(run.config, "."), "summary": summary,
            "metrics": sorted({*chart_keys(summary, run.metrics), *_unsummarised(run)}),
            "events": run.events, "files": self._files(run),
        }

    def media_run(self, path: str, *, fresh: bool = False) -> ApiRun:
        """The run for the media routes, kept (_RUNS_KEPT): making one reads run.json, its
        events and its lock (7 requests on S3), and an item needs none of that, only whether
        the run is shared (set when it is created); its history is read afresh by each request.
        ``fresh``: made again (the run page asks for its media keys so when it opens)."""
        with self._lock:
            run = None if fresh else self._runs_kept.get(path)
            if run is not None:
                self._runs_kept.move_to_end(path)
                return run
        run = self.api.run(path)
        with self._lock:
            self._runs_kept[path] = run
            while len(self._runs_kept) > _RUNS_KEPT:
                self._runs_kept.popitem(last=False)
        return run

    @staticmethod
    def _files(run: ApiRun) -> list[dict[str, Any]]:
        root = Path(run.dir)
        if not root.is_dir():
            return []
        files = []
        for path in sorted(root.rglob("*")):
            try:
                st = path.stat()
            except FileNotFoundError:  # sealed or swept while we listed
                continue
            if path.is_file() and not path.name.startswith(".tmp-"):
                files.append({"name": path.relative_to(root).as_posix(), "size": st.st_size,
                              "mtime": st.st_mtime})
        return files

    def file(self, path: str, name: str) -> Path:
        """A file inside the run's directory; anything that would leave it is not found."""
        run = self.api.run(path)
        root = Path(run.dir).resolve()
        if not name or name.startswith(("/", "\\")) or "\x00" in name:
            raise UsageError(f"Invalid file name {name!r}.")
        target = (root / name).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise RunNotFoundError(f"No file {name!r} in run {path!r}.", path=name)
        return target

    def history(self, path: str, keys: list[str], *, x: str = "step", points: int = 1000,
                xmin: float | None = None, xmax: float | None = None,
                by_label: bool = False) -> dict[str, Any]:
        """Downsampled series of ``keys`` of one run (see _downsample). A series carries its
        define_metric() facts: ``axis`` (the step metric it is charted against), ``hidden``,
        and ``axis_missing``: its step metric, never logged, so it is charted by step.
        ``by_label``: a shared run's answer also has ``labels``, per writer label the series
        of its own rows (each downsampled on its own), beside ``series``, every label's rows
        merged by step; another run's answer has no ``labels``."""
        if x not in _X_COLUMNS:
            raise UsageError(f"Invalid x axis {x!r}: use 'step' or 'time'.")
        keys = [k for k in dict.fromkeys(keys) if k not in _X_COLUMNS.values()]
        run = self.api.run(path)
        sig = signature(run, run.updated)
        cache_key = (path, sig, tuple(keys), x, points, xmin, xmax, by_label)
        with self._lock:
            hit = self._history.get(cache_key)
            if hit is not None:
                self._history.move_to_end(cache_key)
                return hit
        defs = run.metrics
        shown = {key: _metrics.match(defs, key) or {} for key in keys}
        # define_metric(step_metric=...): on the step axis, a key is charted against its
        # step metric's values at the same rows (W&B's x axis); on the time axis, against time.
        # A key that is its own step metric ("*" matches it too) is charted by step.
        axes = {key: d["step_metric"] for key, d in shown.items()
                if x == "step" and isinstance(d.get("step_metric"), str) and d["step_metric"] != key}
        extra = [a for a in axes.values() if a not in _X_COLUMNS.values()]  # always read
        table = run.history_table(list(dict.fromkeys([*keys, *extra])))

        def series(rows: pa.Table) -> dict[str, Any]:
            return _series(rows, keys, axes, x=x, points=points, xmin=xmin, xmax=xmax,
                           hidden={k for k, d in shown.items() if d.get("hidden")})

        out = {"path": path, "state": run.state, "steps": run.last_step + 1, "rows": table.num_rows,
               "x": x, "series": series(table)}
        labels = run.labels if by_label else []
        if labels:
            import pyarrow.compute as pc

            column = table.column(_LABEL)
            out["labels"] = {label: series(table.filter(pc.equal(column, label))) for label in labels}
        with self._lock:
            self._history[cache_key] = out
            while len(self._history) > _HISTORY_CACHE:
                self._history.popitem(last=False)
        return out


def _series(table: pa.Table, keys: list[str], axes: dict[str, str], *, x: str, points: int,
            xmin: float | None, xmax: float | None, hidden: set[str]) -> dict[str, Any]:
    """Each key of ``table`` downsampled against its x axis (see StoreView.history)."""
    import pyarrow as pa

    series = {}
    for key in keys:
        axis = axes.get(key)
        missing = None
        if axis and not (pa.types.is_null(table.schema.field(axis).type)
                         or _downsample.is_numeric(table.schema.field(axis).type)):
            axis = None  # text cannot be an x axis: chart it by step
        if axis and table.column(axis).null_count == table.num_rows:
            missing, axis = axis, None  # a step metric never logged: chart it by step
        one = _downsample.series(table, key, x=axis or _X_COLUMNS[x], points=points,
                                 xmin=xmin, xmax=xmax)
        if axis:
            one["axis"] = axis
        if missing:
            one["axis_missing"] = missing
        if key in hidden:
            one["hidden"] = True
        series[key] = one
    return series
