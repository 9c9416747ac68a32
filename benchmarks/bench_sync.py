#!/usr/bin/env python3
"""Sync benchmarks: throughput of a 10^6-step run, a no-op resync of 1,000 runs, and the first
sync of many small runs one at a time against ``--jobs`` at a time.

  1. Throughput: one finished run of ``--steps`` steps (ten floats per step, logged by
     localtrack in a child process, so it is sealed into Parquet segments as a real run
     is) is synced to an empty directory remote and to an empty bucket on a loopback S3
     server (moto's standalone server, in this process; pyarrow's S3 client talks HTTP
     to it). Reported: wall time of ``localtrack.sync()``, MB/s (bytes uploaded) and
     steps/s (steps of history made readable on the remote per second).
  2. No-op resync: ``--runs`` small finished runs are synced once, then synced again with
     nothing new; the second call is timed: in all (what a cron job pays, including opening
     the remote: importing pyarrow and starting the S3 client for a URI) and the pass over
     the runs alone (what each full pass of the daemon costs).

  3. Many small runs (``--part small``, issue 19): ``--small`` finished runs of 10 steps are
     copied with ``cp -r`` (no fsync: the floor) and synced for the first time to an empty
     directory and an empty bucket, with ``jobs=1`` and with ``--jobs`` (default: sync's own
     default per kind of remote), then synced again with nothing new. Run by the shared
     harness (``_harness.py``): every repeat runs each case once, in an order rotated by one
     per repeat, so the ratios compare cases run under the same load.

Each sync runs in a fresh child process (``--worker``) and is timed inside it from the
import of localtrack's sync module, so interpreter start-up is excluded; each figure is
the median of ``--repeats`` runs, every repeat to a fresh remote. Progress goes to
stderr, the table to stdout.
Needs the test extra (moto[server]) for the S3 part, whose server is the tests' (tests/s3server.py);
``--skip-s3`` leaves it out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import Children, f_s, f_x, print_table, rounds, serve, stat_row  # noqa: E402

TIMEOUT = 1800.0


# -- workers (fresh interpreters) --------------------------------------------------------------


def worker_make_big(store: str, steps: int) -> None:
    import random

    import localtrack

    rng = random.Random(0)
    with localtrack.init(project="bench", id="big", dir=store) as run:
        for _ in range(steps):
            run.log({f"k{j}": rng.random() for j in range(10)})


def worker_make_many(store: str, runs: int) -> None:
    import localtrack

    for i in range(runs):
        with localtrack.init(project="many", id=f"r{i:04d}", dir=store, config={"i": i}) as run:
            for step in range(10):
                run.log({"loss": 1.0 / (step + 1), "i": i})


def timed_sync(store: str, remote: str, jobs: int | None = None) -> dict[str, Any]:
    """What localtrack.sync() does, timed in parts: opening the remote (imports pyarrow and
    starts the S3 client for URIs), the check (two requests), and the pass over the runs."""
    start = time.perf_counter()
    from localtrack import _sync

    syncer = _sync.open_syncer(remote, store, jobs=jobs)
    opened = time.perf_counter()
    with syncer:
        syncer.check()
        checked = time.perf_counter()
        report = syncer.run_once()
    done = time.perf_counter()
    assert report.ok, report.pending
    return {"seconds": done - start, "open": opened - start, "check": checked - opened,
            "pass": done - checked, "bytes": report.uploaded_bytes, "files": report.uploaded_files,
            "runs": report.runs, "jobs": syncer.jobs}


def worker_sync(store: str, remote: str) -> None:
    print(json.dumps(timed_sync(store, remote)))


WORKERS = {"timed_sync": lambda arg: timed_sync(arg["store"], arg["remote"], arg["jobs"])}


# -- driver ------------------------------------------------------------------------------------


def child(*args: str, env: dict[str, str] | None = None) -> dict[str, float] | None:
    full = {k: v for k, v in os.environ.items() if not k.startswith("LOCALTRACK_")}
    full.update(env or {})
    out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True,
                         timeout=TIMEOUT, env=full, check=True).stdout.strip()
    return json.loads(out.splitlines()[-1]) if out else None


def loopback_s3() -> Any:
    """The test suite's loopback S3 server (tests/s3server.py: moto's, in this process)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.s3server import S3Server

    server = S3Server()
    server.start()
    return server


