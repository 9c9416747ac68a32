#!/usr/bin/env python3
"""The test suite's former wall-clock limits, measured where timing belongs (issue 14).

Tests assert what happens, never how fast: a limit in a test fails under load on a fresh
machine (a new user's run of the README's test command listed 1,000 runs in 1.57 s against
a 1 s limit). Each limit below was asserted by the test named in its row; this script times
the same operation. Every repeat runs in a fresh process (this script re-invoked with the
hidden ``--worker`` flag, by the suite's harness, ``_harness.py``); shared input (the 1,000
runs) is built once, outside every clock. Each workload below is an entry of ``WORKLOADS``,
each former limit an entry of ``LIMITS``.

Workloads (``--only`` names):
  lock        8 processes race for one run id: the slowest loser's init() until RunLockedError.
  downsample  series() of a 10^6-step metric down to 1,000 points (the table is built first).
  list        `localtrack ui` over 1,000 runs: the first /api/runs after start-up (it waits
              for the server's start-up read of every run), then the best of three from the
              server's cache.
  catch-up    `localtrack sync --watch` to a loopback S3 server (moto) that goes away for
              2.5 s while a run logs: from the server's return until the remote holds every
              step the run had then.
  live-chart  the dashboard in Chromium (Playwright): from a live run's log() of 7 steps until
              the chart draws them (the page polls every 2 s).

Prints the median and min .. max of ``--repeats`` repeats and whether the median meets the
former limit; exits 1 when a measured median does not, or a worker failed. A workload whose
tools are missing here (moto, Chromium, Playwright) is reported as not measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _harness import ChildError, Children, rounds, serve

TIMEOUT = 300.0  # seconds: a bound on every child process
S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


# -- helpers of the workers --------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALTRACK_")}
    env.update(extra)
    return env


def python(code: str, *args: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env())


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 120.0, poll: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(poll)


class UI:
    """`localtrack ui` on a free loopback port, stopped with Ctrl-C as a user would."""

    def __init__(self, store: str) -> None:
        cmd = [sys.executable, "-m", "localtrack", "ui", "--dir", store, "--port", "0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if " at http://" not in line:
            raise RuntimeError(f"localtrack ui printed no URL: {line!r}")
        self.url = line.split(" at ", 1)[1].split()[0]

    def get_json(self, route: str) -> object:
        with urllib.request.urlopen(self.url + route.lstrip("/"), timeout=60) as res:
            return json.load(res)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=30)


class LiveRun:
    """A training process that logs N more steps each time it is told to (over stdin)."""

    CODE = """
import sys, localtrack
run = localtrack.init(project="live", id="w", dir=sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    for _ in range(int(line)):
        run.log({"loss": 1.0 / (run.step + 1)})
    print(run.step, flush=True)
run.finish()
"""

    def __init__(self, store: str) -> None:
        self.proc = python(self.CODE, store, stdin=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == b"ready\n"

    def log(self, n: int) -> int:
        """Steps on disk once the n more are logged."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n}\n".encode())
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        """Closes its stdin: the run finishes."""
        self.proc.communicate(timeout=60)


# -- workers: each measures one repeat in a fresh process ----------------------------------------


RACER = """
import os, sys, time, localtrack
deadline = time.monotonic() + 120  # ends an orphaned racer
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
t0 = time.perf_counter()
try:
    run = localtrack.init(project="p", id="race", resume="allow", dir=sys.argv[1])
except localtrack.errors.RunLockedError:
    print("locked", time.perf_counter() - t0, flush=True)
else:
    print("got", flush=True)
    while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:  # hold the run until
        time.sleep(0.01)                                                    # every other racer is out
    run.finish()
"""


