"""The command line (``localtrack --help`` lists the commands). Only this module prints."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import __version__, _blobs, _settings, _store
from ._media import Histogram
from ._mediaread import refs_rows
from ._query import Api, list_runs
from .errors import CorruptRunError, LocaltrackError, RemoteError, StorageError, UsageError

if TYPE_CHECKING:
    from ._sync import Syncer


def _fmt_time(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _api(dir: str | None) -> Api:
    api = Api(dir)
    if not _store.is_store(api.root):
        raise UsageError(f"No localtrack store at {str(api.root)!r}: log a run there first, or "
                         "pass --dir / set LOCALTRACK_DIR.")
    return api


def cmd_runs(args: argparse.Namespace) -> int:
    """The table on stdout; each folder that is not a readable run is one line on stderr
    (as ``ls`` reports what it cannot read), and the exit code stays 0: the listing worked."""
    runs, skipped = list_runs(_api(args.dir).root, args.project)
    problems = [str(s) for s in skipped]
    rows = []
    for r in runs:
        try:
            rows.append((r.path, r.name, r.state, r.last_step + 1, _fmt_time(r.created),
                         _fmt_time(r.updated)))
        except (CorruptRunError, StorageError) as exc:
            problems.append(f"{r.path}: {exc}")
    if rows:
        print(_table(("RUN", "NAME", "STATE", "STEPS", "CREATED", "UPDATED"), rows))
    else:
        print("no runs" + (f" in project {args.project!r}" if args.project else ""))
    for problem in problems:
        print(f"localtrack: skipped {problem}", file=sys.stderr)
    if problems:
        print(f"localtrack: {len(problems)} folder(s) skipped; `localtrack doctor` checks them",
              file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = _api(args.dir).run(args.path)
    print(f"run      {run.path}  ({run.name})")
    if run.entity:
        print(f"entity   {run.entity}")
    print(f"state    {run.state}")
    print(f"steps    {run.last_step + 1}")
    print(f"created  {_fmt_time(run.created)}")
    fork = run.meta.get("fork")
    if isinstance(fork, dict):  # its history starts with the parent's through that step
        print(f"fork     of {fork.get('project')}/{fork.get('run')} at step {fork.get('step')}")
    cluster = run.meta.get("cluster")
    if isinstance(cluster, dict) and cluster:  # the scheduler's facts of the latest start
        print(f"job      {_job_facts(cluster)}")
    for e in run.events:
        extra = f" exit_code={e['exit_code']}" if "exit_code" in e else ""
        extra += f" signal={e['signal']}" if "signal" in e else ""  # what preempted it
        if e.get("event") == "rewound":  # the rows after `to` are archived
            extra += f" from step {e.get('from_step')} to step {e.get('to')}"
        if e.get("event") == "alert":  # run.alert()
            extra += f" [{e.get('level')}] {e.get('title')}: {e.get('text')}"
        if e.get("event") == "metric":  # define_metric()
            extra += " " + " ".join(f"{k}={e[k]!r}" for k in ("name", *_METRIC_FIELDS) if k in e)
        extra += f"  [{_job_facts(e['cluster'])}]" if isinstance(e.get("cluster"), dict) else ""
        extra += f"  (writer {e['label']})" if isinstance(e.get("label"), str) else ""  # shared
        print(f"event    {_fmt_time(e.get('time', 0))}  {e.get('event')} at step {e.get('step')}{extra}")
    print("config")
    for key, value in sorted(run.config.items()):
        print(f"  {key}: {value!r}")
    print("summary")
    for key, value in sorted(run.summary.items()):
        print(f"  {key}: {_histogram_text(value) or _media_text(value) or repr(value)}")
    table = run.history_table()
    media = {key: refs_rows(table, key) for key in table.column_names[2:]}
    if any(media.values()):
        print("media")
        for key, rows in sorted(media.items()):
            writers = Counter(label for _, _, label in rows if label is not None)
            by = f" ({', '.join(f'{w} {n}' for w, n in sorted(writers.items()))})" if writers else ""
            if rows:  # a shared run's: the steps of each writer
                print(f"  {key}: {len(rows)} step(s){by}")
    if args.rows and table.num_rows:
        tail = table.slice(max(0, table.num_rows - args.rows)).drop_columns(["_timestamp"])
        print(f"last {tail.num_rows} of {table.num_rows} rows")
        print(_table(tail.column_names, [[_histogram_text(v) or _media_text(v) or v
                                          for v in r.values()]
                                         for r in tail.to_pylist()]))
    return 0


def _media_text(value: Any) -> str | None:
    """Media references as what they are, not their offsets: ``image[64x64]``, ``3 images``."""
    refs = list(_blobs.refs(value))
    if not refs:
        return None
    if len(refs) > 1 or isinstance(value, list):
        return f"{len(refs)} {refs[0].get('type')}s"
    ref = refs[0]
    if isinstance(ref.get("chart"), str):  # localtrack.plot.*: a table with a chart spec
        return f"chart[{ref['chart']}]"
    size = f"[{ref['w']}x{ref['h']}]" if ref.get("w") and ref.get("h") else ""
    return f"{ref.get('type')}{size}"


def _histogram_text(value: Any) -> str | None:
    """A histogram (a summary's Histogram, or a history cell's counts and edges) as its size,
    not its counts: ``histogram[64 bins, 1000 values]``; None for any other value."""
    if isinstance(value, Histogram):
        counts: Sequence[int] = value.counts
    elif isinstance(value, dict) and value.keys() == {"counts", "edges"}:
        counts = value["counts"]
    else:
        return None
    return f"histogram[{len(counts)} bins, {sum(counts)} values]"


_METRIC_FIELDS = ("step_metric", "summary", "goal", "hidden")


def _job_facts(cluster: dict[str, Any]) -> str:
    """``slurm job_id=78 partition=gpu ...; torchelastic rank=1``, from a run's ``cluster``."""
    return "; ".join(f"{source} " + " ".join(f"{k}={v}" for k, v in facts.items())
                     for source, facts in cluster.items() if isinstance(facts, dict))


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(args.dir)


