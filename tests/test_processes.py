"""Real processes: SIGKILL at any instant, locks between processes, signals and exit codes."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time

import pytest

import localtrack
from localtrack import _durable, _wal
from localtrack.errors import RunLockedError

from .helpers import run_script, script, steps_of, wait_for

WRITER = """
import os, sys, localtrack
os.environ["LOCALTRACK_ROTATE_BYTES"] = sys.argv[3]  # small log files: kills land in sealing too
run = localtrack.init(project="p", id="k", resume="allow", dir=sys.argv[1])
print("start", run.step, flush=True)
for i in range(int(sys.argv[2])):
    run.log({"loss": 1.0 / (run.step + 1), "step_copy": run.step, "s": "x" * (run.step % 50)})
    print(run.step - 1, flush=True)             # acknowledged: log() returned
run.finish()
print("done", flush=True)
"""


def _acked(proc) -> list[int]:
    out, _ = proc.communicate(timeout=30)
    return [int(line) for line in out.decode().split() if line.lstrip("-").isdigit()]


def test_sigkill_at_random_instants_loses_no_acknowledged_step(store):
    rng = random.Random(1234)
    acked_max = -1
    for _ in range(12):
        proc = script(WRITER, str(store), "100000", "3000")
        assert proc.stdout.readline().startswith(b"start")
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        acked = _acked(proc)
        if acked:
            acked_max = max(acked_max, acked[-1])
        steps = steps_of(store, "p/k")
        assert steps == list(range(len(steps))), "history must stay contiguous and duplicate-free"
        assert steps[-1] >= acked_max, "an acknowledged step was lost"
    stored = localtrack.Api(store).run("p/k")
    assert stored.state == "crashed"
    table = stored.history_table(["step_copy"])
    assert table.column("step_copy").to_pylist() == table.column("_step").to_pylist()
    # and the run finishes cleanly afterwards
    done = run_script(WRITER, str(store), "10", "3000")
    assert done.returncode == 0, done.stderr
    assert localtrack.Api(store).run("p/k").state == "finished"


def test_torn_tail_is_cut_with_a_warning_and_a_copy(store):
    run = localtrack.init(project="p", id="t", dir=store)
    for i in range(3):
        run.log({"a": i})
    wal = next((store / "p" / "runs" / "t" / "wal").glob("*.jsonl"))
    run._drop()  # simulate death without finish: nothing else is written
    # A record cut mid-way (where the mapped log's padding began)
    wal.write_bytes(wal.read_bytes().rstrip(b"\0") + b'{"_step":3,"_timestamp":1.0,"a":3,"_cr')
    with pytest.warns(RuntimeWarning, match="torn tail"):
        again = localtrack.init(project="p", id="t", resume="must", dir=store)
    assert again.step == 3
    assert wal.with_name(wal.name + ".broken").read_bytes().startswith(b'{"_step":3')
    again.log({"a": 30})
    again.finish()
    assert localtrack.Api(store).run("p/t").history_table(["a"]).column("a").to_pylist() == [0, 1, 2, 30]


@pytest.mark.seal_may_fail
def test_damaged_record_in_the_middle_is_reported_not_skipped(store, monkeypatch):
    """A live run's rows are checksummed by the next framed row (one a millisecond at most);
    damage in rows the durable watermark says were synced is corruption, not a torn tail."""
    monkeypatch.setenv("LOCALTRACK_FSYNC_INTERVAL", "0.02")
    run = localtrack.init(project="p", id="c", dir=store)
    for i in range(5):
        run.log({"a": i})
    time.sleep(0.01)
    run.log({"a": 5})  # framed: its checksum covers the rows before it
    wal = next((store / "p" / "runs" / "c" / "wal").glob("*.jsonl"))
    framed_end = _wal.data_size(wal)
    wait_for(lambda: _durable.read(wal.parent.parent).offset >= framed_end, what="an fsync")
    data = bytearray(wal.read_bytes())
    data[data.index(b'"a":2') + 4] = ord("7")  # flip a digit: the checksum no longer matches
    wal.write_bytes(bytes(data))
    with pytest.raises(localtrack.errors.CorruptRunError) as info:
        localtrack.Api(store).run("p/c").history_table()
    assert str(wal) in str(info.value) and info.value.offset is not None
    run.finish()  # sealing refuses the damaged file; the log stays as it was
    assert wal.exists()


def test_second_process_gets_locked_error_naming_the_holder(store):
    holder = script("""
        import sys, time, localtrack
        run = localtrack.init(project="p", id="busy", dir=sys.argv[1])
        print("ready", flush=True)
        time.sleep(60)
    """, str(store))
    assert holder.stdout.readline() == b"ready\n"
    try:
        with pytest.raises(RunLockedError) as info:
            localtrack.init(project="p", id="busy", resume="allow", dir=store)
        msg = str(info.value)
        assert f"pid {holder.pid}" in msg and "'busy'" in msg and "since" in msg
        assert info.value.holder["pid"] == holder.pid
        assert localtrack.Api(store).run("p/busy").state == "running"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)
    assert localtrack.Api(store).run("p/busy").state == "crashed"
    run = localtrack.init(project="p", id="busy", resume="must", dir=store)  # dead lock: no block
    assert run.resumed
    run.finish()


def test_eight_processes_race_for_one_id(store):
    go, done = store.parent / "go", store.parent / "done"
    racer = """
        import os, sys, time, localtrack
        print("ready", flush=True)
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.001)
        try:
            run = localtrack.init(project="p", id="race", resume="allow", dir=sys.argv[1])
        except localtrack.errors.RunLockedError:
            print("locked", flush=True)
        else:
            run.log({"pid": os.getpid()})
            print("got", flush=True)
            while not os.path.exists(sys.argv[3]):  # hold the run until every other racer is out
                time.sleep(0.01)
            run.finish()
    """
    procs = [script(racer, str(store), str(go), str(done)) for _ in range(8)]
    assert [p.stdout.readline() for p in procs] == [b"ready\n"] * 8  # all imported: a fair start
    go.touch()
    try:
        wait_for(lambda: sum(p.poll() is not None for p in procs) >= 7, 60, "seven racers turned away")
    finally:
        done.touch()
    outs = [p.communicate(timeout=60)[0].decode().split() for p in procs]
    assert sorted(outs) == [["got"]] + [["locked"]] * 7, outs  # how fast: benchmarks/bench_limits.py
    assert localtrack.Api(store).run("p/race").history_table().num_rows == 1


AUTO = """
import os, sys, signal, localtrack
run = localtrack.init(project="p", resume="auto", dir=sys.argv[1])
print(run.id, run.resumed, run.starting_step, flush=True)
for _ in range(5):
    run.log({"x": 1.0})
