"""Rewind: init(resume_from="RUN_ID?_step=N") archives the rows after N and continues at N + 1.

Real runs on disk, sealed and unsealed; bad input changes nothing; a SIGKILL at any instant of
a rewind leaves the run as it was or rewound; a rewound run syncs to a remote that already
held the rows it archived.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

import localtrack
from localtrack.errors import RunLockedError, RunNotFoundError, UsageError

from .helpers import read_as_older, run_script, script, settle


def _log(store: Path, rid: str, steps: range, base: float = 0.0) -> None:
    run = localtrack.init(project="p", id=rid, resume="allow", dir=store)
    assert run.step == steps.start
    for i in steps:
        if i % 7 == 0:  # a step in two parts: framed rows among the plain ones
            run.log({"x": base + i}, commit=False)
            run.log({"y": i})
        else:
            run.log({"x": base + i, "y": i})
    run.finish()


def _history(store: Path, rid: str = "r", **kw) -> dict[str, list]:
    return localtrack.Api(store).run(f"p/{rid}").history_table(**kw).to_pydict()


def _files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and "locks" not in p.parts}


@pytest.fixture
def small_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Log files of a few KiB, each sealed as soon as it is closed: rewinds land in segments."""
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "3000")
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")


def test_a_rewind_archives_the_rows_after_the_step_and_continues_after_it(store):
    _log(store, "r", range(100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a rewind is no repair: nothing to warn about
        run = localtrack.init(project="p", dir=store, resume_from="r?_step=49")
    assert (run.id, run.step, run.starting_step, run.resumed) == ("r", 50, 50, True)
    assert run.summary["x"] == 49.0  # recomputed from the history that stays
    for i in range(50, 60):
        run.log({"x": 1000.0 + i})
    assert (run.summary["x"], run.summary["y"]) == (1059.0, 49)
    run.finish()
    api = localtrack.Api(store).run("p/r")
    hist = _history(store)
    assert hist["_step"] == list(range(60))
    assert hist["x"] == [float(i) for i in range(50)] + [1000.0 + i for i in range(50, 60)]
    assert (api.last_step, api.state, api.summary["x"]) == (59, "finished", 1059.0)
    full = _history(store, include_rewound=True)
    assert full["_step"] == list(range(100)) + list(range(50, 60))  # in the order written
    assert full["_rewound"] == [None] * 50 + [1] * 50 + [None] * 10
    assert [(r["from_step"], r["to"]) for r in api.rewinds] == [(99, 49)]
    events = [(e["event"], e.get("from_step"), e.get("to")) for e in api.events]
    assert events[-3:] == [("resumed", None, None), ("rewound", 99, 49), ("finished", None, None)]


def test_a_rewind_into_sealed_segments_rewrites_nothing_and_sealing_keeps_to_it(store, small_logs):
    _log(store, "r", range(600))
    settle(store)
    rdir = store / "p/runs/r"
    segments = {p.name: p.read_bytes() for p in (rdir / "segments").iterdir()}
    assert len(segments) >= 4
    run = localtrack.init(project="p", dir=store, resume_from="r?_step=250")
    assert run.step == 251 and run.summary["x"] == 250.0
    for i in range(251, 400):
        run.log({"x": -float(i)})
    run.finish()
    settle(store)  # the logs from both sides of the rewind are sealed now
    for name, data in segments.items():  # immutable: archived rows stay where they were
        assert (rdir / "segments" / name).read_bytes() == data
    assert not list((rdir / "wal").glob("*.jsonl"))
    hist = _history(store)
    assert hist["_step"] == list(range(400))
    assert hist["x"][250:252] == [250.0, -251.0]
    api = localtrack.Api(store).run("p/r")
    assert (api.last_step, api.summary["x"], api.summary["y"]) == (399, -399.0, 250)
    # A second rewind, below the first: both archives stay readable, each with its number.
    run = localtrack.init(project="p", dir=store, resume_from="r?_step=100")
    assert run.step == 101 and run.summary["x"] == 100.0
    run.finish()
    full = _history(store, include_rewound=True)
    marks = list(zip(full["_step"], full["_rewound"], strict=True))
    assert marks.count((300, 1)) == 1 and marks.count((300, 2)) == 1  # old and new trajectory
    assert [s for s, r in marks if r is None] == list(range(101))
    assert localtrack.Api(store).run("p/r").last_step == 100


def test_rewinding_to_the_last_step_archives_nothing(store):
    _log(store, "r", range(10))
    run = localtrack.init(project="p", dir=store, resume_from="r?_step=9")
    assert run.step == 10
    run.finish()
    assert localtrack.Api(store).run("p/r").rewinds == []
    assert _history(store)["_step"] == list(range(10))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    pytest.param({"resume_from": "r?_step=10"}, UsageError, "last step is 9", id="beyond-last"),
    pytest.param({"resume_from": "r?_step=-1"}, UsageError, "RUN_ID\\?_step=N", id="negative"),
    pytest.param({"resume_from": "r?step=3"}, UsageError, "RUN_ID\\?_step=N", id="malformed"),
    pytest.param({"resume_from": "r"}, UsageError, "RUN_ID\\?_step=N", id="no-step"),
    pytest.param({"resume_from": "../r?_step=1"}, UsageError, "contains '..'", id="path-traversal"),
    pytest.param({"resume_from": "nope?_step=1"}, RunNotFoundError, "does not exist",
                 id="missing-run"),
    pytest.param({"resume_from": "r?_step=3", "resume": "never"}, UsageError, "resume='never'",
                 id="resume-never"),
    pytest.param({"resume_from": "r?_step=3", "id": "other"}, UsageError, "names run 'r'",
                 id="other-id"),
])
def test_bad_rewinds_are_refused_and_change_nothing(store, kwargs, error, match):
    _log(store, "r", range(10))
    before = _files(store)
    with pytest.raises(error, match=match):
        localtrack.init(project="p", dir=store, **kwargs)
    assert _files(store) == before
    assert _history(store)["_step"] == list(range(10))


