"""SQL over a store (issue 19, section 4): a query over 1,000 runs x 10^4 steps, beside the same
computation with the Python API.

    python benchmarks/bench_sql.py [--runs 1000] [--steps 10000] [--repeats 3] [--cache DIR]

The store is built once (two writer processes, real init/log/finish; every run's log sealed
into one Parquet segment, the layout engines read) under the cache folder
(default ``~/.cache/localtrack-bench``) and reused: building 1,000 x 10^4 takes minutes.
Each measurement runs in a fresh process: the whole process (imports included) and the work
alone (building the views and the query; reading and computing in Python); medians.
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

# The two README questions, and the same answers computed with Api() in Python.
QUERIES = {
    "best val/acc per run, lr < 1e-3": """
        SELECT r.id, r.name, max(h."val/acc") AS best
        FROM runs r JOIN history h ON h.run_id = r.id
        WHERE r."config.lr" < 1e-3 GROUP BY r.id, r.name ORDER BY best DESC""",
    "mean loss curve per group": """
        SELECT r."group", h._step, avg(h.loss) AS loss
        FROM history h JOIN runs r ON r.id = h.run_id
        GROUP BY r."group", h._step ORDER BY r."group", h._step""",
    "history only: max val/acc per run": """
        SELECT run_id, max("val/acc") AS best FROM history GROUP BY run_id""",
}

PYTHON = {
    "best val/acc per run, lr < 1e-3": """
import pyarrow.compute as pc
out = []
for run in api.runs("bench"):
    if run.config["lr"] < 1e-3:
        out.append((run.id, run.name, pc.max(run.history_table(["val/acc"])["val/acc"]).as_py()))
out.sort(key=lambda r: -r[2])
""",
    "mean loss curve per group": """
import numpy as np
sums, counts = {}, {}
for run in api.runs("bench"):
    loss = run.history_table(["loss"])["loss"].to_numpy()
    g = run.group
    if g not in sums:
        sums[g], counts[g] = np.zeros(len(loss)), 0
    sums[g][:len(loss)] += loss
    counts[g] += 1
out = {g: sums[g] / counts[g] for g in sums}
""",
    "history only: max val/acc per run": """
import pyarrow.compute as pc
out = {run.id: pc.max(run.history_table(["val/acc"])["val/acc"]).as_py() for run in api.runs("bench")}
""",
}

WRITER = """
import math, os, random, sys, localtrack
from pathlib import Path
from localtrack import _sealer
os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0"  # seal every tail: the Parquet layout other engines read
root, worker, workers, runs, steps = sys.argv[1], *map(int, sys.argv[2:6])
for i in range(worker, runs, workers):
    rnd = random.Random(i)
    lr = 10 ** rnd.uniform(-5, -2)
    run = localtrack.init(project="bench", dir=root, id=f"r{i:05d}", group=f"g{i % 10}",
                          config={"lr": lr, "batch": 32 * (1 + i % 4)})
    for s in range(steps):
        run.log({"loss": math.exp(-s * lr * 10) + rnd.random() * 0.01,
                 "val/acc": 1 - math.exp(-s * lr * 5), "grad_norm": rnd.random()})
    run.finish()
    _sealer.wait_idle(Path(run.dir), timeout=600)  # one sealer at a time per writer, not a pile
"""


def build(root: Path, runs: int, steps: int) -> None:
    done = root / f".complete-{runs}x{steps}"
    if done.exists():
        return
    if root.exists():  # a build that was stopped: start again
        shutil.rmtree(root)
    print(f"building {runs} runs x {steps} steps under {root} (once) ...", flush=True)
    t0 = time.perf_counter()
    workers = 2
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(w), str(workers),
                               str(runs), str(steps)]) for w in range(workers)]
    if any(p.wait() for p in procs):
        raise SystemExit("a writer failed")
    from localtrack import _sealer

    for lock in root.rglob(_sealer.SEAL_LOCK):  # sealers run after finish() returns
        _sealer.wait_idle(lock.parent, timeout=600)
    done.write_text(json.dumps({"runs": runs, "steps": steps}))
    print(f"built in {time.perf_counter() - t0:.0f} s", flush=True)


def child(prelude: str, code: str) -> tuple[float, float, float]:
    """(seconds of ``prelude``: the imports, from process start; wall and CPU seconds of
    ``code``, CPU over all threads) in a fresh process. pyarrow imports pandas (when
    installed) on its first pa.array(), whoever calls it: the prelude does that too, so the
    later figures are the work alone. CPU time is what a loaded machine inflates least."""
    script = (f"import time\nt0 = time.perf_counter()\n{prelude}\nimport pyarrow as pa\n"
              f"pa.array([0])\nt1, c1 = time.perf_counter(), time.process_time()\n{code}\n"
              "print(t1 - t0, time.perf_counter() - t1, time.process_time() - c1)")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    first, wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(first), float(wall), float(cpu)


def measure(prelude: str, code: str, repeats: int) -> tuple[float, float, float]:
    """Medians of (whole process: imports + work, work alone, its CPU time)."""
    runs = [child(prelude, code) for _ in range(repeats)]
    return (statistics.median(a + b for a, b, _ in runs), statistics.median(b for _, b, _ in runs),
            statistics.median(c for _, _, c in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/localtrack-bench"))
    args = parser.parse_args()
    root = Path(args.cache) / f"sql-{args.runs}x{args.steps}"
    build(root, args.runs, args.steps)
    print(f"{args.runs} runs x {args.steps} steps ({args.runs * args.steps:,} rows), "
          f"median of {args.repeats} fresh processes; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    print(f"{'computation':<36} {'SQL: process':>13} {'work':>7} {'work CPU':>9} "
          f"{'Python: process':>16} {'work':>7} {'work CPU':>9}")
    for name, sql in QUERIES.items():
        q = f"localtrack.Api({str(root)!r}).query({sql!r})"
        p = f"api = localtrack.Api({str(root)!r})\n{PYTHON[name]}"
        figures = [*measure("import localtrack, duckdb", q, args.repeats),
                   *measure("import localtrack", p, args.repeats)]
        a, b, c, d, e, f = (f"{x:.2f} s" for x in figures)
        print(f"{name:<36} {a:>13} {b:>7} {c:>9} {d:>16} {e:>7} {f:>9}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
