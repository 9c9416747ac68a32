"""Auto-resume on clusters: job arrays, requeue, concurrent starts in one directory; the facts
a scheduler gives, on the run. Real processes in real working directories, real SIGKILLs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import localtrack
from localtrack import _cluster
from localtrack._ui._data import StoreView
from localtrack.errors import UsageError

from .helpers import run_script, script, steps_of

WORKER = """
import os, sys, time, localtrack
store, label, how = sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.monotonic() + 60
while not os.path.exists("go") and time.monotonic() < deadline:  # all start at one instant
    time.sleep(0.005)
run = localtrack.init(project="p", resume="auto", dir=store)
if not run.resumed:
    run.config.update({"label": label})
for i in range(3):
    run.log({"x": float(i)})
print("READY", run.id, run.resumed, run.starting_step, run.config.get("label"), flush=True)
while how == "hold" and not os.path.exists("release") and time.monotonic() < deadline:
    time.sleep(0.01)
for i in range(3):
    run.log({"x": float(i)})
run.finish()
"""

TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def no_scheduler(monkeypatch: pytest.MonkeyPatch):
    """The suite may itself run inside a job: no test here inherits that job's identity."""
    for var in _cluster.VARIABLES:
        monkeypatch.delenv(var, raising=False)


def _ready(proc: subprocess.Popen) -> tuple[str, bool, int, str]:
    """The worker's READY line (bounded: a worker that dies or hangs fails the test)."""
    fd = proc.stdout.fileno()
    if not select.select([fd], [], [], TIMEOUT)[0]:
        raise AssertionError("a worker did not get its run in time")
    line = proc.stdout.readline().decode().split()
    if not line or line[0] != "READY":
        proc.kill()
        _, err = proc.communicate(timeout=TIMEOUT)
        raise AssertionError(f"a worker failed: {err.decode()}")
    return line[1], line[2] == "True", int(line[3]), line[4]


def _start(store: Path, cwd: Path, envs: list[dict[str, str]], how: str = "hold"
           ) -> tuple[list[subprocess.Popen], list[tuple[str, bool, int, str]]]:
    """Start one worker per env, release them at one instant, and wait until each has a run."""
    (cwd / "go").unlink(missing_ok=True)
    (cwd / "release").unlink(missing_ok=True)
    procs = [script(WORKER, str(store), env.get("LABEL", str(i)), how, cwd=cwd, env=env)
             for i, env in enumerate(envs)]
    (cwd / "go").touch()
    return procs, [_ready(p) for p in procs]


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.communicate(timeout=TIMEOUT)
        assert p.returncode == -signal.SIGKILL


def _release(cwd: Path, procs: list[subprocess.Popen]) -> None:
    (cwd / "release").touch()
    for p in procs:
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, err.decode()


def _array_task(task: int, restarts: int = 0) -> dict[str, str]:
    """What SLURM sets for task ``task`` of array job 77 (each task has its own job id)."""
    return {"SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": str(task),
            "SLURM_JOB_ID": str(78 + task), "SLURM_RESTART_COUNT": str(restarts),
            "LABEL": f"task{task}"}


def test_each_array_task_resumes_its_own_run(store, tmp_path):
    cwd = tmp_path / "submit"
    cwd.mkdir()
    procs, first = _start(store, cwd, [_array_task(t) for t in range(4)])
    assert [(resumed, start, label) for _, resumed, start, label in first] \
        == [(False, 0, f"task{t}") for t in range(4)]
    assert len({rid for rid, *_ in first}) == 4
    _kill(procs)  # the whole array is lost at once

    procs, again = _start(store, cwd, [_array_task(t, restarts=1) for t in range(4)])
    for (rid, _, _, label), (rid2, resumed, start, label2) in zip(first, again, strict=True):
        assert (rid2, resumed, start, label2) == (rid, True, 3, label)  # its own run, its config
    _release(cwd, procs)
    for rid, *_ in first:
        assert steps_of(store, f"p/{rid}") == list(range(9))
        assert localtrack.Api(store).run(f"p/{rid}").state == "finished"

    procs, fresh = _start(store, cwd, [_array_task(0, restarts=2)], how="finish")
    assert fresh[0][1] is False and fresh[0][0] not in {rid for rid, *_ in first}  # finished
    _release(cwd, procs)