def du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def many_small(args: argparse.Namespace, tmp: str) -> None:
    """Part 3: ``cp -r`` against the first sync of ``--small`` runs, one and ``--jobs`` at a time."""
    kids = Children(__file__, TIMEOUT, clean=True)
    store = os.path.join(tmp, "small")
    log(f"logging {args.small:,} runs of 10 steps ...")
    child("make_many", store, str(args.small))
    s3 = None if args.skip_s3 else loopback_s3()
    kinds = ["directory"] + ([] if s3 is None else ["S3"])
    cases = ["cp -r"] + [f"{kind} jobs={jobs}" for kind in kinds for jobs in ("1", "N")]
    times: dict[str, list[float]] = {case: [] for case in cases}
    noop: dict[str, list[float]] = {case: [] for case in cases[1:]}
    used: dict[str, int] = {}

    def once(case: str, rep: int) -> float:
        dest = os.path.join(tmp, f"dest-{rep}-{case.replace(' ', '-').replace('=', '')}")
        if case == "cp -r":
            out = kids.run(["cp", "-r", store, dest])
            assert out["rc"] == 0, out["stderr"]
            shutil.rmtree(dest)
            return float(out["wall"])
        kind, jobs = case.split(" jobs=")
        remote = s3.uri(s3.new_bucket(), "store") if kind == "S3" and s3 else dest
        env = s3.env() if kind == "S3" and s3 else None
        arg = {"store": store, "remote": remote, "jobs": None if jobs == "N" else 1}
        if jobs == "N" and args.jobs:
            arg["jobs"] = args.jobs
        first = kids.spawn("timed_sync", arg, env=env)
        assert first["files"] > 0, first
        again = kids.spawn("timed_sync", arg, env=env)
        assert again["files"] == 0, again
        if rep >= 0:  # not the warm-up
            noop[case].append(again["seconds"])
        used[case] = first["jobs"]
        shutil.rmtree(dest, ignore_errors=True)
        return float(first["seconds"])

    try:
        for rep, res in rounds(cases, args.repeats, once, warmup=True):
            log(f"repeat {rep + 1}: " + ", ".join(f"{c} {v:.2f} s" for c, v in res.items()))
            for case, secs in res.items():
                times[case].append(secs)
    finally:
        if s3 is not None:
            s3.stop()
    rows = [stat_row(f"first sync of {args.small} runs: {case}"
                     + (f" ({used[case]})" if case.endswith("=N") else ""), times[case], f_s)
            for case in cases]
    rows += [stat_row(f"no-op resync: {case}", noop[case], f_s) for case in cases[1:]]
    ratios = [("directory jobs=1", "cp -r"), ("directory jobs=N", "cp -r"),
              ("directory jobs=1", "directory jobs=N")]
    if s3 is not None:
        ratios += [("S3 jobs=1", "directory jobs=1"), ("S3 jobs=N", "directory jobs=N"),
                   ("S3 jobs=1", "S3 jobs=N")]
    n = len(times["cp -r"])
    rows += [stat_row(f"ratio {a} / {b}", [times[a][i] / times[b][i] for i in range(n)], f_x)
             for a, b in ratios]
    print(f"{args.small} finished runs of 10 steps ({du(store) / 1e6:.1f} MB, "
          f"{sum(len(f) for _, _, f in os.walk(store))} files); sync timed inside a fresh process "
          f"from the import of localtrack._sync; median of {args.repeats} (min .. max); "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end.\n")
    print_table(rows, markdown=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--part", choices=["big", "small", "all"], default="all",
                        help="big: parts 1 and 2; small: part 3 (many small runs)")
    parser.add_argument("--small", type=int, default=400, help="runs of part 3 (default 400)")
    parser.add_argument("--jobs", type=int, help="part 3's jobs=N (default: sync's default)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--arg", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker and args.arg is not None:
        serve(WORKERS, args.worker[0], args.arg)
        return
    if args.worker:
        name, *rest = args.worker
        if name == "make_big":
            worker_make_big(rest[0], int(rest[1]))
        elif name == "make_many":
            worker_make_many(rest[0], int(rest[1]))
        elif name == "sync":
            worker_sync(rest[0], rest[1])
        return

    tmp = tempfile.mkdtemp(prefix="localtrack-bench-sync-")
    if args.part != "big":
        try:
            many_small(args, tmp)
        finally:
            if args.part == "small":
                shutil.rmtree(tmp, ignore_errors=True)
        if args.part == "small":
            return
    s3 = None
    rows = []
    try:
        big, many = os.path.join(tmp, "big"), os.path.join(tmp, "many")
        log(f"logging a run of {args.steps:,} steps ...")
        child("make_big", big, str(args.steps))
        log(f"logging {args.runs:,} runs of 10 steps ...")
        child("make_many", many, str(args.runs))
        size = du(os.path.join(big, "bench"))
        kinds = [("directory", None)] if args.skip_s3 else [("directory", None), ("loopback S3", "s3")]
        if not args.skip_s3:
            s3 = loopback_s3()
        for label, kind in kinds:
            full, noop = [], []
            for rep in range(args.repeats):
                remote = (s3.uri(s3.new_bucket(), "store") if kind == "s3" and s3 else
                          os.path.join(tmp, f"remote-{label[0]}-{rep}"))
                env = s3.env() if kind == "s3" and s3 else None
                log(f"{label}: syncing the big run (repeat {rep + 1}) ...")
                full.append(child("sync", big, remote, env=env))
                log(f"{label}: first sync of {args.runs} runs, then the timed no-op resync ...")
                child("sync", many, remote, env=env)
                noop.append(child("sync", many, remote, env=env))
                if kind is None:
                    shutil.rmtree(remote, ignore_errors=True)
            secs = statistics.median(r["seconds"] for r in full)
            sent = statistics.median(r["bytes"] for r in full)
            assert all(r["files"] == 0 for r in noop), noop
            rows.append((label, secs, sent / secs / 1e6, args.steps / secs, sent,
                         statistics.median(r["seconds"] for r in noop),
                         statistics.median(r["pass"] for r in noop)))
    finally:
        if s3 is not None:
            s3.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    import pyarrow

    print(f"Python {platform.python_version()}, pyarrow {pyarrow.__version__}, {os.cpu_count()} cores; "
          f"run of {args.steps:,} steps ({size / 1e6:.1f} MB on disk), {args.runs:,} runs for the "
          f"no-op resync; median of {args.repeats}.\n")
    print("| remote | sync of the big run | MB/s | steps/s | bytes sent | no-op resync of "
          f"{args.runs:,} runs | of which the pass over the runs |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, secs, mbps, sps, sent, noop_s, pass_s in rows:
        print(f"| {label} | {secs:.2f} s | {mbps:.1f} | {sps:,.0f} | {sent / 1e6:.1f} MB "
              f"| {noop_s * 1000:.0f} ms | {pass_s * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