if sys.argv[2] == "crash":
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[2] == "hold":
    import time; time.sleep(60)
run.finish()
"""


def _auto(store, cwd, how):
    res = run_script(AUTO, str(store), how, cwd=cwd)
    rid, resumed, start = res.stdout.split()
    return rid, resumed == "True", int(start), res


def test_auto_resume_follows_the_working_directory(store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    rid, resumed, start, res = _auto(store, a, "crash")
    assert res.returncode == -signal.SIGKILL and not resumed and start == 0
    other, resumed_b, _, _ = _auto(store, b, "finish")      # another cwd never picks it up
    assert other != rid and not resumed_b
    again, resumed, start, res = _auto(store, a, "finish")   # same cwd resumes the crashed run
    assert (again, resumed, start, res.returncode) == (rid, True, 5, 0)
    fresh, resumed, start, _ = _auto(store, a, "finish")     # clean finish cleared the pointer
    assert fresh != rid and not resumed and start == 0
    assert steps_of(store, f"p/{rid}") == list(range(10))


def test_auto_resume_passes_over_a_live_run(store, tmp_path):
    holder = script(AUTO, str(store), "hold", cwd=tmp_path)
    rid = holder.stdout.readline().split()[0].decode()
    try:
        wait_for(lambda: localtrack.Api(store).run(f"p/{rid}").last_step == 4, what="5 steps")
        other, resumed, start, res = _auto(store, tmp_path, "finish")  # a new run, no error
        assert (resumed, start, res.returncode, res.stderr) == (False, 0, 0, "") and other != rid
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    again, resumed, start, res = _auto(store, tmp_path, "finish")  # its writer is dead now
    assert (again, resumed, start, res.returncode) == (rid, True, 5, 0)


ENDINGS = """
import os, sys, signal, time, localtrack
how = sys.argv[2]
if how == "user-handler":
    def handler(signum, frame):
        print("user handler ran", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, handler)
