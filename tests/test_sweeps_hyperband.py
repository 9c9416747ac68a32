"""Hyperband early termination: W&B's stopping rule, decided from the runs on disk by any agent,
delivered by the job's own agent (SIGTERM to a program, RunStoppedError in a function)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import pytest

import localtrack
from localtrack._sweeps import _hyperband, _spec
from localtrack.errors import SweepConfigError

from .helpers import steps_of, wait_for
from .test_sweeps import _group_alive


def _hb(**et):
    return _spec.parse({"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
                        "early_terminate": {"type": "hyperband", **et},
                        "parameters": {"a": {"value": 1}}}).early_terminate


def test_bands_as_wandb_computes_them():
    assert _hb(min_iter=3).bands[:4] == (3, 9, 27, 81)          # eta defaults to 3
    assert _hb(min_iter=2, eta=2).bands[:3] == (2, 4, 8)
    assert _hb(max_iter=81, s=3).bands == (3, 9, 27)
    assert _hb(max_iter=18, s=2).bands == (2, 6)
    assert _hb(max_iter=5, s=2, eta=2).bands == (1, 2)          # 2.5 -> 2, 1.25 -> 1
    assert _hb(min_iter=3).strict is True
    local = _spec.parse({"method": "grid", "controller": {"type": "local"},  # W&B's key: taken
                         "metric": {"name": "loss_metric", "goal": "minimize"},
                         "early_terminate": {"type": "hyperband", "max_iter": 10, "s": 2, "eta": 3},
                         "parameters": {"base": {"values": [10, 15, 20]}}})
    assert local.early_terminate.bands == (1, 3)


def test_threshold_and_decision_by_hand():
    """min_iter 2, eta 2: bands 2, 4, 8, ... Five runs (lower is better):
    band 2 holds a=4, b=6, c=5, d=9, e=5: sorted 4 5 5 6 9, index int(5/2)=2 -> threshold 5.
    band 4 holds a=2, b=5, c=4 (d, e have 3 values): sorted 2 4 5, index int(3/2)=1 -> 4.
    band 8: no run has 8 values -> infinite (stops nothing).
    Running b, c, d, e: b is at band 4 with 5 > 4 (stop); c at band 4 with 4, not above 4;
    d at band 2 with 9 > 5 (stop); e at band 2 with 5, not above 5. a ended: never stopped."""
    hb = _hb(min_iter=2, eta=2)
    histories = {"a": [9, 4, 3, 2, 1], "b": [7, 6, 6, 5], "c": [8, 5, 4, 4],
                 "d": [9, 9, 9], "e": [6, 5, 5]}
    assert _hyperband.thresholds(hb, list(histories.values()))[:3] == [5, 4, math.inf]
    assert _hyperband.to_stop(hb, histories, {"b", "c", "d", "e"}) == {
        "b": {"band": 4, "value": 5, "threshold": 4},
        "d": {"band": 2, "value": 9, "threshold": 5}}
    # not strict (W&B's conservative rule): the best value so far is compared instead
    loose = _hyperband.Hyperband(hb.bands, hb.eta, strict=False)
    assert _hyperband.to_stop(loose, histories, {"b", "d"}) == {
        "b": {"band": 4, "value": 5, "threshold": 4},
        "d": {"band": 2, "value": 9, "threshold": 5}}
    assert _hyperband.to_stop(loose, {**histories, "b": [7, 6, 3, 5]}, {"b"}) == {}
    assert _hyperband.to_stop(hb, {"a": [5, 5]}, {"a"}) == {}   # alone at a band: its own value


@pytest.mark.parametrize("et,key", [
    pytest.param({"type": "median"}, "early_terminate.type", id="type"),
    pytest.param({"type": "hyperband"}, "early_terminate", id="no-iter"),
    pytest.param({"type": "hyperband", "max_iter": 27}, "early_terminate.s", id="max-iter-no-s"),
    pytest.param({"type": "hyperband", "min_iter": 0}, "early_terminate.min_iter", id="min-iter-0"),
    pytest.param({"type": "hyperband", "min_iter": 3, "eta": 1}, "early_terminate.eta", id="eta"),
    pytest.param({"type": "hyperband", "min_iter": 3, "etaa": 2}, "early_terminate.etaa",
                 id="typo"),
    pytest.param({"type": "hyperband", "max_iter": 2, "s": 1, "eta": 3}, "early_terminate",
                 id="no-band"),
])
def test_invalid_early_terminate_names_the_key(store, et, key):
    config = {"method": "grid", "metric": {"name": "loss"}, "early_terminate": et,
              "parameters": {"a": {"value": 1}}}
    with pytest.raises(SweepConfigError) as info:
        localtrack.sweep(config, project="p", dir=str(store))
    assert repr(key) in str(info.value)


def test_early_terminate_needs_a_metric(store):
    config = {"method": "grid", "early_terminate": {"type": "hyperband", "min_iter": 3},
              "parameters": {"a": {"value": 1}}}
    with pytest.raises(SweepConfigError, match="'metric'"):
        localtrack.sweep(config, project="p", dir=str(store))


STEPS = 30
PROGRAM = """
import argparse, os, signal, sys, time
p = argparse.ArgumentParser()
p.add_argument("--quality", required=True)
p.add_argument("--seed", type=int, required=True)
args = p.parse_args()
out = os.environ["ATTEMPTS"]

