#!/usr/bin/env python3
"""Listing many runs (issue 19, part 1): ``Api().runs(project)`` reading every field the runs
table and filters use, ``localtrack runs`` and the dashboard's run list, on projects of 100,
1,000 and 10,000 small finished runs.

The fixture is built once (``localtrack.init/log/finish`` in child processes, ~1 min per
10,000 runs) in ``--cache`` (default ``~/.cache/localtrack-bench/listing-v1``) and reused;
``--rebuild`` makes it again. Each run: a config of 5 keys, 10 steps of 3 metrics, finished.

Measured in fresh child processes (``--src DIR`` puts a localtrack tree first on their
PYTHONPATH; given twice or more, the trees are timed alternately, the order rotated per
repeat, so a change in the machine's load falls on each alike), each timed inside the child
from after ``import localtrack`` (interpreter and import excluded, except the CLI column):

  - cold: the first listing in a fresh process with the project's index deleted (the page
    cache cannot be dropped here: /proc/sys/vm/drop_caches is not writable in this container);
  - fresh: the first listing in a fresh process with the index there (what a script pays);
  - warm: the third listing in the same process (what the dashboard's poll pays);
  - dashboard: ``StoreView.runs(project)`` first and third call in one process;
  - cli: wall time of ``python -m localtrack runs --project P`` (interpreter included);
  - with ``--drop-caches`` (root, where /proc/sys/vm/drop_caches is writable: it empties the
    whole machine's page, dentry and inode caches), two more: the cold and the fresh listing
    each right after ``sync; echo 3 > /proc/sys/vm/drop_caches`` (every file read from disk).

Prints a markdown table: median wall time (min .. max) of ``--repeats``, and the median CPU
time (user + system, all threads) beside it: the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIZES = (100, 1000, 10_000)
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "localtrack-bench", "listing-v1")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- workers (fresh interpreters) ------------------------------------------------------------------


def worker_build(store: str, project: str, first: int, count: int) -> None:
    import localtrack

    for i in range(first, first + count):
        config = {"lr": 10 ** -(1 + i % 5), "batch": 2 ** (4 + i % 4), "model": f"m{i % 7}",
                  "seed": i, "opt": {"name": "adam", "beta": 0.9}}
        with localtrack.init(project=project, id=f"r{i:05d}", dir=store, config=config) as run:
            for step in range(10):
                run.log({"loss": 1.0 / (step + 1 + i), "acc": step / 10, "lr": config["lr"]})


def _read_all(runs: list[Any]) -> int:
    """Every field the runs table and filters use, as a user's loop reads them."""
    n = 0
    for r in runs:
        _ = (r.name, r.state, r.last_step, r.created, r.updated, r.config, r.summary, r.tags)
        n += 1
    return n


def worker_list(store: str, project: str, mode: str) -> None:
    t0 = time.perf_counter()
    import localtrack

    t1 = time.perf_counter()
    out: dict[str, Any] = {"import": t1 - t0}
    if mode == "dashboard":
        from localtrack._ui._data import StoreView

        view = StoreView(localtrack.Api(dir=store))
        times, cpus = [], []
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            rows = view.runs(project)
            times.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        out.update(first=times[0], warm=times[2], first_cpu=cpus[0], warm_cpu=cpus[2], n=len(rows))
    else:
        times, cpus = [], []
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            n = _read_all(localtrack.Api(dir=store).runs(project))
            times.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        out.update(first=times[0], warm=times[2], first_cpu=cpus[0], warm_cpu=cpus[2], n=n)
    print("RESULT " + json.dumps(out), flush=True)


# -- parent ----------------------------------------------------------------------------------------


def child_env(src: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALTRACK_")}
    if src:
        env["PYTHONPATH"] = src
    return env


def run_worker(src: str | None, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", *args],
                          env=child_env(src), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return dict(json.loads(line[len("RESULT "):]))


def build(cache: str, src: str | None, rebuild: bool) -> None:
    done = os.path.join(cache, "BUILT")
    if os.path.exists(done) and not rebuild:
        return
    shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(cache)
    for size in SIZES:
        log(f"building p{size}: {size:,} runs ...")
        t = time.perf_counter()
        half = size // 2
        procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "build",
                                   cache, f"p{size}", str(first), str(count)], env=child_env(src))
                 for first, count in ((0, half), (half, size - half))]
        if any(p.wait(timeout=3600) != 0 for p in procs):
            raise RuntimeError("building the fixture failed")
        log(f"  {time.perf_counter() - t:.1f} s")
    Path(done).write_text("ok\n")