HOLDER = """
import sys, localtrack
run = localtrack.init(project="p", id="r", resume="allow", dir=sys.argv[1])
run.log({"x": 1.0})
print("ready", flush=True)
sys.stdin.readline()
"""


def test_a_run_a_live_process_writes_cannot_be_rewound(store):
    _log(store, "r", range(10))
    holder = script(HOLDER, str(store), stdin=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready"
        before = _files(store)
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            localtrack.init(project="p", dir=store, resume_from="r?_step=3")
        assert {k: v for k, v in _files(store).items() if "wal" not in k} == {
            k: v for k, v in before.items() if "wal" not in k}
    finally:
        holder.kill()
        holder.communicate(timeout=30)  # (closes its pipes)


def _kill_around(tmp_path: Path, base: Path, code: str, args: list[str], marker: bytes,
                 judge: Callable[[Path, int], str], seed: int) -> None:
    """Run ``code`` on fresh copies of ``base`` and SIGKILL it at random instants around the
    one it prints ``marker`` at; ``judge`` checks each store and says whether the kill came
    "before" or "after" the operation. TRIALS kills at least, and until both were seen (the
    window moves toward the side not seen yet: a loaded machine shifts every instant), at
    most three times as many."""
    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    t0 = time.monotonic()
    proc = script(code, str(probe), *args)
    assert proc.stdout is not None and proc.stdout.readline().strip() == marker
    reach = time.monotonic() - t0
    proc.communicate(timeout=60)
    rng, scale, seen = random.Random(seed), 1.0, set()
    trials = int(os.environ.get("REWIND_TRIALS", "20"))
    for trial in range(3 * trials):
        if trial >= trials and len(seen) == 2:
            break
        store = tmp_path / f"t{trial}"
        shutil.copytree(base, store)
        proc = script(code, str(store), *args)
        time.sleep(rng.uniform(0.4, 1.2) * reach * scale)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        settle(store)
        outcome = judge(store, trial)
        seen.add(outcome)
        if len(seen) == 1:
            scale *= 0.8 if outcome == "after" else 1.25
        shutil.rmtree(store)
    assert seen == {"before", "after"}, seen


REWINDER = """
import sys, localtrack
run = localtrack.init(project="p", dir=sys.argv[1], resume_from="r?_step=" + sys.argv[2])
print("rewound", flush=True)
for i in range(int(sys.argv[2]) + 1, int(sys.argv[2]) + 40):
    run.log({"x": -float(i)})
run.finish()
"""


def test_sigkill_at_any_instant_of_a_rewind_leaves_the_run_whole_or_rewound(tmp_path):
    """The rewinding process is killed at a random instant, from its start through the rows it
    logs after the rewind; the run reads as it was (0..599) or as rewound to 300 (0..300 plus
    contiguous new rows), and the next writer resumes it. Bounded: TRIALS kills."""
    base = tmp_path / "base"
    code = """
import os, sys, localtrack
os.environ["LOCALTRACK_ROTATE_BYTES"] = "3000"
os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0"
run = localtrack.init(project="p", id="r", dir=sys.argv[1])
for i in range(600):
    if i % 5 == 0:
        run.log({"x": float(i)}, commit=False)
    run.log({"y": i})
run.finish()
"""
    assert run_script(code, str(base)).returncode == 0
    settle(base)

    def judge(store: Path, trial: int) -> str:
        steps = localtrack.Api(store).run("p/r").history_table([]).column("_step").to_pylist()
        if steps != list(range(600)):
            assert steps[:301] == list(range(301)), trial
            assert steps == list(range(len(steps))), trial  # new rows follow without a hole
        run = localtrack.init(project="p", id="r", resume="must", dir=store)
        assert run.step == steps[-1] + 1
        run.log({"x": 0.5})
        run.finish()
        assert localtrack.Api(store).run("p/r").history_table([]).column("_step").to_pylist() == \
            list(range(steps[-1] + 2))
        return "before" if steps == list(range(600)) else "after"

    _kill_around(tmp_path, base, REWINDER, ["300"], b"rewound", judge, seed=1234)


def test_a_rewound_run_syncs_to_a_remote_that_held_the_archived_rows(store, tmp_path, small_logs):
    from .test_sync import assert_same, same_table

    _log(store, "r", range(300))
    settle(store)
    remote = tmp_path / "remote"
    assert localtrack.sync(str(remote), dir=store).ok
    run = localtrack.init(project="p", dir=store, resume_from="r?_step=120")
    for i in range(121, 150):
        run.log({"x": -float(i)})
    run.finish()
    settle(store)
    assert localtrack.sync(str(remote), dir=store).ok
    assert_same(store, remote)
    local, there = (localtrack.Api(d).run("p/r") for d in (store, remote))
    assert same_table(local.history_table(include_rewound=True), there.history_table(include_rewound=True))
    assert there.rewinds == local.rewinds and there.last_step == 149


def test_an_older_reader_is_told_the_run_is_newer(store):
    """A rewound run records format 4: a localtrack that reads only format 3 refuses it, rather
    than showing its archived rows as history. Runs never rewound stay format 3."""
    _log(store, "r", range(10))
    _log(store, "plain", range(10))
    localtrack.init(project="p", dir=store, resume_from="r?_step=4").finish()
    plain, rewound = read_as_older(store, 3, "p/plain", "p/r")
    assert plain == "9"
    assert "uses format 4, newer than this localtrack understands (3)" in rewound


def test_show_and_the_dashboard_data_show_the_rewind(store):
    from localtrack._ui import _data

    from .test_sync import cli

    _log(store, "r", range(30))
    localtrack.init(project="p", dir=store, resume_from="r?_step=9").finish()
    res = cli("show", "p/r", "--dir", str(store))
    assert res.returncode == 0, res.stderr
    assert "rewound at step 10 from step 29 to step 9" in res.stdout
    assert "steps    10" in res.stdout
    names = [e["event"] for e in _data.StoreView(localtrack.Api(store)).run("p/r")["events"]]
    assert names[-3:] == ["resumed", "rewound", "finished"]


# -- fork --------------------------------------------------------------------------------------


def test_a_fork_starts_with_its_parents_history_and_never_changes_it(store, small_logs):
    run = localtrack.init(project="p", id="a", dir=store, config={"lr": 0.1, "wd": 0.0})
    for i in range(400):
        run.log({"x": float(i), "y": i})
    run.finish()
    settle(store)
    parent_files = {k: v for k, v in _files(store).items() if k.startswith("p/runs/a/")}
    fork = localtrack.init(project="p", dir=store, fork_from="a?_step=150", config={"wd": 0.5})
    assert fork.id != "a" and (fork.step, fork.resumed) == (151, False)
    assert dict(fork.config) == {"lr": 0.1, "wd": 0.5} and fork.summary["x"] == 150.0
    for i in range(151, 200):
        fork.log({"x": -float(i)})
    fork.finish()
    settle(store)
    assert {k: v for k, v in _files(store).items() if k.startswith("p/runs/a/")} == parent_files
    api = localtrack.Api(store).run(f"p/{fork.id}")
    hist = api.history_table().to_pydict()
    assert hist["_step"] == list(range(200))
    assert hist["x"][149:152] == [149.0, 150.0, -151.0]
    assert (api.last_step, api.summary["x"], api.summary["y"]) == (199, -199.0, 150)
    assert api.meta["fork"] == {"project": "p", "run": "a", "step": 150}
    assert [e["event"] for e in api.events] == ["started", "forked", "finished"]
    fork_dir = store / "p/runs" / fork.id
    assert not (fork_dir / "segments").exists() or len(list((fork_dir / "segments").iterdir())) <= 1
    res = run_script("""
import sys, localtrack
print(localtrack.Api(sys.argv[1]).run(sys.argv[2]).history_table([]).num_rows)
""", str(store), f"p/{fork.id}")
    assert res.stdout.strip() == "200", res.stderr  # another process reads it the same


def test_forks_of_forks_and_a_parent_rewound_later(store):
    _log(store, "a", range(100))
    b = localtrack.init(project="p", id="b", dir=store, fork_from="a?_step=60")
    for i in range(61, 80):
        b.log({"x": -float(i)})
    b.finish()
    c = localtrack.init(project="p", id="c", dir=store, fork_from="b?_step=30")  # in a's rows
    assert c.step == 31 and c.summary["x"] == 30.0
    c.finish()
    d = localtrack.init(project="p", id="d", dir=store, fork_from="b?_step=70")  # in b's own
    assert d.step == 71 and d.summary["x"] == -70.0
    d.finish()
    before = {rid: _history(store, rid) for rid in "bcd"}
    # The parent rewound below the fork point and logged other rows: no fork changes.
    a = localtrack.init(project="p", dir=store, resume_from="a?_step=10")
    for i in range(11, 90):
        a.log({"x": 1000.0 + i})
    a.finish()
    assert {rid: _history(store, rid) for rid in "bcd"} == before
    assert before["c"]["_step"] == list(range(31)) and before["d"]["_step"] == list(range(71))
    assert before["d"]["x"][59:62] == [59.0, 60.0, -61.0]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    pytest.param({"fork_from": "a?_step=10"}, UsageError, "last step is 9", id="beyond-last"),
    pytest.param({"fork_from": "a?step=1"}, UsageError, "RUN_ID\\?_step=N", id="malformed"),
    pytest.param({"fork_from": "nope?_step=1"}, RunNotFoundError, "does not exist", id="missing"),
    pytest.param({"fork_from": "a?_step=1", "resume": "must", "id": "x"}, UsageError,
                 "starts a new run", id="resume-must"),
    pytest.param({"fork_from": "a?_step=1", "resume_from": "a?_step=1"}, UsageError,
                 "pass one of them", id="with-resume-from"),
    pytest.param({"fork_from": "a?_step=1", "id": "a"}, localtrack.errors.RunExistsError,
                 "already exists", id="existing-id"),
])
def test_bad_forks_are_refused_and_change_nothing(store, kwargs, error, match):
    _log(store, "a", range(10))
    before = _files(store)
    with pytest.raises(error, match=match):
        localtrack.init(project="p", dir=store, **kwargs)
    assert _files(store) == before


