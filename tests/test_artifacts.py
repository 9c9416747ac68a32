"""Artifacts: versions, aliases, content-addressed blobs, lineage, races, crashes, bad input."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import orjson
import pytest

import localtrack
from localtrack import _artifacts
from localtrack._doctor import check_store
from localtrack.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    CorruptRunError,
    InvalidNameError,
    InvalidValueError,
    StorageError,
    UnsupportedTypeError,
)

from .helpers import run_gc, run_script, script, wait_for


def _blobs(store: Path, project: str = "p") -> list[Path]:
    return [p for p in (store / project / "artifacts" / "blobs").rglob("*") if p.is_file()]


def _versions(store: Path, name: str, project: str = "p") -> list[int]:
    return _artifacts._versions(store / project / "artifacts" / "names" / name)


def _age_blobs(store: Path) -> None:
    """Make every blob older than the grace period, as a day having passed would."""
    old = time.time() - _artifacts.GRACE_SECONDS - 60
    for path in (store / "p" / "artifacts" / "blobs").rglob("*"):
        os.utime(path, (old, old))


def _hex(f: _artifacts.ArtifactFile) -> str:
    """The hex of a stored file's content address (its blob's name)."""
    assert f.digest is not None
    return f.digest.partition(":")[2]


def _complete(store: Path, name: str, version: int, out: Path) -> None:
    """The version's every file is stored and downloads to the bytes its manifest names."""
    art = localtrack.Api(store).artifact(f"p/{name}:v{version}")
    root = Path(art.download(root=out))
    for f in art.files():
        assert f.digest is not None
        algorithm, hexdigest = f.digest.split(":")
        assert _artifacts._hash_file(root / f.path, algorithm) == hexdigest


def test_log_use_download_and_lineage(tmp_path: Path) -> None:
    (tmp_path / "ckpt.pt").write_bytes(b"weights-0")
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "sub" / "a.txt").write_text("a")
    (tmp_path / "data" / "b.txt").write_text("b")
    (tmp_path / "data" / "empty").write_bytes(b"")
    store = tmp_path / "store"
    run = localtrack.init(project="p", dir=store)
    art = localtrack.Artifact("model", "model", description="d",
                              metadata={"step": 3, "loss": float("nan"), "nested": {"a": [1]}})
    art.add_file(tmp_path / "ckpt.pt").add_dir(tmp_path / "data", name="data")
    art.add_reference("s3://bucket/big.bin")
    with art.new_file("notes.txt") as fh:
        fh.write("hello")
    assert run.log_artifact(art, aliases=["best"]) is art
    assert (art.version, art.aliases) == ("v0", ["latest", "best"])
    (tmp_path / "ckpt.pt").write_bytes(b"weights-1")
    second = run.log_artifact(str(tmp_path / "ckpt.pt"), name="model", type="model")
    assert (second.version, second.aliases) == ("v1", ["latest"])
    with pytest.raises(ArtifactError, match="type 'model'"):
        run.log_artifact(localtrack.Artifact("model", "dataset").add_file(tmp_path / "ckpt.pt"))
    used = run.use_artifact("model:best")
    assert (used.version, used.description) == ("v0", "d")
    assert used.metadata["step"] == 3 and used.metadata["nested"] == {"a": [1]}
    assert used.metadata["loss"] != used.metadata["loss"]  # NaN, stored as the config stores it
    assert [f.path for f in used.files()] == ["big.bin", "ckpt.pt", "data/b.txt",
                                              "data/empty", "data/sub/a.txt", "notes.txt"]
    out = Path(used.download(root=tmp_path / "out"))
    assert (out / "ckpt.pt").read_bytes() == b"weights-0"
    assert (out / "data" / "sub" / "a.txt").read_text() == "a"
    assert (out / "notes.txt").read_text() == "hello"
    assert (out / "data" / "empty").read_bytes() == b""
    assert not (out / "big.bin").exists()  # a reference is recorded, not fetched
    run.finish()

    api = localtrack.Api(store)
    latest = api.artifact("team/p/model:latest")  # W&B's entity is taken and ignored
    assert latest.version == "v1"
    assert latest.logged_by().id == run.id
    assert latest.used_by() == []
    assert [r.id for r in api.artifact("p/model:v0").used_by()] == [run.id]
    assert [a.version for a in api.artifacts(type="model")] == ["v0", "v1"]
    assert api.artifacts(type="dataset") == []
    assert [a.version for a in api.artifacts(name="p/model")] == ["v0", "v1"]
    with pytest.raises(ArtifactNotFoundError, match="'nope'"):
        api.artifact("p/model:nope")
    with pytest.raises(ArtifactNotFoundError, match="v7"):
        api.artifact("p/model:v7")
    with pytest.raises(ArtifactError, match="never changes"):
        latest.add_file(tmp_path / "ckpt.pt")


