"""Artifacts committed on a thread of their own (_commits): log_artifact returns once the files
are copied; wait(), reads, finish() and exit wait for the commit; a kill before it leaves no
version; a commit's error reaches the caller. A commit is held back deterministically by
holding the name's lock (a real flock) from the test, as another logging process would."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import localtrack
from localtrack import _artifacts, _locks
from localtrack._doctor import check_store
from localtrack.errors import ArtifactError, ArtifactNotFoundError

from .helpers import run_script, script

NAME = "ckpt"


def _ndir(store: Path, name: str = NAME) -> Path:
    return store / "p" / "artifacts" / "names" / name


@contextlib.contextmanager
def _held(store: Path, name: str = NAME) -> Iterator[None]:
    """The name's lock held by this test: a commit of that name waits behind it."""
    _ndir(store, name).mkdir(parents=True, exist_ok=True)
    with _locks.hold(_ndir(store, name) / "lock", 10):
        yield


def _stored_files(store: Path) -> list[Path]:
    return [p for p in (store / "p" / "artifacts" / "blobs").rglob("*") if p.is_file()]


def test_the_call_takes_the_bytes_and_the_commit_names_them_later(tmp_path: Path) -> None:
    """The file rewritten right after the call: the version holds the bytes it had at the call.
    Until the commit nothing is visible; wait() returns the stored version."""
    store, src = tmp_path / "store", tmp_path / "model.pt"
    first = os.urandom(3 << 20)
    src.write_bytes(first)
    run = localtrack.init(project="p", dir=store)
    with _held(store):
        art = run.log_artifact(localtrack.Artifact(NAME, "model").add_file(src), aliases=["best"])
        src.write_bytes(os.urandom(3 << 20))  # the next epoch's checkpoint, same path
        assert "being stored" in repr(art)
        assert _artifacts._versions(_ndir(store)) == []
        with pytest.raises(ArtifactError, match="still being stored"):
            art.wait(timeout=0.01)
    assert art.wait() is art
    assert (art.version, art.aliases) == ("v0", ["latest", "best"])
    out = Path(art.download(root=tmp_path / "out"))
    assert (out / "model.pt").read_bytes() == first
    with pytest.raises(ArtifactError, match="a logged version never changes"):
        art.add_file(src)
    run.finish()
    assert [p for p in _stored_files(store) if p.name.startswith(".tmp")] == []


def test_reads_in_the_same_process_wait_for_its_commits(tmp_path: Path) -> None:
    """use_artifact, Api and a second log_artifact of the name see the versions logged before
    them, in the order of the calls; the version's properties wait too."""
    store, src = tmp_path / "store", tmp_path / "w.bin"
    run = localtrack.init(project="p", dir=store)
    logged = []
    for i in range(3):
        src.write_bytes(os.urandom(1 << 20) + bytes([i]))
        logged.append(run.log_artifact(localtrack.Artifact(NAME, "model").add_file(src)))
    used = run.use_artifact(f"{NAME}:latest")
    assert used.version == "v2"
    assert [a.version for a in logged] == ["v0", "v1", "v2"]
    again = run.log_artifact(localtrack.Artifact(NAME, "model").add_file(src), aliases=["x"])
    assert localtrack.Api(store).artifact(f"p/{NAME}:x").version == "v2"  # nothing changed
    assert again.digest == logged[2].digest
    art = run.log_artifact(localtrack.Artifact("other", "dataset").add_file(src))
    assert [a.name for a in localtrack.Api(store).artifacts(project="p", type="dataset")] == ["other"]
    assert art.size == src.stat().st_size
    run.log_artifact(localtrack.Artifact("synced", "dataset").add_file(src))
    localtrack.sync(str(tmp_path / "remote"), dir=store)  # the version logged before goes up
    assert localtrack.Api(tmp_path / "remote").artifact("p/synced:latest").version == "v0"
    run.finish()


def _dataset_manifest(tmp_path: Path, src: Path) -> Path:
    """A store where NAME's v0 is of type 'dataset'."""
    other = tmp_path / "other"
    with localtrack.init(project="p", dir=other) as run:
        run.log_artifact(localtrack.Artifact(NAME, "dataset").add_file(src)).wait()
    return other


