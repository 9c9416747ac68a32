"""Preemption signals at random instants, and handlers that call the writer re-entrantly.

A Python signal handler runs between any two bytecodes of the main thread: inside init(),
log() (plain, framed, explicit step, commit=False), rotation, config and summary writes and
finish(), and inside the first signal's own handler when a second one follows. Whatever the
instant, the run must read back contiguous, keep every acknowledged step, resume at last
step + 1, end "preempted", and the process must exit promptly.

SIGNAL_TRIALS sets the loop's length (default 60; docs/reliability.md has soak figures).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

import localtrack

from .helpers import run_script, script

WRITER = """
import os, random, sys, localtrack
os.environ["LOCALTRACK_ROTATE_BYTES"] = "20000"  # rotate often, so signals land inside rotation
os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "2000"
rng = random.Random(int(sys.argv[2]))
style = sys.argv[3]
print("init", flush=True)
run = localtrack.init(project="p", id="t", resume="allow", dir=sys.argv[1])
print("start", run.step, flush=True)
steps = rng.randint(0, 300) if rng.random() < 0.2 else 10**6  # some end before the signal
for i in range(steps):
    s = run.starting_step + i
    row = {"x": float(s), "pad": "z" * rng.choice((0, 10, 300))}
    if style == "explicit":          # Lightning/HF style: every row framed
        run.log(row, step=s)
        run.log({"y": 1.0}, step=s)  # the same step again: merged into it on read
    elif style == "partial":
        run.log({"partial": s}, commit=False)
        run.log(row)
    else:
        run.log(row)
    if rng.random() < 0.02:
        run.config.update({"i": i})
    if rng.random() < 0.02:
        run.summary["best"] = s
    print(s, flush=True)            # step s is acknowledged: log() returned
print("finishing", flush=True)
run.finish()
print("finished", flush=True)
"""

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)


def _events_of(store, pid: int, since: float) -> list[dict]:
    """The events this trial's process wrote (pids wrap around in a long soak)."""
    from localtrack import _store

    return [e for e in _store.events(store / "p" / "runs" / "t")
            if e.get("pid") == pid and e.get("time", 0) >= since]


def _exit_of(proc: subprocess.Popen, what: str) -> tuple[bytes, bytes]:
    """The output of ``proc`` once it exits; fails naming ``what`` when it has not within 30 s.
    A deadlocked handler never exits; the bound is generous because a loaded machine (a CI
    beside soaks) can take seconds to schedule the process."""
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"{what}: no exit within 30 s after the signal\n{err.decode()}")


def test_signal_loop(store):
    trials = int(os.environ.get("SIGNAL_TRIALS", "60"))
    rng = random.Random(20261130)
    on_disk, preempted, deaths = 0, 0, {}
    for k in range(trials):
        signum = SIGNALS[k % len(SIGNALS)]
        style = ("explicit", "plain", "partial")[k % 3]
        since = time.time()
        proc = script(WRITER, str(store), str(k), style)
        assert proc.stdout.readline() == b"init\n"
        if rng.random() < 0.15:
            time.sleep(rng.uniform(0.0, 0.02))  # often inside init()
        else:
            proc.stdout.readline()  # start
            time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signum)
        if k % 4 == 3:  # twice, as SLURM and a sweep agent forwarding it do, or Ctrl-C twice
            time.sleep(rng.uniform(0.0, 0.03))
            proc.send_signal(signum)
        out, err = _exit_of(proc, f"trial {k} ({style}, {signum.name})")
        words = out.decode().split()
        acked = [int(w) for w in words if w.isdigit()]
        assert b"Traceback" not in err or b"KeyboardInterrupt" in err, err.decode()
        deaths[proc.returncode] = deaths.get(proc.returncode, 0) + 1
        if not (store / "p" / "runs" / "t").exists():
            continue  # the signal came before the first init() created the run
        table = localtrack.Api(store).run("p/t").history_table(["x"])
        steps = table.column("_step").to_pylist()
        assert steps == list(range(len(steps))), f"trial {k}: gap or duplicate"
        if acked:
            assert acked[-1] < len(steps), f"trial {k}: acknowledged step {acked[-1]} lost"
        on_disk = len(steps)
        events = _events_of(store, proc.pid, since)
        ends = [e["event"] for e in events if e["event"] in ("finished", "preempted")]
        if events:  # the run was opened by this process: it ends preempted (or finished first)
            assert ends, f"trial {k} ({style}, {signum.name}): no end recorded: {events}"
            assert ends[-1] == "preempted" or "finishing" in words, (k, ends)
            preempted += ends[-1] == "preempted"
            assert localtrack.Api(store).run("p/t").state in ("preempted", "finished")
    # Resumable at last step + 1, and the run keeps going.
    with localtrack.init(project="p", id="t", resume="must", dir=store) as run:
        assert run.step == on_disk
        run.log({"x": float(run.step)})
    print(f"\nsignal loop: {trials} signals, {preempted} runs ended preempted, exit codes {deaths}, "
          f"{on_disk} steps on disk")
    assert preempted >= trials // 2, (preempted, deaths)


