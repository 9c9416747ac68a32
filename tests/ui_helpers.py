"""Shared by the dashboard tests: a store of real runs, a live writer process, the server process."""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import localtrack

from .helpers import run_script, script

EVIL_NAME = "<img src=x onerror=alert(1)>"
EVIL_CONFIG = "<script>alert(2)</script>"


def curve(step: int, lr: float, seed: int) -> dict[str, float]:
    rnd = random.Random(step * 7919 + seed)
    loss = 2.3 * math.exp(-step * lr / 4) + 0.08 + rnd.random() * 0.06
    return {"loss": loss, "acc": 1 - loss / 2.5, "val/loss": loss * 1.1 + 0.02}


def build_store(root: Path) -> dict[str, str]:
    """Runs in every state, made through localtrack.init/log/finish; returns name -> path."""
    paths = {}
    specs = [("baseline", 0.1, 64, 0, ["baseline"], "sgd"), ("wide-lr", 0.3, 128, 0, ["sweep"], "sgd"),
             ("adam-small", 0.05, 32, 0, ["sweep"], "adam"), ("diverged", 1.0, 64, 1, ["sweep"], "sgd")]
    for i, (name, lr, batch, code, tags, group) in enumerate(specs):
        run = localtrack.init(project="mnist", id=f"r{i}-{name}", dir=root, name=name, tags=tags,
                              group=group, config={"lr": lr, "batch": batch, "model": {"depth": 4 + i,
                                                                                      "act": "relu"}})
        for step in range(40):
            run.log(curve(step, lr, i))
        run.summary["best_acc"] = round(0.9 + i / 100, 3)
        run.finish(exit_code=code)
        paths[name] = run.path
    evil = localtrack.init(project="mnist", id="evil", dir=root, name=EVIL_NAME, tags=["<b>t</b>"],
                           config={"lr": 0.2, "note": EVIL_CONFIG})
    for step in range(5):
        evil.log({"loss": 1.0 / (step + 1)})
    evil.finish()
    paths["evil"] = evil.path
    crashed = run_script(f"""
        import os, localtrack
        run = localtrack.init(project="mnist", id="crashed", dir={str(root)!r}, name="oom-killed",
                              config={{"lr": 0.1, "batch": 512}})
        for s in range(25):
            run.log({{"loss": 2.0 / (s + 1)}})
        os._exit(137)
    """)
    assert crashed.returncode == 137, crashed.stderr
    paths["crashed"] = "mnist/crashed"
    killed = run_script(f"""
        import os, localtrack
        run = localtrack.init(project="mnist", id="resumed", dir={str(root)!r}, name="resumed-once",
                              config={{"lr": 0.1}})
        for s in range(10):
            run.log({{"loss": 2.0 / (s + 1)}})
        os._exit(1)
    """)
    assert killed.returncode == 1, killed.stderr
    again = localtrack.init(project="mnist", id="resumed", dir=root, resume="must")
    for step in range(10, 20):
        again.log({"loss": 2.0 / (step + 1)})
    again.finish()
    paths["resumed"] = again.path
    other = localtrack.init(project="cifar10", id="c1", dir=root, config={"lr": 0.01})
    other.log({"loss": 1.0})
    other.log({"loss": 0.5})
    other.finish()
    fork = localtrack.init(project="cifar10", id="c1-fork", dir=root, fork_from="c1?_step=0")
    fork.log({"loss": 0.25})
    fork.finish()
    paths["fork"] = fork.path
    localtrack.init(project="cifar10", dir=root, resume_from="c1?_step=0").finish()  # the fork keeps its rows
    return paths