@pytest.mark.parametrize("told_by", ["wait", "finish"])
def test_a_commit_error_reaches_wait_or_finish_naming_artifact_and_run(
        tmp_path: Path, told_by: str) -> None:
    """Another process committed the name as another type while this commit waited for the
    lock: the commit fails; wait() raises it, or else finish() does, once the run is finished."""
    store, src = tmp_path / "store", tmp_path / "f.bin"
    src.write_bytes(os.urandom(1 << 20))
    other = _dataset_manifest(tmp_path, src)
    run = localtrack.init(project="p", dir=store)
    with _held(store):
        art = run.log_artifact(localtrack.Artifact(NAME, "model").add_file(src))
        shutil.copy(_ndir(other) / "v0.json", _ndir(store) / "v0.json")
    match = rf"'{NAME}' logged by run 'p/{run.id}' was not stored: .*type 'dataset'"
    if told_by == "wait":
        with pytest.raises(ArtifactError, match=match) as caught:
            art.wait()
        assert caught.value.run_id == run.id
        run.finish()  # told once
    else:
        with pytest.raises(ArtifactError, match=match):
            run.finish()
        assert run.state == "finished"
    with pytest.raises(ArtifactError, match="was not stored"):
        _ = art.version  # still not logged
    assert "not stored" in repr(art)
    assert localtrack.Api(store).artifact(f"p/{NAME}:latest").type == "dataset"
    with localtrack.init(project="p", dir=store) as again:  # the draft can be logged again
        art.type = "dataset"
        assert again.log_artifact(art).wait().version == "v0"  # the same bytes as v0


EXITS = """
import sys, localtrack
store, src = sys.argv[1], sys.argv[2]
run = localtrack.init(project="p", dir=store)
art = run.log_artifact(localtrack.Artifact("ckpt", "model").add_file(src))
print("returned", flush=True)
"""


def test_the_process_exit_waits_for_the_commit(tmp_path: Path) -> None:
    """A script that ends right after log_artifact (no wait, no finish) still stores it whole."""
    store, src = tmp_path / "store", tmp_path / "f.bin"
    data = os.urandom(8 << 20)
    src.write_bytes(data)
    res = run_script(EXITS, str(store), str(src), timeout=120)
    assert res.returncode == 0 and res.stdout == "returned\n", res.stderr
    art = localtrack.Api(store).artifact(f"p/{NAME}:latest")
    assert (Path(art.download(root=tmp_path / "out")) / "f.bin").read_bytes() == data


AT_EXIT = """
import atexit, sys, threading, localtrack
store, first, last = sys.argv[1], sys.argv[2], sys.argv[3]
run = localtrack.init(project="p", dir=store)
if first != "-":
    run.log_artifact(localtrack.Artifact("ckpt", "model").add_file(first, name="f.bin"))

def save_on_exit():
    run.log_artifact(localtrack.Artifact("ckpt", "model").add_file(last, name="f.bin"))
    print("threads:", sorted(t.name for t in threading.enumerate()), flush=True)

atexit.register(save_on_exit)
"""


@pytest.mark.parametrize("queued_before", [False, True], ids=["alone", "after-a-queued-one"])
def test_an_atexit_handler_s_artifact_is_committed_in_the_handler(
        tmp_path: Path, queued_before: bool) -> None:
    """A checkpoint saved by an atexit handler (after the main thread ended) is committed in the
    handler, after any queued before it: no thread is started then (Python 3.12+ refuses one),
    and no daemon thread is left to be stopped by finalization with the version unmade."""
    store, first, last = tmp_path / "store", tmp_path / "first.bin", tmp_path / "last.bin"
    first.write_bytes(os.urandom(4 << 20))
    last.write_bytes(os.urandom(4 << 20))
    res = run_script(AT_EXIT, str(store), str(first) if queued_before else "-", str(last),
                     timeout=120)
    assert res.returncode == 0, res.stderr
    assert ("localtrack-artifacts" in res.stdout) == queued_before, res.stdout
    api = localtrack.Api(store)
    versions = ["v0", "v1"] if queued_before else ["v0"]
    for version, src in zip(versions, [first, last][-len(versions):], strict=True):
        art = api.artifact(f"p/{NAME}:{version}")
        assert (Path(art.download(root=tmp_path / version)) / "f.bin").read_bytes() == \
            src.read_bytes()
    assert api.artifact(f"p/{NAME}:latest").version == versions[-1]
    assert api.run(f"p/{api.runs('p')[0].id}").state == "finished"


KILLED = """
import os, signal, sys, localtrack
store, src, when = sys.argv[1], sys.argv[2], sys.argv[3]
run = localtrack.init(project="p", dir=store)
run.log_artifact(localtrack.Artifact("ckpt", "model").add_file(src))
if when == "at-once":
    os.kill(os.getpid(), signal.SIGKILL)
print("returned", flush=True)
signal.pause()
"""


