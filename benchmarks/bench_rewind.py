"""Rewind and fork against the length of the history (issue 17).

Builds two runs, a short one (10^3 steps) and a long one (10^7 steps by default, sealed into
Parquet segments as training leaves them), then times, each in a fresh process, the call a
requeued job makes: ``init(resume_from="RUN?_step=N")`` with N in the middle of the history,
and ``init(fork_from="RUN?_step=N")``, each followed by ``finish()``. Repeats rewind a little
further back each time (every repeat archives rows), and fork to a new id. Reported: the time
of the call inside the process (init through finish) and the whole process, median and
min .. max, and the ratio long / short.

    python benchmarks/bench_rewind.py [--steps 10000000] [--repeats 5] [--markdown]
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

from _harness import Children, f_ms, f_x, med, print_table, rounds, serve, stat_row  # noqa: E402

TIMEOUT = 3600.0
CHILDREN = Children(__file__, TIMEOUT, clean=True)


def build(arg: dict[str, Any]) -> dict[str, Any]:
    """A run of ``steps`` rows of 10 scalars, finished and sealed."""
    import localtrack
    from localtrack import _sealer

    run = localtrack.init(project="bench", id="run", dir=arg["store"])
    row = {f"k{i}": 0.5 + i for i in range(10)}
    log = run.log
    for _ in range(arg["steps"]):
        log(row)
    run.finish()
    _sealer.wait_idle(run._rdir, timeout=TIMEOUT)
    return {"segments": len(os.listdir(os.path.join(run.dir, "segments")))
            if os.path.isdir(os.path.join(run.dir, "segments")) else 0}


def act(arg: dict[str, Any]) -> dict[str, Any]:
    """One rewind or fork, timed from init() through finish()."""
    import localtrack

    spec = {arg["kind"]: f"run?_step={arg['step']}"}
    extra = {"id": arg["fork_id"]} if arg["kind"] == "fork_from" else {}
    t0 = time.perf_counter()
    run = localtrack.init(project="bench", dir=arg["store"], **spec, **extra)
    run.finish()
    elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "step": run.step, "pyarrow": "pyarrow" in sys.modules}


WORKERS = {"build": build, "act": act}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10**7, help="the long run's steps (10^7)")
    parser.add_argument("--short", type=int, default=10**3, help="the short run's steps (10^3)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--tmp", default=None, help="where to build the stores")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--arg", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(WORKERS, args.worker, args.arg or "{}")
        return
    tmp = tempfile.mkdtemp(prefix="bench-rewind-", dir=args.tmp)
    try:
        sizes = {"short": args.short, "long": args.steps}
        stores = {name: os.path.join(tmp, name) for name in sizes}
        for name, steps in sizes.items():
            t0 = time.monotonic()
            built = CHILDREN.spawn("build", {"store": stores[name], "steps": steps})
            print(f"built the {name} run: {steps:,} steps, {built['segments']} segments, "
                  f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
        cases = [(kind, name) for kind in ("resume_from", "fork_from") for name in sizes]
        times: dict[tuple[str, str], list[float]] = {c: [] for c in cases}
        walls: dict[tuple[str, str], list[float]] = {c: [] for c in cases}
        pyarrow = set()

        def once(case: tuple[str, str], r: int) -> dict[str, Any]:
            kind, name = case
            step = sizes[name] // 2 - r - 1  # a little further back each repeat
            return CHILDREN.spawn("act", {"store": stores[name], "kind": kind, "step": step,
                                          "fork_id": f"fork-{r}"})

        for _, results in rounds(cases, args.repeats, once):
            for case, res in results.items():
                times[case].append(res["seconds"])
                walls[case].append(res["_wall"])
                if res["pyarrow"]:
                    pyarrow.add(case)
        rows = []
        for kind in ("resume_from", "fork_from"):
            for name, steps in sizes.items():
                rows.append(stat_row(f"{kind} into a {steps:,}-step run: init..finish",
                                     times[(kind, name)], f_ms))
                rows.append(stat_row("  same, whole process", walls[(kind, name)], f_ms))
            ratios = [a / b for a, b in zip(times[(kind, "long")], times[(kind, "short")],
                                            strict=True)]
            rows.append(stat_row(f"{kind}: long / short (init..finish)", ratios, f_x))
        print_table(rows, args.markdown)
        print(f"pyarrow loaded by: {sorted(pyarrow) or 'none'}; median long rewind "
              f"{med(times[('resume_from', 'long')]) * 1e3:.1f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