class LiveWriter:
    """A training process that logs N more steps each time it is told to (over stdin)."""

    CODE = """
        import sys, math, localtrack
        run = localtrack.init(project="mnist", id="live", dir=sys.argv[1], name="live-run",
                              tags=["live"], group="adam", config={"lr": 0.07, "batch": 64,
                              "model": {"depth": 6, "act": "gelu"}})
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() == "q":
                break
            for _ in range(int(line)):
                s = run.step
                run.log({"loss": 2.3 * math.exp(-s * 0.07 / 4) + 0.1, "acc": 0.5 + s / 200})
            print("at", run.step, flush=True)
        run.finish()
        print("done", flush=True)
    """

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.proc = script(self.CODE, str(root), env=env, stdin=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        line = self.proc.stdout.readline()
        assert line == b"ready\n", self.proc.stderr.read() if self.proc.stderr else line

    def log(self, n: int) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n}\n".encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().decode()
        assert line.startswith("at "), line
        return int(line.split()[1])

    def close(self) -> bytes:
        """Tell it to finish (kill it if it does not within a minute); returns its stderr."""
        try:
            _, err = self.proc.communicate(b"q\n", timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


class UIProcess:
    """`localtrack ui` as a real subprocess on a free loopback port."""

    def __init__(self, root: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALTRACK_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "localtrack", "ui", "--dir", str(root),
                                      "--port", "0", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if not match:
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"no URL in {line!r}; stderr: {err.decode()}")
        self.url = match.group(1)

    def stop(self) -> tuple[int, str, str]:
        """Ctrl-C, as a user would; returns (exit code, stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out.decode(), err.decode()


@contextlib.contextmanager
def serving(root: Path, *args: str) -> Iterator[UIProcess]:
    """`localtrack ui` over ``root`` while the block runs, then Ctrl-C: it must stop cleanly
    (exit 0, "stopped", no traceback). A failure inside the block is raised as it is."""
    proc = UIProcess(root, *args)
    try:
        yield proc
    finally:
        code, out, err = proc.stop()
    assert code == 0 and "localtrack ui: stopped" in out and "Traceback" not in err, (code, out, err)


@pytest.fixture(scope="module")
def ui(store: Path) -> Iterator[UIProcess]:
    """The dashboard over the test module's own ``store`` fixture, shared by its tests (a
    module takes it as ``ui = ui_helpers.ui``)."""
    with serving(store) as proc:
        yield proc


def build_media_run(root: Path) -> str:
    """A run whose subprocess logs images (one colour per step), tables, histograms, audio and
    HTML; returns its path. Step s's image is a solid (40 * s, 255 - 40 * s, 0) square. At
    steps 3 and 4, "seg" is a grey (100) 40x20 image with two box groups: "pred" (labelled; a
    relative box from (0.25, 0.05 * s) to (0.5, 0.75) captioned "cat", a pixel box 8x8 around
    (30, 10) of class 2 "dog"), "truth" (one box of class 3, no class_labels) and EVIL_NAME
    (a box captioned EVIL_NAME in the top-left corner), and a mask
    "pred" of class 1 ("road") in the left 10 * (s - 2) columns, 0 elsewhere."""
    done = run_script(f"""
        import numpy as np, localtrack
        run = localtrack.init(project="media", id="m1", dir={str(root)!r}, name="with-media")
        for s in range(5):
            img = np.zeros((8, 8, 3), np.uint8); img[:, :] = (40 * s, 255 - 40 * s, 0)
            values = np.random.default_rng(s).normal(s, 1.0, 500)
            row = {{"sample": localtrack.Image(img, caption=f"step {{s}}"), "loss": 1.0 / (s + 1),
                    "weights": localtrack.Histogram(values)}}
            if s == 2:
                row["preds"] = localtrack.Table(columns=["id", "label"],
                                                data=[[i, f"cls<{{i}}>"] for i in range(150)])
                row["tone"] = localtrack.Audio(np.sin(np.arange(800) / 8.0) * 0.5, sample_rate=8000)
                row["page"] = localtrack.Html("<script>alert(3)</script><b>hi</b>")
            if s >= 3:
                boxes = {{"pred": {{"box_data": [
                    {{"position": {{"minX": 0.25, "maxX": 0.5, "minY": 0.05 * s, "maxY": 0.75}},
                     "class_id": 1, "box_caption": "cat", "scores": {{"p": 0.75}}}},
                    {{"position": {{"middle": [30, 10], "width": 8, "height": 8}}, "domain": "pixel",
                     "class_id": 2}}], "class_labels": {{1: "cat", 2: "dog"}}}},
                    "truth": {{"box_data": [{{"position": {{"minX": 0, "maxX": 1, "minY": 0, "maxY": 1}},
                                             "class_id": 3}}]}},
                    {EVIL_NAME!r}: {{"box_data": [{{"box_caption": {EVIL_NAME!r}, "class_id": 4,
                        "position": {{"minX": 0, "maxX": 0.1, "minY": 0, "maxY": 0.1}}}}],
                        "class_labels": {{4: {EVIL_NAME!r}}}}}}}
                mask = np.zeros((20, 40), np.uint8); mask[:, :10 * (s - 2)] = 1
                masks = {{"pred": {{"mask_data": mask, "class_labels": {{1: "road"}}}}}}
                row["seg"] = localtrack.Image(np.full((20, 40, 3), 100, np.uint8), boxes=boxes, masks=masks)
            run.log(row)
        run.finish()
    """)
    assert done.returncode == 0, done.stderr
    return "media/m1"
