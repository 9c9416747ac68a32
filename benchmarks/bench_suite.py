#!/usr/bin/env python3
"""The benchmark suite of issue 5: localtrack against an orjson floor and its peers.

One command runs everything (``python benchmarks/bench_suite.py``); ``--only`` selects
workloads, ``--repeats`` the number of fresh-process repeats, ``--peers`` the peers.
Every workload runs in a FRESH subprocess (this script re-invoked with the hidden
``--worker NAME`` flag, or a standalone script for the whole-script workload); each is
repeated and medians are reported with min .. max. Ratios are taken per repeat (the
processes of one repeat run back to back, their order rotated between repeats) and the
median of those ratios is reported, so every ratio comes from this run on this machine.
The children, the repeat loop and the one timed loop are ``_harness.py``'s; here every system
is a ``Tracker`` entry in ``TRACKERS`` (how it imports, inits, logs a row, finishes) and every
log() workload a ``RowWorkload`` in ``ROW_WORKLOADS``.

Workloads (``--only`` names):
  log     10 float scalars per step: localtrack (``--steps``, default 10^5) against the
          floor (orjson lines into a buffered file) and one os.write per line; then each
          peer at its own, smaller step count, paired in the same repeat with localtrack and
          the floor at that same step count (per-step figures and ratios at equal length).
  wide    1,000 float keys per step (localtrack and floor 10^4 steps; peers fewer).
  mixed   floats, an int and strings every step, sparse keys (1 of 50 per step, eval keys
          every 10th step, a checkpoint path every 100th).
  script  whole-script wall time, as a process timed by fork/exec + wait4 (wall, CPU,
          peak RSS): import + init + 10 log() calls of 10 floats + finish.
  resume  init(resume="must") of finished runs of 10, 10^4, 10^6, 10^7 steps (timed in the
          child, and the whole process); each run is built once and reused.
  history Api(dir).run("p/id").history_table() of the 10^6-step run, and history(["k0"]).
  disk    bytes per step after sealing (segments/ and wal/ apart) and RSS sampled at
          intervals over the largest run (10^7 steps, capped by ``--max-steps``).
All workloads that need built runs share them: the largest run is built once, with RSS
sampled during the build, and serves resume, disk and RSS.

Peers (``--peers``, default all): wandb (WANDB_MODE=offline), trackio (local SQLite under
TRACKIO_DIR), tensorboardX (one add_scalar per key, add_text for strings), MLflow file store
(MLFLOW_ALLOW_FILE_STORE=true) and MLflow with a SQLite backend (strings go to set_tags:
MLflow has no per-step string history). A peer that is not installed, or fails, is
reported as such in the tables, never skipped silently. Install them with
``pip install -e '.[bench]'`` in a separate venv.

``--profile`` runs cProfile over localtrack's log() loop and finish() instead.
Progress goes to stderr, tables to stdout (``--markdown`` adds markdown, ``--json PATH``
writes the raw numbers). Temporary directories are removed at the end.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from _harness import (
    ChildError,
    Children,
    Row,
    Tracker,
    f_b,
    f_mib,
    f_ms,
    f_s,
    f_us,
    f_x,
    med,
    print_result,
    print_table,
    rounds,
    serve,
    stat_row,
)

T = TypeVar("T")

PROJECT = "bench"
KEYS = tuple(f"k{j}" for j in range(10))
WIDE_KEYS = tuple(f"grad/l{j:03d}" for j in range(1000))
POOL_MAX = 200_000  # distinct precomputed rows kept in memory; longer loops cycle them
WIDE_POOL = 1_000  # 1,000 rows of 1,000 floats (about 60 MB); cycled
WORKER_TIMEOUT = 1200.0  # seconds: a bound on every child process
BUILD_TIMEOUT = 3600.0  # the 10^7-step build
RESUME_SIZES = (10, 10_000, 1_000_000, 10_000_000)
HISTORY_STEPS = 1_000_000
WORKLOADS = ("log", "wide", "mixed", "script", "resume", "history", "disk")
TEXTS = ("the cat sat on the mat", "a quick brown fox", "loss went down again",
         "nothing to see here", "validation sample 7: predicted 3, label 3",
         "checkpoint looks fine", "lr warmup finished", "gradient norm clipped")


# -- the systems: localtrack, the floors and the peers, as the lines a user writes ---------------


def wandb_env(d: str) -> dict[str, str]:
    """Offline, quiet, and every file under the scratch dir ``d``."""
    aux = os.path.join(d, "aux")
    return {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": os.path.join(d, "store"),
            "WANDB_CONFIG_DIR": os.path.join(aux, "config"),
            "WANDB_CACHE_DIR": os.path.join(aux, "cache"),
            "WANDB_DATA_DIR": os.path.join(aux, "data"),
            "WANDB_ARTIFACT_DIR": os.path.join(aux, "artifacts")}


def trackio_env(d: str) -> dict[str, str]:
    return {"TRACKIO_DIR": os.path.join(d, "store")}  # trackio's SQLite files go to the store


def mlflow_env(d: str) -> dict[str, str]:
    return {"MLFLOW_ALLOW_FILE_STORE": "true"}


FLOOR_IMPORTS = """
    import orjson
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    os.makedirs(store, exist_ok=True)
"""
MLFLOW_LOG = """
    log_metrics(nums, step=i)
    if strs:
        set_tags(strs)