HANDLER = """
import os, signal, sys, localtrack
os.environ["LOCALTRACK_ROTATE_BYTES"] = "20000"
run = localtrack.init(project="p", id="h", resume="allow", dir=sys.argv[1])
chain = sys.argv[2] == "chain"
ours = signal.getsignal(signal.SIGTERM)

def handler(signum, frame):             # as a framework's: log, then finish, then go on or exit
    run.log({"handler": 1.0})
    if chain:
        ours(signum, frame)             # Lightning composes the handler it found
    run.finish()
    sys.exit(3)

signal.signal(signal.SIGTERM, handler)
print("start", run.step, flush=True)
for i in range(100_000):
    run.log({"x": float(run.step), "pad": "z" * (i % 200)}, step=run.step)
    print(run.step - 1, flush=True)
"""


@pytest.mark.parametrize("chain", ["chain", "replace"])
def test_a_user_handler_that_logs_and_finishes_from_inside_log(store, chain):
    rng = random.Random(7)
    for k in range(12):
        proc = script(HANDLER, str(store), chain)
        proc.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)  # generous: a loaded machine is slow
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"trial {k}: a handler calling log()/finish() deadlocked")
        acked = [int(w) for w in out.decode().split() if w.isdigit()]
        run = localtrack.Api(store).run("p/h")
        table = run.history_table(["x", "handler"])
        steps = table.column("_step").to_pylist()
        assert steps == list(range(len(steps))), f"trial {k}: gap or duplicate"
        assert not acked or acked[-1] < len(steps)
        assert 1.0 in table.column("handler").to_pylist()  # the handler's row was written
        if chain == "chain":  # our handler saw the signal: preempted, whatever exit follows
            assert proc.returncode == -signal.SIGTERM, err.decode()
            assert run.state == "preempted", err.decode()
        else:  # replaced without chaining: localtrack never saw a signal, and the handler
            assert proc.returncode == 3, err.decode()  # finished the run itself
            assert run.state == "finished", err.decode()


def test_a_signal_the_process_ignores_stays_ignored(store):
    """Under nohup SIGHUP is ignored: a hang-up is no preemption, the run goes on."""
    proc = script("""
        import signal, sys, localtrack
        signal.signal(signal.SIGHUP, signal.SIG_IGN)   # as nohup leaves it
        run = localtrack.init(project="p", id="n", dir=sys.argv[1])
        run.log({"x": 1.0})
        print("logged", flush=True)
        sys.stdin.readline()                           # the hang-up comes here
        run.log({"x": 2.0})
        run.finish()
        """, str(store), stdin=subprocess.PIPE)
    assert proc.stdout.readline() == b"logged\n"
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(b"go\n", timeout=60)
    assert proc.returncode == 0, err.decode()
    run = localtrack.Api(store).run("p/n")
    assert run.state == "finished" and run.history_table(["x"]).column("x").to_pylist() == [1.0, 2.0]


def test_a_signal_during_init_is_acted_on_when_init_returns(store):
    """The handler defers while init() runs: the run exists, ends preempted, process dies."""
    res = run_script("""
        import os, signal, sys, localtrack
        from localtrack import _run, _stream
        real = _run.Run.__init__
        def slow_init(self, *a, **kw):       # the signal lands in the middle of opening the run
            os.kill(os.getpid(), signal.SIGTERM)
            real(self, *a, **kw)
        _run.Run.__init__ = slow_init
        run = localtrack.init(project="p", id="i", dir=sys.argv[1])
        print("not reached")
        """, str(store))
    assert res.returncode == -signal.SIGTERM, res.stderr
    assert "not reached" not in res.stdout
    run = localtrack.Api(store).run("p/i")
    assert run.state == "preempted"


