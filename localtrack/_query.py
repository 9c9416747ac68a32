"""The read side: Api, runs as stored, history as pyarrow tables.

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

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _durable, _layout, _metrics, _naming, _remotes, _segments, _settings, _store, _wal
from ._media import Histogram
from ._naming import Ctx
from ._remotes import _chunks
from ._remotes._base import RemotePath
from ._remotes._dir import DirRemote
from .errors import CorruptRunError, RunNotFoundError, StorageError, UsageError

if TYPE_CHECKING:
    import pandas
    import pyarrow as pa

    from ._sweeps._view import Sweep

log = logging.getLogger("localtrack")

StorePath = _store.StorePath


class ApiRun:
    """A stored run, read from disk (a snapshot: call ``Api.run`` again to refresh)."""

    def __init__(self, root: StorePath, project: _naming.ProjectName, rid: _naming.RunId) -> None:
        self._root = root
        self._rdir = _store.run_dir(root, project, rid)
        self._ctx: Ctx = {"project": project, "run_id": rid}
        self.project: str = project
        self.id: str = rid
        meta = _store.read_meta(self._rdir, **self._ctx)
        self.meta = meta
        self.name: str = meta.get("name") or rid
        self.entity: str | None = meta.get("entity")
        self.tags: list[str] = meta.get("tags") or []
        self.group: str | None = meta.get("group")
        self.job_type: str | None = meta.get("job_type")
        self.notes: str | None = meta.get("notes")
        self.created: float = meta.get("created", 0.0)
        self.events = _store.events(self._rdir, **self._ctx)
        with _store.reading(self._rdir, **self._ctx):
            self.state: str = _store.state(root, project, rid, self.events)

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    @property
    def dir(self) -> str:
        return str(self._rdir)

    @property
    def config(self) -> dict[str, Any]:
        return _store.read_tree(self._rdir / _store.CONFIG_JSON, "config", **self._ctx)

    @property
    def summary(self) -> dict[str, Any]:
        """Last logged value of each key, overridden by run.summary values; nested on '/'."""
        return _store.summary(self._rdir, _metrics.fold(self.events), **self._ctx)

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """The run's define_metric() definitions by name (or glob), in the order first defined:
        ``{"val/*": {"step_metric": "epoch", "step_sync": True, "summary": ["min"], ...}}``."""
        return _metrics.fold(self.events)

    @property
    def last_step(self) -> int:
        """The last step on disk (-1 when nothing was logged), from the log's tail only."""
        with _store.reading(self._rdir, **self._ctx):
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
        with _store.reading(self._rdir, **self._ctx):
            return self._updated()

    def _updated(self) -> float:
        rdir = self._rdir
        if isinstance(rdir, RemotePath) or (rdir / _store.EVENTS).is_dir():
            return self._copy_updated()
        paths = [rdir / "wal", rdir / _store.EVENTS, rdir / "manifest.json"]
        wal = rdir / "wal"
        if wal.is_dir():
            paths += list(wal.iterdir())
        return max((p.stat().st_mtime for p in paths if p.exists()), default=self.created)

    def _copy_updated(self) -> float:
        """In a sync copy (events and logs are folders of chunks) the files' times are when
        sync copied them: the run's own times say when it changed (its events, and the time of
        the last row of its newest log when that row carries one)."""
        times = [float(e["time"]) for e in self.events if isinstance(e.get("time"), (int, float))]
        listed = _segments.wal_seqs(self._rdir)
        if listed:
            try:
                record = self._last_record(_segments.wal_log(self._rdir, listed[-1]))
            except FileNotFoundError:  # sealed meanwhile: the events say enough
                record = None
            stamp = (record or {}).get("_timestamp")
            if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
                times.append(float(stamp))
        return max(times, default=self.created)

    def history(self, keys: list[str] | None = None, *,
                include_rewound: bool = False) -> pa.Table:
        """Every step as a pyarrow Table: ``_step``, ``_timestamp`` and one column per key.

        ``include_rewound``: also the rows rewinds archived, in the order they were written,
        with a ``_rewound`` column (which rewind archived the row, 1 for the first; null for
        the history).
        """
        with _store.reading(self._rdir, **self._ctx):
            return _segments.read_history(self._rdir, keys, include_rewound=include_rewound,
                                          **self._ctx)

    def histograms(self, key: str) -> list[tuple[int, Histogram]]:
        """``(step, Histogram)`` of every step that logged a histogram under ``key``, in order
        (other values under that key are left out)."""
        table = self.history([key])
        try:
            return _segments.histograms_of(table, key)
        except ValueError as exc:  # counts or edges no writer stores (a damaged segment)
            raise CorruptRunError(f"The histograms under {key!r} of {_naming.run_label(self._ctx)} "
                                  f"in {self._rdir} cannot be read ({exc}); restore the run from "
                                  "a sync remote or a backup.", path=str(self._rdir),
                                  **self._ctx) from exc

    def history_df(self, keys: list[str] | None = None, *,
                   include_rewound: bool = False) -> pandas.DataFrame:
        """history() as a pandas DataFrame (needs pandas)."""
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise UsageError("history_df() needs pandas: pip install pandas") from None
        return self.history(keys, include_rewound=include_rewound).to_pandas()

    @property
    def rewinds(self) -> list[dict[str, Any]]:
        """The run's rewinds, oldest first: ``{"to": step, "from_step": last step before,
        "time": when, "seq": the log it continued in}``."""
        with _store.reading(self._rdir, **self._ctx):
            return list(_segments.load_manifest(self._rdir, **self._ctx)["rewinds"])

    def __repr__(self) -> str:
        return f"<localtrack.ApiRun {self.path} {self.state}>"