def test_concurrent_starts_without_identity_each_claim_one_run(store, tmp_path):
    cwd = tmp_path / "plain"
    cwd.mkdir()
    procs, first = _start(store, cwd, [{} for _ in range(4)])  # no error: four new runs
    assert [(resumed, start) for _, resumed, start, _ in first] == [(False, 0)] * 4
    crashed = {rid: label for rid, _, _, label in first}
    assert len(crashed) == 4
    _kill(procs)

    procs, again = _start(store, cwd, [{} for _ in range(4)])
    assert {rid for rid, *_ in again} == set(crashed)  # each restart claimed a distinct one
    for rid, resumed, start, label in again:
        assert (resumed, start, label) == (True, 3, crashed[rid])
    extra, (fifth,) = _start(store, cwd, [{"LABEL": "fifth"}])  # all four live: a new run
    assert fifth[0] not in crashed and fifth[1:] == (False, 0, "fifth")
    _release(cwd, procs + extra)
    for rid in [*crashed, fifth[0]]:
        assert steps_of(store, f"p/{rid}") == list(range(9 if rid in crashed else 6))

    procs, fresh = _start(store, cwd, [{}], how="finish")  # every run finished: none resumed
    assert fresh[0][1] is False and fresh[0][0] not in [*crashed, fifth[0]]
    _release(cwd, procs)


def test_resume_key_wins_over_the_scheduler(store, tmp_path):
    cwd = tmp_path / "k"
    cwd.mkdir()
    procs, [(rid, *_)] = _start(store, cwd, [{"SLURM_JOB_ID": "5", "LOCALTRACK_RESUME_KEY": "k1"}])
    _kill(procs)
    procs, [other] = _start(store, cwd, [{"SLURM_JOB_ID": "5", "LOCALTRACK_RESUME_KEY": "k2"}])
    assert other[0] != rid and other[1] is False  # same job, another key: not its run
    _kill(procs)
    procs, [again] = _start(store, cwd, [{"SLURM_JOB_ID": "6", "LOCALTRACK_RESUME_KEY": "k1"}])
    assert again[:3] == (rid, True, 3)  # another job, the same key: its run
    _kill(procs)