def test_a_signal_during_finish_ends_the_run_preempted(store):
    res = run_script("""
        import os, signal, sys, localtrack
        from localtrack import _run, _stream
        run = localtrack.init(project="p", id="f", dir=sys.argv[1])
        run.log({"x": 1.0})
        real = run._log._close_frame
        def close_frame():                   # the signal lands inside finish(), before its event
            os.kill(os.getpid(), signal.SIGTERM)
            real()
        run._log._close_frame = close_frame
        run.finish()
        print("not reached")
        """, str(store))
    assert res.returncode == -signal.SIGTERM, res.stderr
    run = localtrack.Api(store).run("p/f")
    assert run.state == "preempted"
    assert run.history_table(["x"]).column("x").to_pylist() == [1.0]


# A signal whose handler lands inside a call that holds a lock of its own. The first SIGTERM's
# handler finishes the run (then dies by it); run inside such a call, that finish() took the
# lock the interrupted call held and hung for good (seen in CI: under SLURM a program gets
# SIGTERM from the scheduler and again from its sweep agent; Ctrl-C twice does the same).
SECOND_SIGNAL = {
    "second-inside-finish": """
        class Wake(threading.Event):   # the saver's wake-up, set by finish(): a second SIGTERM
            def set(self):             # lands while its lock is held
                with self._cond:
                    os.kill(os.getpid(), signal.SIGTERM)
                    self._flag = True
                    self._cond.notify_all()
        run._saver._wake = Wake()
        os.kill(os.getpid(), signal.SIGTERM)
        """,
    "inside-save": """
        class Copying:                 # save()'s copy lock: the SIGTERM lands while it is held
            def __init__(self):
                self.lock = threading.Lock()
            def __enter__(self):
                self.lock.acquire()
                if threading.current_thread() is threading.main_thread():
                    os.kill(os.getpid(), signal.SIGTERM)
            def __exit__(self, *exc):
                self.lock.release()
        run._saver._copying = Copying()
        open("ckpt.txt", "w").write("weights")
        run.save("ckpt.txt", policy="live")
        """,
    "inside-log_artifact": """
        from localtrack import _commits
        real = _commits.submit
        def submit(commit):            # lands as log_artifact() hands its version to the commit
            os.kill(os.getpid(), signal.SIGTERM)
            return real(commit)
        _commits.submit = submit
        open("ckpt.txt", "w").write("weights")
        run.log_artifact("ckpt.txt", name="model", type="model")
        """,
}


@pytest.mark.parametrize("case", sorted(SECOND_SIGNAL))
def test_a_signal_inside_a_call_that_holds_a_lock_is_acted_on_when_the_call_ends(
        store, tmp_path, case):
    """The handler's finish() waits for the interrupted call: the process dies by SIGTERM
    promptly, the run ends preempted with its steps, and what the call was storing is stored."""
    code = textwrap.dedent("""
        import os, signal, sys, threading, localtrack
        run = localtrack.init(project="p", id="d", dir=sys.argv[1])
        for i in range(10):
            run.log({"x": float(i)}, step=i)
        """) + textwrap.dedent(SECOND_SIGNAL[case]) + 'print("not reached", flush=True)\n'
    proc = script(code, str(store), cwd=tmp_path)
    out, err = _exit_of(proc, case)
    assert proc.returncode == -signal.SIGTERM, err.decode()
    assert b"not reached" not in out and b"Traceback" not in err, err.decode()
    run = localtrack.Api(store).run("p/d")
    assert run.state == "preempted"
    assert run.history_table(["x"]).column("_step").to_pylist() == list(range(10))
    if case == "inside-save":
        assert (store / "p" / "runs" / "d" / "files" / "ckpt.txt").read_text() == "weights"
    if case == "inside-log_artifact":
        art = localtrack.Api(store).artifact("p/model:latest")
        assert (Path(art.download(root=tmp_path / "out")) / "ckpt.txt").read_text() == "weights"