run = localtrack.init(project="p", id=how, dir=sys.argv[1])
for i in range(4):
    run.log({"x": i})
print("ready", flush=True)
if how == "exception":
    raise RuntimeError("boom")
if how == "sys-exit":
    sys.exit(3)
if how in ("sigterm", "user-handler", "sigint"):
    time.sleep(60)
"""

CHECKPOINT = """
import signal, sys, time, localtrack
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))   # SLURM's early warning
run = localtrack.init(project="p", id="usr1", dir=sys.argv[1])
run.log({"x": 0})
print("ready", flush=True)
while not got:
    time.sleep(0.01)
run.log({"x": 1})            # checkpoint and log after the signal, then exit 0
sys.exit(0)
"""


def test_signal_then_clean_exit_stays_preempted(store):
    proc = script(CHECKPOINT, str(store))
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    stored = localtrack.Api(store).run("p/usr1")
    assert stored.state == "preempted"
    assert stored.events[-1]["signal"] == "SIGUSR1"
    assert stored.history_table(["x"]).column("x").to_pylist() == [0, 1]


@pytest.mark.parametrize("how,signum,code,state,exit_code", [
    pytest.param("normal", None, 0, "finished", 0, id="normal-exit"),
    pytest.param("exception", None, 1, "failed", 1, id="uncaught-exception"),
    pytest.param("sys-exit", None, 3, "failed", 3, id="sys-exit-3"),
    pytest.param("sigterm", signal.SIGTERM, -signal.SIGTERM, "preempted", None, id="sigterm"),
    pytest.param("user-handler", signal.SIGTERM, 3, "preempted", None, id="sigterm-chained"),
    # an uncaught KeyboardInterrupt exits with 1 or, since 3.8 when it reaches the top, by SIGINT
    pytest.param("sigint", signal.SIGINT, (1, -signal.SIGINT), "preempted", None, id="sigint"),
])
def test_how_a_process_ends_is_recorded(store, how, signum, code, state, exit_code):
    proc = script(ENDINGS, str(store), how)
    assert proc.stdout.readline() == b"ready\n"
    if signum:
        proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (code if isinstance(code, tuple) else (code,)), err.decode()
    if how == "user-handler":
        assert b"user handler ran" in out
    stored = localtrack.Api(store).run(f"p/{how}")
    assert stored.state == state
    last = stored.events[-1]
    assert last["event"] == ("finished" if exit_code is not None else "preempted")
    if exit_code is not None:
        assert last["exit_code"] == exit_code
    assert stored.history_table().num_rows == 4
    run = localtrack.init(project="p", id=how, resume="must", dir=store)
    assert run.step == 4
    run.finish()


def _traced_fsyncs(store, tmp_path, code: str) -> tuple[str, list[tuple[str, str]]]:
    """Run ``code`` under strace -f: (the writer's pid, [(pid, file name)] of every fsync)."""
    import subprocess
    import sys
    trace = tmp_path / "trace"
    res = subprocess.run(["strace", "-f", "-y", "-e", "trace=fsync,fdatasync", "-o", str(trace),
                          sys.executable, "-c", "import os; print(os.getpid(), flush=True)\n" + code,
                          str(store)], check=True, timeout=60, capture_output=True, text=True)
    lines = trace.read_text().splitlines()
    # -y names each descriptor: "fsync(5</.../wal/00000003.jsonl>)", also in "<unfinished ...>"
    found = [re.match(r"(\d+)\s+f(?:data)?sync\(\d+<([^>]*)>", line) for line in lines]  # pids padded
    return res.stdout.split()[0], [(m[1], m[2]) for m in found if m]


ROTATING_WRITER = """
import os, sys, localtrack
os.environ["LOCALTRACK_ROTATE_BYTES"] = "2000"  # rotate every few records: rotation keeps the policy too
os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "{seal_min}"
run = localtrack.init(project="p", id="f", dir=sys.argv[1], fsync={policy!r})
for i in range(600):
    run.log({{"x": i, "pad": "x" * 40}})  # ~60 bytes a row: a window fills every ~70 rows
"""


@pytest.mark.skipif(not os.path.exists("/usr/bin/strace"), reason="needs strace")
@pytest.mark.parametrize("policy,min_syncs,max_syncs", [
    ("always", 600, 10_000), ("never", 0, 0), ("periodic", 0, 5)])
def test_fsync_policy_at_the_syscall_level(store, tmp_path, policy, min_syncs, max_syncs):
    """The writer's fsyncs of its logs, rotation included (sealer children are not counted)."""
    code = (ROTATING_WRITER.format(policy=policy, seal_min=1 << 20)
            + "os._exit(0)  # only the policy's fsyncs")
    writer, fsyncs = _traced_fsyncs(store, tmp_path, code)
    syncs = sum(1 for pid, name in fsyncs if pid == writer and re.search(r"/wal/\d+\.jsonl$", name))
    rdir = store / "p" / "runs" / "f"
    assert len(list((rdir / "wal").iterdir()) + list((rdir / "segments").glob("*.parquet"))) > 3
    assert min_syncs <= syncs <= max_syncs, syncs


@pytest.mark.skipif(not os.path.exists("/usr/bin/strace"), reason="needs strace")
def test_finish_leaves_its_fsyncs_to_the_sealer_logs_first(store, tmp_path):
    """finish() under the periodic policy neither fsyncs the logs nor the finished event when it
    starts a sealer: the sealer does, the logs before the events (durable event, durable history)."""
    code = ROTATING_WRITER.format(policy="periodic", seal_min=100) + "run.finish()\n"
    writer, fsyncs = _traced_fsyncs(store, tmp_path, code)
    assert localtrack.Api(store).run("p/f").state == "finished"
    assert steps_of(store, "p/f") == list(range(600))
    mine = [name for pid, name in fsyncs if pid == writer]
    assert sum(name.endswith("/events.jsonl") for name in mine) == 1  # the "started" event
    assert not [name for name in mine if name.endswith(".jsonl") and "/wal/" in name]
    last_sealer = [pid for pid, name in fsyncs if name.endswith("/events.jsonl") and pid != writer]
    assert last_sealer, fsyncs
    theirs = [name for pid, name in fsyncs if pid == last_sealer[-1]]
    events_at = max(i for i, name in enumerate(theirs) if name.endswith("/events.jsonl"))
    assert any("/wal/" in name for name in theirs[:events_at])


FORKER = """
import json, os, sys, localtrack
run = localtrack.init(project="p", id="fork", dir=sys.argv[1])
for i in range(100):
    run.log({"x": i})
pid = os.fork()
if pid == 0:   # the child: its runs are disowned; a normal exit must not finish the parent's
    try:
        run.log({"x": -1})
        print("child logged", flush=True)
    except localtrack.errors.UsageError as exc:
        print("child refused:", "forked" in str(exc), flush=True)
    try:
        run.config["lr"] = 1
    except localtrack.errors.UsageError:
        print("child config refused", flush=True)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
for i in range(100, 20_000):   # past the first mapped window: a cut file would SIGBUS here
    run.log({"x": i, "pad": "y" * 50})
run.finish()
print(json.dumps({"child_status": status}), flush=True)
"""


def test_a_forked_child_that_exits_does_not_touch_the_run(store):
    res = run_script(FORKER, str(store))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "child refused: True" in lines and "child config refused" in lines
    assert "child logged" not in lines
    assert json.loads(lines[-1]) == {"child_status": 0}
    stored = localtrack.Api(store).run("p/fork")
    assert stored.state == "finished"
    assert [e["event"] for e in stored.events] == ["started", "finished"]
    assert stored.history_table(["x"]).column("x").to_pylist() == list(range(20_000))
    assert "lr" not in stored.config
