"""``localtrack demo``: log a run in a child process, SIGKILL it, auto-resume it, show it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from . import _settings, _store
from ._query import Api

STEPS = 600

TRAIN = f"""
import math, time, localtrack
run = localtrack.init(project="demo", resume="auto", config={{"lr": 0.01, "epochs": 3}})
print(("resumed" if run.resumed else "started") + f" run {{run.id}} at step {{run.starting_step}}",
      flush=True)
for step in range(run.step, {STEPS}):
    loss = math.exp(-step / 150) + 0.02 * math.sin(step / 7)
    run.log({{"loss": loss, "acc": 1 - loss / 2, "epoch": step // 200}})
    time.sleep(0.002)
run.summary["final_loss"] = loss
run.finish()
"""


def _child(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", TRAIN], env=env)


def run_demo(dir: str | None) -> int:
    root = _settings.root_dir(dir)
    _store.refuse_non_store(root)  # before the child: it could only fail
    env = {**os.environ, "LOCALTRACK_DIR": str(root)}
    print(f"1. training in a child process, logging to {root}")
    child = _child(env)
    api = Api(root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        runs = [r for r in api.runs("demo") if r.state == "running"] if root.is_dir() else []
        if runs and runs[-1].last_step >= 200:
            break
        time.sleep(0.05)
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
    runs = api.runs("demo") if child.wait() == -signal.SIGKILL else []
    if not runs:
        print(f"the training child ended (exit status {child.returncode}) before the demo could "
              f"kill it, so there is nothing to resume in {root}; its error, if any, is above",
              file=sys.stderr)
        return 1
    crashed = runs[-1]
    print(f"2. SIGKILLed it: run {crashed.id} is {crashed.state} with {crashed.last_step + 1} "
          "steps on disk")
    print("3. starting the same script again with resume='auto'")
    if _child(env).wait() != 0:
        print("the resumed child failed", file=sys.stderr)
        return 1
    run = api.run(f"demo/{crashed.id}")
    table = run.history_table(["loss"])
    steps = table.column("_step").to_pylist()
    contiguous = steps == list(range(STEPS))
    print(f"4. run {run.id} is {run.state}: {len(steps)} steps, contiguous and duplicate-free: "
          f"{contiguous}")
    print(f"   see it with: localtrack show demo/{run.id} --dir {root}")
    return 0 if contiguous and run.state == "finished" else 1