"""  # MLflow has no per-step string history: strings become tags
TRACKERS = {t.name: t for t in (
    Tracker("localtrack", imports="import localtrack",
            watch="warned = _Count()",
            init="run = localtrack.init(project=PROJECT, dir=store)",
            bind="log = run.log", log="log(row)", finish="run.finish()",
            after="""
                waited, failures = settle(store)
                res.update(sealer_after_finish=waited, bytes_detail=localtrack_bytes(store),
                           warnings=(warned.messages + failures)[:5])
            """),
    Tracker("floor_buffered", imports=FLOOR_IMPORTS,  # orjson lines into a buffered file
            init='f = open(os.path.join(store, "floor.jsonl"), "wb")',
            bind="write = f.write", log="write(dumps(row, option=opt))", finish="f.close()"),
    Tracker("floor_write", imports=FLOOR_IMPORTS,  # one os.write per line
            init='fd = os.open(os.path.join(store, "floor.jsonl"), '
                 'os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)',
            bind="write = os.write", log="write(fd, dumps(row, option=opt))",
            finish="os.close(fd)"),
    Tracker("wandb", module="wandb", env=wandb_env, imports="import wandb",
            init="run = wandb.init(project=PROJECT, dir=store)",
            bind="log = run.log", log="log(row)", finish="run.finish()"),
    Tracker("trackio", module="trackio", env=trackio_env, imports="import trackio",
            init="trackio.init(project=PROJECT)",
            bind="log = trackio.log", log="log(row)", finish="trackio.finish()"),
    Tracker("tensorboardx", module="tensorboardX", split=True,
            imports="from tensorboardX import SummaryWriter",
            init="writer = SummaryWriter(logdir=store)",
            bind="add_scalar, add_text = writer.add_scalar, writer.add_text",
            log="""
                for k, v in nums.items():
                    add_scalar(k, v, i)
                for k, v in strs.items():
                    add_text(k, v, i)
            """, finish="writer.close()"),
    Tracker("mlflow-file", module="mlflow", env=mlflow_env, split=True, imports="import mlflow",
            init="""
                mlflow.set_tracking_uri("file://" + os.path.abspath(store))
                mlflow.set_experiment(PROJECT)
                mlflow.start_run()
            """, bind="log_metrics, set_tags = mlflow.log_metrics, mlflow.set_tags",
            log=MLFLOW_LOG, finish="mlflow.end_run()"),
    Tracker("mlflow-sqlite", module="mlflow", env=mlflow_env, split=True, imports="import mlflow",
            init="""
                mlflow.set_tracking_uri("sqlite:///" + os.path.abspath(os.path.join(store, "mlflow.db")))
                mlflow.set_experiment(PROJECT)
                mlflow.start_run()
            """, bind="log_metrics, set_tags = mlflow.log_metrics, mlflow.set_tags",
            log=MLFLOW_LOG, finish="mlflow.end_run()"),
)}
PEERS = tuple(name for name, t in TRACKERS.items() if t.module)  # the systems a probe looks for


# -- the log() workloads, as data (rows are built before any clock starts) -----------------------


def log_row(i: int, rng: random.Random) -> dict[str, Any]:
    return {k: rng.random() * (j + 1) for j, k in enumerate(KEYS)}


def wide_row(i: int, rng: random.Random) -> dict[str, Any]:
    return {k: rng.random() for k in WIDE_KEYS}


def mixed_row(i: int, rng: random.Random) -> dict[str, Any]:
    row: dict[str, Any] = {"train/loss": rng.random(), "train/acc": rng.random(),
                           "lr": rng.random() * 1e-3, "grad_norm": rng.random() * 10,
                           "epoch": i // 1000, "phase": "warmup" if i < 1000 else "train",
                           f"sparse/k{i % 50}": rng.random()}
    if i % 10 == 0:
        row.update({"val/loss": rng.random(), "val/acc": rng.random(),
                    "val/sample": TEXTS[rng.randrange(len(TEXTS))]})
    if i % 100 == 0:
        row["checkpoint"] = f"ckpt/step-{i:08d}.pt"
    return row


@dataclass(frozen=True)
class RowWorkload:
    """A log() workload: localtrack and its floors at ``--STEPS`` steps, ``--REPEATS`` times;
    then each peer at its own step count, paired in the same repeat with localtrack and the
    buffered floor at that count."""

    name: str
    title: str
    row: Callable[[int, random.Random], dict[str, Any]]  # row i, from a seeded generator
    pool: int  # distinct rows built before the clock; longer loops cycle them
    steps: str  # the option that sets localtrack's and the floors' steps
    repeats: str  # the option that sets the repeats
    floors: tuple[str, ...]
    # Steps per peer: chosen so that one peer run's loop stays within seconds on a loaded 2-core
    # machine; scaled by --peer-scale.
    peer_steps: dict[str, int]


ROW_WORKLOADS = {w.name: w for w in (
    RowWorkload("log", "10 float scalars per step", log_row, POOL_MAX, "steps", "repeats",
                ("floor_buffered", "floor_write"),
                {"wandb": 5_000, "trackio": 10_000, "tensorboardx": 2_000, "mlflow-file": 1_000,
                 "mlflow-sqlite": 100}),
    RowWorkload("wide", "1,000 float keys per step", wide_row, WIDE_POOL, "wide_steps",
                "wide_repeats", ("floor_buffered",),
                {"wandb": 50, "trackio": 100, "tensorboardx": 10, "mlflow-file": 5,
                 "mlflow-sqlite": 2}),
    RowWorkload("mixed", "floats, an int, strings, sparse keys", mixed_row, POOL_MAX,
                "mixed_steps", "repeats", ("floor_buffered",),
                {"wandb": 2_000, "trackio": 5_000, "tensorboardx": 1_000, "mlflow-file": 500,
                 "mlflow-sqlite": 50}),
)}


def make_rows(workload: str, steps: int, seed: int) -> list[dict[str, Any]]:
    w = ROW_WORKLOADS[workload]
    rng = random.Random(seed)
    return [w.row(i, rng) for i in range(min(steps, w.pool))]


def stream(rows: list[T], steps: int) -> Iterable[T]:
    if steps <= len(rows):
        return rows[:steps] if steps < len(rows) else rows
    return itertools.islice(itertools.cycle(rows), steps)


def split_row(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    nums = {k: v for k, v in row.items() if type(v) is not str}
    strs = {k: v for k, v in row.items() if type(v) is str}
    return nums, strs


# The whole-script workload: two reference scripts, then the trackers' own scripts (label ->
# tracker), each rotated with the others, after one untimed warm-up each.
SCRIPT_ROWS = "rows = [{f'k{j}': (i + 1) * 0.001 * (j + 1) for j in range(10)} for i in range(10)]"
SCRIPT_REFERENCES = {"python (empty script)": "pass\n",
                     "import pyarrow.parquet (reference)": "import pyarrow.parquet\n"}
SCRIPT_TRACKERS = {"floor: orjson, 10 lines, buffered file": "floor_buffered",
                   "localtrack": "localtrack", "wandb": "wandb", "trackio": "trackio",
                   "tensorboardx": "tensorboardx", "mlflow-file": "mlflow-file"}


# -- disk and memory helpers -------------------------------------------------------------------


def tree_bytes(path: str) -> int:
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except FileNotFoundError:
                pass
    return total


def localtrack_bytes(store: str) -> dict[str, int]:
    """Bytes of one run's segments/, wal/ and everything else (metadata, events)."""
    runs = os.path.join(store, PROJECT, "runs")
    out = {"segments": 0, "wal": 0, "other": 0}
    for rid in os.listdir(runs):
        rdir = os.path.join(runs, rid)
        for part in ("segments", "wal"):
            out[part] += tree_bytes(os.path.join(rdir, part))
        out["other"] += tree_bytes(rdir) - tree_bytes(os.path.join(rdir, "segments")) \
            - tree_bytes(os.path.join(rdir, "wal"))
    out["store_total"] = tree_bytes(store)
    return out


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def vm_hwm() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def settle(store: str) -> tuple[float, list[str]]:
    """Wait for the sealer processes a run left working after finish() (outside every timed
    region): (seconds waited, failures they reported in seal.log)."""
    try:
        from localtrack import _sealer
    except ImportError:  # a localtrack that seals in its own process
        return 0.0, []
    t = time.perf_counter()
    failures = []
    for lock in Path(store).rglob(_sealer.SEAL_LOCK):
        _sealer.wait_idle(lock.parent, timeout=WORKER_TIMEOUT)
        log = lock.parent / _sealer.LOG
        if log.exists() and "failed" in log.read_text():
            failures.append(f"{log}: {log.read_text()[-500:]}")
    return time.perf_counter() - t, failures


