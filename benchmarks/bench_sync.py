#!/usr/bin/env python3
"""Sync benchmarks: throughput of a 10^6-step run, and a no-op resync of 1,000 runs.

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


def worker_sync(store: str, remote: str) -> None:
    """What localtrack.sync() does, timed in parts: opening the remote (imports pyarrow and
    starts the S3 client for URIs), the check (two requests), and the pass over the runs."""
    start = time.perf_counter()
    from localtrack import _sync

    syncer = _sync.open_syncer(remote, store)
    opened = time.perf_counter()
    with syncer:
        syncer.check()
        checked = time.perf_counter()
        report = syncer.run_once()
    done = time.perf_counter()
    assert report.ok, report.pending
    print(json.dumps({"seconds": done - start, "open": opened - start, "check": checked - opened,
                      "pass": done - checked, "bytes": report.uploaded_bytes,
                      "files": report.uploaded_files, "runs": report.runs}))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