def measure_lock(scratch: str, shared: str) -> dict[str, float]:
    go, done = os.path.join(scratch, "go"), os.path.join(scratch, "done")
    procs = [python(RACER, os.path.join(scratch, "store"), go, done) for _ in range(8)]
    try:
        assert all(p.stdout is not None and p.stdout.readline() == b"ready\n" for p in procs)
        Path(go).touch()
        wait_until(lambda: sum(p.poll() is not None for p in procs) >= 7, "seven racers turned away")
    finally:
        Path(done).touch()
    outs = [p.communicate(timeout=60)[0].decode().split() for p in procs]
    if sorted(o[:1] for o in outs) != [["got"]] + [["locked"]] * 7:
        raise RuntimeError(f"not one winner and seven RunLockedErrors: {outs}")
    return {"lock": max(float(o[1]) for o in outs if o[0] == "locked")}


def measure_downsample(scratch: str, shared: str) -> dict[str, float]:
    import math

    import pyarrow as pa

    from localtrack._ui._downsample import series

    n = 1_000_000
    values = [math.sin(i / 5000) for i in range(n)]
    values[123_457] = 50.0  # the spikes of the former test
    values[700_001] = -40.0
    table = pa.table({"_step": pa.array(range(n), pa.int64()),
                      "_timestamp": pa.array([1e9 + i / 100 for i in range(n)]), "loss": pa.array(values)})
    t0 = time.perf_counter()
    s = series(table, "loss", points=1000)
    took = time.perf_counter() - t0
    assert s["sampled"] and len(s["x"]) == 1000 and max(s["ymax"]) == 50.0
    return {"downsample": took}


def prepare_list(shared: str) -> None:
    """1,000 runs: one made through the API, copied under 999 other ids (the format is a contract)."""
    import localtrack

    run = localtrack.init(project="big", id="seed", dir=shared, config={"lr": 0.1, "model": {"depth": 3}},
                          tags=["a"], group="g")
    for i in range(20):
        run.log({"loss": 1 / (i + 1), "acc": i / 20})
    run.summary["best"] = 1
    run.finish()
    from localtrack import _sealer

    _sealer.wait_idle(Path(run.dir))
    runs = Path(shared) / "big" / "runs"
    for i in range(999):
        rid = f"r{i:04d}"
        shutil.copytree(runs / "seed", runs / rid)
        meta = json.loads((runs / rid / "run.json").read_bytes())
        (runs / rid / "run.json").write_text(json.dumps({**meta, "id": rid, "name": f"run {i}"}))


def measure_list(scratch: str, shared: str) -> dict[str, float]:
    ui = UI(shared)
    try:
        t0 = time.perf_counter()
        first = ui.get_json("/api/runs?project=big")
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(3):
            t0 = time.perf_counter()
            again = ui.get_json("/api/runs?project=big")
            warm.append(time.perf_counter() - t0)
    finally:
        ui.stop()
    assert isinstance(first, dict) and isinstance(again, dict)
    assert len(first["runs"]) == len(again["runs"]) == 1000
    return {"list-cold": cold, "list-warm": min(warm)}


WRITER = """
import os, sys, time, localtrack
run = localtrack.init(project="live", id="w", dir=sys.argv[1])
deadline = time.monotonic() + 240  # ends an orphaned writer
while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    run.log({"loss": 1.0 / (run.step + 1)})
    time.sleep(0.01)
run.finish()
"""