class _Count:
    """Counts localtrack's warnings (a failed seal is logged, not raised: it must show here)."""

    def __init__(self) -> None:
        import logging

        self.messages: list[str] = []
        outer = self

        class H(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                exc = record.exc_info[1] if record.exc_info else None
                outer.messages.append(record.getMessage() + (f" ({type(exc).__name__}: {exc})"
                                                              if exc else ""))

        logging.getLogger("localtrack").addHandler(H(logging.WARNING))


# -- workers (each runs in a fresh child: ``--worker NAME --arg JSON``) ---------------------------


def w_log(a: dict) -> dict:
    """One system, one workload: precompute the rows, then the system's timed loop."""
    tracker = TRACKERS[a["system"]]
    steps = a["steps"]
    rows: list[Any] = make_rows(a["workload"], steps, a["seed"])
    store = os.path.join(a["dir"], "store")
    os.makedirs(store, exist_ok=True)
    if tracker.split:  # which values are strings: known before the clock
        rows = [split_row(r) for r in rows]
    timed = tracker.timed(globals())
    res = timed(store, stream(rows, steps), time.perf_counter)
    res["total"] = res["init"] + res["loop"] + res["finish"]
    res["bytes"] = tree_bytes(store)
    return res


def w_probe(a: dict) -> dict:
    """Whether a peer's module imports here, and its version."""
    import importlib

    mod = importlib.import_module(a["module"])
    return {"version": getattr(mod, "__version__", "?")}


def w_build(a: dict) -> dict:
    """Build a finished run of ``steps`` steps (10 floats each), sampling RSS on the way."""
    pc = time.perf_counter
    import localtrack
    rng = random.Random(a["seed"])
    rnd = rng.random
    f32 = a.get("f32", False)
    pack, unpack = struct.Struct("<10f").pack, struct.Struct("<10f").unpack
    steps = a["steps"]
    every = max(1, steps // a.get("samples", 20))
    samples: list[list[float]] = []
    rss_before = rss_bytes()
    warned = _Count()
    t0 = pc()
    run = localtrack.init(project=PROJECT, id=a["id"], dir=a["dir"])
    rss_init = rss_bytes()
    t1 = pc()
    log = run.log
    keys = KEYS
    nxt = every
    for i in range(1, steps + 1):
        vals = [rnd() for _ in keys]
        if f32:
            vals = unpack(pack(*vals))
        log(dict(zip(keys, vals, strict=True)))
        if i == nxt:
            samples.append([i, rss_bytes(), pc() - t1])
            nxt += every
    t2 = pc()
    hwm_loop = vm_hwm()
    run.finish()
    t3 = pc()
    waited, failures = settle(a["dir"])
    rdir = os.path.join(a["dir"], PROJECT, "runs", a["id"])
    try:
        with open(os.path.join(rdir, "manifest.json"), "rb") as fh:
            manifest = json.loads(fh.read())
    except FileNotFoundError:  # nothing was sealed (or every seal failed: see warnings)
        manifest = {"segments": []}
    sealed_rows = sum(s["rows"] for s in manifest["segments"])
    detail = localtrack_bytes(a["dir"])
    return {"step": run.step, "init": t1 - t0, "loop": t2 - t1, "finish": t3 - t2,
            "rss_before_init": rss_before, "rss_after_init": rss_init, "samples": samples,
            "hwm_loop": hwm_loop, "hwm_end": vm_hwm(), "rss_end": rss_bytes(),
            "sealed_rows": sealed_rows, "segments_count": len(manifest["segments"]),
            "bytes_detail": detail, "sealer_after_finish": waited,
            "warnings": (warned.messages + failures)[:5]}


def w_crash(a: dict) -> dict:
    """Log ``steps`` steps of 10 floats, print the result, then SIGKILL this process."""
    import signal

    import localtrack
    rng = random.Random(a["seed"])
    run = localtrack.init(project=PROJECT, id=a["id"], dir=a["dir"])
    for _ in range(a["steps"]):
        run.log({k: rng.random() for k in KEYS})
    print_result({"step": run.step})
    os.kill(os.getpid(), signal.SIGKILL)
    raise SystemExit(3)  # not reached


def w_resume(a: dict) -> dict:
    pc = time.perf_counter
    t = pc()
    import localtrack
    t0 = pc()
    run = localtrack.init(project=PROJECT, id=a["id"], resume="must", dir=a["dir"])
    t1 = pc()
    starting = run.starting_step
    run.finish()
    t2 = pc()
    return {"import": t0 - t, "init": t1 - t0, "finish": t2 - t1, "starting_step": starting}


def w_history(a: dict) -> dict:
    pc = time.perf_counter
    t = pc()
    import localtrack
    t0 = pc()
    run = localtrack.Api(a["dir"]).run(f"{PROJECT}/{a['id']}")
    table = run.history_table(a["keys"])
    t1 = pc()
    table2 = localtrack.Api(a["dir"]).run(f"{PROJECT}/{a['id']}").history_table(a["keys"])
    t2 = pc()
    return {"import": t0 - t, "cold": t1 - t0, "warm": t2 - t1, "rows": table.num_rows,
            "columns": table.num_columns, "rows2": table2.num_rows}


def w_profile(a: dict) -> dict:
    """cProfile of the log() loop and of finish() (main thread only; see --profile)."""
    import cProfile
    import io
    import pstats

    import localtrack
    rows = make_rows("log", a["steps"], 7)
    store = os.path.join(a["dir"], "store")
    run = localtrack.init(project=PROJECT, dir=store)
    out = {}
    prof = cProfile.Profile()
    prof.enable()
    for row in rows:
        run.log(row)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
    out["log"] = buf.getvalue()
    prof = cProfile.Profile()
    prof.enable()
    run.finish()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
    out["finish"] = buf.getvalue()
    return out


WORKERS = {"log": w_log, "probe": w_probe, "build": w_build, "crash": w_crash,
           "resume": w_resume, "history": w_history, "profile": w_profile}


# -- the suite ---------------------------------------------------------------------------------


class Suite:
    def __init__(self, a: argparse.Namespace, tmp: str, children: Children) -> None:
        self.a = a
        self.tmp = tmp
        self.spawn = children.spawn
        self.run_child = children.run
        self.sections: list[tuple[str, list[Row]]] = []
        self.raw: dict[str, Any] = {}
        self.targets: list[tuple[str, str, str, str]] = []  # figure, target, measured, verdict
        self.peer_status: dict[str, str] = {}  # peer -> "ok <version>" or why not
        self.builds: dict[tuple[int, bool], dict[str, Any]] = {}
        self.notes: list[str] = []  # localtrack warnings seen in any child (e.g. a failed seal)

    def note_warnings(self, where: str, res: dict[str, Any]) -> None:
        for msg in res.get("warnings") or []:
            note = f"localtrack warned during {where}: {msg}"
            if note not in self.notes:
                self.notes.append(note)
                self.say("  WARNING: " + note)

    def say(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def target(self, figure: str, target: str, measured: str, ok: bool | None) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "NOT met")
        self.targets.append((figure, target, measured, verdict))

    # peers ------------------------------------------------------------------------------------

    def probe_peers(self) -> list[str]:
        usable = []
        for peer in self.a.peers:
            d = tempfile.mkdtemp(prefix=f"probe-{peer}-", dir=self.tmp)
            try:
                module = TRACKERS[peer].module
                res = self.spawn("probe", {"module": module}, env=TRACKERS[peer].env(d), cwd=d)
                self.peer_status[peer] = f"installed, {module} {res['version']}"
                usable.append(peer)
            except ChildError as exc:
                self.peer_status[peer] = f"NOT INSTALLED / not importable ({exc})"
            finally:
                shutil.rmtree(d, ignore_errors=True)
            self.say(f"  peer {peer}: {self.peer_status[peer]}")
        return usable

    def one(self, system: str, workload: str, steps: int, seed: int) -> dict[str, Any]:
        d = tempfile.mkdtemp(prefix=f"{workload}-{system}-", dir=self.tmp)
        try:
            res = self.spawn("log", {"system": system, "workload": workload, "steps": steps,
                                     "seed": seed, "dir": d}, env=TRACKERS[system].env(d), cwd=d)
            self.note_warnings(f"{workload} ({steps:,} steps)", res)
            return res
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def runs(self, workload: str, steps: int, seed: int) -> Callable[[str, int], dict[str, Any]]:
        """What ``rounds`` runs: a system's log loop at repeat r, on rows seeded ``seed + r``."""
        return lambda system, r: self.one(system, workload, steps, seed + r)

    # log / wide / mixed -------------------------------------------------------------------------

    def bench_log(self, w: RowWorkload, peers: list[str]) -> None:
        a = self.a
        workload, steps, repeats = w.name, getattr(a, w.steps), getattr(a, w.repeats)
        base = ["localtrack", *w.floors]
        res: dict[str, list[dict]] = {s: [] for s in base}
        for r, batch in rounds(base, repeats, self.runs(workload, steps, 1000)):
            for system, v in batch.items():
                res[system].append(v)
            self.say(f"  {workload} {steps:,} steps, repeat {r + 1}/{repeats}: " + ", ".join(
                f"{s} total {res[s][-1]['total']:.3f} s" for s in base))
        self.raw[f"{workload}_main"] = res
        rows = self._main_rows(res, steps, workload)
        self.sections.append((f"{workload}: {w.title}, {steps:,} steps, {repeats} repeats, "
                              "localtrack vs floor", rows))

        # peers, each paired with localtrack and the buffered floor at its own step count
        if not peers and not a.peers:
            return
        prow: list[Row] = []
        prs: dict[str, Any] = {}
        peer_steps = {p: max(1, int(w.peer_steps[p] * a.peer_scale)) for p in a.peers}
        for peer in a.peers:
            if peer not in peers:
                prow.append((f"{peer}", "not run", self.peer_status.get(peer, "not installed")))
        runnable = [p for p in a.peers if p in peers]
        if "mlflow-sqlite" in runnable and workload not in a.sqlite_workloads:
            runnable.remove("mlflow-sqlite")
            prow.append(("mlflow-sqlite", "not run here",
                         f"--sqlite-workloads {','.join(a.sqlite_workloads)}: its fresh-database "
                         "init alone takes ~10 s (see the log workload)"))
        for peer in runnable:
            n = peer_steps[peer]
            trio: dict[str, list[dict]] = {peer: [], "localtrack": [], "floor_buffered": []}
            failed = None
            order = [peer, "localtrack", "floor_buffered"]
            try:
                for r, batch in rounds(order, a.peer_repeats, self.runs(workload, n, 2000)):
                    for system, v in batch.items():
                        trio[system].append(v)
                    self.say(f"  {workload} {peer} {n:,} steps, repeat {r + 1}/{a.peer_repeats}: "
                             f"{peer} total {batch[peer]['total']:.2f} s (loop "
                             f"{batch[peer]['loop'] / n * 1e6:.0f} us/step), localtrack total "
                             f"{batch['localtrack']['total']:.3f} s")
            except ChildError as exc:
                failed = str(exc)
                self.say(f"  {workload} {peer}: FAILED: {exc}")
            prs[peer] = {"steps": n, "runs": trio, "failed": failed}
            if failed and not trio[peer]:
                prow.append((f"{peer}", "FAILED", failed[:200]))
                continue
            prow += self._peer_rows(peer, trio, n, failed)
        self.raw[f"{workload}_peers"] = prs
        if prow:
            self.sections.append((f"{workload}: peers, each paired with localtrack and the "
                                  "buffered floor at the peer's step count", prow))

    def _main_rows(self, res: dict[str, list[dict]], steps: int, workload: str) -> list[Row]:
        lt, fb = res["localtrack"], res["floor_buffered"]
        per = lambda rs, k: [x[k] / steps for x in rs]  # noqa: E731
        rows = [
            stat_row("localtrack log(), loop only, per step", per(lt, "loop"), f_us),
            stat_row("localtrack init + loop + finish, per step", per(lt, "total"), f_us),
            stat_row("  init()", [x["init"] for x in lt], f_ms),
            stat_row("  finish()", [x["finish"] for x in lt], f_s),
            stat_row("  import localtrack", [x["import"] for x in lt], f_ms),
            stat_row("  peak RSS of the process (incl. the precomputed rows)",
                     [x["_maxrss"] for x in lt], f_mib),
            stat_row("floor (orjson, buffered file): loop, per step", per(fb, "loop"), f_us),
            stat_row("floor (orjson, buffered file): open + loop + close, per step",
                     per(fb, "total"), f_us),
        ]
        if "floor_write" in res:
            fw = res["floor_write"]
            rows.append(stat_row("floor (orjson, one os.write per line): loop, per step",
                                 per(fw, "loop"), f_us))
        rows.append(stat_row("localtrack bytes on disk per step (after finish)",
                             [x["bytes"] / steps for x in lt], f_b))
        rows.append(stat_row("floor bytes per step (JSONL)", [x["bytes"] / steps for x in fb], f_b))
        ratios = [
            ("ratio incl. init+finish: localtrack / buffered floor",
             [x["total"] / y["total"] for x, y in zip(lt, fb, strict=True)]),
            ("ratio loop only: localtrack / buffered floor",
             [x["loop"] / y["loop"] for x, y in zip(lt, fb, strict=True)]),
        ]
        if "floor_write" in res:
            fw = res["floor_write"]
            ratios.append(("ratio loop only: localtrack / os.write floor",
                           [x["loop"] / y["loop"] for x, y in zip(lt, fw, strict=True)]))
        for label, vs in ratios:
            rows.append(stat_row(label, vs, f_x))
        if workload == "log":
            r = [x["total"] / y["total"] for x, y in zip(lt, fb, strict=True)]
            self.target("log(), 10 scalars, incl. init+finish, vs buffered orjson floor",
                        "<= 3x", f"{med(r):.2f}x ({min(r):.2f}x .. {max(r):.2f}x), "
                        f"{steps:,} steps", med(r) <= 3)
            r2 = [x["loop"] / y["loop"] for x, y in zip(lt, fb, strict=True)]
            self.target("  same, log() loop only (for information)", "<= 3x",
                         f"{med(r2):.2f}x ({min(r2):.2f}x .. {max(r2):.2f}x)", med(r2) <= 3)
        return rows

    def _peer_rows(self, peer: str, trio: dict[str, list[dict]], n: int,
                   failed: str | None) -> list[Row]:
        p, lt, fb = trio[peer], trio["localtrack"], trio["floor_buffered"]
        per = lambda rs, k: [x[k] / n for x in rs]  # noqa: E731
        rows = [
            (f"{peer} ({n:,} steps, {len(p)} repeats)" + (f"; FAILED later: {failed}" if failed
                                                            else ""), "", ""),
            stat_row(f"  {peer}: log loop, per step", per(p, "loop"), f_us),
            stat_row(f"  {peer}: init + loop + finish, per step", per(p, "total"), f_us),
            stat_row(f"  {peer}: import", [x["import"] for x in p], f_s),
            stat_row(f"  {peer}: init", [x["init"] for x in p], f_s),
            stat_row(f"  {peer}: finish", [x["finish"] for x in p], f_s),
            stat_row(f"  {peer}: bytes on disk per step (whole store)",
                     [x["bytes"] / n for x in p], f_b),
            stat_row(f"  {peer}: peak RSS of the Python process", [x["_maxrss"] for x in p], f_mib),
            stat_row(f"  localtrack at {n:,} steps: loop, per step", per(lt, "loop"), f_us),
            stat_row(f"  localtrack at {n:,} steps: init + loop + finish, per step",
                     per(lt, "total"), f_us),
            stat_row(f"  localtrack at {n:,} steps: bytes on disk per step",
                     [x["bytes"] / n for x in lt], f_b),
            stat_row(f"  floor at {n:,} steps: open + loop + close, per step", per(fb, "total"),
                     f_us),
        ]
        r_tot = [x["total"] / y["total"] for x, y in zip(p, lt, strict=True)]
        r_loop = [x["loop"] / y["loop"] for x, y in zip(p, lt, strict=True)]
        r_imp = [(x["import"] + x["total"]) / (y["import"] + y["total"]) for x, y in zip(p, lt, strict=True)]
        rows += [
            stat_row(f"  ratio {peer} / localtrack, incl. init+finish", r_tot, f_x),
            stat_row(f"  ratio {peer} / localtrack, loop only", r_loop, f_x),
            stat_row(f"  ratio {peer} / localtrack, incl. import+init+finish", r_imp, f_x),
            stat_row(f"  ratio {peer} / buffered floor, incl. init+finish",
                     [x["total"] / y["total"] for x, y in zip(p, fb, strict=True)], f_x),
        ]
        return rows

    def peer_targets(self) -> None:
        prs = self.raw.get("log_peers", {})
        for peer, want in (("wandb", 30), ("trackio", 7)):
            info = prs.get(peer)
            if not info or not info["runs"][peer]:
                why = self.peer_status.get(peer, "not selected")
                if info and info.get("failed"):
                    why = "failed: " + info["failed"][:120]
                self.target(f"faster than {peer} per step", f">= {want}x", f"not measured ({why})",
                            None)
                continue
            trio, n = info["runs"], info["steps"]
            r_tot = [x["total"] / y["total"] for x, y in zip(trio[peer], trio["localtrack"], strict=True)]
            r_loop = [x["loop"] / y["loop"] for x, y in zip(trio[peer], trio["localtrack"], strict=True)]
            self.target(f"faster than {peer} per step, incl. init+finish ({n:,} steps each)",
                        f">= {want}x", f"{med(r_tot):.1f}x ({min(r_tot):.1f}x .. {max(r_tot):.1f}x)",
                        med(r_tot) >= want)
            self.target(f"faster than {peer} per step, log() loop only ({n:,} steps each)",
                        f">= {want}x", f"{med(r_loop):.1f}x ({min(r_loop):.1f}x .. "
                        f"{max(r_loop):.1f}x)", med(r_loop) >= want)

    # whole script -------------------------------------------------------------------------------

    def bench_script(self, peers: list[str]) -> None:
        a = self.a
        scripts = dict(SCRIPT_REFERENCES)
        scripts.update({label: TRACKERS[t].script(PROJECT, SCRIPT_ROWS)
                        for label, t in SCRIPT_TRACKERS.items()})
        script_peers = {label for label, t in SCRIPT_TRACKERS.items() if t in PEERS}
        names = [n for n in scripts if n not in script_peers or n in peers]
        paths = {}
        for i, name in enumerate(names):
            paths[name] = os.path.join(self.tmp, f"script_{i}.py")
            with open(paths[name], "w") as fh:
                fh.write(scripts[name])
        res: dict[str, list[dict]] = {n: [] for n in names}
        failed: dict[str, str] = {}
        reps = max(5, a.repeats)

        def once(name: str, r: int) -> dict[str, Any] | None:
            if name in failed:
                return None
            d = tempfile.mkdtemp(prefix="script-", dir=self.tmp)
            os.makedirs(os.path.join(d, "store"))
            tracker = TRACKERS.get(SCRIPT_TRACKERS.get(name, ""))
            try:
                child = self.run_child([sys.executable, paths[name], os.path.join(d, "store")],
                                       env=tracker.env(d) if tracker else {}, cwd=d)
            finally:
                shutil.rmtree(d, ignore_errors=True)
            if child["rc"] != 0:
                failed[name] = (child["stderr"].strip().splitlines() or ["?"])[-1][:200]
                return None
            return child

        # one untimed warm-up each (page cache, .pyc files)
        for r, batch in rounds(names, reps, once, warmup=True):
            for name, child in batch.items():
                if child is not None:
                    res[name].append({k: child[k] for k in ("wall", "cpu", "maxrss")})
            self.say(f"  script repeat {r + 1}/{reps}: " + ", ".join(
                f"{n.split(':')[0].split(' (')[0]} {res[n][-1]['wall']:.2f} s"
                for n in names if res[n]))
        self.raw["script"] = res
        rows: list[Row] = []
        for name in names:
            if name in failed:
                rows.append((name, "FAILED", failed[name]))
                continue
            rs = res[name]
            rows.append(stat_row(f"{name}: wall", [x["wall"] for x in rs], f_s))
            rows.append(stat_row(f"  {name}: CPU (user+sys)", [x["cpu"] for x in rs], f_s))
            rows.append(stat_row(f"  {name}: peak RSS", [x["maxrss"] for x in rs], f_mib))
        for peer in a.peers:
            if peer not in script_peers:
                rows.append((f"{peer}", "not run here", "its init alone is in the log tables"))
            elif peer not in peers:
                rows.append((f"{peer}", "not run", self.peer_status.get(peer, "")))
        lt = res.get("localtrack", [])
        base = res.get("python (empty script)", [])
        if lt and base and "localtrack" not in failed:
            rows.append(stat_row("ratio wall: localtrack / empty python",
                                 [x["wall"] / y["wall"] for x, y in zip(lt, base, strict=True)], f_x))
            for name in names:
                if name in script_peers and res[name] and name not in failed:
                    rows.append(stat_row(f"ratio wall: {name} / localtrack",
                                         [x["wall"] / y["wall"] for x, y in zip(res[name], lt, strict=True)],
                                         f_x))
        self.sections.append((f"whole script as a process (fork/exec + wait4), import + init + "
                              f"10 log() + finish, {reps} repeats after 1 warm-up", rows))
        if lt:
            w = [x["wall"] for x in lt]
            self.target("whole script wall time (import + init + 10 logs + finish)", "<= 0.3 s",
                        f"{med(w):.3f} s ({min(w):.3f} .. {max(w):.3f} s)", med(w) <= 0.3)

    # builds -------------------------------------------------------------------------------------

    def build(self, steps: int, f32: bool = False) -> dict[str, Any]:
        key = (steps, f32)
        if key in self.builds:
            return self.builds[key]
        root = tempfile.mkdtemp(prefix=f"build-{steps}{'-f32' if f32 else ''}-", dir=self.tmp)
        rid = f"r{steps}{'f32' if f32 else ''}"
        self.say(f"  building a finished run of {steps:,} steps{' (float32 values)' if f32 else ''}"
                 " ...")
        t = time.perf_counter()
        res = self.spawn("build", {"steps": steps, "seed": steps, "id": rid, "dir": root,
                                   "f32": f32}, cwd=root, timeout=BUILD_TIMEOUT)
        res["root"], res["id"], res["build_wall"] = root, rid, time.perf_counter() - t
        self.note_warnings(f"the build of {steps:,} steps", res)
        if res["step"] != steps:
            raise SystemExit(f"build of {steps} steps ended at step {res['step']}")
        self.say(f"  built {steps:,} steps in {res['build_wall']:.1f} s "
                 f"(loop {res['loop'] / steps * 1e6:.1f} us/step, finish {res['finish']:.2f} s)")
        self.builds[key] = res
        return res

    # resume -------------------------------------------------------------------------------------

    def crashed(self, steps: int) -> dict[str, Any]:
        """A pristine run of ``steps`` steps whose writer was SIGKILLed after its last log()."""
        root = tempfile.mkdtemp(prefix=f"crashed-{steps}-", dir=self.tmp)
        rid = f"c{steps}"
        self.say(f"  building a crashed run of {steps:,} steps ...")
        res = self.spawn("crash", {"steps": steps, "seed": steps, "id": rid, "dir": root},
                         cwd=root, timeout=BUILD_TIMEOUT, expect_kill=True)
        settle(root)  # its sealer finishes what the writer closed; the tail stays unsealed
        res["root"], res["id"] = root, rid
        return res

    def bench_resume(self, sizes: list[int]) -> None:
        """Finished runs of every size; crashed runs (resumed from a pristine copy each time,
        since a resume repairs and finishes them) of the smallest size and of up to 10^6 steps."""
        a = self.a
        built = {n: self.build(n) for n in sizes}
        crash_sizes = sorted({min(sizes), min(max(sizes), 1_000_000)})
        crashed = {n: self.crashed(n) for n in crash_sizes}
        res: dict[int, list[dict]] = {n: [] for n in sizes}
        cres: dict[int, list[dict]] = {n: [] for n in crash_sizes}

        def resume(n: int, r: int) -> dict[str, Any]:
            b = built[n]
            out = self.spawn("resume", {"id": b["id"], "dir": b["root"]}, cwd=b["root"])
            if out["starting_step"] != n:
                raise SystemExit(f"resumed run of {n} steps at {out['starting_step']}")
            return out

        for r, batch in rounds(sizes, a.repeats, resume):
            for n, out in batch.items():
                res[n].append(out)
            for n in crash_sizes:
                c = crashed[n]
                copy = tempfile.mkdtemp(prefix=f"resume-crashed-{n}-", dir=self.tmp)
                shutil.copytree(c["root"], copy, dirs_exist_ok=True)
                out = self.spawn("resume", {"id": c["id"], "dir": copy}, cwd=copy)
                settle(copy)
                shutil.rmtree(copy)
                if out["starting_step"] != n:
                    raise SystemExit(f"resumed crashed run of {n} steps at {out['starting_step']}")
                cres[n].append(out)
            self.say(f"  resume repeat {r + 1}/{a.repeats}: " + ", ".join(
                f"{n:,}: {res[n][-1]['init'] * 1e3:.1f} ms" for n in sizes) + "; crashed " +
                ", ".join(f"{n:,}: {cres[n][-1]['init'] * 1e3:.1f} ms" for n in crash_sizes))
        self.raw["resume"] = res
        self.raw["resume_crashed"] = cres
        rows: list[Row] = []
        for n in sizes:
            rows.append(stat_row(f"resume {n:,} steps: init(resume='must')",
                                 [x["init"] for x in res[n]], f_ms))
            rows.append(stat_row(f"  {n:,} steps: finish() after resume",
                                 [x["finish"] for x in res[n]], f_ms))
            rows.append(stat_row(f"  {n:,} steps: whole process (import+init+finish)",
                                 [x["_wall"] for x in res[n]], f_s))
            b = built[n]
            rows.append((f"  {n:,} steps: on disk", f"{b['segments_count']} segment(s)",
                         f"wal {b['bytes_detail']['wal']:,} B"))
        for n in crash_sizes:
            rows.append(stat_row(f"resume crashed {n:,} steps: init(resume='must')",
                                 [x["init"] for x in cres[n]], f_ms))
        lo, hi = min(sizes), max(sizes)
        if lo != hi:
            ri = [y["init"] / x["init"] for x, y in zip(res[lo], res[hi], strict=True)]
            rw = [y["_wall"] / x["_wall"] for x, y in zip(res[lo], res[hi], strict=True)]
            rows.append(stat_row(f"ratio init(): {hi:,} / {lo:,} steps", ri, f_x))
            rows.append(stat_row(f"ratio whole process: {hi:,} / {lo:,} steps", rw, f_x))
            capped = "" if hi >= 10_000_000 else f" (CAPPED at {hi:,} steps by --max-steps)"
            self.target(f"resume {hi:,} steps vs {lo:,} steps, init() ratio{capped}", "<= 1.5",
                        f"{med(ri):.2f}x ({min(ri):.2f}x .. {max(ri):.2f}x)", med(ri) <= 1.5)
        if len(crash_sizes) > 1:
            clo, chi = crash_sizes
            rc = [y["init"] / x["init"] for x, y in zip(cres[clo], cres[chi], strict=True)]
            rows.append(stat_row(f"ratio init(), crashed runs: {chi:,} / {clo:,} steps", rc, f_x))
        self.sections.append(("resume: init(resume='must') of finished and crashed runs, timed "
                              "in a fresh process", rows))

    # history ------------------------------------------------------------------------------------

    def bench_history(self, steps: int) -> None:
        a = self.a
        b = self.build(steps)
        res: dict[str, list[dict]] = {"all": [], "k0": []}
        variants = {"all": None, "k0": ["k0"]}

        def read(name: str, r: int) -> dict[str, Any]:
            out = self.spawn("history", {"id": b["id"], "dir": b["root"], "keys": variants[name]},
                             cwd=b["root"])
            if out["rows"] != steps:
                raise SystemExit(f"history() returned {out['rows']} rows, not {steps}")
            return out

        for r, batch in rounds(list(variants), a.repeats, read):
            for name, out in batch.items():
                res[name].append(out)
            self.say(f"  history repeat {r + 1}/{a.repeats}: all {res['all'][-1]['cold']:.3f} s, "
                     f"k0 {res['k0'][-1]['cold']:.3f} s")
        self.raw["history"] = res
        rows: list[Row] = []
        for name, label in (("all", f"history() all {res['all'][0]['columns']} columns"),
                            ("k0", "history(['k0'])")):
            rs = res[name]
            rows.append(stat_row(f"{label}, first call in a fresh process (imports pyarrow)",
                                 [x["cold"] for x in rs], f_s))
            rows.append(stat_row(f"  {label}, second call (warm)", [x["warm"] for x in rs], f_s))
        rows.append(stat_row("import localtrack (before the calls)",
                             [x["import"] for x in res["all"]], f_ms))
        rows.append(stat_row("peak RSS of the reading process (all columns)",
                             [x["_maxrss"] for x in res["all"]], f_mib))
        self.sections.append((f"history read of a finished {steps:,}-step run "
                              f"({b['segments_count']} segments) into a pyarrow Table", rows))
        capped = "" if steps >= 1_000_000 else f" (CAPPED at {steps:,} steps)"
        c = [x["cold"] for x in res["all"]]
        w = [x["warm"] for x in res["all"]]
        self.target(f"history read {steps:,} x 10 keys, first call in a fresh process{capped}",
                    "<= 0.5 s", f"{med(c):.3f} s ({min(c):.3f} .. {max(c):.3f} s)", med(c) <= 0.5)
        self.target("  same, warm (pyarrow already imported)", "<= 0.5 s",
                    f"{med(w):.3f} s ({min(w):.3f} .. {max(w):.3f} s)", med(w) <= 0.5)

    # disk and RSS --------------------------------------------------------------------------------

    def bench_disk(self, big: int, f32_steps: int) -> None:
        rows: list[Row] = []
        for steps, f32 in ((big, False), (f32_steps, True)):
            b = self.build(steps, f32)
            d = b["bytes_detail"]
            kind = "float32-valued" if f32 else "random float64"
            seg_per = d["segments"] / b["sealed_rows"] if b["sealed_rows"] else float("nan")
            rows += [
                (f"{steps:,} steps, 10 {kind} scalars: segments/", f"{d['segments']:,} B",
                 f"{b['segments_count']} files, {b['sealed_rows']:,} rows"),
                ("  wal/ (unsealed tail left as JSONL at finish)", f"{d['wal']:,} B",
                 f"{steps - b['sealed_rows']:,} rows"),
                ("  other files (run.json, events, manifest, config, summary)",
                 f"{d['other']:,} B", ""),
                ("  bytes per sealed step (segments/ / sealed rows)", f_b(seg_per), ""),
                ("  bytes per step, segments/ + wal/", f_b((d["segments"] + d["wal"]) / steps), ""),
                ("  bytes per step, whole store", f_b(d["store_total"] / steps), ""),
            ]
            if not f32:
                self.target(f"bytes per step after sealing, 10 random float64 scalars "
                            f"({steps:,} steps)", "<= 60", f"{seg_per:.1f} B (segments+wal: "
                            f"{(d['segments'] + d['wal']) / steps:.1f} B)", seg_per <= 60)
            else:
                self.target(f"  same, 10 float32-valued scalars ({steps:,} steps)", "<= 60",
                            f"{seg_per:.1f} B", seg_per <= 60)
        self.sections.append(("disk: bytes per step of finished runs (apparent file sizes)", rows))

        b = self.build(big)
        samples = b["samples"]
        rrows: list[Row] = [
            ("RSS before init (interpreter + localtrack imported)", f_mib(b["rss_before_init"]), ""),
            ("RSS after init", f_mib(b["rss_after_init"]), ""),
        ]
        for step, rss, el in samples:
            rrows.append((f"RSS at step {step:,}", f_mib(rss), f"{el:.0f} s into the loop"))
        rrows += [
            ("peak RSS (VmHWM) at the end of the loop", f_mib(b["hwm_loop"]), ""),
            ("peak RSS (VmHWM) after finish()", f_mib(b["hwm_end"]), ""),
            ("log() per step over the whole build (incl. background sealing)",
             f_us(b["loop"] / big), f"loop {b['loop']:.0f} s"),
            ("finish() of the build", f_s(b["finish"]), ""),
        ]
        first = next((s for s in samples if s[0] >= big // 10), samples[0] if samples else None)
        if first is not None:
            later = [s for s in samples if s[0] >= first[0]]
            growth = max(s[1] for s in later) - first[1]
            end_growth = samples[-1][1] - first[1]
            rrows.append((f"RSS growth from step {first[0]:,} to the end (max sample - baseline)",
                          f_mib(growth), f"last sample - baseline: {f_mib(end_growth)}"))
            rrows.append(("RSS growth from right after init to the last sample",
                          f_mib(samples[-1][1] - b["rss_after_init"]), ""))
            if len(later) >= 3:  # least-squares trend of the samples after the baseline
                xs = [s[0] / 1e6 for s in later]
                ys = [s[1] for s in later]
                mx, my = statistics.fmean(xs), statistics.fmean(ys)
                slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / \
                    sum((x - mx) ** 2 for x in xs)
                rrows.append(("RSS trend after the baseline (least squares)",
                              f"{slope / 2**20:+.2f} MiB", "per million steps"))
            capped = "" if big >= 10_000_000 else f" (CAPPED at {big:,} steps by --max-steps)"
            self.target(f"RSS growth across {big:,} steps{capped}", "< 20 MB",
                        f"{growth / 1e6:.1f} MB (max sampled RSS - RSS at step {first[0]:,}; "
                        f"last sample - baseline {end_growth / 1e6:.1f} MB; but last sample - "
                        f"RSS after init {(samples[-1][1] - b['rss_after_init']) / 1e6:.0f} MB, "
                        f"peak {b['hwm_end'] / 1e6:.0f} MB)", growth < 20e6)
        self.sections.append((f"memory: RSS of the process that logs {big:,} steps (sampled from "
                              "/proc/self/statm)", rrows))

    # driver ---------------------------------------------------------------------------------------

    def run(self) -> None:
        a = self.a
        only = a.only
        peers: list[str] = []
        if a.peers and any(w in only for w in ("log", "wide", "mixed", "script")):
            self.say("probing peers")
            peers = self.probe_peers()
        cap = a.max_steps
        for w in ROW_WORKLOADS.values():
            if w.name in only:
                t = time.perf_counter()
                self.say(f"{w.name}: {getattr(a, w.steps):,} steps x {getattr(a, w.repeats)} "
                         f"repeats, peers {peers}")
                self.bench_log(w, peers)
                self.say(f"{w.name} done in {time.perf_counter() - t:.0f} s")
        if "log" in only:
            self.peer_targets()
        if "script" in only:
            t = time.perf_counter()
            self.say("script: whole-script wall time")
            self.bench_script(peers)
            self.say(f"script done in {time.perf_counter() - t:.0f} s")
        if "disk" in only:  # first: it builds the largest run, which resume reuses
            t = time.perf_counter()
            self.say(f"disk + RSS: {cap:,} steps")
            self.bench_disk(cap, min(a.f32_steps, cap))
            self.say(f"disk done in {time.perf_counter() - t:.0f} s")
        if "resume" in only:
            t = time.perf_counter()
            sizes = sorted({min(s, cap) for s in RESUME_SIZES})
            self.say(f"resume: {sizes}")
            self.bench_resume(sizes)
            self.say(f"resume done in {time.perf_counter() - t:.0f} s")
        if "history" in only:
            t = time.perf_counter()
            self.say("history")
            self.bench_history(min(HISTORY_STEPS, cap))
            self.say(f"history done in {time.perf_counter() - t:.0f} s")
        self.raw["builds"] = {f"{k[0]}{'-f32' if k[1] else ''}": {
            kk: vv for kk, vv in v.items() if kk not in ("root",)} for k, v in self.builds.items()}


def versions() -> str:
    import importlib.metadata as md

    out = []
    peer_dists = dict.fromkeys(TRACKERS[p].module for p in PEERS)  # in order, once each
    for dist in ["localtrack", "orjson", "pyarrow", "pandas", *peer_dists]:
        try:
            out.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            out.append(f"{dist} (not installed)")
    return ", ".join(out)


def compile_localtrack(src: str | None) -> str:
    """Write localtrack's bytecode first, as pip does when it installs a package.

    An editable install (or --src) under PYTHONDONTWRITEBYTECODE=1, as in this project's
    sandbox, would otherwise compile every module from source in every fresh process:
    ~50 ms more per import, which the peers, installed by pip with their bytecode, never pay.
    """
    if src:
        pkg = os.path.join(src, "localtrack")
    else:
        spec = importlib.util.find_spec("localtrack")
        if spec is None or spec.origin is None:
            return "localtrack not found"
        pkg = os.path.dirname(spec.origin)
    ok = compileall.compile_dir(pkg, quiet=1)
    return f"bytecode of {pkg} {'written' if ok else 'NOT all written'} before the runs"


def git_rev() -> str:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "localtrack"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return rev + (" + uncommitted changes under localtrack/" if dirty else "")


def profile_main(a: argparse.Namespace, tmp: str, children: Children) -> None:
    d = tempfile.mkdtemp(prefix="profile-", dir=tmp)
    out = children.spawn("profile", {"steps": a.steps, "dir": d}, cwd=d)
    print(f"cProfile, {a.steps:,} log() calls of 10 floats (main thread only: the background "
          "sealer is not in this profile)\n")
    print(out["log"])
    print("cProfile of finish()\n")
    print(out["finish"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--arg", help=argparse.SUPPRESS)
    p.add_argument("--only", default=",".join(WORKLOADS),
                   help=f"comma-separated workloads (default all: {','.join(WORKLOADS)})")
    p.add_argument("--repeats", type=int, default=5, help="fresh-process repeats (default 5)")
    p.add_argument("--peer-repeats", type=int, default=3,
                   help="repeats of each peer and its paired runs (default 3)")
    p.add_argument("--peers", default=",".join(PEERS),
                   help=f"comma-separated peers, or 'none' (default: {','.join(PEERS)})")
    p.add_argument("--peer-scale", type=float, default=1.0,
                   help="multiply every peer's step count (default 1)")
    p.add_argument("--steps", type=int, default=100_000, help="log workload steps (default 10^5)")
    p.add_argument("--wide-steps", type=int, default=10_000, help="wide workload steps (10^4)")
    p.add_argument("--mixed-steps", type=int, default=100_000, help="mixed workload steps (10^5)")
    p.add_argument("--wide-repeats", type=int, default=3,
                   help="repeats of the wide workload (default 3: ~30 s each for localtrack)")
    p.add_argument("--sqlite-workloads", default="log",
                   help="workloads where the mlflow-sqlite peer runs (default: log)")
    p.add_argument("--f32-steps", type=int, default=200_000,
                   help="length of the float32-valued run for bytes per step (default 200000)")
    p.add_argument("--max-steps", type=int, default=10_000_000,
                   help="cap on the longest built run (resume, disk, RSS; default 10^7)")
    p.add_argument("--src", default=None,
                   help="benchmark the localtrack package in this directory (put first on the "
                        "children's PYTHONPATH) instead of the installed one")
    p.add_argument("--profile", action="store_true",
                   help="only profile localtrack's log() and finish() with cProfile")
    p.add_argument("--markdown", action="store_true", help="also print markdown tables")
    p.add_argument("--json", default=None, help="write the raw figures to this file")
    p.add_argument("--tmp", default=None, help="parent of the temp dir (default: system temp)")
    a = p.parse_args()
    if a.worker:
        serve(WORKERS, a.worker, a.arg or "{}")
        return
    a.only = [w.strip() for w in a.only.split(",") if w.strip()]
    bad = [w for w in a.only if w not in WORKLOADS]
    if bad:
        p.error(f"unknown workload(s) {bad}; choose from {WORKLOADS}")
    a.peers = [] if a.peers.strip() in ("", "none") else [x.strip() for x in a.peers.split(",")]
    badp = [x for x in a.peers if x not in PEERS]
    if badp:
        p.error(f"unknown peer(s) {badp}; choose from {PEERS}")
    a.sqlite_workloads = [w.strip() for w in a.sqlite_workloads.split(",") if w.strip()]
    if [w for w in a.sqlite_workloads if w not in ("log", "wide", "mixed")]:
        p.error("--sqlite-workloads takes log, wide, mixed")
    if min(a.repeats, a.wide_repeats, a.peer_repeats, a.f32_steps, a.steps, a.wide_steps,
           a.mixed_steps, a.max_steps) < 1:
        p.error("counts must be >= 1")

    src = os.path.abspath(a.src) if a.src else None
    if src and not os.path.isfile(os.path.join(src, "localtrack", "__init__.py")):
        p.error(f"--src {a.src}: no localtrack/__init__.py there")
    children = Children(__file__, WORKER_TIMEOUT, src=src)
    tmp = tempfile.mkdtemp(prefix="localtrack-suite-", dir=a.tmp)
    bytecode = compile_localtrack(src)
    started = time.perf_counter()
    load0 = os.getloadavg()
    try:
        if a.profile:
            profile_main(a, tmp, children)
            return
        suite = Suite(a, tmp, children)
        suite.run()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    load1 = os.getloadavg()
    head = (f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
            f"localtrack {'from ' + src if src else 'at ' + git_rev()}; {versions()}\n"
            f"{bytecode}\n"
            f"repeats {a.repeats} (wide {a.wide_repeats}, peers {a.peer_repeats}), fresh process "
            f"each; wall {elapsed:.0f} s; "
            f"load average at start {load0[0]:.1f}, at end {load1[0]:.1f}")
    print(head)
    if a.peers:
        print("peers: " + "; ".join(f"{k}: {v}" for k, v in suite.peer_status.items()))
    for note in suite.notes:
        print("WARNING: " + note)
    for title, rows in suite.sections:
        print()
        print(title)
        print_table(rows, markdown=False)
    print()
    print("targets of issue 5")
    trows = [(f, t, f"{m}  [{v}]") for f, t, m, v in suite.targets]
    if trows:
        w0 = max(len(r[0]) for r in trows)
        for f, t, m in trows:
            print(f"{f:<{w0}}  {t:>7}  {m}")
    if a.markdown:
        for title, rows in suite.sections:
            print()
            print(f"### {title}")
            print()
            print_table(rows, markdown=True)
        print()
        print("### Targets of issue 5")
        print()
        print("| figure | target | measured | verdict |")
        print("| --- | --- | --- | --- |")
        for f, t, m, v in suite.targets:
            print(f"| {f.strip()} | {t} | {m} | {v} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"head": head, "peers": suite.peer_status, "raw": suite.raw,
                       "targets": suite.targets, "sections": suite.sections}, fh, indent=1)


if __name__ == "__main__":
    main()
