"""The mapped history log and the sealer child process: a writer never imports pyarrow, a killed
writer leaves only padding, sealing survives its writer, and opening a run waits for a sealer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import warnings
from pathlib import Path

import pytest

import localtrack
from localtrack import _doctor, _fsutil, _logfile, _sealer, _wal

from .helpers import run_script, script, steps_of, wait_for

ROTATING_WRITER = """
import json, os, sys, localtrack
os.environ["LOCALTRACK_ROTATE_BYTES"] = "50000"  # rotate often
os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0"  # and have the finished tail sealed
run = localtrack.init(project="p", id="r", dir=sys.argv[1])
for i in range(5000):
    run.log({"loss": 1.0 / (i + 1), "acc": i / 5000})
run.finish()
print(json.dumps({"pyarrow": "pyarrow" in sys.modules, "step": run.step}))
"""


def _rdir(store: Path) -> Path:
    return store / "p" / "runs" / "r"


def _hold_seal_lock(store: Path) -> subprocess.Popen:
    """Another process holding run p/r's seal lock, as a sealer at work does, until its stdin
    gets a line or is closed (communicate() closes it)."""
    holder = script("""
        import os, select, sys
        from localtrack import _locks
        fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
        assert _locks.try_flock(fd)
        print("held", flush=True)
        select.select([sys.stdin], [], [])
    """, str(_rdir(store) / _sealer.SEAL_LOCK), stdin=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"held"
    return holder


def test_writer_never_imports_pyarrow_and_the_sealer_seals_everything(store):
    res = run_script(ROTATING_WRITER, str(store))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out == {"pyarrow": False, "step": 5000}
    _sealer.wait_idle(_rdir(store))
    manifest = json.loads((_rdir(store) / "manifest.json").read_text())
    assert len(manifest["segments"]) >= 3
    assert manifest["last_step"] == 4999  # the finished tail was sealed too
    assert not list((_rdir(store) / "wal").glob("*.jsonl"))
    assert steps_of(store, "p/r") == list(range(5000))
    summary = localtrack.Api(store).run("p/r").summary
    assert summary["loss"] == 1.0 / 5000


def test_a_killed_writer_leaves_only_padding_which_a_resume_cuts_silently(store):
    proc = script("""
        import sys, localtrack
        run = localtrack.init(project="p", id="r", dir=sys.argv[1])
        for i in range(300):
            run.log({"x": i})
        print("ready", flush=True)
        sys.stdin.readline()
    """, str(store), stdin=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    wal = next((_rdir(store) / "wal").glob("*.jsonl"))
    data = wal.read_bytes()
    assert data.endswith(b"\0" * 1000) and len(data) % 4096 == 0  # the reserved window
    assert steps_of(store, "p/r") == list(range(300))
    assert localtrack.Api(store).run("p/r").state == "crashed"
    assert _doctor.check_run(store, "p", "r") == []  # padding is no damage
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # padding is no torn tail: no warning
        run = localtrack.init(project="p", id="r", resume="must", dir=store)
    assert run.starting_step == 300
    assert not list(wal.parent.glob("*.broken"))
    assert wal.stat().st_size == len(data.rstrip(b"\0"))
    run.log({"x": 300})
    run.finish()
    assert steps_of(store, "p/r") == list(range(301))


def test_a_killed_writer_does_not_stop_its_sealer(store):
    proc = script(ROTATING_WRITER.replace("run.finish()", "import os; os.kill(os.getpid(), 9)"),
                  str(store))
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    _sealer.wait_idle(_rdir(store))
    manifest = json.loads((_rdir(store) / "manifest.json").read_text())
    assert manifest["segments"]  # sealed after its writer died
    assert steps_of(store, "p/r") == list(range(5000))
    run = localtrack.init(project="p", id="r", resume="must", dir=store)
    assert run.starting_step == 5000
    run.finish()


def _release_soon(holder: subprocess.Popen) -> tuple[threading.Event, threading.Timer]:
    """Let the seal-lock holder go in 0.5 s from another thread; the event is set before the
    holder is told, so a caller that returns with it unset did not wait for the lock."""
    released = threading.Event()

    def release() -> None:
        released.set()
        assert holder.stdin is not None
        holder.stdin.write(b"go\n")
        holder.stdin.flush()

    timer = threading.Timer(0.5, release)
    timer.start()
    return released, timer


def test_opening_a_run_waits_for_a_sealer_at_work(store):
    run = localtrack.init(project="p", id="r", dir=store)
    run.log({"x": 1})
    run.finish()
    holder = _hold_seal_lock(store)
    released, timer = _release_soon(holder)
    again = localtrack.init(project="p", id="r", resume="must", dir=store)
    waited = released.is_set()
    timer.join()
    holder.communicate(timeout=30)
    assert waited, "init() returned while a sealer held seal.lock"
    assert again.starting_step == 1
    again.finish()


def test_doctor_waits_for_a_sealer_at_work(store):
    run = localtrack.init(project="p", id="r", dir=store)
    run.log({"x": 1})
    run.finish()
    holder = _hold_seal_lock(store)
    released, timer = _release_soon(holder)
    assert _doctor.check_run(store, "p", "r", fix=True) == []
    waited = released.is_set()
    timer.join()
    holder.communicate(timeout=30)
    assert waited, "doctor --fix went ahead while a sealer held seal.lock"


def test_history_is_written_with_write_where_mapping_is_unsafe(store, monkeypatch):
    monkeypatch.setattr(_fsutil, "mount_type", lambda path: "nfs4")
    run = localtrack.init(project="p", id="r", dir=store)
    assert isinstance(run._log.file, _logfile.Appender)
    for i in range(100):
        run.log({"x": i})
    wal = next((_rdir(store) / "wal").glob("*.jsonl"))
    assert not wal.read_bytes().endswith(b"\0")  # no padding while it is written
    run.finish()
    assert steps_of(store, "p/r") == list(range(100))


def test_a_live_run_is_readable_while_it_is_written(store):
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(50):
        run.log({"x": i})
    assert steps_of(store, "p/r") == list(range(50))  # the reader stops at the padding
    assert localtrack.Api(store).run("p/r").last_step == 49
    assert run.summary["x"] == 49
    run.log({"x": 50, "y": "s"})
    assert run.summary["x"] == 50 and run.summary["y"] == "s"  # read incrementally
    run.finish()
    assert os.path.getsize(next((_rdir(store) / "wal").glob("*.jsonl"))) > 0


@pytest.mark.parametrize("policy", ["always", "periodic", "never"])
def test_every_fsync_policy_keeps_the_data(store, monkeypatch, policy):
    monkeypatch.setenv("LOCALTRACK_FSYNC", policy)
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(20):
        run.log({"x": i})
    run.finish()
    assert steps_of(store, "p/r") == list(range(20))
    wait_for(lambda: not (_rdir(store) / _sealer.AGAIN).exists(), what="no sealing pending")


def test_sync_clean_leaves_a_run_whose_sealer_is_at_work(store, tmp_path):
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(10):
        run.log({"x": i})
    run.finish()
    remote = tmp_path / "remote"
    assert localtrack.sync(str(remote), dir=store).ok
    holder = _hold_seal_lock(store)
    assert localtrack.sync(str(remote), dir=store, clean=True).cleaned == []
    assert _rdir(store).exists()
    holder.communicate(b"\n", timeout=30)  # the "sealer" is done
    assert localtrack.sync(str(remote), dir=store, clean=True).cleaned == ["p/r"]
    assert not _rdir(store).exists()


def test_a_finished_tail_keeps_its_padding_for_the_sealer_to_remove(store, monkeypatch):
    """finish() leaves the padding of a tail that its sealer will seal (on ext4 the cut waited
    for the file's writeback whenever a journal commit was under way: finish took 20-40 ms);
    readers and a resume ignore it silently, and the sealer seals the padded log."""
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "500")
    run = localtrack.init(project="p", id="r", dir=store)
    holder = _hold_seal_lock(store)  # no sealer starts yet: look at what finish() left
    for i in range(100):
        run.log({"x": i})
    run.finish()
    wal = next((_rdir(store) / "wal").glob("*.jsonl"))
    assert wal.stat().st_size > _wal.data_size(wal) > 500
    assert steps_of(store, "p/r") == list(range(100))
    holder.communicate(b"\n", timeout=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the padding is no torn tail
        run = localtrack.init(project="p", id="r", resume="must", dir=store)
    assert run.step == 100
    run.log({"x": 100})
    run.finish()  # the sealer it starts seals the padded log, and removes it
    wait_for(lambda: not wal.exists(), what="the sealer removed the log")
    assert steps_of(store, "p/r") == list(range(101))
    assert list((_rdir(store) / "segments").glob("*.parquet"))


@pytest.mark.parametrize("torn", [
    b'{"x":10,"_st' + b"\0" * 500,  # cut short, then the window's padding
    b'{"x":10,"_step":10,"_timest' + b"\0" * 30 + b'"_crc":7}\n' + b"\0" * 500,  # stored out of order
])
def test_the_sealer_leaves_a_killed_writers_torn_log_to_the_next_writer(store, torn):
    """The kill loop found this: a sealer still running after its writer was SIGKILLed mid-append
    took the newest log for closed and failed on its torn record. memcpy may store a line's
    end (its newline) before its middle: a line with NULs is torn too."""
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(10):
        run.log({"x": i})
    run.finish()
    wal = next((_rdir(store) / "wal").glob("*.jsonl"))
    with open(wal, "ab") as fh:
        fh.write(torn)
    _sealer.seal_closed(_rdir(store), 0)  # the run is not held: only the torn log is left
    assert wal.exists() and not (_rdir(store) / "segments").exists()
    with pytest.warns(RuntimeWarning, match="torn tail"):
        again = localtrack.init(project="p", id="r", resume="must", dir=store)
    assert again.starting_step == 10
    again.finish()
    _sealer.seal_closed(_rdir(store), 0)  # closed by its writer now: sealed
    assert steps_of(store, "p/r") == list(range(10))
    assert not list((_rdir(store) / "wal").glob("*.jsonl"))


def test_readers_see_every_step_while_a_sealer_works_through_a_backlog(store, monkeypatch):
    """A finished run with dozens of closed logs: while its sealer seals and deletes them one by one,
    every read of the history, the summary and the last step sees all of it. (Reading the
    manifest before the listing missed the last logs once the sealer deleted them; with a
    backlog, each read lost its first log to the sealer and gave up after 50 tries.)"""
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "4000")
    monkeypatch.setattr(_sealer, "request", lambda *a, **k: None)  # a backlog builds up
    run = localtrack.init(project="p", id="b", dir=store)
    for i in range(3000):
        run.log({"x": float(i), "pad": "z" * 40})
    run.finish()
    rdir = store / "p" / "runs" / "b"
    assert len(list((rdir / "wal").glob("*.jsonl"))) > 40
    monkeypatch.undo()
    _sealer.request(rdir, 0)  # a real sealer process, while we read
    api = localtrack.Api(store)
    reads = 0
    while reads == 0 or list((rdir / "wal").glob("*.jsonl")):
        stored = api.run("p/b")
        assert stored.history_table(["x"]).column("_step").to_pylist() == list(range(3000))
        assert stored.last_step == 2999 and stored.summary["x"] == 2999.0
        reads += 1
    assert reads > 1
