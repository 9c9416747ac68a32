"""Whether a run's writer is alive comes from its flock, not from a pid this process can see;
init() on a full disk or in a directory whose name is not UTF-8."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import localtrack
from localtrack import _layout, _locks, _naming
from localtrack._codec import dumps
from localtrack._sweeps._queue import SweepStore

from .helpers import run_script, script, wait_for
from .test_processes import AUTO  # the auto-resuming script (crash / hold / finish)

WRITER = """
import sys, localtrack
run = localtrack.init(project="p", id=sys.argv[2], dir=sys.argv[1])
run.log({"x": 1.0})
print("ready", flush=True)
sys.stdin.readline()
run.finish()
"""

SWEEP = {"method": "grid", "parameters": {"lr": {"values": [0.1, 0.2, 0.3]}}}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LOCALTRACK_")}


def _can(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0


def _pid_not_here() -> int:
    """A pid no process of this pid namespace has: what a writer in another namespace can have."""
    return next(pid for pid in range(4_000_000, 1, -1) if not os.path.exists(f"/proc/{pid}"))


class _Observers:
    """Everything that asks whether run ``rid`` is being written: the read API, the lock, sync
    and the sweep queue (a job whose agent is gone is reaped only once its run is dead)."""

    def __init__(self, store: Path, tmp_path: Path) -> None:
        self.store, self.remote = store, tmp_path / "remote"
        sweep_id = localtrack.sweep(SWEEP, project="p", dir=str(store))
        self.sweep = SweepStore(store, _naming.project_name("p"), sweep_id)
        claimed = self.sweep.claim("agent-that-is-gone")  # it never writes a heartbeat
        assert claimed is not None
        self.rid = claimed[0]
        self.lock = _layout.lock_path(store, _naming.project_name("p"), _naming.run_id(self.rid))

    def states(self) -> tuple[str, bool, str, str]:
        self.sweep.claim("another-agent")  # reaps the jobs of dead agents with dead runs first
        localtrack.sync(str(self.remote), dir=str(self.store))
        return (localtrack.Api(self.store).run(f"p/{self.rid}").state, _locks.is_held(self.lock),
                self.sweep.read_state()["jobs"][self.rid]["status"],
                localtrack.Api(str(self.remote)).run(f"p/{self.rid}").state)


def test_a_writer_whose_pid_is_not_in_this_namespace_is_alive(store, tmp_path):
    """The owner record names a pid this process cannot see (as a writer in another container
    sharing the store would): the flock still says the run is live; SIGKILL makes it dead."""
    obs = _Observers(store, tmp_path)
    writer = script(WRITER, str(store), obs.rid, stdin=subprocess.PIPE)
    try:
        assert writer.stdout.readline() == b"ready\n", writer.stderr.read()
        record = _locks.read_holder(obs.lock)
        assert record["pid"] == writer.pid
        obs.lock.write_bytes(dumps({**record, "pid": _pid_not_here()}))
        assert obs.states() == ("running", True, "running", "running")
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=30)
    assert obs.states() == ("crashed", False, "crashed", "crashed")


@pytest.mark.skipif(not _can("unshare", "-Urp", "--fork", "--mount-proc", "--kill-child", "true"),
                    reason="unprivileged user and pid namespaces are not allowed here")
def test_a_writer_in_another_pid_namespace_is_alive(store, tmp_path):
    """A real second pid namespace on this host: the writer is pid 1 there."""
    obs = _Observers(store, tmp_path)
    writer = subprocess.Popen(
        ["unshare", "-Urp", "--fork", "--mount-proc", "--kill-child", sys.executable, "-c",
         textwrap.dedent(WRITER), str(store), obs.rid],
        env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert writer.stdout.readline() == b"ready\n", writer.stderr.read()
        record = _locks.read_holder(obs.lock)
        assert record["pid"] == 1 and record["pid_ns"] != _locks._pid_ns()
        assert obs.states() == ("running", True, "running", "running")
    finally:
        writer.send_signal(signal.SIGKILL)  # --kill-child: the writer gets SIGKILL too
        writer.communicate(timeout=30)
    wait_for(lambda: not _locks.is_held(obs.lock), what="the killed writer's lock to drop")
    assert obs.states() == ("crashed", False, "crashed", "crashed")


FULL_DISK = """
import os, sys, localtrack
from localtrack.errors import StorageError
d = sys.argv[1]
fd = os.open(os.path.join(d, "fill"), os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 4096)
except OSError as exc:
    assert exc.errno == 28, exc
os.close(fd)
try:
    localtrack.init(project="p", id="r1", dir=d)
except StorageError as exc:
    print(exc, flush=True)
os.unlink(os.path.join(d, "fill"))
run = localtrack.init(project="p", id="r1", dir=d)  # space again, and the lock was let go
run.log({"x": 1.0})
run.finish()
print("resumed after the full disk", flush=True)
"""


@pytest.mark.skipif(not _can("unshare", "-Urm", "true"),
                    reason="unprivileged user and mount namespaces are not allowed here")
def test_full_disk_during_init_is_a_storage_error_naming_the_lock(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    res = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0" && exec "$@"',
         str(mnt), sys.executable, "-c", textwrap.dedent(FULL_DISK), str(mnt)],
        env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.splitlines()
    assert "Could not" in first and f"{mnt}/p/locks/r1.lock" in first and "'r1'" in first
    assert "The disk is full" in first
    assert second == "resumed after the full disk"




def test_auto_resume_in_a_directory_whose_name_is_not_utf8(store, tmp_path):
    weird = os.path.join(os.fsencode(tmp_path), b"\xff\xfe")
    os.mkdir(weird)
    cwd = Path(os.fsdecode(weird))
    crashed = run_script(AUTO, str(store), "crash", cwd=cwd)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rid, resumed, start = crashed.stdout.split()
    assert (resumed, start) == ("False", "0")
    again = run_script(AUTO, str(store), "finish", cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == [rid, "True", "5"]
    stored = localtrack.Api(store).run(f"p/{rid}")
    assert stored.state == "finished" and stored.meta["cwd"].endswith("/\\xff\\xfe")


def test_a_refused_writer_leaves_the_holders_owner_record(store):
    """A second init() of a run another process writes is refused, and the owner record stays:
    the next refusal, sync's view of the run and the read API still name the live writer.
    (A refused acquire once truncated the record: the writer then looked gone to sync.)"""
    holder = subprocess.Popen([sys.executable, "-c", WRITER, str(store), "r"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        lock = _layout.lock_path(store, _naming.project_name("p"), _naming.run_id("r"))
        for _ in range(2):
            with pytest.raises(localtrack.errors.RunLockedError, match=f"pid {holder.pid}"):
                localtrack.init(project="p", id="r", resume="allow", dir=str(store))
            assert _locks.read_holder(lock)["pid"] == holder.pid
        assert localtrack.Api(store).run("p/r").state == "running"
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0
    assert localtrack.Api(store).run("p/r").state == "finished"
