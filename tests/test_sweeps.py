"""Sweeps: config validation, search methods, agents in real processes, requeue on preemption."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import localtrack
from localtrack import _layout, _naming, _store
from localtrack._sweeps import _spec
from localtrack._sweeps._queue import SweepStore
from localtrack.errors import SweepConfigError

from .helpers import steps_of, wait_for

GRID = {"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"lr": {"values": [0.1, 0.2, 0.3]}, "bs": {"values": [16, 32]}}}


@pytest.mark.parametrize("config,key", [
    pytest.param({"method": "sideways", "parameters": {"a": {"value": 1}}}, "method", id="method"),
    pytest.param({"method": "random", "parameters": {}}, "parameters", id="no-params"),
    pytest.param({"method": "random", "parameters": {"lr": {"min": 1, "max": 0.5}}},
                 "parameters.lr", id="min-above-max"),
    pytest.param({"method": "random", "parameters": {"lr": {"distribution": "zipf"}}},
                 "parameters.lr.distribution", id="unknown-distribution"),
    pytest.param({"method": "random", "parameters": {"lr": {"min": 0, "max": 1,
                  "distribution": "log_uniform_values"}}}, "parameters.lr.min", id="log-of-zero"),
    pytest.param({"method": "grid", "parameters": {"lr": {"min": 0.1, "max": 1.0}}},
                 "parameters.lr", id="grid-continuous"),
    pytest.param({"method": "bayes", "parameters": {"a": {"value": 1}}}, "metric", id="bayes-no-metric"),
    pytest.param({"method": "random", "metric": {"name": "x", "goal": "up"},
                  "parameters": {"a": {"value": 1}}}, "metric.goal", id="bad-goal"),
    pytest.param({"method": "random", "run_cap": 0, "parameters": {"a": {"value": 1}}}, "run_cap",
                 id="run-cap"),
    pytest.param({"method": "random", "parmeters": {}}, "parmeters", id="typo"),
    pytest.param({"method": "random", "parameters": {"opt": {"parameters": {"lr": {"values": 3}}}}},
                 "parameters.opt.lr.values", id="nested"),
])
def test_invalid_configs_name_the_key(store, config, key):
    with pytest.raises(SweepConfigError) as info:
        localtrack.sweep(config, project="p", dir=str(store))
    assert repr(key) in str(info.value)
    assert not (store / "p" / "sweeps").exists()


def test_distributions_sample_in_range():
    import random
    spec = _spec.parse({"method": "random", "parameters": {
        "a": {"min": 1e-4, "max": 1e-1, "distribution": "log_uniform_values"},
        "b": {"min": 2, "max": 5}, "c": {"min": 0.0, "max": 1.0, "distribution": "q_uniform", "q": 0.25},
        "d": {"distribution": "normal", "mu": 10, "sigma": 0.1}, "e": {"values": ["x", "y"]},
        "f": {"value": 7}, "opt": {"parameters": {"lr": {"values": [1, 2]}}}}})
    rng = random.Random(0)
    for _ in range(200):
        v = {p.name: p.sample(rng) for p in spec.params}
        assert 1e-4 <= v["a"] <= 1e-1 and v["b"] in range(2, 6) and v["c"] in (0, .25, .5, .75, 1)
        assert 9 < v["d"] < 11 and v["e"] in "xy" and v["f"] == 7 and v["opt.lr"] in (1, 2)
    assert spec.nest({"opt.lr": 1, "f": 7}) == {"opt": {"lr": 1}, "f": 7}


def _train():
    run = localtrack.init()
    for step in range(run.step, 3):
        run.log({"loss": run.config.lr * run.config.bs / (step + 1)})
    run.finish()


def test_function_agent_covers_the_grid_once(store):
    sweep_id = localtrack.sweep(GRID, project="p", dir=str(store))
    assert localtrack.agent(sweep_id, function=_train, count=100, project="p", dir=str(store)) == 6
    sweep = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert sweep.counts() == {"finished": 6}
    seen = sorted((r["params"]["lr"], r["params"]["bs"]) for r in sweep.runs)
    assert seen == sorted((lr, bs) for lr in (0.1, 0.2, 0.3) for bs in (16, 32))
    for r in sweep.runs:
        stored = localtrack.Api(store).run(f"p/{r['id']}")
        assert stored.config == r["params"] and stored.state == "finished"
        assert stored.meta["sweep"] == sweep_id
    assert sweep.best_run()["params"] == {"lr": 0.1, "bs": 16}


def test_count_and_run_cap_hold(store):
    config = {"method": "random", "run_cap": 3, "parameters": {"lr": {"min": 0.0, "max": 1.0},
                                                                "bs": {"value": 1}}}
    sweep_id = localtrack.sweep(config, project="p", dir=str(store))
    assert localtrack.agent(f"p/{sweep_id}", function=_train, count=2, dir=str(store)) == 2
    assert localtrack.agent(f"p/{sweep_id}", function=_train, count=5, dir=str(store)) == 1
    assert localtrack.agent(f"p/{sweep_id}", function=_train, dir=str(store)) == 0
    assert len(localtrack.Api(store).sweep(f"p/{sweep_id}").runs) == 3


def test_bayes_uses_results(store):
    pytest.importorskip("optuna")
    config = {"method": "bayes", "metric": {"name": "loss", "goal": "minimize"}, "run_cap": 8,
              "parameters": {"lr": {"min": 0.0, "max": 1.0}, "bs": {"values": [1, 2]}}}
    sweep_id = localtrack.sweep(config, project="p", dir=str(store))
    assert localtrack.agent(sweep_id, function=_train, project="p", dir=str(store)) == 8
    sweep = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert sweep.counts() == {"finished": 8} and sweep.best_run() is not None


PROGRAM = """
import argparse, os, signal, sys, time, localtrack
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, required=True)
p.add_argument("--bs", type=int, required=True)
args = p.parse_args()
run = localtrack.init()
assert (run.config.lr, run.config.bs) == (args.lr, args.bs)
how = os.environ.get("HOW", "ok") if args.bs == 32 else "ok"
if how != "fail-plain" and not (how == "marked-once" and run.resumed):
    # W&B's module-level call in one case, the run's in the others: both mark this process
    (localtrack.mark_preempting if how == "marked-once" else run.mark_preempting)()