def measure_catch_up(scratch: str, shared: str) -> dict[str, float]:
    import logging

    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    import localtrack

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(S3_ENV)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])

    def start() -> ThreadedMotoServer:  # moto keeps its buckets in this process across restarts
        deadline = time.monotonic() + 30
        while True:
            try:
                server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
                server.start()
                return server
            except OSError:  # the port is still in TIME_WAIT after a stop
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    server = start()
    pafs.S3FileSystem(access_key="bench", secret_key="bench", region="us-east-1", allow_bucket_creation=True,
                      endpoint_override=f"http://127.0.0.1:{port}").create_dir("bench")
    uri = f"s3://bench/store?endpoint_override=127.0.0.1:{port}&scheme=http"
    store, stop = os.path.join(scratch, "store"), os.path.join(scratch, "stop")

    def remote_steps() -> int:
        try:
            return localtrack.Api(uri).run("live/w").last_step
        except localtrack.LocaltrackError:
            return -1

    writer = python(WRITER, store, stop)
    log_path = os.path.join(scratch, "daemon.log")
    with open(log_path, "wb") as log_file:
        daemon = subprocess.Popen([sys.executable, "-m", "localtrack", "sync", "--to", uri, "--dir", store,
                                   "--watch"], stdout=log_file, stderr=log_file, env=clean_env(**S3_ENV))
    try:
        wait_until(lambda: remote_steps() >= 20, "the live run on the remote")
        server.stop()
        time.sleep(2.5)  # the writer goes on logging; the daemon fails, backs off, retries
        server = start()
        t0 = time.perf_counter()
        target = localtrack.Api(store).run("live/w").last_step
        wait_until(lambda: remote_steps() >= target, "the remote to catch up after the outage")
        took = time.perf_counter() - t0
    finally:
        Path(stop).touch()
        writer.communicate(timeout=60)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        server.stop()
    text = Path(log_path).read_text()
    if "cannot sync to" not in text or "reachable again" not in text:
        raise RuntimeError(f"the daemon did not see the outage; its log:\n{text}")
    return {"catch-up": took}


POINTS = """([metric, path]) => {
    const gd = [...document.querySelectorAll('.panel')].find(p => p.dataset.metric === metric)
        ?.querySelector('.js-plotly-plot');
    if (!gd || !gd.data) return -1;
    const i = gd.data.findIndex(t => t.meta === path && t.name !== undefined);
    if (i < 0) return -1;
    return gd.querySelectorAll('.scatterlayer .trace')[i].querySelectorAll('path.point').length;
}"""


def measure_live_chart(scratch: str, shared: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    store = os.path.join(scratch, "store")
    live = LiveRun(store)
    ui = None
    try:
        at = live.log(30)
        ui = UI(store)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(ui.url + "#/p/live", wait_until="domcontentloaded")
            page.wait_for_function(f"(a) => ({POINTS})(a) === {at}", arg=["loss", "live/w"])
            t0 = time.perf_counter()
            at = live.log(7)
            page.wait_for_function(f"(a) => ({POINTS})(a) === {at}", arg=["loss", "live/w"], polling=20)
            took = time.perf_counter() - t0
            browser.close()
    finally:
        live.close()
        if ui is not None:
            ui.stop()
    return {"live-chart": took}


# -- workloads and limits, as data -------------------------------------------------------------


def missing_module(name: str, why: str) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:
            found = False
        return None if found else f"{name} is not installed ({why})"
    return check


def missing_browser() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return missing_module("playwright", "the test extra")()


@dataclass(frozen=True)
class Workload:
    name: str
    measure: Callable[[str, str], dict[str, float]]  # (scratch dir, shared dir) -> figure: seconds
    prepare: Callable[[str], None] | None = None     # builds the shared dir once, before any repeat
    missing: Callable[[], str | None] = lambda: None  # why it cannot run on this machine


@dataclass(frozen=True)
class Limit:
    figure: str
    workload: str
    what: str
    test: str      # the test that asserted it, until issue 14
    seconds: float  # the former limit: met when the median is below it


WORKLOADS = (
    Workload("lock", measure_lock),
    Workload("downsample", measure_downsample),
    Workload("list", measure_list, prepare=prepare_list),
    Workload("catch-up", measure_catch_up, missing=missing_module("moto", "the test extra: moto[server]")),
    Workload("live-chart", measure_live_chart, missing=missing_browser),
)
LIMITS = (
    Limit("lock", "lock", "8 racers for one id: the slowest RunLockedError",
          "test_processes.py::test_eight_processes_race_for_one_id", 1.0),
    Limit("downsample", "downsample", "series() of 10^6 steps to 1,000 points",
          "test_ui_server.py::test_downsampling_a_million_steps_keeps_spikes", 5.0),
    Limit("list-cold", "list", "1,000 runs: first /api/runs after start-up",
          "test_ui_server.py::test_thousand_runs_are_listed_first_and_from_the_cache", 10.0),
    Limit("list-warm", "list", "1,000 runs: /api/runs from the cache (best of 3)",
          "test_ui_server.py::test_thousand_runs_are_listed_first_and_from_the_cache", 1.0),
    Limit("catch-up", "catch-up", "sync --watch catching up after a 2.5 s S3 outage",
          "test_sync_faults.py::test_daemon_keeps_a_live_run_in_step_through_an_s3_outage", 15.0),
    Limit("live-chart", "live-chart", "7 new steps of a live run drawn in the chart",
          "test_ui_browser.py::test_live_run_updates_without_reload", 6.0),
)


# -- driver: the harness's children and repeat loop ---------------------------------------------

CHILDREN = Children(__file__, TIMEOUT, clean=True)


def w_prepare(a: dict) -> dict[str, float]:
    workload = next(w for w in WORKLOADS if w.name == a["workload"])
    assert workload.prepare is not None
    workload.prepare(a["shared"])
    return {}


def w_measure(a: dict) -> dict[str, float]:
    workload = next(w for w in WORKLOADS if w.name == a["workload"])
    return workload.measure(a["scratch"], a["shared"])


WORKERS = {"prepare": w_prepare, "measure": w_measure}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)  # progress; the table goes to stdout