@pytest.mark.parametrize("when", ["at-once", "before-the-manifest"])
def test_sigkill_before_the_commit_leaves_no_version_and_collectable_blobs(
        tmp_path: Path, when: str) -> None:
    """Killed right after the call returns (the copy being hashed, or not yet), or with the
    blob named and the manifest still to come (held at the lock): no version, no alias, no
    damage; what is left is temp or unnamed blobs, collected once old; a new log works."""
    store, src = tmp_path / "store", tmp_path / "f.bin"
    src.write_bytes(os.urandom(16 << 20))
    with _held(store) if when == "before-the-manifest" else contextlib.nullcontext():
        proc = script(KILLED, str(store), str(src), when)
        assert proc.stdout is not None
        if when == "before-the-manifest":
            assert proc.stdout.readline() == b"returned\n"
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    if when == "at-once" and _artifacts._versions(_ndir(store)) == [0]:
        # The commit won the race with the kill (a loaded machine): then the version is whole.
        art = localtrack.Api(store).artifact(f"p/{NAME}:v0")
        assert (Path(art.download(root=tmp_path / "out")) / "f.bin").read_bytes() == src.read_bytes()
        return
    assert _artifacts._versions(_ndir(store)) == []
    assert not (_ndir(store) / "aliases").exists() or not list((_ndir(store) / "aliases").iterdir())
    with pytest.raises(ArtifactNotFoundError):
        localtrack.Api(store).artifact(f"p/{NAME}:latest")
    assert _stored_files(store)  # the copy (named or not) is there, for gc
    found = check_store(store, fix=True)
    assert not [f for f in found if "orphan" in f.problem and f.fixed], found  # young: kept
    old = os.path.getmtime(src) - _artifacts.GRACE_SECONDS - 60
    for path in _stored_files(store):
        os.utime(path, (old, old))
    found = check_store(store, fix=True)
    assert all(f.fixed for f in found if "orphan" in f.problem)
    assert _stored_files(store) == []
    with localtrack.init(project="p", dir=store) as run:
        assert run.log_artifact(localtrack.Artifact(NAME, "model").add_file(src)).version == "v0"


FORKS = """
import os, sys, time, localtrack
store, src = sys.argv[1], sys.argv[2]
run = localtrack.init(project="p", dir=store)
art = run.log_artifact(localtrack.Artifact("ckpt", "model").add_file(src))
pid = os.fork()
if pid == 0:
    sys.exit(0)  # a child (a DataLoader worker) ends normally: the commit is its parent's
for _ in range(3000):  # 30 s
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("child exited", flush=True)
        break
    time.sleep(0.01)
else:
    os.kill(pid, 9)
    print("child hung", flush=True)
"""


def test_a_forked_child_does_not_wait_for_its_parents_commit(tmp_path: Path) -> None:
    store, src = tmp_path / "store", tmp_path / "f.bin"
    src.write_bytes(os.urandom(1 << 20))
    with _held(store):  # the parent's commit stays pending while the child exits
        proc = script(FORKS, str(store), str(src))
        assert proc.stdout is not None
        line = proc.stdout.readline()
    out, err = proc.communicate(timeout=60)
    assert line == b"child exited\n", err.decode()
    assert proc.returncode == 0, err.decode()
    assert localtrack.Api(store).artifact(f"p/{NAME}:latest").version == "v0"


def test_wait_on_an_artifact_with_no_commit_returns_it(tmp_path: Path) -> None:
    """A disabled run logs nothing (its log_artifact returns the draft): W&B code calling
    wait() on it goes on; so does wait() on a version read from a store."""
    src = tmp_path / "f.bin"
    src.write_bytes(b"w")
    run = localtrack.init(project="p", dir=tmp_path / "store", mode="disabled")
    draft = localtrack.Artifact(NAME, "model").add_file(src)
    assert run.log_artifact(draft).wait() is draft and draft.version is None
    run.finish()
    with localtrack.init(project="p", dir=tmp_path / "store") as real:
        real.log_artifact(draft)
    read = localtrack.Api(tmp_path / "store").artifact(f"p/{NAME}:v0")
    assert read.wait() is read and read.version == "v0"


