"""W&B's read API (issue 16): runs(filters=) over many runs, history(samples=) on a long run.

Builds a project of ``--runs`` finished runs (config ``lr``, a few logged steps with
``val/acc``) and one run of ``--rows`` steps of 10 keys, then times, each in a fresh process
with pyarrow and pandas already imported (so only the read is timed), one call of each
workload, twice (the first call also pays pyarrow's lazily loaded modules; the second is
warm): listing with no filter, a filter on state (no config or summary read), on config, on
the summary with an order; and on the long run history(samples=500) as pandas and as dicts,
the full pyarrow read history_table(), and a whole scan_history(). Median and min .. max
over the repeats.

    python benchmarks/bench_api.py [--runs 1000] [--rows 100000] [--repeats 5] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import Children, f_ms, print_table, rounds, serve, stat_row  # noqa: E402

TIMEOUT = 3600.0
CHILDREN = Children(__file__, TIMEOUT, clean=True)

# Each workload: one call on an Api of the store, as data.
WORKLOADS: dict[str, str] = {
    "runs('many')": "api.runs('many')",
    "runs(filters={'state': 'finished'})": "api.runs('many', filters={'state': 'finished'})",
    "runs(filters={'config.lr': {'$lt': 1e-3}})":
        "api.runs('many', filters={'config.lr': {'$lt': 1e-3}})",
    "runs(filters={'summary_metrics.val/acc': {'$gt': 0.9}}, order='-summary_metrics.val/acc')":
        "api.runs('many', filters={'summary_metrics.val/acc': {'$gt': 0.9}}, "
        "order='-summary_metrics.val/acc')",
    "history(samples=500) as pandas": "api.run('long/run').history(samples=500)",
    "history(samples=500, pandas=False)": "api.run('long/run').history(samples=500, pandas=False)",
    "history_table() (every row, pyarrow)": "api.run('long/run').history_table()",
    "list(scan_history()) (every row, dicts)": "list(api.run('long/run').scan_history())",
}


def build(arg: dict[str, Any]) -> dict[str, Any]:
    """The many-runs project and the long run, finished and sealed."""
    import localtrack
    from localtrack import _sealer

    for i in range(arg["runs"]):
        run = localtrack.init(project="many", dir=arg["store"],
                              config={"lr": 10 ** -(1 + i % 5), "batch": 32 + i})
        for s in range(5):
            run.log({"loss": 1.0 / (s + 1), "val/acc": (i % 100) / 100 + s / 1000})
        run.finish()
    run = localtrack.init(project="long", id="run", dir=arg["store"])
    row = {f"k{i}": 0.5 + i for i in range(10)}
    for _ in range(arg["rows"]):
        run.log(row)
    run.finish()
    _sealer.wait_idle(run._rdir, timeout=TIMEOUT)
    return {}


def query(arg: dict[str, Any]) -> dict[str, Any]:
    """One workload's call, timed after the imports it needs."""
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    import localtrack

    api = localtrack.Api(arg["store"])
    seconds = []
    for _ in range(2):  # the first call pays pyarrow's lazy modules (parquet, compute)
        t0 = time.perf_counter()
        out = eval(WORKLOADS[arg["name"]], {"api": api})  # noqa: S307 - our own table above
        seconds.append(time.perf_counter() - t0)
    return {"first": seconds[0], "warm": seconds[1], "count": len(out)}


WORKERS = {"build": build, "query": query}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--tmp", default=None, help="where to build the store")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--arg", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(WORKERS, args.worker, args.arg or "{}")
        return
    tmp = tempfile.mkdtemp(prefix="bench-api-", dir=args.tmp)
    try:
        store = os.path.join(tmp, "store")
        t0 = time.monotonic()
        CHILDREN.spawn("build", {"store": store, "runs": args.runs, "rows": args.rows})
        print(f"built {args.runs:,} runs and a {args.rows:,}-row run in "
              f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
        times: dict[tuple[str, str], list[float]] = {}
        counts: dict[str, int] = {}
        for _, results in rounds(list(WORKLOADS), args.repeats,
                                 lambda name, r: CHILDREN.spawn("query", {"store": store,
                                                                          "name": name})):
            for name, res in results.items():
                for when in ("first", "warm"):
                    times.setdefault((name, when), []).append(res[when])
                counts[name] = res["count"]
        print_table([stat_row(f"{name} -> {counts[name]:,}: {when}", times[(name, when)], f_ms)
                     for name in WORKLOADS for when in ("first", "warm")], args.markdown)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
