#!/usr/bin/env python3
"""The sync daemon against many live runs (issue 19, part 2): does ``localtrack sync --watch``
keep ``--writers`` concurrently written runs within 10 s of their writers on a directory remote?

``--writers`` processes each open a run and log a row ``{"t": time.time(), ...}`` every
``--every`` seconds for ``--seconds`` seconds, then finish. One daemon (``localtrack sync
--watch --dir STORE --to REMOTE``, file events, default ``--jobs``) ships them. Once a second
this process lists the store and the remote (``Api(dir=...).runs()``) and takes, for every run
its writer has started, the lag: the ``t`` of the newest row in the store minus that of the
newest row on the remote (a run not there yet: minus its writer's start). The first
``--warmup`` seconds (processes starting) are left out.

Printed: the lag over all runs and samples as median, 95th percentile and maximum, the
largest per-sample maximum, whether the daemon said it fell behind, and the machine's load.
A row every ``--every`` s puts a floor of that much on the lag (the row not yet written).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WRITER = """
import sys, time, localtrack
store, rid, seconds, every = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
run = localtrack.init(project="w", id=rid, dir=store, config={"t0": time.time()})
end = time.time() + seconds
i = 0
while time.time() < end:
    run.log({"t": time.time(), "i": i, "loss": 1.0 / (i + 1)})
    i += 1
    time.sleep(every)
run.finish()
"""


def newest(localtrack: Any, root: Path) -> dict[str, tuple[float, float]]:
    """Per run of the store at ``root``: (when its writer started, its newest row's t)."""
    out = {}
    if root.exists():
        for run in localtrack.Api(dir=str(root)).runs("w"):
            t = run.summary.get("t")
            if isinstance(t, float):
                out[run.id] = (float(run.config.get("t0", t)), t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--jobs", type=int, help="the daemon's --jobs (default: sync's own)")
    args = parser.parse_args()

    import localtrack

    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALTRACK_")}
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        store, remote, daemon_log = Path(tmp, "store"), Path(tmp, "remote"), Path(tmp, "daemon.log")
        localtrack.init(project="w", id="seed", dir=str(store)).finish()  # the store exists
        cmd = [sys.executable, "-m", "localtrack", "sync", "--watch", "--dir", str(store),
               "--to", str(remote)] + (["--jobs", str(args.jobs)] if args.jobs else [])
        with open(daemon_log, "wb") as out:
            daemon = subprocess.Popen(cmd, stdout=out, stderr=out, env=env)
        start = time.time()
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(store), f"r{i:03d}",
                                     str(args.seconds), str(args.every)], env=env)
                   for i in range(args.writers)]
        lags: list[float] = []
        peaks: list[float] = []
        try:
            end = start + args.seconds
            while time.time() < end:  # bounded by time
                time.sleep(1.0)
                if time.time() - start < args.warmup:
                    continue
                local = newest(localtrack, store)
                there = newest(localtrack, remote)
                sample = [t - there.get(rid, (first, first))[1] for rid, (first, t) in local.items()
                          if rid != "seed"]
                if sample:
                    lags += sample
                    peaks.append(max(sample))
        finally:
            for w in writers:
                w.wait(timeout=args.seconds + 120)
            daemon.terminate()
            daemon.wait(timeout=60)
        text = daemon_log.read_text()
        lags.sort()
        p95 = lags[int(0.95 * (len(lags) - 1))] if lags else float("nan")
        print(f"| {args.writers} writers, a row every {args.every:g} s, {args.seconds:g} s "
              f"| lag median {statistics.median(lags):.1f} s, p95 {p95:.1f} s, max {lags[-1]:.1f} s "
              f"| worst sample {max(peaks):.1f} s over {len(peaks)} samples "
              f"| falling-behind warnings: {text.count('falling behind')} "
              f"| load {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