def on_term(signum, frame):   # localtrack's handler records "preempted", then calls this one
    with open(out, "a") as fh:
        fh.write(f"TERM {os.environ['LOCALTRACK_RUN_ID']}\\n")
    if not os.environ.get("IGNORE_TERM"):   # a program that goes on: SIGKILL comes later
        sys.exit(143)

signal.signal(signal.SIGTERM, on_term)
import localtrack
run = localtrack.init()
run.mark_preempting()   # a SIGTERM would requeue it, were it not a stop
with open(out, "a") as fh:
    fh.write(f"START {run.id} {args.quality}\\n")
for step in range(run.step, int(os.environ.get(f"STEPS_{args.quality}",
                                              os.environ.get("STEPS", "STEPS")))):
    run.log({"loss": 1.0 if args.quality.startswith("good") else 10.0})
    time.sleep(float(os.environ.get("SLEEP", "0.05")) * (1 if args.quality != "bad" else 3))
run.finish()
""".replace("STEPS", str(STEPS))


def _node(store: Path, tmp_path: Path, sweep_id: str, env: dict[str, str],
          *extra: str) -> subprocess.Popen:
    """An agent in its own process group: the group is the node (agent, program, sealer)."""
    path = sweep_id if "/" in sweep_id else f"p/{sweep_id}"
    return subprocess.Popen([sys.executable, "-m", "localtrack", "agent", path,
                             "--dir", str(store), *extra], cwd=tmp_path,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _outputs(nodes: list[subprocess.Popen]) -> list[str]:
    """The nodes' outputs once they end (within bounds); a failure leaves none running."""
    try:
        return [n.communicate(timeout=120)[0].decode() for n in nodes]
    finally:
        for n in nodes:
            if n.poll() is None:
                os.killpg(n.pid, signal.SIGKILL)
                n.communicate(timeout=30)