checkpoint = os.environ["ATTEMPTS"] + "." + run.id
if how == "ckpt" and run.resumed:      # requeued: back to the checkpoint's step
    with open(checkpoint) as fh:
        run.rewind(int(fh.read()))
with open(os.environ["ATTEMPTS"], "a") as fh:
    fh.write(f"{run.id} {run.starting_step} {args.lr} {args.bs}\\n")
for step in range(run.step, 8):
    run.log({"loss": args.lr / (step + 1) + (10.0 if run.resumed else 0.0)})
    if how == "ckpt" and step == 1:    # a checkpoint of the state after step 1
        with open(checkpoint, "w") as fh:
            fh.write("1")
    if how == "marked-once" and step == 5 and run.resumed:
        sys.exit(3)                    # a failure in a life that did not call mark_preempting()
    if step == (5 if how == "ckpt" else 3) and not run.resumed:
        if how in ("term", "ckpt", "marked-once"):
            os.kill(os.getpid(), signal.SIGTERM)
        elif how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how in ("fail", "fail-plain"):
            sys.exit(3)
        elif how == "hang":
            print("hanging", flush=True)
            time.sleep(60)
run.finish()
if how == "late-term" and not run.resumed:   # preempted as the program exits, its run finished
    os.kill(os.getpid(), signal.SIGTERM)