def test_a_commit_error_at_exit_is_logged_not_lost(tmp_path: Path) -> None:
    """A script that ends without wait() or finish(), whose commit then fails: the exit waits
    for it and the error is on stderr, naming the artifact and the run."""
    store, src = tmp_path / "store", tmp_path / "f.bin"
    src.write_bytes(os.urandom(1 << 20))
    other = _dataset_manifest(tmp_path, src)
    with _held(store):
        proc = script(EXITS, str(store), str(src))
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"returned\n"  # now exiting: waiting for the lock
        shutil.copy(_ndir(other) / "v0.json", _ndir(store) / "v0.json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert f"'{NAME}' logged by run 'p/" in err.decode() and "type 'dataset'" in err.decode()
    assert localtrack.Api(store).artifact(f"p/{NAME}:latest").type == "dataset"


FULL = """
import resource, signal, sys, localtrack
store, src = sys.argv[1], sys.argv[2]
run = localtrack.init(project="p", dir=store)
art = run.log_artifact(localtrack.Artifact("ckpt", "model").add_file(src))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limits = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (16, limits[1]))  # the manifest cannot be written
print("limited", flush=True)
try:
    art.wait()
except localtrack.LocaltrackError as exc:
    print(type(exc).__name__, exc, flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, limits)
run.finish()
"""


def test_a_full_disk_in_the_commit_is_raised_by_wait_and_leaves_no_version(tmp_path: Path) -> None:
    """The file size limit (what a full disk does to a write) hit by the manifest's write,
    on the commit thread: wait() raises the StorageError, naming the artifact and the run."""
    store, src = tmp_path / "store", tmp_path / "f.bin"
    src.write_bytes(os.urandom(1 << 20))
    with _held(store):  # the limit is set while the commit waits for the lock
        proc = script(FULL, str(store), str(src))
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"limited\n"
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    line = out.decode()
    assert line.startswith("StorageError Artifact 'ckpt' logged by run 'p/"), line
    assert "A file size limit was hit" in line and "log it again" in line, line
    assert _artifacts._versions(_ndir(store)) == []


PREEMPTED = """
import signal, sys, localtrack
store, src = sys.argv[1], sys.argv[2]
run = localtrack.init(project="p", dir=store)
run.log_artifact(localtrack.Artifact("ckpt", "model").add_file(src))
print("returned", flush=True)
signal.pause()
"""


def test_a_preemption_signal_waits_for_the_commit(tmp_path: Path) -> None:
    """SIGTERM (SLURM's preemption) while a commit waits at the name's lock: the run ends
    preempted only after the version is stored whole."""
    store, src = tmp_path / "store", tmp_path / "f.bin"
    src.write_bytes(os.urandom(4 << 20))
    with _held(store):
        proc = script(PREEMPTED, str(store), str(src))
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == b"returned\n", proc.communicate(timeout=60)[1].decode()
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):  # it waits for the lock
            proc.wait(timeout=1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, err.decode()
    art = localtrack.Api(store).artifact(f"p/{NAME}:latest")
    assert (Path(art.download(root=tmp_path / "out")) / "f.bin").read_bytes() == src.read_bytes()
    assert localtrack.Api(store).runs("p")[0].state == "preempted"


SIGNAL_IN_READ = """
import os, signal, sys, threading, localtrack
store, src = sys.argv[1], sys.argv[2]
run = localtrack.init(project="p", dir=store)
art = run.log_artifact(localtrack.Artifact("ckpt", "model").add_file(src))
commit = art._commit


class Done(threading.Event):  # the commit's event: the SIGTERM lands inside its lock
    def wait(self, timeout=None):
        with self._cond:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().wait(timeout)


commit.done = Done()  # (the commit waits at the name's lock the test holds: not done yet)
print("reading", flush=True)
localtrack.Api(store).artifact("p/ckpt:latest")  # waits for this process's commit first
print("not reached", flush=True)
"""


def test_a_signal_inside_a_read_waiting_for_a_commit_is_acted_on_when_the_read_ends(
        tmp_path: Path) -> None:
    """An Api read of an artifact this process is still storing waits for the commit; a SIGTERM
    landing inside that wait's lock is acted on when the wait ends (acting inside it, the
    handler's finish() waited for the same commit, took the same lock and hung)."""
    store, src = tmp_path / "store", tmp_path / "f.bin"
    src.write_bytes(os.urandom(1 << 20))
    with _held(store):
        proc = script(SIGNAL_IN_READ, str(store), str(src))
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"reading\n", proc.communicate(timeout=60)[1].decode()
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the process hung after the signal\n{proc.communicate()[1].decode()}")
    assert proc.returncode == -signal.SIGTERM, err.decode()
    assert b"not reached" not in out
    art = localtrack.Api(store).artifact(f"p/{NAME}:latest")
    assert (Path(art.download(root=tmp_path / "out")) / "f.bin").read_bytes() == src.read_bytes()
    assert localtrack.Api(store).runs("p")[0].state == "preempted"