def run_workload(wl: Workload, repeats: int, tmp: str) -> dict[str, list[float]]:
    """Prepare the shared input once, then measure ``repeats`` times, each in a fresh process:
    each figure's seconds."""
    shared = os.path.join(tmp, wl.name, "shared")
    os.makedirs(shared)
    if wl.prepare is not None:
        say(f"{wl.name}: preparing ...")
        CHILDREN.spawn("prepare", {"workload": wl.name, "shared": shared})

    def measure(name: str, rep: int) -> dict[str, float]:
        say(f"{name}: repeat {rep + 1} of {repeats} ...")
        scratch = os.path.join(tmp, name, str(rep))
        os.makedirs(scratch)
        return CHILDREN.spawn("measure", {"workload": name, "scratch": scratch, "shared": shared})

    figures: dict[str, list[float]] = {}
    for _, batch in rounds([wl.name], repeats, measure):
        for figure, seconds in batch[wl.name].items():
            if not figure.startswith("_"):  # the harness's own _wall, _cpu and _maxrss
                figures.setdefault(figure, []).append(seconds)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(w.name for w in WORKLOADS),
                        help="comma-separated workloads (default: all)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--arg", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(WORKERS, args.worker, args.arg or "{}")
        return 0
    chosen = args.only.split(",")
    unknown = set(chosen) - {w.name for w in WORKLOADS}
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {[w.name for w in WORKLOADS]}")

    figures: dict[str, list[float]] = {}
    not_measured: dict[str, str] = {}  # workload -> why
    tmp = tempfile.mkdtemp(prefix="localtrack-bench-limits-")
    try:
        for wl in (w for w in WORKLOADS if w.name in chosen):
            why = wl.missing()
            if why is None:
                try:
                    figures.update(run_workload(wl, args.repeats, tmp))
                except ChildError as exc:  # a worker failed or timed out
                    why = f"failed: {exc}"
            if why is not None:
                not_measured[wl.name] = why
                say(f"{wl.name}: not measured: {why}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; median of {args.repeats} repeats, each in a fresh process.\n")
    print("| figure | former limit | median | min .. max | verdict | former test |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    ok = True
    for lim in (lim for lim in LIMITS if lim.workload in chosen):
        values = figures.get(lim.figure)
        if values and lim.workload not in not_measured:
            median = statistics.median(values)
            met = median < lim.seconds
            ok &= met
            spread = f"{min(values):.3f} .. {max(values):.3f} s"
            print(f"| {lim.what} | < {lim.seconds:g} s | {median:.3f} s | {spread} "
                  f"| {'met' if met else 'NOT met'} | {lim.test} |")
        else:
            why = not_measured.get(lim.workload, "no figure")
            ok &= not why.startswith("failed")
            print(f"| {lim.what} | < {lim.seconds:g} s | n/a | | not measured: {why} | {lim.test} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