class Api:
    """Read runs from a store: ``Api(dir=None)`` uses the same default as init()."""

    def __init__(self, dir: str | os.PathLike[str] | None = None) -> None:
        raw = _settings.store_location(dir)
        self.root: StorePath
        if raw is not None and _remotes.is_uri(raw):
            remote = _remotes.open_remote(raw)
            self.root = remote.root if isinstance(remote, DirRemote) else RemotePath(remote)
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

    def runs(self, project: str | None = None) -> list[ApiRun]:
        """Runs of one project (or of every project), oldest first; W&B's ``"entity/project"``
        is taken too.

        A folder that is not a readable run (a stray copy, a bad name, a damaged or unreadable
        run.json) is left out with a warning on the "localtrack" logger that names it and why;
        `localtrack doctor` says more.
        """
        if project and project.count("/") == 1:
            project = project.split("/")[1]  # W&B's "entity/project"
        runs, skipped = list_runs(self.root, project)
        self._warn(skipped)
        return runs

    def run(self, path: str) -> ApiRun:
        """One run by ``"project/id"``, or W&B's ``"entity/project/id"``."""
        project, rid = _naming.parse_path(_without_entity(path))
        if not _store.run_exists(self.root, project, rid):
            raise RunNotFoundError(f"No run {rid!r} in project {project!r} under {str(self.root)!r}.",
                                   project=project, run_id=rid)
        return ApiRun(self.root, project, rid)

    def sweep(self, path: str) -> Sweep:
        """One sweep by ``"project/SWEEP_ID"``: its jobs, states and best run."""
        from ._sweeps._view import Sweep

        project, sweep_id = _naming.parse_path(path)
        if not isinstance(self.root, Path):
            raise UsageError("Sweeps are read from a local (or mounted) store, not from "
                             f"{str(self.root)!r}.")
        return Sweep(self.root, project, sweep_id)


def _without_entity(path: str) -> str:
    """``"project/id"`` of W&B's ``"entity/project/id"``: a store has one namespace, so the
    entity (recorded in run.json by init()) takes no part in finding a run."""
    return path.split("/", 1)[1] if path.count("/") == 2 else path


def list_runs(root: StorePath, project: str | None = None) -> tuple[list[ApiRun], list[_store.Skipped]]:
    """The readable runs of one project (or of all), oldest first, and what was skipped and why.

    A run whose files fail as it is opened (bad run.json, unreadable events) is skipped, not
    raised: the others are still listed. The CLI prints the skipped ones; Api.runs() logs them.
    """
    skipped: list[_store.Skipped] = []
    if project:
        projects = [_naming.project_name(project)]
    else:
        projects, skipped = _store.list_projects(root)
    runs = []
    for name in projects:
        ids, bad = _store.list_runs(root, name)
        skipped += bad
        for rid in ids:
            try:
                runs.append(ApiRun(root, name, rid))
            except (CorruptRunError, StorageError) as exc:
                rdir = _store.run_dir(root, name, rid)
                if isinstance(rdir, Path) and not rdir.exists():
                    continue  # removed since the listing (sync --clean): not there, not damaged
                skipped.append(_store.Skipped(f"{name}/{rid}", exc.path or str(rdir), str(exc)))
    return sorted(runs, key=lambda r: (r.project, r.created)), sorted(skipped, key=lambda s: s.where)