"""


def _yaml_sweep(store: Path, tmp_path: Path, extra: str = "") -> str:
    (tmp_path / "train.py").write_text(textwrap.dedent(PROGRAM))
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(f"""
        program: train.py
        method: grid
        metric: {{name: loss, goal: minimize}}
        parameters:
          lr: {{values: [0.1, 0.2]}}
          bs: {{values: [16, 32]}}
        {extra}
    """))
    res = subprocess.run([sys.executable, "-m", "localtrack", "sweep", "sweep.yaml", "--project", "p",
                          "--dir", str(store)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def _agent_proc(store, tmp_path, sweep_id, env, *extra):
    # As in an activated venv: a YAML command naming `python` finds this interpreter (a fresh
    # machine's `python` on PATH may be the system's, without localtrack).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.Popen([sys.executable, "-m", "localtrack", "agent", f"p/{sweep_id}", "--dir",
                             str(store), *extra], cwd=tmp_path, env={**os.environ, "PATH": path, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _attempts(path: Path) -> list[tuple[str, int, float, int]]:
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(r[0], int(r[1]), float(r[2]), int(r[3])) for r in rows]


@pytest.mark.parametrize("how", ["term", "kill", "fail"])
def test_preempted_runs_are_requeued_and_resumed(store, tmp_path, how):
    sweep_id = _yaml_sweep(store, tmp_path)
    attempts = tmp_path / "attempts"
    env = {"HOW": how, "ATTEMPTS": str(attempts)}
    procs = [_agent_proc(store, tmp_path, sweep_id, env) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    sweep = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert sweep.counts() == {"finished": 4}, (sweep.runs, outs)
    grid = sorted((r["params"]["lr"], r["params"]["bs"]) for r in sweep.runs)
    assert grid == [(0.1, 16), (0.1, 32), (0.2, 16), (0.2, 32)]   # every point exactly once
    runs = {r["id"]: r for r in sweep.runs}
    tried = _attempts(attempts)
    for rid, r in runs.items():
        starts = [a[1] for a in tried if a[0] == rid]
        if r["params"]["bs"] == 32:   # preempted once at step 3, resumed with the same id at 4
            assert starts == [0, 4] and r["requeues"] == 1
        else:
            assert starts == [0] and r["requeues"] == 0
        assert steps_of(store, f"p/{rid}") == list(range(8))
    assert sweep.best_run()["params"]["lr"] == 0.1


def test_a_requeued_run_rewinds_to_its_checkpoint(store, tmp_path):
    """Preempted at step 5 with a checkpoint of step 1: the requeued run calls run.rewind(1),
    so steps 2..7 are the resumed trajectory's and the old 2..5 are archived, not mixed in."""
    sweep_id = _yaml_sweep(store, tmp_path)
    attempts = tmp_path / "attempts"
    proc = _agent_proc(store, tmp_path, sweep_id, {"HOW": "ckpt", "ATTEMPTS": str(attempts)})
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, out
    sweep = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert sweep.counts() == {"finished": 4}, (sweep.runs, out)
    for r in sweep.runs:
        api = localtrack.Api(store).run(f"p/{r['id']}")
        hist = api.history_table(["loss"]).to_pydict()
        assert hist["_step"] == list(range(8))
        resumed = [loss >= 10.0 for loss in hist["loss"]]
        if r["params"]["bs"] == 32:
            assert r["requeues"] == 1 and resumed == [False] * 2 + [True] * 6
            assert [(w["from_step"], w["to"]) for w in api.rewinds] == [(5, 1)]
            starts = [a[1] for a in _attempts(attempts) if a[0] == r["id"]]
            assert starts == [0, 2]
        else:
            assert r["requeues"] == 0 and not any(resumed) and api.rewinds == []


def test_failure_without_mark_preempting_is_not_requeued(store, tmp_path):
    sweep_id = _yaml_sweep(store, tmp_path)
    env = {"HOW": "fail-plain", "ATTEMPTS": str(tmp_path / "attempts")}
    proc = _agent_proc(store, tmp_path, sweep_id, env)
    proc.communicate(timeout=120)
    sweep = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert sweep.counts() == {"finished": 2, "failed": 2}
    assert all(r["requeues"] == 0 for r in sweep.runs)


def test_a_run_preempted_after_it_finished_is_not_run_again(store, tmp_path):
    """SLURM's SIGTERM lands after the program finished its run (it was exiting): the job is
    finished, not requeued to start a finished run again (which a CI run once saw)."""
    sweep_id = _yaml_sweep(store, tmp_path)
    attempts = tmp_path / "attempts"
    proc = _agent_proc(store, tmp_path, sweep_id, {"HOW": "late-term", "ATTEMPTS": str(attempts)})
    out = proc.communicate(timeout=120)[0].decode()
    sweep = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert sweep.counts() == {"finished": 4}, (sweep.runs, out)
    assert all(r["requeues"] == 0 for r in sweep.runs), sweep.runs
    assert sorted(a[0] for a in _attempts(attempts)) == sorted(r["id"] for r in sweep.runs)
    late = [r for r in sweep.runs if r["params"]["bs"] == 32]
    assert all(r["exit_status"] == -signal.SIGTERM for r in late), late