def drop_index(cache: str, project: str) -> None:
    for name in (".index.json", "index.json"):
        path = os.path.join(cache, project, name)
        if os.path.exists(path):
            os.unlink(path)


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")


def fmt(values: list[float], cpus: list[float] | None = None) -> str:
    """Median wall (min .. max), and the median CPU time (user + system) when measured."""
    med = statistics.median(values)
    cpu = "" if not cpus else f" / CPU {statistics.median(cpus):.3f}"
    return f"{med:.3f} s ({min(values):.3f} .. {max(values):.3f}){cpu}"


def measure(args: argparse.Namespace, src: str | None, size: int) -> dict[str, float]:
    """One repeat of every measure, for one localtrack tree."""
    project = f"p{size}"
    drop_index(args.cache, project)
    r = run_worker(src, "list", args.cache, project, "api")
    assert r["n"] == size, r
    out = {"cold": r["first"], "cold_cpu": r["first_cpu"]}
    r = run_worker(src, "list", args.cache, project, "api")
    out.update(fresh=r["first"], warm=r["warm"], fresh_cpu=r["first_cpu"], warm_cpu=r["warm_cpu"])
    r = run_worker(src, "list", args.cache, project, "dashboard")
    out.update(dfirst=r["first"], dwarm=r["warm"], dfirst_cpu=r["first_cpu"], dwarm_cpu=r["warm_cpu"])
    t, before = time.perf_counter(), os.times()
    proc = subprocess.run([sys.executable, "-m", "localtrack", "runs", "--dir", args.cache, project],
                          env=child_env(src), capture_output=True, timeout=600)
    out["cli"] = time.perf_counter() - t
    after = os.times()  # the child's CPU time, imports included
    out["cli_cpu"] = (after.children_user - before.children_user
                      + after.children_system - before.children_system)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-2000:])
    if args.drop_caches:
        drop_index(args.cache, project)
        drop_caches()
        r = run_worker(src, "list", args.cache, project, "api")
        out.update(disk_cold=r["first"], disk_cold_cpu=r["first_cpu"])
        drop_caches()
        r = run_worker(src, "list", args.cache, project, "api")
        out.update(disk_fresh=r["first"], disk_fresh_cpu=r["first_cpu"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=DEFAULT_CACHE)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--src", action="append",
                        help="a localtrack source tree to time; repeat it to compare trees, "
                             "run alternately (default: the installed one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--drop-caches", action="store_true",
                        help="also time the cold and fresh listings with the OS caches dropped")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, *rest = args.worker
        if name == "build":
            worker_build(rest[0], rest[1], int(rest[2]), int(rest[3]))
        else:
            worker_list(rest[0], rest[1], rest[2])
        return
    trees: list[str | None] = list(args.src or [None])
    build(args.cache, trees[0], args.rebuild)
    print(f"load average {os.getloadavg()[0]:.1f} at start ({os.cpu_count()} CPUs)")
    keys = ["cold", "fresh", "warm", "dfirst", "dwarm", "cli"]
    extra = ""
    if args.drop_caches:
        keys += ["disk_cold", "disk_fresh"]
        extra = " cold, caches dropped | fresh, caches dropped |"
    print("| runs | tree | cold: first listing, no index | fresh process, index there | warm "
          "(3rd listing) | dashboard first | dashboard warm | `localtrack runs` (wall) |" + extra)
    print("| ---: | --- |" + " ---: |" * len(keys))
    for size in (int(s) for s in args.sizes.split(",")):
        results: dict[str | None, list[dict[str, float]]] = {tree: [] for tree in trees}
        for rep in range(args.repeats):
            for tree in trees[rep % len(trees):] + trees[:rep % len(trees)]:  # rotate the order
                log(f"p{size}: repeat {rep + 1}, {tree or 'installed'} ...")
                results[tree].append(measure(args, tree, size))
        for tree in trees:
            cols = [fmt([r[k] for r in results[tree]],
                        [r[f"{k}_cpu"] for r in results[tree] if f"{k}_cpu" in r]) for k in keys]
            print(f"| {size:,} | {tree or 'installed'} | " + " | ".join(cols) + " |", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