def cmd_ui(args: argparse.Namespace) -> int:
    from ._ui import make_server

    server = make_server(args.dir, host=args.host, port=args.port, allow_remote=args.allow_remote)
    try:  # a Ctrl-C right after the line below stops the server as one later does
        print(f"localtrack ui: serving {server.root} at {server.url}  (Ctrl-C to stop)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("localtrack ui: stopped", flush=True)
    finally:
        server.server_close()
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ._plot import plot

    out = plot(_api(args.dir), args.paths, args.key, args.out, x=args.x, smooth=args.smooth, log=args.log)
    print(f"wrote {out}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ._sweeps import _agent, _queue

    if args.status:
        return _print_sweep(args.dir, args.status)
    if not args.config:
        raise UsageError("localtrack sweep needs a YAML file (or --status PROJECT/SWEEP_ID).")
    config = _agent.load_yaml(args.config)
    sweep_id = _queue.create(config, project=args.project, dir=args.dir)
    project = args.project or config.get("project") or _settings.DEFAULT_PROJECT
    print(sweep_id)
    print(f"run agents with: localtrack agent {project}/{sweep_id}", file=sys.stderr)
    return 0


def _print_sweep(dir: str | None, path: str) -> int:
    sweep = _api(dir).sweep(path)
    metric = sweep.metric["name"] if sweep.metric else "-"
    print(f"sweep    {sweep.project}/{sweep.id}  method={sweep.config['method']}  metric={metric}")
    counts = sweep.counts()
    print("jobs     " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none yet"))
    print(f"queue    {' '.join(sweep.queue) or '-'}")
    rows = [(r["id"], r["status"] + (f" at {r['stop']['band']}" if r["stop"] else ""),
             r["requeues"], "-" if r["metric"] is None else r["metric"],
             " ".join(f"{k}={v}" for k, v in r["params"].items())) for r in sweep.runs]
    if rows:
        print(_table(("RUN", "STATUS", "REQUEUES", metric.upper(), "PARAMS"), rows))
    best = sweep.best_run()
    print(f"best     {best['id']} {metric}={best['metric']}" if best else "best     -")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from ._sweeps import _agent

    logging.getLogger("localtrack").setLevel(logging.INFO)  # say which job runs, and how it ended
    _agent.agent(args.sweep, count=args.count, project=args.project, dir=args.dir)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from ._doctor import check_store

    root = _api(args.dir).root
    if not isinstance(root, Path):
        raise UsageError("doctor checks a local (or mounted) store; sync a copy down first.")
    found = check_store(root, args.targets, fix=args.fix)
    for f in found:
        status = "fixed" if f.fixed else "fixable with --fix" if f.fixable else "NEEDS ATTENTION"
        print(f"{f.run}  {status}: {f.problem}  ({f.path})")
    left = [f for f in found if not f.fixed]
    print(f"{len(found)} problem(s), {len(found) - len(left)} fixed, {len(left)} left")
    return 1 if left else 0


def cmd_gc(args: argparse.Namespace) -> int:
    from ._doctor import collect_garbage

    root = _api(args.dir).root
    if not isinstance(root, Path):
        raise UsageError("gc collects in a local (or mounted) store, the one runs are written to.")
    older = None if args.older_than is None else _seconds(args.older_than)
    found = collect_garbage(root, args.projects, older, args.dry_run)
    for f in found:
        status = "deleted" if f.fixed else "would delete" if f.fixable else "NEEDS ATTENTION"
        print(f"{f.run}  {status}: {f.problem}  ({f.path})")
    garbage = [f for f in found if f.fixable]
    print(f"{len(garbage)} garbage file(s) {'found' if args.dry_run else 'deleted'}"
          + (f"; {len(found) - len(garbage)} problem(s): see `localtrack doctor`"
             if len(found) > len(garbage) else ""))
    return 1 if len(found) > len(garbage) else 0


def _seconds(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``24h``, ``7d`` as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise UsageError(f"Invalid --older-than {text!r}: give a duration like 24h, 30m, 7d or "
                         "seconds.")
    return value * units[unit]


class _Bar:
    """A tqdm progress bar over the bytes of one sync pass (only on a terminal)."""

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


def cmd_sync(args: argparse.Namespace) -> int:
    """Upload (or --watch, or --status); exit 1 when anything is left pending."""
    from ._sync import human_bytes, open_syncer, watch
    from ._sync._watch import DEFAULT_MAX_LAG

    tty = sys.stderr.isatty()
    if (args.poll is not None or args.max_lag is not None) and not args.watch:
        raise UsageError("--poll and --max-lag only apply to --watch.")
    if args.max_lag is not None and not args.max_lag > 0:
        raise UsageError(f"--max-lag must be a number of seconds above 0, not {args.max_lag}.")
    if not tty or args.watch:
        logging.getLogger("localtrack").setLevel(logging.INFO)
    if args.status:
        return _print_sync_status(open_syncer(args.to, args.dir, args.targets))
    stop = threading.Event()
    progress = _Bar() if tty and not args.watch else None
    syncer = open_syncer(args.to, args.dir, args.targets, clean=args.clean, retries=args.retries,
                         jobs=args.jobs, progress=progress, stop=stop)
    if args.watch:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    with syncer:
        if args.watch:
            report = watch(syncer, poll=args.poll,
                           max_lag=DEFAULT_MAX_LAG if args.max_lag is None else args.max_lag)
            print(f"sync daemon stopped: {report.uploaded_files} file(s), "
                  f"{human_bytes(report.uploaded_bytes)} uploaded to {report.remote}", file=sys.stderr)
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
              f"{report.uploaded_files} file(s), {human_bytes(report.uploaded_bytes)}")
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


def _print_sync_status(syncer: Syncer) -> int:
    from ._sync import human_bytes

    rows = syncer.status()
    print(f"remote {syncer.remote.url} (from local sync state; the remote was not contacted)")
    width = max([len(r.path) for r in rows] + [3])
    print(f"{'RUN'.ljust(width)}  {'STATE':<9}  {'PENDING':<22}  LAST SYNC")
    for r in rows:
        pending = "up to date" if not r.pending_files else \
            f"{r.pending_files} file(s), {human_bytes(r.pending_bytes)}"
        when = _fmt_time(r.synced_at) if r.synced_at else "never"
        print(f"{r.path.ljust(width)}  {r.state:<9}  {(r.note or pending):<22}  {when}")
    waiting = sum(1 for r in rows if r.pending_files or r.note)
    print(f"{waiting} of {len(rows)} run(s) pending" if waiting else f"all {len(rows)} run(s) up to date")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    table = _api(args.dir).query(args.sql, args.project)
    if args.format == "json":
        # JSON has no NaN/Infinity: orjson writes them as null (as JSON.stringify and
        # pandas do), so every line parses with any JSON reader; --format csv keeps them.
        for row in table.to_pylist():
            print(orjson.dumps(row, default=str).decode())
    elif args.format == "csv":
        import csv

        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(table.column_names)
        out.writerows([row.values() for row in table.to_pylist()])
    elif table.num_columns:
        print(_table(table.column_names,
                     [["" if v is None else v for v in row.values()] for row in table.to_pylist()]))
    return 0


def cmd_wandb_shim(args: argparse.Namespace) -> int:
    """Print the folder that holds localtrack's ``wandb`` shim, for PYTHONPATH (opt-in: nothing
    puts it there otherwise); warn when the real wandb is installed, which it would shadow."""
    from importlib.machinery import PathFinder

    shim = Path(__file__).resolve().parent / "_shim"
    others = [p for p in sys.path if p and Path(p).resolve() != shim]
    real = PathFinder.find_spec("wandb", others)
    if real is not None:
        print(f"localtrack: warning: the real wandb is installed ({real.origin}). With this folder "
              "on PYTHONPATH, `import wandb` finds whichever comes first on sys.path: the shim "
              "when PYTHONPATH puts it first. Uninstall wandb, or leave the shim off PYTHONPATH "
              "to use the real one.", file=sys.stderr)
    print(shim)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localtrack",
                                     description="Experiment runs in plain local files.")
    parser.add_argument("--version", action="version", version=f"localtrack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", help="store root (default: $LOCALTRACK_DIR or ./localtrack-runs)")
    p = sub.add_parser("runs", parents=[common], help="list runs with state, steps, last update")
    p.add_argument("project", nargs="?", help="only this project")
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("show", parents=[common], help="config, summary, events and last rows")
    p.add_argument("path", metavar="PROJECT/ID")
    p.add_argument("--rows", type=int, default=5, help="how many last history rows (default 5)")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("demo", parents=[common],
                       help="log a run, SIGKILL it, auto-resume it, show it")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("doctor", parents=[common],
                       help="check stored runs for damage; --fix repairs what is safe to repair")
    p.add_argument("targets", nargs="*", metavar="PROJECT[/ID]", help="only these (default: all)")
    p.add_argument("--fix", action="store_true",
                   help="cut torn tails, delete orphan/stale/temp files (never drops good data)")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("gc", parents=[common],
                       help="delete artifact blobs no version names (what a killed writer left)")
    p.add_argument("projects", nargs="*", metavar="PROJECT", help="only these (default: all)")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    p.add_argument("--older-than", metavar="AGE",
                   help="only what is older (default 24h; a younger blob may be a live "
                   "log_artifact's whose version is still to come: keep it above the longest one)")
    p.set_defaults(func=cmd_gc)
    p = sub.add_parser("sweep", parents=[common],
                       help="create a sweep from W&B-style YAML (prints its id), or --status")
    p.add_argument("config", nargs="?", help="sweep YAML file")
    p.add_argument("--project", help="project (default: the YAML's, $LOCALTRACK_PROJECT)")
    p.add_argument("--status", metavar="PROJECT/SWEEP_ID", help="show a sweep's jobs and best run")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("agent", parents=[common], help="run jobs of a sweep on this node")
    p.add_argument("sweep", metavar="PROJECT/SWEEP_ID")
    p.add_argument("--count", type=int, help="run at most this many jobs")
    p.add_argument("--project", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_agent)
    p = sub.add_parser("sync", parents=[common],
                       help="upload runs to a directory or an S3-compatible store, incrementally")
    p.add_argument("targets", nargs="*", metavar="PROJECT[/RUN_ID]", help="only these (default: all)")
    p.add_argument("--to", required=True, metavar="URI",
                   help="a directory, file://, s3://BUCKET/PREFIX[?endpoint_override=HOST:PORT], gs://, "
                        "hdfs://; credentials from the AWS_* variables")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--watch", action="store_true", help="keep running: upload runs as they grow")
    mode.add_argument("--status", action="store_true", help="show what is pending per run, upload nothing")
    p.add_argument("--poll", type=float, metavar="N",
                   help="with --watch: poll every N seconds instead of using file events")
    p.add_argument("--max-lag", type=float, metavar="S",
                   help="with --watch: warn when a change waits more than S seconds to go up "
                        "(default 10)")
    p.add_argument("--clean", action="store_true",
                   help="delete local copies of finished runs once all their files are on the remote")
    p.add_argument("--retries", type=int, default=4, metavar="N",
                   help="retries of a failed upload, with exponential backoff (default 4)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="upload N runs at a time, each in order (default 4 to a directory, "
                        "16 to an object store)")
    p.set_defaults(func=cmd_sync)
    p = sub.add_parser("query", parents=[common],
                       help="SQL (DuckDB) over the views runs, history and events",
                       description="Views: runs (id, project, name, state, created, group, job_type, "
                                   "tags, notes, \"config.<key>\", \"summary.<key>\"), history "
                                   "(run_id, project, _step, _timestamp, one column per metric) and "
                                   "events (run_id, project, event, time, step, ...). Quote names "
                                   "with dots or slashes: \"config.lr\", \"val/acc\". Needs "
                                   "pip install 'localtrack[sql]'.")
    p.add_argument("sql", help='e.g. "SELECT id, \\"summary.loss\\" FROM runs"')
    p.add_argument("--project", help="only this project's runs")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="output: aligned table (default), CSV, or one JSON object per line")
    p.set_defaults(func=cmd_query)
    p = sub.add_parser("ui", parents=[common], help="serve a local dashboard of runs and charts")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (the dashboard has no login)")
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("plot", parents=[common], help="draw metrics of runs to an image (png, svg, pdf)")
    p.add_argument("paths", nargs="+", metavar="PROJECT/ID")
    p.add_argument("--key", action="append", required=True, help="metric to draw (repeat for more)")
    p.add_argument("--out", required=True, help="image file to write, e.g. loss.png")
    p.add_argument("--x", choices=("step", "time"), default="step", help="x axis (default step)")
    p.add_argument("--smooth", type=float, default=0.0, help="EMA smoothing weight in [0, 1)")
    p.add_argument("--log", action="store_true", help="log-scale y axis")
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("wandb-shim", help="print the folder to put on PYTHONPATH so that code "
                       "importing wandb (Transformers, Lightning) runs on localtrack")
    p.set_defaults(func=cmd_wandb_shim)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="localtrack: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except LocaltrackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `localtrack show ... | head`: the reader has all it wanted
        # Python flushes stdout again at exit: point it at /dev/null so that does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command cut off by `head`