def test_mark_preempting_holds_for_the_process_that_called_it(store, tmp_path):
    """Preempted once (marked), resumed without mark_preempting(), then failing: failed, not
    requeued again on the strength of the first process's mark."""
    sweep_id = _yaml_sweep(store, tmp_path)
    env = {"HOW": "marked-once", "ATTEMPTS": str(tmp_path / "attempts")}
    out = _agent_proc(store, tmp_path, sweep_id, env).communicate(timeout=120)[0].decode()
    sweep = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert sweep.counts() == {"finished": 2, "failed": 2}, (sweep.runs, out)
    assert sorted(r["requeues"] for r in sweep.runs) == [0, 0, 1, 1]


def test_requeue_limit(store, tmp_path):
    sweep_id = _yaml_sweep(store, tmp_path, "max_requeues: 0")
    env = {"HOW": "fail", "ATTEMPTS": str(tmp_path / "attempts")}
    _agent_proc(store, tmp_path, sweep_id, env).communicate(timeout=120)
    assert localtrack.Api(store).sweep(f"p/{sweep_id}").counts() == {"finished": 2, "failed": 2}


def test_agent_killed_with_its_job_is_reaped_and_resumed(store, tmp_path):
    """A node lost: agent and run die together; the next agent requeues and resumes the run."""
    sweep_id = _yaml_sweep(store, tmp_path)
    env = {"HOW": "hang", "ATTEMPTS": str(tmp_path / "attempts")}
    first = subprocess.Popen([sys.executable, "-m", "localtrack", "agent", f"p/{sweep_id}", "--dir",
                              str(store)], cwd=tmp_path, env={**os.environ, **env},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: (tmp_path / "attempts").exists()
             and any(a[3] == 32 for a in _attempts(tmp_path / "attempts")), what="a bs=32 job")
    time.sleep(0.3)
    os.killpg(first.pid, signal.SIGKILL)   # the whole node goes: agent and program
    first.communicate(timeout=30)
    second = _agent_proc(store, tmp_path, sweep_id, {**env, "HOW": "ok"})
    out = second.communicate(timeout=120)[0].decode()
    sweep = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert sweep.counts() == {"finished": 4}, out
    hung = [r for r in sweep.runs if r["requeues"] == 1]
    assert len(hung) == 1 and steps_of(store, f"p/{hung[0]['id']}") == list(range(8))