@pytest.mark.parametrize("policy", ["mutable", "immutable", "copy"])
def test_add_file_and_add_dir_take_wandbs_policy(tmp_path: Path, policy: str) -> None:
    """Lightning's WandbLogger passes ``add_file(p, name=, policy=)``: either W&B value reads
    the file when the artifact is logged; any other is refused, naming it."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "w.bin").write_bytes(b"w")
    art = localtrack.Artifact("m", "model")
    if policy == "copy":
        with pytest.raises(InvalidValueError, match="'copy'"):
            art.add_file(tmp_path / "d" / "w.bin", policy=policy)
        with pytest.raises(InvalidValueError, match="'copy'"):
            art.add_dir(tmp_path / "d", policy=policy)
        return
    art.add_file(tmp_path / "d" / "w.bin", name="model.ckpt", policy=policy)
    art.add_dir(tmp_path / "d", name="dir", policy=policy)
    with localtrack.init(project="p", dir=tmp_path / "store") as run:
        run.log_artifact(art)
    read = localtrack.Api(tmp_path / "store").artifact("p/m:latest")
    assert sorted(f.path for f in read.files()) == ["dir/w.bin", "model.ckpt"]

def test_files_are_stored_once_and_a_new_version_costs_what_changed(tmp_path: Path) -> None:
    src = tmp_path / "ckpt"
    src.mkdir()
    for i in range(10):
        (src / f"shard{i}.bin").write_bytes(os.urandom(10_000))
    (src / "copy.bin").write_bytes((src / "shard0.bin").read_bytes())  # identical content
    store = tmp_path / "store"
    with localtrack.init(project="p", dir=store) as run:
        run.log_artifact(localtrack.Artifact("ckpt", "model").add_dir(src)).wait()
        assert len(_blobs(store)) == 10
        (src / "shard3.bin").write_bytes(os.urandom(10_000))
        before = sum(p.stat().st_size for p in _blobs(store))
        v1 = run.log_artifact(localtrack.Artifact("ckpt", "model").add_dir(src)).wait()
        assert sum(p.stat().st_size for p in _blobs(store)) - before == 10_000
        assert v1.version == "v1"
        # Logging the same files again is no new version (W&B's rule): the aliases move only.
        same = run.log_artifact(localtrack.Artifact("ckpt", "model").add_dir(src), aliases=["b"])
        assert (same.version, same.aliases) == ("v1", ["latest", "b"])
    assert not [p for p in (store / "p" / "artifacts").rglob(".tmp-*")]


RACER = """
import sys, localtrack
from pathlib import Path
store, tag, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
run = localtrack.init(project="p", dir=store)
src = Path(store).parent / f"src-{tag}"
src.mkdir()
while not go.exists():
    pass
for i in range(10):
    (src / "w.bin").write_bytes(f"{tag}-{i}".encode() * 1000)
    art = run.log_artifact(localtrack.Artifact("model", "model").add_file(src / "w.bin"))
    print(art.version, flush=True)
run.finish()
"""


def test_two_processes_logging_one_name_get_dense_unique_versions(tmp_path: Path) -> None:
    store, go = tmp_path / "store", tmp_path / "go"
    procs = [script(RACER, str(store), tag, str(go)) for tag in ("a", "b")]
    wait_for(lambda: (tmp_path / "src-a").exists() and (tmp_path / "src-b").exists(), 60,
             "both writers started")
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err.decode()
    got = [line for out, _ in outs for line in out.decode().split()]
    assert sorted(got, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(20)]
    assert _versions(store, "model") == list(range(20))
    contents = set()
    for v in range(20):
        out = tmp_path / f"out{v}"
        _complete(store, "model", v, out)
        contents.add((out / "w.bin").read_bytes()[:3])
    assert contents == {f"{t}-{i}".encode()[:3] for t in "ab" for i in range(10)}
    assert localtrack.Api(store).artifact("p/model:latest").version == "v19"


WRITER = """
import os, sys, localtrack
from pathlib import Path
store = sys.argv[1]
src = Path(store).parent / "src"
src.mkdir(exist_ok=True)
run = localtrack.init(project="p", dir=store)
for i in range(1000):
    for j in range(4):
        (src / f"f{j}.bin").write_bytes(os.urandom(1 << 20))
    run.log_artifact(localtrack.Artifact("model", "model").add_dir(src), aliases=["best"])
    print(i, flush=True)