def test_a_fork_whose_parent_is_gone_says_so(store):
    _log(store, "a", range(10))
    localtrack.init(project="p", id="b", dir=store, fork_from="a?_step=5").finish()
    shutil.rmtree(store / "p/runs/a")
    with pytest.raises(localtrack.errors.CorruptRunError, match="fork of run 'a'.*not in this store"):
        localtrack.Api(store).run("p/b").history_table()


def test_syncing_a_fork_takes_its_parent_along(store, tmp_path):
    from .test_sync import same_table

    _log(store, "a", range(50))
    fork = localtrack.init(project="p", id="b", dir=store, fork_from="a?_step=20")
    fork.log({"x": -1.0})
    fork.finish()
    settle(store)
    remote = tmp_path / "remote"
    assert localtrack.sync(str(remote), dir=store, runs=["p/b"]).ok
    there = localtrack.Api(remote)
    assert sorted(r.id for r in there.runs("p")) == ["a", "b"]
    assert same_table(there.run("p/b").history_table(), localtrack.Api(store).run("p/b").history_table())


FORKER = """
import sys, localtrack
run = localtrack.init(project="p", id="f", dir=sys.argv[1], fork_from="a?_step=300")
print("forked", flush=True)
for i in range(301, 340):
    run.log({"x": -float(i)})
run.finish()
"""