def test_status_command(store, tmp_path):
    sweep_id = _yaml_sweep(store, tmp_path)
    env = {"HOW": "ok", "ATTEMPTS": str(tmp_path / "attempts")}
    _agent_proc(store, tmp_path, sweep_id, env, "--count", "2").communicate(timeout=120)
    res = subprocess.run([sys.executable, "-m", "localtrack", "sweep", "--status", f"p/{sweep_id}",
                          "--dir", str(store)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "finished=2" in res.stdout and "best" in res.stdout and "lr=0.1" in res.stdout


# -- lost nodes: agent and program die together, at any moment, also before init() ----------

NODE_PROGRAM = """
import argparse, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--x", type=int, required=True)
args = p.parse_args()
hang = os.environ.get("HANG_BEFORE_INIT")
if hang:      # a start-up (loading data) that goes on to init() once the file HANG.go exists
    open(hang, "w").close()
    for _ in range(6000):
        if os.path.exists(hang + ".go"):
            break
        time.sleep(0.01)
    else:
        sys.exit(9)
import localtrack
run = localtrack.init()
run.mark_preempting()
with open(os.environ["ATTEMPTS"], "a") as fh:
    fh.write(f"{run.id} {run.starting_step} {args.x}\\n")
for step in range(run.step, 6):
    run.log({"loss": 1.0 / (args.x + step + 1)})
    time.sleep(0.02)
run.finish()
"""


def _node_sweep(store: Path, tmp_path: Path, points: int, max_requeues: int) -> str:
    (tmp_path / "node.py").write_text(textwrap.dedent(NODE_PROGRAM))
    config = {"program": "node.py", "method": "grid", "max_requeues": max_requeues,
              "parameters": {"x": {"values": list(range(points))}}}
    return localtrack.sweep(config, project="p", dir=str(store))


def _node(store: Path, tmp_path: Path, sweep_id: str, env: dict[str, str]) -> subprocess.Popen:
    """An agent in its own process group: the group is the node (agent, program, sealer)."""
    return subprocess.Popen([sys.executable, "-m", "localtrack", "agent", f"p/{sweep_id}",
                             "--dir", str(store)], cwd=tmp_path, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _group_states(pgid: int) -> list[str]:
    """The scheduler states (R, S, T, Z, ...) of the processes of group ``pgid``."""
    states = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            states.append(fields[0])
    return states


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies do not: nothing may reap them)."""
    return any(state not in ("Z", "X") for state in _group_states(pgid))


def _freeze(node: subprocess.Popen) -> bool:
    """SIGSTOP the node until each of its processes has stopped; False if none is left. kill()
    returns while a process may still be finishing a write (an event) it began before the
    signal, and a program the agent was starting can miss a signal sent to the group
    meanwhile: it is sent again until every process shows it. An agent inside vfork() waits
    (state D) for its child to exec, which it never does once stopped: a process in D for a
    second counts as stopped (a write of an event takes milliseconds)."""
    since: list[float] = []  # when every process was stopped or in D, without a break

    def stopped() -> bool:
        try:
            os.killpg(node.pid, signal.SIGSTOP)
        except ProcessLookupError:
            return True
        time.sleep(0.005)
        states = _group_states(node.pid)
        if all(state in ("T", "t", "Z", "X") for state in states):
            return True
        if not all(state in ("T", "t", "Z", "X", "D") for state in states):
            since.clear()
            return False
        since[:] = since or [time.monotonic()]
        return time.monotonic() - since[0] >= 1.0

    try:
        wait_for(stopped, what=f"node {node.pid} to stop")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its processes' states: {_group_states(node.pid)}") from None
    return _group_alive(node.pid)


def _lose_node(node: subprocess.Popen) -> str:
    """SIGKILL the node's agent and program together; returns the agent's output."""
    os.killpg(node.pid, signal.SIGKILL)
    out = node.communicate(timeout=30)[0].decode()
    wait_for(lambda: not _group_alive(node.pid), what=f"node {node.pid} to die")
    return out


def _phase(sweep: SweepStore, node: subprocess.Popen) -> str:
    """Where the node's job is: 'idle' (none), 'starting' (its run has no events: the program
    has not reached init()), 'unmarked' (the last process to start the run has not called
    mark_preempting() yet) or 'running'. Like the queue's settling, only the last process's
    events count: a resumed run's earlier mark_preempting() does not hold for its new process."""
    prefix = f"{socket.gethostname()}-{node.pid}-"
    jobs = [rid for rid, job in sweep.read_state()["jobs"].items()
            if job["status"] == "running" and job.get("agent", "").startswith(prefix)]
    if not jobs:
        return "idle"
    rdir = _layout.run_dir(sweep.root, sweep.project, _naming.run_id(jobs[0]))
    events = [e.get("event") for e in _store.events(rdir)]
    if not events:
        return "starting"
    starts = [i for i, e in enumerate(events) if e in ("started", "resumed")]
    life = events[starts[-1]:] if starts else events
    return "running" if "preempting" in life else "unmarked"


def test_lost_nodes_never_lose_grid_points(store, tmp_path):
    """A storm of lost nodes: 3 agents run a 30-point grid; 12 times a random node (agent and
    program together) is SIGKILLed and a new one starts. A third of the losses are aimed at a
    program still starting (no run yet), a third at a running run, the rest land anywhere
    except between init() and mark_preempting() (such a run is crashed by design: the table's
    "not called" column). Every point must end finished, once, with a contiguous history."""
    points, seed = 30, int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    sweep_id = _node_sweep(store, tmp_path, points, max_requeues=100)
    sweep = SweepStore(store, _naming.project_name("p"), sweep_id)
    env = {"ATTEMPTS": str(tmp_path / "attempts")}
    nodes = [_node(store, tmp_path, sweep_id, env) for _ in range(3)]
    lost: list[str] = []
    outs: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while len(lost) < 12 and time.monotonic() < deadline:
            live = [n for n in nodes if n.poll() is None]
            if not live:
                break   # the sweep is done
            aim = ("starting", "running", "anywhere")[len(lost) % 3]
            node = rng.choice(live)
            if not _freeze(node):   # to look at its job (or it ended by itself)
                continue
            phase = _phase(sweep, node)
            if phase == aim or (aim == "anywhere" and phase != "unmarked"):
                outs.append(_lose_node(node))
                lost.append(phase)
                nodes[nodes.index(node)] = _node(store, tmp_path, sweep_id, env)
                time.sleep(rng.uniform(0.1, 0.8))   # the next loss comes at a random moment
            else:
                os.killpg(node.pid, signal.SIGCONT)
                time.sleep(rng.uniform(0.0, 0.05))
        outs += [n.communicate(timeout=120)[0].decode() for n in nodes]
    finally:  # a failure above must not leave nodes running (they are their own sessions)
        for n in nodes:
            if n.poll() is None:
                os.killpg(n.pid, signal.SIGKILL)
                n.communicate(timeout=30)
    why = f"seed {seed}, losses {lost}"
    assert all(n.returncode == 0 for n in nodes), (why, outs)
    assert "starting" in lost, why   # the case this guards: a node lost before its run existed
    api = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert api.counts() == {"finished": points}, (why, api.runs)
    assert sorted(r["params"]["x"] for r in api.runs) == list(range(points)), why
    assert sum(r["requeues"] for r in api.runs) >= lost.count("starting"), (why, api.runs)
    tried = [line.split() for line in (tmp_path / "attempts").read_text().splitlines()]
    for r in api.runs:   # one run per point, and each run's attempts were its own point's
        assert {int(t[2]) for t in tried if t[0] == r["id"]} == {r["params"]["x"]}, why
        assert steps_of(store, f"p/{r['id']}") == list(range(6)), (why, r)


@pytest.mark.parametrize("how,max_requeues,expected", [
    pytest.param("lost", 1, {"finished": 2}, id="lost"),
    pytest.param("lost", 0, {"finished": 1, "failed": 1}, id="lost-past-the-limit"),
    pytest.param("preempted", 1, {"finished": 2}, id="preempted"),
])
def test_a_job_that_dies_before_init_is_requeued(store, tmp_path, how, max_requeues, expected):
    """The program dies before init() made the run, with its agent (a node lost: no status)
    or by the SIGTERM a scheduler sends to the whole job. Nothing of the run exists to lose:
    the job is requeued (counted against max_requeues), or failed past the limit."""
    sweep_id = _node_sweep(store, tmp_path, 2, max_requeues)
    sweep = SweepStore(store, _naming.project_name("p"), sweep_id)
    env = {"ATTEMPTS": str(tmp_path / "attempts")}
    marker = tmp_path / "starting"
    first = _node(store, tmp_path, sweep_id, {**env, "HANG_BEFORE_INIT": str(marker)})
    wait_for(marker.exists, what="the program's start-up")
    assert _phase(sweep, first) == "starting"
    if how == "lost":
        _lose_node(first)
    else:
        os.killpg(first.pid, signal.SIGTERM)
        out = first.communicate(timeout=60)[0].decode()
        assert "ended with -15 -> queued" in out, out
    second = _node(store, tmp_path, sweep_id, env)
    out = second.communicate(timeout=120)[0].decode()
    assert second.returncode == 0, out
    api = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert api.counts() == expected, (api.runs, out)
    dead = next(r for r in api.runs if r["params"]["x"] == 0)
    assert dead["requeues"] == max_requeues
    if max_requeues:
        assert steps_of(store, f"p/{dead['id']}") == list(range(6))


def test_a_program_that_outlived_its_agent_keeps_its_job(store, tmp_path):
    """Only the agent is SIGKILLed, while its program starts (no run, no run lock yet): the
    program holds the agent's lock it inherited, so its job is not requeued under it (which
    would start a second program for the run). Once the program ends, the job is settled."""
    sweep_id = _node_sweep(store, tmp_path, 2, max_requeues=1)
    sweep = SweepStore(store, _naming.project_name("p"), sweep_id)
    attempts = tmp_path / "attempts"
    env = {"ATTEMPTS": str(attempts)}
    marker = tmp_path / "starting"
    first = _node(store, tmp_path, sweep_id, {**env, "HANG_BEFORE_INIT": str(marker)})
    wait_for(marker.exists, what="the program's start-up")
    os.kill(first.pid, signal.SIGKILL)   # the agent alone: its program goes on starting
    first.wait(timeout=30)   # (its output pipe stays open in the program)
    try:
        second = _node(store, tmp_path, sweep_id, env)
        out = second.communicate(timeout=120)[0].decode()
        assert second.returncode == 0 and out.count("ended with 0 -> finished") == 1, out
        jobs = sweep.read_state()["jobs"]
        (rid,) = (r for r, job in jobs.items() if job["params"] == {"x": 0})
        assert jobs[rid]["status"] == "running", (jobs, out)   # left alone under its program
        Path(f"{marker}.go").touch()
        wait_for(lambda: not _group_alive(first.pid), timeout=60, what="the program to finish")
    finally:
        if _group_alive(first.pid):
            os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
    third = _node(store, tmp_path, sweep_id, env)   # settles it: no status, but its run finished
    out = third.communicate(timeout=120)[0].decode()
    api = localtrack.Api(store).sweep(f"p/{sweep_id}")
    assert api.counts() == {"finished": 2}, (api.runs, out)
    assert [(a[0], int(a[1])) for a in map(str.split, attempts.read_text().splitlines())
            if a[2] == "0"] == [(rid, 0)]   # one program, never a second for a finished run
    assert steps_of(store, f"p/{rid}") == list(range(6))


def test_sweep_takes_wandbs_argument_names(store: Path) -> None:
    """W&B's sweep(sweep=cfg, entity=, project=) and agent(entity=), as its quickstart calls them."""
    cfg = {"method": "grid", "parameters": {"x": {"values": [1, 2]}}}
    seen: list[int] = []

    def job() -> None:
        with localtrack.init() as run:
            seen.append(run.config["x"])

    by_w_and_b = localtrack.sweep(sweep=cfg, entity="team", project="p", dir=store)
    assert localtrack.agent(by_w_and_b, function=job, entity="team", project="p", dir=store) == 2
    assert sorted(seen) == [1, 2]
    assert localtrack.sweep(config=cfg, project="p", dir=store) != by_w_and_b
    for both_or_neither in ({"sweep": cfg, "config": cfg}, {}):
        with pytest.raises(localtrack.errors.UsageError, match="config once"):
            localtrack.sweep(**both_or_neither, project="p", dir=store)


def test_an_agent_finds_a_bare_sweep_id_in_the_store(store: Path) -> None:
    """W&B's quickstart: sweep(sweep=cfg, project="p") then agent(sweep_id, function=) alone."""
    cfg = {"method": "grid", "parameters": {"x": {"values": [1]}}}
    sid = localtrack.sweep(cfg, project="p", dir=store)
    assert localtrack.agent(sid, function=lambda: localtrack.init().finish(), dir=store) == 1
    other = localtrack.sweep(cfg, project="q", dir=store)
    os.rename(store / "q" / "sweeps" / other, store / "q" / "sweeps" / sid)  # one id, two projects
    with pytest.raises(localtrack.errors.UsageError, match="several projects"):
        localtrack.agent(sid, function=lambda: None, dir=store)
    with pytest.raises(localtrack.errors.UsageError, match="needs a project"):
        localtrack.agent("nosuchid", function=lambda: None, dir=store)


ARGPARSE_PROGRAM = """
import argparse, json, os, sys
import localtrack as wandb
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.5)
p.add_argument("--layers", type=int, default=2)
p.add_argument("--fast", nargs="?", const=True, default=False)
args, rest = p.parse_known_args()
run = wandb.init(config=args, magic=True)
wandb.config.update(args)       # the argparse defaults must not undo the sweep's values
wandb.config.lr = 99.0          # nor an assignment
with open(os.environ["OUT"], "a") as fh:
    fh.write(json.dumps({"argv": sys.argv[1:], "lr": wandb.config.lr, "fast": wandb.config.fast,
                         "layers": wandb.config.layers, "id": run.id,
                         "sweep": os.environ.get("WANDB_SWEEP_ID")}) + "\\n")
run.log({"loss": wandb.config.lr})
run.finish()
"""


@pytest.mark.parametrize("method,command,argv", [
    pytest.param("grid", None, lambda lr: [f"--lr={lr}", "--fast=True"], id="default-args"),
    pytest.param("random", '["${env}", "${interpreter}", "${program}", "-b", "cfg", "${args}"]',
                 lambda lr: ["-b", "cfg", f"--lr={lr}", "--fast=True"], id="args"),
    pytest.param("grid", '["${env}", "python", "${program}", "${args_no_hyphens}"]',
                 lambda lr: [f"lr={lr}", "fast=True"], id="no-hyphens"),
    pytest.param("bayes", '["${env}", "${interpreter}", "${program}", "${args_no_boolean_flags}"]',
                 lambda lr: [f"--lr={lr}", "--fast"], id="no-boolean-flags"),
    pytest.param("random", '["${env}", "${interpreter}", "${program}", "${args_json}"]',
                 lambda lr: [json.dumps({"lr": lr, "fast": True}, separators=(",", ":"))],
                 id="args-json"),
    pytest.param("grid", '["${env}", "${interpreter}", "${program}", "${args_json_file}"]',
                 None, id="args-json-file"),
])
def test_wandb_yaml_commands_and_a_script_that_parses_its_args(store, tmp_path, method, command,
                                                              argv):
    """W&B's YAML forms run as written (`localtrack sweep` then `localtrack agent`), and a script
    that parses argparse defaults into its config (init(config=args, magic=True), then
    config.update(args)) sees the sweep's lr in wandb.config: the agent's values are locked,
    as W&B locks them, whatever the command passed."""
    if method == "bayes":
        pytest.importorskip("optuna")
    (tmp_path / "train.py").write_text(textwrap.dedent(ARGPARSE_PROGRAM))
    lines = ["program: train.py", f"method: {method}", "run_cap: 2",
             "metric: {name: loss, goal: minimize}",
             "parameters:", "  lr: {values: [0.1, 0.2]}", "  fast: {value: true}"]
    if command:
        lines.append(f"command: {command}")
    (tmp_path / "sweep.yaml").write_text("\n".join(lines) + "\n")
    res = subprocess.run([sys.executable, "-m", "localtrack", "sweep", "sweep.yaml", "--project",
                          "p", "--dir", str(store)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    proc = _agent_proc(store, tmp_path, res.stdout.strip(), {"OUT": str(out)})
    log = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, log
    sweep = localtrack.Api(store).sweep(f"p/{res.stdout.strip()}")
    assert sweep.counts() == {"finished": 2}, (sweep.runs, log)
    seen = {s["id"]: s for s in map(json.loads, out.read_text().splitlines())}
    for r in sweep.runs:
        lr = r["params"]["lr"]
        got = seen[r["id"]]
        assert (got["lr"], got["fast"], got["layers"]) == (lr, True, 2), (got, log)
        assert got["sweep"] == res.stdout.strip()   # W&B's variable, which scripts test
        if argv is not None:
            assert got["argv"] == argv(lr)
        else:   # the path of a JSON file holding the parameters
            (path,) = got["argv"]
            assert json.loads(Path(path).read_text()) == {"lr": lr, "fast": True}
        stored = localtrack.Api(store).run(f"p/{r['id']}").config
        assert stored["lr"] == lr and stored["layers"] == 2
    assert "was locked by 'sweep' (ignored update)" in log