def _sweep(store: Path, tmp_path: Path, quality: str = "[good, bad]",
           seed: str = "[1, 2, 3]") -> str:
    (tmp_path / "train.py").write_text(textwrap.dedent(PROGRAM))
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(f"""
        program: train.py
        method: grid
        metric: {{name: loss, goal: minimize}}
        early_terminate: {{type: hyperband, min_iter: 3, eta: 3}}
        parameters:
          quality: {{values: {quality}}}
          seed: {{values: {seed}}}
    """))
    res = subprocess.run([sys.executable, "-m", "localtrack", "sweep", "sweep.yaml", "--project",
                          "p", "--dir", str(store)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_agents_stop_bad_runs_at_a_band(store, tmp_path):
    """Two agents, each its own node (process group): the three good runs (loss 1) come first
    in the grid and complete; each bad run (loss 10, 3 times slower) is stopped at the first
    band a check finds it past (3, 9 or 27 values), by one mark and one SIGTERM, and is not requeued though it
    called mark_preempting()."""
    sweep_id = _sweep(store, tmp_path)
    attempts = tmp_path / "attempts"
    env = {"ATTEMPTS": str(attempts), "LOCALTRACK_AGENT_POLL": "0.2"}
    agents = [_node(store, tmp_path, sweep_id, env) for _ in range(2)]
    outs = _outputs(agents)
    assert all(a.returncode == 0 for a in agents), outs
    sweep = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert sweep.counts() == {"finished": 3, "stopped": 3}, (sweep.runs, outs)
    lines = [line.split() for line in attempts.read_text().splitlines()]
    for r in sweep.runs:
        job = sweep.jobs[r["id"]]
        starts = [x for x in lines if x[0] == "START" and x[1] == r["id"]]
        terms = [x for x in lines if x[0] == "TERM" and x[1] == r["id"]]
        assert len(starts) == 1 and r["requeues"] == 0, (r, lines)   # never requeued
        logged = len(steps_of(store, f"p/{r['id']}"))
        if r["params"]["quality"] == "good":
            assert r["status"] == "finished" and "stop" not in job and not terms
            assert logged == STEPS
        else:
            assert r["status"] == "stopped" and len(terms) == 1, (r, lines)
            stop = job["stop"]
            assert stop["band"] in (3, 9, 27) and stop["value"] == 10.0
            assert stop["threshold"] == 1.0
            assert stop["band"] <= logged < STEPS
            assert r["stop"]["band"] == stop["band"]
    marks = sum(out.count("hyperband stops run") for out in outs)
    assert marks == 3, outs   # each stop decided once, whichever agent saw it first
    status = subprocess.run([sys.executable, "-m", "localtrack", "sweep", "--status",
                             f"p/{sweep_id}", "--dir", str(store)], capture_output=True,
                            text=True, timeout=60)
    assert "stopped=3" in status.stdout and "finished=3" in status.stdout, status.stdout
    assert status.stdout.count("stopped at ") == 3, status.stdout   # with the band


def test_a_stop_decided_for_a_lost_node_settles_stopped(store, tmp_path):
    """Node A runs the bad job and never checks (a long poll); agent C, running another job,
    decides and marks A's job (before it passes 81 values: a run alone at a band is only
    compared with itself there); A is lost before it delivers the stop. The job is settled
    "stopped" by the next agent that claims work, not requeued though it called
    mark_preempting(): the stop is decided once and the run is never started again."""
    sweep_id = _sweep(store, tmp_path, quality="[good, bad, good2]", seed="[1]")
    attempts = tmp_path / "attempts"
    env = {"ATTEMPTS": str(attempts), "LOCALTRACK_AGENT_POLL": "0.1"}
    first = _node(store, tmp_path, sweep_id, env, "--count", "1")
    out = first.communicate(timeout=120)[0].decode()
    assert "-> finished" in out, out
    node_a = _node(store, tmp_path, sweep_id, {**env, "LOCALTRACK_AGENT_POLL": "1000",
                                               "STEPS": "100000", "SLEEP": "0.3"})
    sweep = localtrack.Api(store)
    try:
        def bad_run() -> str | None:
            runs = sweep.sweep(f"p/{sweep_id}").runs
            return next((r["id"] for r in runs if r["params"]["quality"] == "bad"), None)

        def values() -> int:
            rid = bad_run()
            try:
                return len(steps_of(store, f"p/{rid}")) if rid else 0
            except localtrack.errors.RunNotFoundError:   # its program is starting
                return 0

        wait_for(lambda: values() >= 3, timeout=60, what="the bad run's third value")
        node_c = _node(store, tmp_path, sweep_id, env)
        wait_for(lambda: "stop" in sweep.sweep(f"p/{sweep_id}").jobs[bad_run()], timeout=60,
                 what="node C to mark the bad run")
        os.killpg(node_a.pid, signal.SIGKILL)   # node A is lost before it looks
        node_a.communicate(timeout=30)
        wait_for(lambda: not _group_alive(node_a.pid), what="node A to die")
        outs = [node_c.communicate(timeout=120)[0].decode()]
        last = _node(store, tmp_path, sweep_id, env)
        outs.append(last.communicate(timeout=120)[0].decode())
    finally:
        for node in (node_a,):
            if _group_alive(node.pid):
                os.killpg(node.pid, signal.SIGKILL)
    final = sweep.sweep(f"p/{sweep_id}")
    assert final.counts() == {"finished": 2, "stopped": 1}, (final.runs, outs)
    bad = next(r for r in final.runs if r["params"]["quality"] == "bad")
    assert bad["requeues"] == 0 and bad["exit_status"] is None and bad["stop"]["band"] >= 3
    starts = [line for line in attempts.read_text().splitlines() if line.startswith("START")]
    assert sum(bad["id"] in line for line in starts) == 1


def test_a_program_that_ignores_sigterm_is_killed_after_the_kill_delay(store, tmp_path):
    """As W&B's agent: SIGTERM first, SIGKILL once the program outlived the kill delay
    (LOCALTRACK_AGENT_KILL_DELAY, else W&B's WANDB_AGENT_KILL_DELAY); the job is stopped."""
    sweep_id = _sweep(store, tmp_path, seed="[1]")
    attempts = tmp_path / "attempts"
    env = {"ATTEMPTS": str(attempts), "LOCALTRACK_AGENT_POLL": "0.1", "IGNORE_TERM": "1",
           "WANDB_AGENT_KILL_DELAY": "0.5", "STEPS_bad": "100000"}
    (out,) = _outputs([_node(store, tmp_path, sweep_id, env)])
    sweep = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert sweep.counts() == {"finished": 1, "stopped": 1}, (sweep.runs, out)
    bad = next(r for r in sweep.runs if r["params"]["quality"] == "bad")
    assert bad["exit_status"] == -signal.SIGKILL and bad["requeues"] == 0, out
    terms = [line for line in attempts.read_text().splitlines() if line == f"TERM {bad['id']}"]
    assert len(terms) == 1   # one SIGTERM, then the SIGKILL


def _function_sweep(store: Path, monkeypatch, train) -> str:
    """Run ``train`` under a function agent over a grid of acc 0.9 (kept) and 0.1 (stopped at
    the first band: hyperband with min_iter 2, eta 3) and return the sweep's id."""
    monkeypatch.setenv("LOCALTRACK_AGENT_POLL", "0.05")
    config = {"method": "grid", "metric": {"name": "acc", "goal": "maximize"},
              "early_terminate": {"type": "hyperband", "min_iter": 2},
              "parameters": {"acc": {"values": [0.9, 0.1]}}}
    sweep_id = localtrack.sweep(config, project="p", dir=str(store))
    assert localtrack.agent(sweep_id, function=train, project="p", dir=str(store)) == 2
    return sweep_id


def test_a_function_run_is_stopped_by_an_exception(store, tmp_path, monkeypatch):
    """function= mode: the stopped run's function gets RunStoppedError (as W&B's agent raises in
    it), raised by its next log() before anything is written (never inside the writer); the
    agent settles the job stopped and goes on."""
    seen: dict[float, str] = {}

    def train() -> None:
        run = localtrack.init()
        acc = run.config.acc
        try:
            for _ in range(200):
                run.log({"acc": acc})
                time.sleep(0.01)
            seen[acc] = "completed"
        except localtrack.errors.RunStoppedError as exc:
            seen[acc] = "stopped"
            where = traceback.extract_tb(exc.__traceback__)
            assert where[-1].name == "_log_general", where  # at log()'s start, not mid-write
            raise

    sweep_id = _function_sweep(store, monkeypatch, train)
    assert seen == {0.9: "completed", 0.1: "stopped"}
    sweep = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert sweep.counts() == {"finished": 1, "stopped": 1}
    bad = next(r for r in sweep.runs if r["params"]["acc"] == 0.1)
    assert sweep.jobs[bad["id"]]["stop"]["threshold"] == -0.9   # maximize: values negated
    assert len(steps_of(store, f"p/{bad['id']}")) < 200
    assert localtrack.Api(store).run(f"p/{bad['id']}").state == "failed"
    from localtrack._ui import _sweeps as ui  # what the dashboard's sweep view is sent
    view = ui.sweep(localtrack.Api(store), f"p/{sweep_id}")
    assert view["counts"] == {"finished": 1, "stopped": 1}
    stop = sweep.jobs[bad["id"]]["stop"]
    assert stop["band"] in (2, 6, 18, 54) and stop["band"] <= len(steps_of(store, f"p/{bad['id']}"))
    assert [r["stop"] for r in view["runs"] if r["status"] == "stopped"] == [stop]
    assert ui.sweeps(localtrack.Api(store), "p")[0]["counts"]["stopped"] == 1


def test_a_function_that_stops_logging_is_stopped_after_the_kill_delay(store, monkeypatch):
    """A stopped function that logs no more (a long evaluation) gets RunStoppedError at its next
    instruction once the kill delay passed, as W&B's agent raises it."""
    monkeypatch.setenv("LOCALTRACK_AGENT_KILL_DELAY", "0.3")
    seen: dict[float, str] = {}

    def train() -> None:
        run = localtrack.init()
        acc = run.config.acc
        for _ in range(3):
            run.log({"acc": acc})
        try:
            deadline = time.monotonic() + (60 if acc < 0.5 else 3)   # bounded either way
            while time.monotonic() < deadline:
                time.sleep(0.01)   # no log(): only the asynchronous raise can stop it
            seen[acc] = "completed"
        except localtrack.errors.RunStoppedError:
            seen[acc] = "stopped"
            raise

    sweep_id = _function_sweep(store, monkeypatch, train)
    assert seen == {0.9: "completed", 0.1: "stopped"}
    assert localtrack.Api(store).sweep(f"p/{sweep_id}").counts() == {"finished": 1, "stopped": 1}


FASHION = Path(__file__).parent / "wandb_scripts" / "pytorch_cnn_fashion_sweep"


def test_wandbs_pytorch_fashion_sweep_runs_through_the_cli(store, tmp_path):
    """W&B's example sweep as is: `localtrack sweep sweep-grid-hyperband.yaml`, then
    `localtrack agent` runs `program: train.py` (which parses no arguments and reads
    wandb.config) for the first grid points; hyperband (bands 3 and 9) judges each run."""
    pytest.importorskip("torch")
    for name in ("train.py", "sweep-grid-hyperband.yaml"):
        (tmp_path / name).write_text((FASHION / name).read_text())
    res = subprocess.run([sys.executable, "-m", "localtrack", "sweep", "sweep-grid-hyperband.yaml",
                          "--project", "pytorch-cnn-fashion", "--dir", str(store)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    sweep_id = res.stdout.strip()
    agent = _node(store, tmp_path, f"pytorch-cnn-fashion/{sweep_id}", {
        "LOCALTRACK_AGENT_POLL": "0.2"}, "--count", "3")
    out = agent.communicate(timeout=600)[0].decode()
    assert agent.returncode == 0, out
    api = localtrack.Api(store)
    sweep = api.sweep(f"pytorch-cnn-fashion/{sweep_id}")
    assert len(sweep.runs) == 3 and set(sweep.counts()) <= {"finished", "stopped"}, sweep.runs
    first = {"dropout": 0.1, "channels_one": 10, "channels_two": 24, "epochs": 27}
    for r in sweep.runs:
        run = api.run(f"pytorch-cnn-fashion/{r['id']}")
        # the sweep's values, not the script's defaults (dropout 0.5, epochs 2); batch_size is
        # the script's own (no sweep parameter)
        assert {k: run.config[k] for k in first} == first and run.config["batch_size"] == 100
        assert run.config["learning_rate"] == r["params"]["learning_rate"]
        losses = run.history_table(["loss"]).column("loss").to_pylist()
        if r["status"] == "finished":
            assert len(losses) == 9
        else:
            assert r["stop"]["value"] > r["stop"]["threshold"] and r["stop"]["band"] in (3, 9)
            # judged once it reached the band; a run judged at its last band (9) may have
            # logged all 9 values before the agent's stop reached it
            assert r["stop"]["band"] <= len(losses) <= 9
    assert sweep.runs[0]["status"] == "finished"   # alone at every band: never stopped
