#!/usr/bin/env python3
"""Core benchmarks for localtrack: log() per-call cost against an orjson floor, and resume time.

Every workload runs in a FRESH subprocess (this script re-invoked with the hidden
``--worker NAME`` flag), so nothing is warm from an earlier workload; each is
repeated ``--repeats`` times and medians are reported. Ratios are taken per
repeat (the runs of one repeat run back to back) and then the median is taken.

  1. log(): ``--steps`` calls of ``run.log({"k0": x0, ..., "k9": x9})`` with ten
     floats that differ at every step (precomputed before the clock starts);
     timed as the loop alone and as init + loop + finish.
  2. The floor, in the same repeat and on the same precomputed dicts:
     ``orjson.dumps(d, option=OPT_APPEND_NEWLINE)`` written to a buffered file
     (``open(path, "wb")``), and the same with one ``os.write`` per line on an
     O_APPEND fd (unbuffered, as localtrack must write for crash safety).
  3. Resume: runs of ``--resume-steps`` steps are built once (finished, and
     crashed by SIGKILL right after the last log()), then each repeat resumes
     them in fresh subprocesses with ``init(..., resume="must")`` + ``finish()``;
     the init call is timed inside the child. A crashed run is resumed from a
     pristine copy each time, since finish() seals it.

Only the standard library is used here; localtrack and orjson are imported by
the workers. Temporary directories are removed at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PROJECT = "bench"
KEYS = tuple(f"k{j}" for j in range(10))
POOL_MAX = 200_000  # at most this many distinct dicts are kept in memory; longer loops cycle them
WORKER_TIMEOUT = 900.0  # seconds; a bound on every child process


# -- workers (run in a fresh interpreter) ------------------------------------------------------


def _rows(steps: int, seed: int) -> list[dict[str, float]]:
    """Distinct dicts of ten floats (different values at every step), built before timing."""
    rng = random.Random(seed)
    n = min(steps, POOL_MAX)
    return [{k: rng.random() * (j + 1) for j, k in enumerate(KEYS)} for _ in range(n)]


def _stream(rows: list[dict[str, float]], steps: int):
    """The same iterable for localtrack and the floors: rows, cycled if steps > len(rows)."""
    if steps <= len(rows):
        return rows[:steps] if steps < len(rows) else rows
    return itertools.islice(itertools.cycle(rows), steps)


def w_log(a: dict) -> dict:
    pc = time.perf_counter
    t = pc()
    import localtrack
    t_import = pc() - t
    rows = _rows(a["steps"], a["seed"])
    it = _stream(rows, a["steps"])
    t0 = pc()
    run = localtrack.init(project=PROJECT, dir=a["dir"])
    t1 = pc()
    for d in it:
        run.log(d)
    t2 = pc()
    run.finish()
    t3 = pc()
    return {"import": t_import, "init": t1 - t0, "loop": t2 - t1, "finish": t3 - t2,
            "total": t3 - t0}


def w_floor_buffered(a: dict) -> dict:
    pc = time.perf_counter
    import orjson
    rows = _rows(a["steps"], a["seed"])
    it = _stream(rows, a["steps"])
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    path = os.path.join(a["dir"], "floor.jsonl")
    t0 = pc()
    f = open(path, "wb")
    t1 = pc()
    for d in it:
        f.write(dumps(d, option=opt))
    t2 = pc()
    f.close()
    t3 = pc()
    return {"loop": t2 - t1, "total": t3 - t0}


def w_floor_write(a: dict) -> dict:
    pc = time.perf_counter
    import orjson
    rows = _rows(a["steps"], a["seed"])
    it = _stream(rows, a["steps"])
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    path = os.path.join(a["dir"], "floor.jsonl")
    t0 = pc()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    t1 = pc()
    for d in it:
        os.write(fd, dumps(d, option=opt))
    t2 = pc()
    os.close(fd)
    t3 = pc()
    return {"loop": t2 - t1, "total": t3 - t0}


def w_build(a: dict) -> dict:
    """Create run ``id`` with ``steps`` steps; finish it, or SIGKILL ourselves (crash)."""
    import localtrack
    rng = random.Random(a["seed"])
    run = localtrack.init(project=PROJECT, id=a["id"], dir=a["dir"])
    for _ in range(a["steps"]):
        run.log({k: rng.random() for k in KEYS})
    if a["crash"]:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # not reached; bounded anyway
        os._exit(3)
    run.finish()
    return {"step": run.step}


def w_resume(a: dict) -> dict:
    pc = time.perf_counter
    t = pc()
    import localtrack
    t_import = pc() - t
    t0 = pc()
    run = localtrack.init(project=PROJECT, id=a["id"], resume="must", dir=a["dir"])
    t1 = pc()
    starting = run.starting_step
    run.finish()
    t2 = pc()
    return {"import": t_import, "init": t1 - t0, "finish": t2 - t1, "starting_step": starting}


WORKERS = {"log": w_log, "floor_buffered": w_floor_buffered, "floor_write": w_floor_write,
           "build": w_build, "resume": w_resume}


def worker_main(name: str, arg: str) -> None:
    result = WORKERS[name](json.loads(arg))
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


# -- parent ------------------------------------------------------------------------------------


def spawn(name: str, args: dict, *, expect_kill: bool = False) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--arg", json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    if expect_kill:
        if proc.returncode != -signal.SIGKILL:
            raise SystemExit(f"worker {name} should have died by SIGKILL, got {proc.returncode}:\n"
                             f"{proc.stderr}")
        return {}
    if proc.returncode != 0:
        raise SystemExit(f"worker {name} failed ({proc.returncode}):\n{proc.stderr}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"worker {name} printed no result:\n{proc.stdout}\n{proc.stderr}")


def med(values: list[float]) -> float:
    return statistics.median(values)


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} us"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s"


def spread(values: list[float], f) -> str:
    return f"{f(min(values))} .. {f(max(values))}"


def bench_log(steps: int, repeats: int, tmp: str, say) -> list[tuple[str, str, str]]:
    lt: list[dict] = []
    fb: list[dict] = []
    fw: list[dict] = []
    order = [("log", lt), ("floor_buffered", fb), ("floor_write", fw)]
    for r in range(repeats):
        rot = order[r % 3:] + order[:r % 3]  # rotate who goes first, so drift hits all alike
        for name, sink in rot:
            d = tempfile.mkdtemp(prefix=f"{name}-", dir=tmp)
            try:
                sink.append(spawn(name, {"steps": steps, "seed": 1000 + r, "dir": d}))
            finally:
                shutil.rmtree(d, ignore_errors=True)
        say(f"  log repeat {r + 1}/{repeats}: localtrack loop {lt[-1]['loop']:.3f} s, "
            f"buffered floor {fb[-1]['loop']:.3f} s, os.write floor {fw[-1]['loop']:.3f} s")
    per = lambda rs, key: [x[key] / steps for x in rs]  # noqa: E731
    rows = [
        ("localtrack log(), loop only, per call", fmt_us(med(per(lt, "loop"))),
         spread(per(lt, "loop"), fmt_us)),
        ("localtrack init + loop + finish, per call", fmt_us(med(per(lt, "total"))),
         spread(per(lt, "total"), fmt_us)),
        ("  of which init", fmt_ms(med([x["init"] for x in lt])),
         spread([x["init"] for x in lt], fmt_ms)),
        ("  of which finish (seal to Parquet)", fmt_s(med([x["finish"] for x in lt])),
         spread([x["finish"] for x in lt], fmt_s)),
        ("import localtrack", fmt_ms(med([x["import"] for x in lt])),
         spread([x["import"] for x in lt], fmt_ms)),
        ("floor: orjson + buffered file, per call", fmt_us(med(per(fb, "loop"))),
         spread(per(fb, "loop"), fmt_us)),
        ("floor: orjson + os.write per line, per call", fmt_us(med(per(fw, "loop"))),
         spread(per(fw, "loop"), fmt_us)),
    ]
    ratios = [
        ("ratio loop: localtrack / buffered floor", [a["loop"] / b["loop"] for a, b in zip(lt, fb)]),
        ("ratio loop: localtrack / os.write floor", [a["loop"] / b["loop"] for a, b in zip(lt, fw)]),
        ("ratio loop: os.write floor / buffered floor",
         [a["loop"] / b["loop"] for a, b in zip(fw, fb)]),
        ("ratio total: localtrack / os.write floor",
         [a["total"] / b["total"] for a, b in zip(lt, fw)]),
    ]
    for label, rs in ratios:
        rows.append((label, f"{med(rs):.2f}x", spread(rs, lambda v: f"{v:.2f}x")))
    return rows


def _unsealed_logs(rdir: str) -> tuple[int, int]:
    """(number, total bytes) of history log files a crashed run left (its wal/ dir)."""
    wal = os.path.join(rdir, "wal")
    try:
        names = [n for n in os.listdir(wal) if n.endswith(".jsonl")]
    except FileNotFoundError:
        return 0, 0
    return len(names), sum(os.path.getsize(os.path.join(wal, n)) for n in names)


def bench_resume(sizes: list[int], repeats: int, tmp: str, say) -> list[tuple[str, str, str]]:
    pristine: dict[tuple[int, str], str] = {}
    unsealed: dict[int, tuple[int, int]] = {}
    for n in sizes:
        for kind in ("finished", "crashed"):
            root = tempfile.mkdtemp(prefix=f"build-{kind}-{n}-", dir=tmp)
            t = time.perf_counter()
            spawn("build", {"steps": n, "seed": n, "id": f"r{n}-{kind}", "dir": root,
                            "crash": kind == "crashed"}, expect_kill=kind == "crashed")
            say(f"  built {kind} run of {n} steps in {time.perf_counter() - t:.1f} s")
            pristine[(n, kind)] = root
            if kind == "crashed":
                unsealed[n] = _unsealed_logs(os.path.join(root, PROJECT, "runs", f"r{n}-{kind}"))
    results: dict[tuple[int, str], list[dict]] = {key: [] for key in pristine}
    for r in range(repeats):
        for n in sizes:
            for kind in ("finished", "crashed"):
                src = pristine[(n, kind)]
                if kind == "crashed":  # finish() seals it: resume a pristine copy every time
                    root = os.path.join(tmp, f"resume-{kind}-{n}-{r}")
                    shutil.copytree(src, root)
                else:
                    root = src
                try:
                    res = spawn("resume", {"id": f"r{n}-{kind}", "dir": root})
                finally:
                    if root != src:
                        shutil.rmtree(root, ignore_errors=True)
                if res["starting_step"] != n:
                    raise SystemExit(f"resumed {kind} run of {n} steps at step "
                                     f"{res['starting_step']}: logged steps were lost")
                results[(n, kind)].append(res)
        say(f"  resume repeat {r + 1}/{repeats} done")
    rows = []
    for kind in ("finished", "crashed"):
        for n in sizes:
            rs = results[(n, kind)]
            inits = [x["init"] for x in rs]
            fins = [x["finish"] for x in rs]
            rows.append((f"resume {kind} run of {n:,} steps: init()", fmt_ms(med(inits)),
                         spread(inits, fmt_ms)))
            rows.append((f"resume {kind} run of {n:,} steps: finish()", fmt_ms(med(fins)),
                         spread(fins, fmt_ms)))
            if kind == "crashed":
                files, size = unsealed[n]
                rows.append((f"  unsealed log left by the crash ({n:,} steps)",
                             f"{files} file(s)", f"{size / 2**20:.1f} MiB"))
        if len(sizes) > 1:
            lo, hi = min(sizes), max(sizes)
            ratio = [b["init"] / a["init"] for a, b in zip(results[(lo, kind)], results[(hi, kind)])]
            rows.append((f"ratio init(): {kind} {hi:,} / {lo:,} steps", f"{med(ratio):.2f}x",
                         spread(ratio, lambda v: f"{v:.2f}x")))
    return rows


def print_table(rows: list[tuple[str, str, str]], markdown: bool) -> None:
    head = ("measure", "median", "min .. max")
    if markdown:
        print(f"| {head[0]} | {head[1]} | {head[2]} |")
        print("| --- | ---: | ---: |")
        for a, b, c in rows:
            print(f"| {a.strip()} | {b} | {c} |")
        return
    w0 = max(len(head[0]), *(len(r[0]) for r in rows))
    w1 = max(len(head[1]), *(len(r[1]) for r in rows))
    print(f"{head[0]:<{w0}}  {head[1]:>{w1}}  {head[2]}")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 20}")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:>{w1}}  {c}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--arg", help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=5, help="fresh-process repeats (default 5)")
    p.add_argument("--steps", type=int, default=100_000, help="log() calls per run (default 100000)")
    p.add_argument("--resume-steps", default="1000,1000000",
                   help="comma-separated run lengths for the resume test (default 1000,1000000)")
    p.add_argument("--skip-log", action="store_true", help="skip the log() benchmark")
    p.add_argument("--skip-resume", action="store_true", help="skip the resume benchmark")
    p.add_argument("--markdown", action="store_true", help="also print markdown tables")
    p.add_argument("--tmp", default=None, help="parent of the temp dir (default: system temp)")
    a = p.parse_args()
    if a.worker:
        worker_main(a.worker, a.arg or "{}")
        return
    if a.repeats < 1 or a.steps < 1:
        p.error("--repeats and --steps must be >= 1")
    sizes = sorted({int(x) for x in a.resume_steps.split(",") if x.strip()})
    if not sizes or min(sizes) < 1:
        p.error("--resume-steps needs positive integers")

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="localtrack-bench-", dir=a.tmp)
    sections: list[tuple[str, list[tuple[str, str, str]]]] = []
    try:
        if not a.skip_log:
            say(f"log(): {a.steps:,} steps x {a.repeats} repeats")
            sections.append((f"log(): 10 float scalars per step, {a.steps:,} steps",
                             bench_log(a.steps, a.repeats, tmp, say)))
        if not a.skip_resume:
            say(f"resume: {sizes} steps x {a.repeats} repeats")
            sections.append(("resume(init(resume='must') timed inside a fresh process)",
                             bench_resume(sizes, a.repeats, tmp, say)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"medians of {a.repeats} fresh-process runs; wall {elapsed:.0f} s")
    for title, rows in sections:
        print()
        print(title)
        print_table(rows, markdown=False)
    if a.markdown:
        for title, rows in sections:
            print()
            print(f"### {title}")
            print()
            print_table(rows, markdown=True)


if __name__ == "__main__":
    main()