def test_sigkill_at_any_instant_of_a_fork_leaves_no_fork_or_a_whole_one(tmp_path):
    base = tmp_path / "base"
    _log(base, "a", range(600))
    settle(base)

    def judge(store: Path, trial: int) -> str:
        api = localtrack.Api(store)
        assert api.run("p/a").history_table([]).column("_step").to_pylist() == list(range(600))
        if "f" not in [r.id for r in api.runs("p")]:
            return "before"
        steps = api.run("p/f").history_table([]).column("_step").to_pylist()
        assert steps == list(range(len(steps))) and len(steps) >= 301, trial
        return "after"

    _kill_around(tmp_path, base, FORKER, [], b"forked", judge, seed=99)


def test_run_rewind_after_auto_resume(store, tmp_path):
    """The common requeue: init(resume="auto") finds the crashed run, the script loads its
    checkpoint and learns the step only then, and calls run.rewind(step)."""
    code = """
import os, sys, localtrack
run = localtrack.init(project="p", dir=sys.argv[1], resume="auto")
ckpt = int(sys.argv[2])
if run.resumed:
    run.rewind(ckpt)                      # the rows after the checkpoint are archived
print(run.step, flush=True)
for i in range(run.step, int(sys.argv[3])):
    run.log({"x": float(i) + (0.5 if run.resumed else 0.0)})
if sys.argv[4] == "crash":
    os._exit(1)
run.finish()
"""
    first = run_script(code, str(store), "0", "80", "crash", cwd=tmp_path)
    assert first.returncode == 1 and first.stdout.strip() == "0"
    second = run_script(code, str(store), "49", "100", "finish", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "50"
    (api,) = localtrack.Api(store).runs("p")
    hist = api.history_table().to_pydict()
    assert hist["_step"] == list(range(100)) and hist["x"][49:51] == [49.0, 50.5]
    assert [(r["from_step"], r["to"]) for r in api.rewinds] == [(79, 49)]
    run = localtrack.init(project="p", id=api.id, resume="must", dir=store)
    with pytest.raises(UsageError, match="last step is 99"):
        run.rewind(150)
    run.rewind(99)  # to the last step: nothing to archive
    run.finish()
    assert localtrack.Api(store).run(api.path).history_table([]).num_rows == 100


def test_rewinding_and_forking_into_sealed_history_read_no_segment(store, small_logs):
    """Neither loads pyarrow in the training process (its summary values are computed when
    first read, by a reader or the next sealer): the cost does not grow with the history."""
    _log(store, "a", range(600))
    settle(store)
    code = """
import sys, localtrack
run = localtrack.init(project="p", dir=sys.argv[1], **{sys.argv[2]: "a?_step=100"})
print("pyarrow" in sys.modules, run.step, flush=True)
run.finish()
"""
    for kind in ("fork_from", "resume_from"):
        res = run_script(code, str(store), kind)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == ["False", "101"], (kind, res.stdout)
    for run in localtrack.Api(store).runs("p"):
        assert run.summary["x"] == 100.0 and run.summary["y"] == 100, run.path


@pytest.mark.parametrize("var", ["LOCALTRACK_RESUME_FROM", "WANDB_RESUME_FROM"])
def test_a_requeued_job_says_where_to_continue_from_in_its_environment(store, var):
    _log(store, "r", range(40))
    code = """
import sys, localtrack
run = localtrack.init(project="p", dir=sys.argv[1])
print(run.id, run.step, flush=True)
run.finish()
"""
    res = run_script(code, str(store), env={var: "r?_step=19"})
    assert res.returncode == 0 and res.stdout.split() == ["r", "20"], res.stderr
    res = run_script(code, str(store), env={"LOCALTRACK_FORK_FROM": "r?_step=9"})
    rid, step = res.stdout.split()
    assert rid != "r" and step == "10", res.stderr
    assert localtrack.Api(store).run(f"p/{rid}").meta["fork"]["step"] == 9


def test_a_crash_right_after_a_rotation_past_a_rewind_resumes_after_the_last_row(store, monkeypatch,
                                                                              small_logs):
    """Rewound to 100, rows 101..150 in the log the rewind opened, and a crash just after the
    next rotation opened an empty log: the run resumes at 151. (The look back through older
    logs once took the cap of the log before the one its record came from: 101, duplicates.)"""
    from localtrack import _sealer

    monkeypatch.setattr(_sealer, "request", lambda *a, **k: None)  # older logs stay unsealed
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(200):
        run.log({"x": float(i)})
    run.rewind(100)
    for i in range(101, 151):
        run.log({"x": -float(i)}, step=i)
    run._log._close_frame(rotating=True)  # a rotation: the log ends with its closing line,
    run._drop()                           # and the writer dies before the next log has a row
    wal = store / "p/runs/r/wal"
    logs = sorted(wal.glob("*.jsonl"))
    marker = localtrack.Api(store).run("p/r").rewinds[0]["seq"]
    assert int(logs[-1].stem) == marker and marker > int(logs[0].stem)  # rows 101.. are there
    (wal / f"{marker + 1:08d}.jsonl").touch()  # the rotation's new log, nothing in it yet
    again = localtrack.init(project="p", id="r", resume="must", dir=store)
    assert again.step == 151
    again.finish()
    assert _history(store)["_step"] == list(range(151))


@pytest.mark.parametrize("ending", ["finished", "failed", "preempted", "crashed", "torn"])
def test_a_run_that_ended_any_way_can_be_rewound(store, ending):
    """Finished, failed (exit code 1), preempted (a signal), crashed (the writer died), or killed
    mid-append (a torn record at the end of its log: cut off, with a warning, then rewound)."""
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(30):
        run.log({"x": float(i)})
    if ending == "preempted":
        run._on_signal("SIGTERM")  # what the signal hook does, then the process ends
    if ending in ("crashed", "torn"):
        run._drop()
        if ending == "torn":
            log = sorted((store / "p/runs/r/wal").glob("*.jsonl"))[-1]
            log.write_bytes(log.read_bytes().rstrip(b"\0") + b'{"x":30.0,"_st')
    else:
        run.finish(exit_code=1 if ending == "failed" else 0)
    assert localtrack.Api(store).run("p/r").state == ending.replace("torn", "crashed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the torn tail's report
        again = localtrack.init(project="p", dir=store, resume_from="r?_step=9")
    assert again.step == 10 and again.resumed
    again.log({"x": -10.0})
    again.finish()
    hist = _history(store)
    assert hist["_step"] == list(range(11)) and hist["x"][-1] == -10.0
    assert localtrack.Api(store).run("p/r").state == "finished"
