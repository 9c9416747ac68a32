"""SQL over a store: DuckDB views ``runs``, ``history`` and ``events``, built by the read side.

The views come from what localtrack's readers return, not from a glob of the files: a
rewound run's archived rows, a fork's inherited rows and the unsealed JSONL logs are all read
by the rules of docs/format.md. The sealed segments of plain runs (no rewinds, no parent, no
labels) are one scan for DuckDB (its own Parquet reader over the list of files; for a remote
store, a pyarrow dataset through the filesystem sync uses: no DuckDB extension, no network
beyond the remote's), so only the columns and row groups a query needs are read; everything
else is read into memory through ``_segments``.

DuckDB is an optional extra (``pip install localtrack[sql]``), imported only here.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _labels, _naming, _segments, _store
from ._codec import dumps, encode_tree
from ._media import Histogram
from ._naming import Ctx, ProjectName, RunId
from ._remotes._arrow import ArrowRemote
from .errors import CorruptRunError, StorageError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from ._query import ApiRun

log = logging.getLogger("localtrack")

StorePath = _store.StorePath
VIEWS = ("runs", "history", "events")
_RUN_COLUMNS = ("id", "project", "name", "state", "created", "group", "job_type", "tags", "notes")


def query(root: StorePath, sql: str, project: str | None = None) -> pa.Table:
    """Run ``sql`` against the views of the store at ``root`` (one project, or all)."""
    duckdb = _duckdb()
    if project and project.count("/") == 1:
        project = project.split("/")[1]  # W&B's "entity/project"
    # Offline by design: an extension a query needs (httpfs for an s3:// path of its own) is an
    # error quoting DuckDB, never a download attempt that hangs without a network.
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        runs = None
        for name in _named_views(sql):
            runs = _register(con, name, root, project, runs)
        try:
            relation = con.sql(sql)
            return _empty() if relation is None else relation.to_arrow_table()
        except duckdb.Error as exc:
            raise UsageError(f"The query failed: {exc} (the views are {', '.join(VIEWS)}; "
                             "`localtrack query --help` shows their columns).") from None
    finally:
        con.close()


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise UsageError("SQL queries need DuckDB: pip install 'localtrack[sql]'") from None
    return duckdb


def _empty() -> pa.Table:
    import pyarrow as pa

    return pa.table({})


def _named_views(sql: str) -> list[str]:
    """The views ``sql`` may use: building one reads every run, so only those it names."""
    words = set(re.findall(r"[a-z_]+", sql.lower()))
    return [name for name in VIEWS if name in words]


def _register(con: Any, name: str, root: StorePath, project: str | None,
              runs_cache: list[ApiRun] | None) -> list[ApiRun] | None:
    """Register view ``name``; the runs listed for ``runs`` serve ``events`` too."""
    if name == "history":
        _register_history(con, root, project)
        return runs_cache
    runs = runs_cache if runs_cache is not None else _runs(root, project)
    con.register(name, runs_table(runs) if name == "runs" else events_table(runs))
    return runs


_FIRST = "run_id, project, _step, _timestamp"


def _register_history(con: Any, root: StorePath, project: str | None) -> None:
    """The ``history`` view: the sealed segments of plain runs scanned where they lie (DuckDB's
    own Parquet reader over one list of files for a local store; a pyarrow dataset for a
    remote one), the other rows from memory. Either way a query reads only the columns and
    row groups it needs, and DuckDB plans the joins and filters over the whole history.
    Segments DuckDB cannot make one view of (one without ``_step``, say) are read into memory
    instead, where the reader leaves out a damaged run with a warning."""
    sources = history_sources(root, project)
    if sources.files:
        try:
            _segments_view(con, root, sources)
            return
        except _duckdb().Error as exc:
            log.info("history read into memory: %s", exc)
            sources = sources._replace(files=[], memory=_in_memory(root, project))
    con.register("_history_memory", sources.memory)
    con.execute("CREATE OR REPLACE VIEW history AS SELECT * FROM _history_memory")


def _segments_view(con: Any, root: StorePath, sources: HistorySources) -> None:
    con.register("_history_memory", sources.memory)
    segments = None
    if isinstance(root, Path) and not any(_GLOB.search(path) for path, _, _ in sources.files):
        segments = _parquet_view(con, sources)
    if segments is None:
        con.register("_history_dataset", _dataset(_filesystem(root), sources))
        segments = f"SELECT {_FIRST}, * EXCLUDE ({_FIRST}) FROM _history_dataset"
    memory = sources.memory
    if memory.num_rows == 0 and set(memory.column_names) <= {*sources.schema.names, "run_id", "project"}:
        con.execute(f"CREATE VIEW history AS {segments}")  # nothing to add: no union to plan
        return
    con.execute(f"CREATE VIEW history AS SELECT {_FIRST}, * EXCLUDE ({_FIRST}) FROM "
                f"({segments} UNION ALL BY NAME SELECT * FROM _history_memory)")


# Characters DuckDB would read as a glob pattern in a path: such a store is read through the
# pyarrow dataset instead.
_GLOB = re.compile(r"[*?\[\]{}]")


def _parquet_view(con: Any, sources: HistorySources) -> str | None:
    """A query over every segment file through DuckDB's Parquet reader, each row's ``run_id``
    and ``project`` joined from the file's position in the list (``file_index``): one scan
    DuckDB parallelises and prunes (a filter on a run pushes down to the files), no per-row
    string work. None when DuckDB cannot bind it (the pyarrow dataset is used instead)."""
    import pyarrow as pa

    duckdb = _duckdb()
    files = sources.files
    con.register("_history_files", pa.table({
        "file_index": pa.array(range(len(files)), pa.uint64()),
        "run_id": pa.array([rid for _, _, rid in files], pa.string()),
        "project": pa.array([proj for _, proj, _ in files], pa.string())}))
    paths = ", ".join("'" + path.replace("'", "''") + "'" for path, _, _ in files)
    union = ", union_by_name = true" if len(set(sources.schemas)) > 1 else ""
    sql = (f"SELECT f.run_id, f.project, s._step, s._timestamp, s.* EXCLUDE (_step, _timestamp) "
           f"FROM read_parquet([{paths}]{union}) s JOIN _history_files f USING (file_index)")
    try:
        con.execute(f"CREATE VIEW _history_segments AS {sql}")
    except duckdb.Error as exc:
        log.info("segments read through pyarrow: %s", exc)
        return None
    return "SELECT * FROM _history_segments"


def _runs(root: StorePath, project: str | None) -> list[ApiRun]:
    from ._query import list_runs

    runs, skipped = list_runs(root, project)
    for item in skipped:
        log.warning("skipped %s", item)
    return runs


# -- runs and events: one row per run, per event --------------------------------------------


def runs_table(runs: list[ApiRun]) -> pa.Table:
    """One row per run: identity and metadata, then ``config.<key>`` (nested keys joined on
    '.') and ``summary.<key>`` (the history's keys, joined on '/') columns."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        try:
            config = _flat(run.config, ".")
            summary = _flat(run.summary, "/")
        except (CorruptRunError, StorageError) as exc:
            log.warning("skipped %s: %s", run.path, exc)
            continue
        row: dict[str, Any] = {"id": run.id, "project": run.project, "name": run.name,
                               "state": run.state, "created": run.created, "group": run.group,
                               "job_type": run.job_type, "tags": list(run.tags), "notes": run.notes}
        row.update({f"config.{k}": v for k, v in config.items()})
        row.update({f"summary.{k}": v for k, v in summary.items()})
        rows.append(row)
    return _table(rows, _RUN_COLUMNS)


def events_table(runs: list[ApiRun]) -> pa.Table:
    """One row per lifecycle event: ``run_id``, ``project``, then the event's own fields."""
    rows = [{"run_id": run.id, "project": run.project, **event} for run in runs
            for event in run.events]
    return _table(rows, ("run_id", "project", "event", "time", "step"))


def _flat(tree: dict[str, Any], sep: str, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, sep, f"{prefix}{key}{sep}"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _table(rows: list[dict[str, Any]], first: tuple[str, ...]) -> pa.Table:
    """Rows to a table, a column per key (``first`` ones first, always present); a column
    whose values pyarrow cannot hold in one type (numbers and strings, lists, histograms) is
    JSON text."""
    import pyarrow as pa

    names = list(first) + sorted({k for row in rows for k in row} - set(first))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        if name == "tags":
            columns[name] = pa.array(values, pa.list_(pa.string()))
            continue
        try:
            if any(isinstance(v, (dict, list, Histogram)) for v in values):
                raise TypeError("nested values")
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            columns[name] = pa.array([None if v is None else _text(v) for v in values], pa.string())
    return pa.table(columns) if names else pa.table({})


def _text(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return dumps(encode_tree(value, "a value")).decode()


# -- history: segments as a dataset, the rest in memory ---------------------------------------


class HistorySources(NamedTuple):
    """Where the ``history`` view's rows are: segment files of plain runs (path, project, run
    id) with their schemas and the union of those (numbers widened), and a table of all the
    other rows, each row with ``run_id`` and ``project``."""

    files: list[tuple[str, str, str]]
    schemas: list[pa.Schema]
    schema: pa.Schema
    memory: pa.Table


def history_sources(root: StorePath, project: str | None) -> HistorySources:
    """The history of every readable run, as segment files where they can be scanned whole
    and a table of the rest.

    A run that cannot be read is left out with a warning, as the listing leaves it out. When
    the rows cannot be one dataset (a key stored as numbers in one run and text or histograms
    in another), every run is read into memory, where such a key becomes JSON text.
    """
    import pyarrow as pa

    fs = _filesystem(root)
    files: list[tuple[str, str, str]] = []  # (path, project, run id)
    schemas: list[pa.Schema] = []
    tables: list[tuple[pa.Table, str, str]] = []
    for proj, rid, rdir in _run_dirs(root, project):
        ctx: Ctx = {"project": proj, "run_id": rid}
        try:
            with _store.reading(rdir, **ctx):
                direct = None if fs is None or _labels.labels(rdir) else \
                    _plain_segments(rdir, ctx, fs)
                if direct is None:
                    tables.append((_history(rdir, ctx), proj, rid))
                    continue
                found, rest = direct
                files += [(path, proj, rid) for path, _ in found]
                schemas += [schema for _, schema in found]
                tables += [(t, proj, rid) for t in rest]
        except (CorruptRunError, StorageError) as exc:
            log.warning("skipped %s/%s: %s", proj, rid, exc)
    memory = _concat(tables)
    if not files:
        return HistorySources([], [], memory.schema, memory)
    try:
        keys = pa.schema([("run_id", pa.string()), ("project", pa.string())])
        schema = pa.unify_schemas([keys, *dict.fromkeys(schemas)], promote_options="permissive")
        pa.unify_schemas([schema, memory.schema], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        log.info("history read into memory: %s", exc)
        memory = _in_memory(root, project)
        return HistorySources([], [], memory.schema, memory)
    return HistorySources(files, schemas, schema, memory)


def _in_memory(root: StorePath, project: str | None) -> pa.Table:
    tables = []
    for proj, rid, rdir in _run_dirs(root, project):
        ctx: Ctx = {"project": proj, "run_id": rid}
        try:
            with _store.reading(rdir, **ctx):
                tables.append((_history(rdir, ctx), proj, rid))
        except (CorruptRunError, StorageError) as exc:
            log.warning("skipped %s/%s: %s", proj, rid, exc)
    return _concat(tables)


def _history(rdir: StorePath, ctx: Ctx) -> pa.Table:
    """A run's history; a shared run's (it has labels) merged, with a ``_label`` column."""
    if _labels.labels(rdir):
        return _labels.read_history(rdir, **ctx)
    return _segments.read_history(rdir, **ctx)


def _run_dirs(root: StorePath, project: str | None) -> list[tuple[ProjectName, RunId, StorePath]]:
    if project:
        projects = [_naming.project_name(project.split("/")[-1])]
    else:
        projects, skipped = _store.list_projects(root)
        for item in skipped:
            log.warning("skipped %s", item)
    out: list[tuple[ProjectName, RunId, StorePath]] = []
    for proj in projects:
        ids, skipped = _store.list_runs(root, proj)
        for item in skipped:
            log.warning("skipped %s", item)
        out += [(proj, rid, _store.run_dir(root, proj, rid)) for rid in ids]
    return out


def _filesystem(root: StorePath) -> Any:
    """The pyarrow filesystem a store's segments are opened through (None: read whole)."""
    import pyarrow.fs as pafs

    if isinstance(root, Path):
        return pafs.LocalFileSystem()
    return root.remote.fs if isinstance(root.remote, ArrowRemote) else None


def _plain_segments(rdir: StorePath, ctx: Ctx, fs: Any
                    ) -> tuple[list[tuple[str, pa.Schema]], list[pa.Table]] | None:
    """The segment files (with their schemas) of a run whose sealed rows are its history as
    stored (no rewinds, no parent), and the rows of its unsealed logs; None for any other run,
    and for one whose segments are not plain Parquet files: it is read whole, and the reader
    says what is wrong."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    manifest, logs = _segments._snapshot(rdir, ctx)
    if manifest.get("parent") is not None or manifest["rewinds"]:
        return None
    found = []
    for seg in manifest["segments"]:
        path = rdir / "segments" / seg["file"]
        try:
            if isinstance(path, Path):
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    return None  # a link or a folder: the reader refuses it
                name = str(path)
            elif isinstance(path.remote, ArrowRemote):
                name = f"{path.remote.base}/{path.key}"
            else:
                return None
            name.encode()  # pyarrow and DuckDB take UTF-8 paths only
            found.append((name, ds.ParquetFileFormat().inspect(name, filesystem=fs)))
        except (OSError, pa.ArrowException, UnicodeEncodeError):
            return None  # read whole: the reader opens it, or says what is wrong
    rest = [_segments._log_rows(rdir, seq, bodies, data, None, ctx)
            for seq, bodies, data in logs if bodies]
    return found, rest


def _dataset(fs: Any, sources: HistorySources) -> Any:
    """One pyarrow dataset over the segment files, ``project`` and ``run_id`` filled in from
    each file's partition expression, its schema the union of theirs."""
    import pyarrow.dataset as ds

    files = sources.files
    parts = [(ds.field("project") == proj) & (ds.field("run_id") == rid) for _, proj, rid in files]
    return ds.FileSystemDataset.from_paths([p for p, _, _ in files], schema=sources.schema,
                                           format=ds.ParquetFileFormat(), filesystem=fs,
                                           partitions=parts)


def _concat(parts: Sequence[tuple[pa.Table, str, str]]) -> pa.Table:
    """The runs' tables as one, each row with its ``run_id`` and ``project`` first; a key
    whose types differ between runs beyond widening (numbers, text, histograms) is JSON text
    in every run, as within one run's history."""
    import pyarrow as pa

    tables = [t for t, _, _ in parts]
    mixed = _mixed_keys(tables)
    if mixed:
        tables = [_as_text(t, mixed) for t in tables]
    table = _segments._concat(tables, None)
    for name, at in (("project", 1), ("run_id", 2)):
        values = [pa.array([part[at]] * len(part[0]), pa.string()) for part in parts]
        table = table.add_column(0, name, pa.chunked_array(values, pa.string()))
    first = ["run_id", "project", "_step", "_timestamp"]
    return table.select(first + [c for c in table.column_names if c not in first])


def _mixed_keys(tables: list[pa.Table]) -> set[str]:
    import pyarrow as pa

    fields: dict[str, list[pa.Field]] = {}
    for table in tables:
        for field in table.schema:
            fields.setdefault(field.name, []).append(field)
    mixed = set()
    for name, found in fields.items():
        if len({f.type for f in found}) > 1:
            try:
                pa.unify_schemas([pa.schema([f]) for f in found], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                mixed.add(name)
    return mixed


def _as_text(table: pa.Table, names: set[str]) -> pa.Table:
    for i, name in enumerate(table.column_names):
        if name in names:
            text = _segments._as_json_text(table.select([name]))
            table = table.set_column(i, text.schema.field(0), text.column(0))
    return table