"""


def test_sigkill_while_logging_leaves_whole_versions_and_collectable_orphans(tmp_path: Path) -> None:
    rng = random.Random(7)
    store = tmp_path / "store"
    for trial in range(4):
        proc = script(WRITER, str(store))
        assert proc.stdout is not None
        proc.stdout.readline()  # one version is logged: the next is under way
        time.sleep(rng.uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        versions = _versions(store, "model")
        assert versions == list(range(len(versions))), versions
        for v in versions:
            _complete(store, "model", v, tmp_path / f"out{trial}-{v}")
    # A killed writer's blobs are collected only once older than the grace period.
    found = check_store(store, fix=True)
    assert not [f for f in found if "orphan artifact blob" in f.problem and f.fixed]
    _age_blobs(store)
    named = {_hex(f) for v in _versions(store, "model")
             for f in localtrack.Api(store).artifact(f"p/model:v{v}").files()}
    found = check_store(store, fix=True)
    assert all(f.fixed for f in found if "orphan" in f.problem)
    assert {p.name for p in _blobs(store)} == named
    for v in _versions(store, "model"):
        _complete(store, "model", v, tmp_path / f"after{v}")


def test_doctor_collects_only_old_unnamed_blobs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (tmp_path / "f").write_bytes(b"kept")
    with localtrack.init(project="p", dir=store) as run:
        run.log_artifact(localtrack.Artifact("m", "model").add_file(tmp_path / "f"))
    orphan = store / "p" / "artifacts" / "blobs" / "ab" / ("ab" * 32)
    orphan.parent.mkdir()
    orphan.write_bytes(b"no manifest names me")
    assert not [f for f in check_store(store, fix=True) if f.path == str(orphan)]
    assert orphan.exists()  # young: perhaps a live writer's
    _age_blobs(store)
    (finding,) = [f for f in check_store(store, fix=True) if f.path == str(orphan)]
    assert finding.fixed and not orphan.exists()
    _complete(store, "m", 0, tmp_path / "out")
    # A damaged manifest stops the collection: its blobs might be the ones it names.
    _age_blobs(store)
    (store / "p" / "artifacts" / "names" / "m" / "v0.json").write_bytes(b"{garbage")
    found = check_store(store, fix=True)
    assert any("cannot be parsed" in f.problem and not f.fixable for f in found)
    assert len(_blobs(store)) == 1


def test_bad_names_aliases_and_files(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (tmp_path / "f").write_bytes(b"x")
    for bad in ("a/b", "..", "a..b", "", "-x"):
        with pytest.raises(InvalidNameError, match="artifact name"):
            localtrack.Artifact(bad, "model")
    with localtrack.init(project="p", dir=store) as run:
        art = localtrack.Artifact("m", "model").add_file(tmp_path / "f")
        for alias in ("v3", "a/b", "..", ""):
            with pytest.raises(InvalidNameError, match="alias"):
                run.log_artifact(art, aliases=[alias])
        with pytest.raises(InvalidNameError, match="file name"):
            art.add_file(tmp_path / "f", name="../escape")
        with pytest.raises(UnsupportedTypeError, match="metadata of artifact 'm'"):
            run.log_artifact(localtrack.Artifact("m", "model", metadata={"f": object()}))
        assert not _blobs(store)
        with pytest.raises(ArtifactError, match="already has a file"):
            art.add_file(tmp_path / "f")
        with pytest.raises(ArtifactError, match="not a file"):
            art.add_file(tmp_path / "missing")
        # A file that disappears between add_file and log_artifact: nothing logged.
        (tmp_path / "g").write_bytes(b"y")
        gone = localtrack.Artifact("gone", "model").add_file(tmp_path / "f")
        gone.add_file(tmp_path / "g")
        (tmp_path / "g").unlink()
        with pytest.raises(ArtifactError, match=r"'gone'.*'g'.*disappeared"):
            run.log_artifact(gone)
        assert _versions(store, "gone") == []
        with pytest.raises(ArtifactNotFoundError, match="'gone'"):
            run.use_artifact("gone:latest")
        # A directory whose link leads back up.
        loop = tmp_path / "loop"
        (loop / "sub").mkdir(parents=True)
        (loop / "sub" / "x").write_bytes(b"x")
        (loop / "sub" / "up").symlink_to(loop)
        with pytest.raises(ArtifactError, match="symbolic link loop"):
            localtrack.Artifact("looped", "data").add_dir(loop)
    assert not [p for p in (store / "p" / "artifacts").rglob(".tmp-*")]


def test_a_manifest_naming_a_path_outside_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (tmp_path / "f").write_bytes(b"x")
    with localtrack.init(project="p", dir=store) as run:
        run.log_artifact(localtrack.Artifact("m", "model").add_file(tmp_path / "f"))
    path = store / "p" / "artifacts" / "names" / "m" / "v0.json"
    manifest = orjson.loads(path.read_bytes())
    manifest["files"] = {"../../evil": manifest["files"]["f"]}
    path.write_bytes(orjson.dumps(manifest))
    with pytest.raises(CorruptRunError, match="leaves the artifact"):
        localtrack.Api(store).artifact("p/m:v0")


FULL = """
import resource, signal, sys, localtrack
from pathlib import Path
store, src = sys.argv[1], Path(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
run = localtrack.init(project="p", dir=store)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    run.log_artifact(localtrack.Artifact("big", "model").add_dir(src))
except localtrack.LocaltrackError as exc:
    print(type(exc).__name__, exc)
"""


def test_a_full_disk_mid_artifact_is_a_clear_error_and_nothing_visible(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(1000))
    (src / "b.bin").write_bytes(os.urandom(3 << 20))  # past the 1 MiB file size limit
    store = tmp_path / "store"
    res = run_script(FULL, str(store), str(src), timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(StorageError.__name__), res.stdout
    assert "'big'" in res.stdout and "'b.bin'" in res.stdout, res.stdout
    assert _versions(store, "big") == []
    assert not [p for p in (store / "p" / "artifacts").rglob(".tmp-*")]
    with pytest.raises(ArtifactNotFoundError):
        localtrack.Api(store).artifact("p/big:latest")


def test_sync_uploads_each_blob_once_and_a_directory_remote_serves_use(tmp_path: Path) -> None:
    store, remote = tmp_path / "store", tmp_path / "remote"
    src = tmp_path / "ckpt"
    src.mkdir()
    for i in range(5):
        (src / f"s{i}.bin").write_bytes(os.urandom(5000))
    with localtrack.init(project="p", dir=store) as run:
        run.log_artifact(localtrack.Artifact("model", "model").add_dir(src), aliases=["best"])
        run.use_artifact("model:best")
    user = run.id
    localtrack.sync(remote, dir=store)
    assert {p.name for p in _blobs(remote)} == {p.name for p in _blobs(store)}
    (src / "s0.bin").write_bytes(os.urandom(5000))
    with localtrack.init(project="p", dir=store) as run:
        run.log_artifact(localtrack.Artifact("model", "model").add_dir(src))
    before = {p: p.stat().st_mtime_ns for p in _blobs(remote)}
    localtrack.sync(remote, dir=store)
    after = _blobs(remote)
    assert len(after) == 6 and all(before[p] == p.stat().st_mtime_ns for p in before)
    # An air-gapped reader of the directory remote: no network, the synced copy alone.
    api = localtrack.Api(remote)
    best = api.artifact("p/model:best")
    assert (best.version, [r.id for r in best.used_by()]) == ("v0", [user])
    _complete(remote, "model", 1, tmp_path / "out1")
    assert api.artifact("p/model:latest").version == "v1"
    report = localtrack.sync(remote, dir=store)
    assert report.uploaded_files == 0


CHECKPOINTING = """
import os, sys, localtrack
from pathlib import Path
store, work = sys.argv[1], Path(sys.argv[2])
run = localtrack.init(project="p", dir=store, resume="auto")
start = 0
if run.resumed:
    ckpt = run.use_artifact("model:latest")
    state = Path(ckpt.download(root=work / "restored")) / "state.txt"
    start = int(state.read_text()) + 1
    run.rewind(ckpt.metadata["step"])   # the rows logged after the checkpoint are archived
print("start", start, flush=True)
for step in range(start, 60):
    run.log({"x": float(step)}, step=step)
    if step % 10 == 9:
        (work / "state.txt").write_text(str(step))
        art = localtrack.Artifact("model", "model", metadata={"step": step})
        run.log_artifact(art.add_file(work / "state.txt")).wait()  # stored before it says so
        print("saved", step, flush=True)
run.finish()
"""


def test_checkpoint_workflow_killed_resumed_from_model_latest(tmp_path: Path) -> None:
    """A script logs a checkpoint artifact every 10 steps, is SIGKILLed, restarts with
    resume="auto", fetches model:latest through use_artifact, rewinds to its step, goes on."""
    store = tmp_path / "store"
    first = script(CHECKPOINTING, str(store), str(tmp_path), cwd=tmp_path)
    assert first.stdout is not None
    lines = [first.stdout.readline().decode() for _ in range(3)]  # start 0, saved 9, saved 19
    assert lines[2].split() == ["saved", "19"], lines
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    saved = localtrack.Api(store).artifact("p/model:latest").metadata["step"]
    assert saved >= 19
    second = run_script(CHECKPOINTING, str(store), str(tmp_path), cwd=tmp_path, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0] == f"start {saved + 1}"
    (run,) = localtrack.Api(store).runs("p")
    assert run.state == "finished"
    assert run.history_table(["x"]).column("_step").to_pylist() == list(range(60))
    latest = localtrack.Api(store).artifact("p/model:latest")
    assert latest.metadata["step"] == 59 and latest.logged_by().id == run.id
    assert [r.id for r in localtrack.Api(store).artifact(f"p/model:v{saved // 10}").used_by()] \
        == [run.id]


def test_module_level_calls_act_on_the_active_run(tmp_path: Path) -> None:
    """W&B scripts call wandb.log_artifact / wandb.use_artifact on the active run."""
    store = tmp_path / "store"
    (tmp_path / "w.bin").write_bytes(b"weights")
    with pytest.raises(localtrack.errors.UsageError, match="active run"):
        localtrack.use_artifact("model:latest")
    writer = localtrack.init(project="p", dir=store)
    logged = localtrack.log_artifact(tmp_path / "w.bin", name="model", type="model", aliases=["best"])
    writer.finish()
    reader = localtrack.init(project="p", dir=store)
    used = localtrack.use_artifact("model:best")
    reader.finish()
    assert logged.version == used.version == "v0"
    assert (Path(used.download(root=tmp_path / "out")) / "w.bin").read_bytes() == b"weights"
    assert [r.id for r in localtrack.Api(store).artifact("p/model:v0").used_by()] == [reader.id]


def test_gc_collects_old_orphans_and_keeps_named_and_young_blobs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (tmp_path / "f").write_bytes(b"kept")
    with localtrack.init(project="p", dir=store) as run:
        run.log_artifact(localtrack.Artifact("m", "model").add_file(tmp_path / "f"))
    (named,) = _blobs(store)
    old, young = (store / "p" / "artifacts" / "blobs" / h[:2] / h for h in ("ab" * 32, "cd" * 32))
    for path in (old, young):
        path.parent.mkdir()
        path.write_bytes(b"no manifest names me")
    _age_blobs(store)  # the named blob too: its age does not matter, its manifest does
    os.utime(young)
    dry = run_gc(store, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete: orphan artifact blob of 20 bytes" in dry.stdout and str(old) in dry.stdout
    assert str(young) not in dry.stdout and old.exists()
    done = run_gc(store)
    assert done.returncode == 0 and "1 garbage file(s) deleted" in done.stdout, done
    assert not old.exists() and young.exists() and named.exists()
    _complete(store, "m", 0, tmp_path / "out")
    assert "0 garbage" in run_gc(store, "--older-than", "1h").stdout and young.exists()
    assert "1 garbage" in run_gc(store, "--older-than", "0s").stdout and not young.exists()
    bad = run_gc(store, "--older-than", "soon")
    assert bad.returncode != 0 and "Invalid --older-than 'soon'" in bad.stderr
    # A sync copy is not collected: a blob there may be waiting for its manifest's upload.
    localtrack.sync(str(tmp_path / "copy"), dir=store)
    refused = run_gc(tmp_path / "copy")
    assert refused.returncode != 0 and "copy that `localtrack sync` wrote" in refused.stderr


def test_gc_beside_a_live_writer_never_breaks_a_version(tmp_path: Path) -> None:
    """gc runs again and again while a process logs versions: the blobs of the version under
    way (unnamed until its manifest, but young) are kept, so every version stays whole."""
    store = tmp_path / "store"
    proc = script(WRITER, str(store))
    assert proc.stdout is not None
    try:
        for _ in range(4):
            proc.stdout.readline()  # a version is logged; the next is being written
            result = run_gc(store)
            assert result.returncode == 0, result.stdout + result.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    versions = _versions(store, "model")
    assert len(versions) >= 4
    for v in versions:
        _complete(store, "model", v, tmp_path / f"out{v}")
    named = {_hex(f) for v in versions for f in localtrack.Api(store).artifact(f"p/model:v{v}").files()}
    assert run_gc(store, "--older-than", "0s").returncode == 0  # the writer is dead: all is old enough
    assert {p.name for p in _blobs(store)} == named