def test_another_directory_never_resumes_a_job_run(store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    procs, [(rid, *_)] = _start(store, a, [_array_task(1)])
    _kill(procs)
    procs, [other] = _start(store, b, [_array_task(1)])
    assert other[0] != rid and other[1] is False
    _kill(procs)


SLURM_JOB = {"SLURM_JOB_ID": "4242", "SLURM_JOB_PARTITION": "gpu", "SLURM_JOB_NODELIST": "n[01-02]",
             "SLURM_RESTART_COUNT": "0", "SLURM_CLUSTER_NAME": "hpc"}


def test_scheduler_facts_on_events_run_json_and_show(store, tmp_path):
    cwd = tmp_path / "facts"
    cwd.mkdir()
    procs, [(rid, *_)] = _start(store, cwd, [SLURM_JOB])
    procs[0].send_signal(signal.SIGTERM)  # preempted by the scheduler
    procs[0].communicate(timeout=TIMEOUT)
    requeued = {**SLURM_JOB, "SLURM_RESTART_COUNT": "1", "SLURM_JOB_NODELIST": "n07"}
    procs, [again] = _start(store, cwd, [requeued], how="finish")
    assert again[:3] == (rid, True, 3)  # SLURM_JOB_ID survives the requeue
    _release(cwd, procs)

    run = localtrack.Api(store).run(f"p/{rid}")
    events = {e["event"]: e for e in run.events}
    assert events["started"]["cluster"]["slurm"] == {
        "job_id": 4242, "partition": "gpu", "nodes": "n[01-02]", "restart_count": 0,
        "cluster": "hpc"}
    assert events["preempted"]["signal"] == "SIGTERM"
    assert events["resumed"]["cluster"]["slurm"]["restart_count"] == 1
    assert run.meta["cluster"]["slurm"]["restart_count"] == 1  # run.json: the latest start
    assert run.meta["cluster"]["slurm"]["nodes"] == "n07"
    ui = StoreView(localtrack.Api(store)).run(f"p/{rid}")  # the dashboard's lifecycle table
    assert [e.get("cluster") for e in ui["events"] if e["event"] == "resumed"] \
        == [run.meta["cluster"]]

    shown = subprocess.run([sys.executable, "-m", "localtrack", "show", f"p/{rid}", "--dir", str(store)],
                           capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout
    assert "job      slurm job_id=4242 partition=gpu nodes=n07 restart_count=1" in shown
    assert "preempted at step 3 signal=SIGTERM" in shown, shown
    assert "restart_count=0 cluster=hpc]" in shown  # the started event's facts


def test_resuming_outside_a_job_drops_the_job_facts(store, tmp_path):
    cwd = tmp_path / "drop"
    cwd.mkdir()
    procs, [(rid, *_)] = _start(store, cwd, [{"LOCALTRACK_RESUME_KEY": "x", **SLURM_JOB}])
    _kill(procs)
    procs, [again] = _start(store, cwd, [{"LOCALTRACK_RESUME_KEY": "x"}], how="finish")
    _release(cwd, procs)
    assert again[:2] == (rid, True)
    run = localtrack.Api(store).run(f"p/{rid}")
    assert "cluster" not in run.meta and "cluster" not in run.events[-2]


def test_a_damaged_pointer_is_reported_kept_and_not_followed(store, tmp_path):
    cwd = tmp_path / "damaged"
    cwd.mkdir()
    procs, [(rid, *_)] = _start(store, cwd, [{}])
    _kill(procs)
    (pointer,) = (store / "p" / "auto").glob("*/*.json")
    assert pointer.name == f"{rid}.json"
    pointer.write_bytes(b'{"run_id": "tor')  # damaged from outside (atomic writes never tear)
    (cwd / "go").touch()
    res = run_script(WORKER, str(store), "new", "finish", cwd=cwd, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    _, new, resumed, *_ = res.stdout.split()
    assert new != rid and resumed == "False"
    assert "damaged" in res.stderr and str(pointer) in res.stderr
    assert pointer.with_name(pointer.name + ".damaged").read_bytes() == b'{"run_id": "tor'


def test_a_format_3_pointer_is_still_followed(store, tmp_path):
    cwd = tmp_path / "old"
    cwd.mkdir()
    procs, [(rid, *_)] = _start(store, cwd, [{}])
    _kill(procs)
    for path in (store / "p" / "auto").glob("*/*.json"):  # as a format-3 store had it
        path.unlink()
    digest = hashlib.sha256(os.fsencode(str(cwd))).hexdigest()[:24]
    legacy = store / "p" / "auto" / f"{digest}.json"
    legacy.write_text(json.dumps({"run_id": rid, "cwd": str(cwd), "time": time.time()}))
    procs, [again] = _start(store, cwd, [{}])
    assert again[:3] == (rid, True, 3)
    assert not legacy.exists() and [p.name for p in legacy.parent.glob("*/*.json")] == [f"{rid}.json"]
    _kill(procs)
    procs, [third] = _start(store, cwd, [{}], how="finish")  # the new pointer works the same
    assert third[:3] == (rid, True, 6)
    _release(cwd, procs)


# -- the identity rules: a pure function of the environment -----------------------------------

@pytest.mark.parametrize(("env", "key"), [
    pytest.param({}, None, id="no-scheduler"),
    pytest.param({"SLURM_JOB_ID": "81"}, "slurm:81", id="slurm-job"),
    pytest.param({"SLURM_JOB_ID": "81", "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "3"},
                 "slurm:77_3", id="slurm-array-task"),
    pytest.param({"SLURM_JOB_ID": "81", "SLURM_NTASKS": "4", "SLURM_PROCID": "2"},
                 "slurm:81 rank 2", id="slurm-srun-task"),
    pytest.param({"SLURM_JOB_ID": "81", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"},
                 "slurm:81", id="slurm-one-task"),
    pytest.param({"PBS_JOBID": "1234.pbs01"}, "pbs:1234.pbs01", id="pbs"),
    pytest.param({"PBS_JOBID": "1234[5].pbs01", "PBS_ARRAY_INDEX": "5"}, "pbs:1234[5].pbs01/5",
                 id="pbs-array"),
    pytest.param({"PBS_JOBID": "99-2.torque", "PBS_ARRAYID": "2"}, "pbs:99-2.torque/2",
                 id="torque-array"),
    pytest.param({"LSB_JOBID": "555", "LSB_JOBINDEX": "0"}, "lsf:555", id="lsf"),
    pytest.param({"LSB_JOBID": "555", "LSB_JOBINDEX": "7"}, "lsf:555[7]", id="lsf-array"),
    pytest.param({"JOB_ID": "12"}, None, id="job-id-without-sge"),
    pytest.param({"SGE_ROOT": "/opt/sge", "JOB_ID": "12", "SGE_TASK_ID": "undefined"}, "sge:12",
                 id="sge"),
    pytest.param({"SGE_ROOT": "/opt/sge", "JOB_ID": "12", "SGE_TASK_ID": "4"}, "sge:12.4",
                 id="sge-array"),
    pytest.param({"JOB_COMPLETION_INDEX": "3", "HOSTNAME": "train-3"}, "k8s:train/3",
                 id="k8s-indexed-job"),
    pytest.param({"JOB_COMPLETION_INDEX": "3", "HOSTNAME": "other"}, "k8s:other/3",
                 id="k8s-other-hostname"),
    pytest.param({"TORCHELASTIC_RUN_ID": "abc", "RANK": "1", "LOCAL_RANK": "1"},
                 "torchelastic:abc rank 1", id="torchelastic"),
    pytest.param({"SLURM_JOB_ID": "81", "SLURM_NTASKS": "2", "SLURM_PROCID": "1",
                  "TORCHELASTIC_RUN_ID": "abc", "RANK": "5"}, "slurm:81 rank 5",
                 id="torchrun-in-slurm"),
    pytest.param({"SLURM_JOB_ID": "81", "LOCALTRACK_RESUME_KEY": "exp7-seed3"}, "key:exp7-seed3",
                 id="own-key-wins"),
    pytest.param({"SLURM_JOB_ID": " ", "LOCALTRACK_RESUME_KEY": ""}, None, id="empty-is-unset"),
])
def test_identity(env, key):
    assert _cluster.identity(env) == key


@pytest.mark.parametrize(("env", "var"), [
    pytest.param({"LOCALTRACK_RESUME_KEY": "../x"}, "LOCALTRACK_RESUME_KEY", id="key-path"),
    pytest.param({"LOCALTRACK_RESUME_KEY": "a b"}, "LOCALTRACK_RESUME_KEY", id="key-space"),
    pytest.param({"LOCALTRACK_RESUME_KEY": "x" * 129}, "LOCALTRACK_RESUME_KEY", id="key-long"),
    pytest.param({"SLURM_JOB_ID": "12;rm"}, "SLURM_JOB_ID", id="slurm-garbage"),
    pytest.param({"SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "x"}, "SLURM_ARRAY_TASK_ID",
                 id="array-task-garbage"),
    pytest.param({"PBS_JOBID": "1/2"}, "PBS_JOBID", id="pbs-path"),
    pytest.param({"JOB_COMPLETION_INDEX": "-1"}, "JOB_COMPLETION_INDEX", id="k8s-index"),
])
def test_garbage_identity_is_a_clear_error(env, var):
    with pytest.raises(UsageError, match=var) as info:
        _cluster.identity(env)
    assert "LOCALTRACK_RESUME_KEY" in str(info.value)  # the way out


def test_garbage_identity_refuses_init_before_writing(store, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "not a job")
    with pytest.raises(UsageError, match="SLURM_JOB_ID='not a job'"):
        localtrack.init(project="p", resume="auto", dir=store)
    assert not store.exists()


@pytest.mark.parametrize("key", ["../x", "a/b", "/tmp/k", ".."])
def test_a_resume_key_with_path_characters_refuses_init_before_writing(store, monkeypatch, key):
    """The key names the auto-resume pointer's folder: a path in it is refused, nothing written."""
    monkeypatch.setenv("LOCALTRACK_RESUME_KEY", key)
    with pytest.raises(UsageError, match=re.escape(f"LOCALTRACK_RESUME_KEY={key!r}")):
        localtrack.init(project="p", resume="auto", dir=store)
    assert not store.exists()


def test_facts():
    env = {**SLURM_JOB, "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "1",
           "TORCHELASTIC_RUN_ID": "abc", "RANK": "1", "WORLD_SIZE": "2", "JOB_ID": "3",
           "HOSTNAME": "n01"}
    assert _cluster.facts(env) == {
        "slurm": {"job_id": 4242, "array_job_id": 77, "array_task_id": 1, "partition": "gpu",
                  "nodes": "n[01-02]", "restart_count": 0, "cluster": "hpc"},
        "torchelastic": {"run_id": "abc", "rank": 1, "world_size": 2}}
    assert _cluster.facts({"SLURM_RESTART_COUNT": "x" * 300}) == {
        "slurm": {"restart_count": "x" * 256}}  # a fact never refuses a start
    assert _cluster.facts({"LSB_JOBID": "5", "LSB_JOBINDEX": "2", "LSB_QUEUE": "normal"}) == {
        "lsf": {"job_id": 5, "array_index": 2, "queue": "normal"}}
    assert _cluster.facts({"JOB_COMPLETION_INDEX": "2", "HOSTNAME": "train-2"}) == {
        "kubernetes": {"completion_index": 2, "pod": "train-2"}}
