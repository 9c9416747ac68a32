"""A store is input: the names and links in a received one never take sync or a reader out of it.

Each test copies one real run (a sealed segment, then an unsealed log), damages the copy the way
a hostile or careless sender could, and checks that sync refuses the run with an error naming
the file and the bad name, uploads nothing of it, and writes nothing outside the remote.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

import localtrack
from localtrack._codec import dumps, loads
from localtrack._remotes import remote_key
from localtrack._remotes._dir import TMP_DIR
from localtrack.errors import CorruptRunError, SyncError

from .helpers import settle
from .test_sync import cli

SECRET = b"not for the remote: a file outside the store\n"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run, p/r: steps 0-19 in segments/00000000.parquet, 20-24 in wal/00000001.jsonl."""
    root = tmp_path_factory.mktemp("template")
    store = root / "store"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")
        run = localtrack.init(project="p", id="r", dir=store, config={"lr": 0.1})
        for i in range(20):
            run.log({"x": i})
        run.finish()
        settle(store)
        mp.setenv("LOCALTRACK_SEAL_MIN_BYTES", str(1 << 40))
        run = localtrack.init(project="p", id="r", dir=store, resume="must")
        for i in range(5):
            run.log({"x": 20 + i})
        run.finish()
        settle(store)
    rdir = store / "p/runs/r"
    assert [s["file"] for s in loads((rdir / "manifest.json").read_bytes())["segments"]] \
        == ["00000000.parquet"]
    assert (rdir / "wal/00000001.jsonl").is_file()
    return store


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Path:
    """A copy of the template run, one level deeper than the remote (so ``../`` names differ)."""
    copy = tmp_path / "a" / "store"
    shutil.copytree(template, copy, symlinks=True)
    return copy


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return tmp_path / "remote"


def secret_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(SECRET)
    return path


def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """Every file and link under ``root`` outside ``skip``, with a digest of its bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            path = Path(dirpath, name)
            out[str(path)] = (f"-> {os.readlink(path)}" if path.is_symlink()
                              else hashlib.sha1(path.read_bytes()).hexdigest())
    return out


def remote_contents(remote: Path) -> list[bytes]:
    return [p.read_bytes() for p in remote.rglob("*") if p.is_file()]


def set_segment_name(store: Path, name: object) -> None:
    path = store / "p/runs/r/manifest.json"
    manifest = loads(path.read_bytes())
    manifest["segments"][0]["file"] = name
    path.write_bytes(dumps(manifest))


def sync_refused(store: Path, remote: Path) -> str:
    """Sync the store; it must refuse run p/r: the reason given."""
    with pytest.raises(SyncError) as info:
        localtrack.sync(str(remote), dir=store)
    assert list(info.value.pending) == ["p/r"], info.value.pending
    return info.value.pending["p/r"]


# -- names in the manifest --------------------------------------------------------------------


@pytest.mark.parametrize("name, victim", [
    pytest.param("/etc/hostname", None, id="etc-hostname"),
    pytest.param("{tmp}/secret.parquet", "secret.parquet", id="absolute-path"),
    pytest.param("../../x", "a/store/p/runs/x", id="path-traversal"),
    pytest.param("../../../../../victim", "a/victim", id="traversal-out-of-the-remote"),
    pytest.param("segments/../00000000.parquet", None, id="dot-dot-inside"),
    pytest.param("00000000.parquet\x00", None, id="nul"),
    pytest.param("00000000.parquet\n", None, id="newline"),
    pytest.param("\u0660" * 8 + ".parquet", None, id="non-ascii-digits"),
    pytest.param("0000000.parquet", None, id="seven-digits"),
    pytest.param(7, None, id="not-a-string"),
])
def test_a_bad_segment_name_refuses_the_run_and_uploads_nothing(store, remote, tmp_path, name, victim):
    if isinstance(name, str):
        name = name.replace("{tmp}", str(tmp_path))
    if victim is not None:
        secret_file(tmp_path / victim)
    set_segment_name(store, name)
    before = snapshot(tmp_path, skip=(remote, store))

    why = sync_refused(store, remote)
    assert repr(name) in why and "manifest.json" in why and "segment file name" in why
    assert not (remote / "p").exists()  # nothing of the run went up: not even its metadata
    assert snapshot(tmp_path, skip=(remote, store)) == before
    assert not any(data in (SECRET, Path("/etc/hostname").read_bytes()) for data in remote_contents(remote))

    with pytest.raises(CorruptRunError, match="segment file name") as info:
        localtrack.Api(store).run("p/r").history_table()
    assert (info.value.project, info.value.run_id) == ("p", "r") and repr(name) in str(info.value)


def test_a_bad_sealed_through_is_refused(store, remote):
    path = store / "p/runs/r/manifest.json"
    path.write_bytes(dumps({**loads(path.read_bytes()), "sealed_through": "0/../../x"}))
    assert "sealed_through='0/../../x'" in sync_refused(store, remote)
    assert not (remote / "p").exists()


def test_the_cli_exits_non_zero_and_names_the_bad_name(store, remote):
    set_segment_name(store, "../../../../../victim")
    res = cli("sync", "--to", str(remote), "--dir", str(store))
    assert res.returncode == 1, res.stderr
    assert "p/r" in res.stderr and "'../../../../../victim'" in res.stderr, res.stderr
    assert not (remote / "p").exists() and not (remote.parent / "victim").exists()


# -- links and special files in the store -----------------------------------------------------


def link_to_secret(path: Path, tmp_path: Path) -> None:
    path.unlink()
    path.symlink_to(secret_file(tmp_path / "outside" / path.name))


def link_to_moved_copy(path: Path, tmp_path: Path) -> None:
    """A valid file or folder, moved out of the store and linked back: only the link is wrong."""
    target = tmp_path / "outside" / path.name
    target.parent.mkdir(exist_ok=True)
    path.rename(target)
    path.symlink_to(target)


@pytest.mark.parametrize("rel, damage", [
    pytest.param("segments/00000000.parquet", link_to_secret, id="segment-to-secret"),
    pytest.param("segments/00000000.parquet", link_to_moved_copy, id="segment-to-copy"),
    pytest.param("segments", link_to_moved_copy, id="segments-folder"),
    pytest.param("wal/00000001.jsonl", link_to_moved_copy, id="log"),
    pytest.param("manifest.json", link_to_moved_copy, id="manifest"),
    pytest.param("events.jsonl", link_to_moved_copy, id="events"),
    pytest.param("config.json", link_to_secret, id="config-to-secret"),
])
def test_a_symlink_in_a_run_is_not_followed(store, remote, tmp_path, rel, damage):
    damage(store / "p/runs/r" / rel, tmp_path)
    why = sync_refused(store, remote)
    assert f"{store / 'p/runs/r' / rel} of run 'p/r' is a symbolic link" in why, why
    assert SECRET not in remote_contents(remote)
    assert not (remote / "p/runs/r/run.json").exists()  # the run does not show up on the remote


@pytest.mark.parametrize("rel", [
    pytest.param("segments/00000000.parquet", id="segment"),
    pytest.param("segments", id="segments-folder"),
    pytest.param("wal/00000001.jsonl", id="log"),
    pytest.param("manifest.json", id="manifest"),
])
def test_a_reader_does_not_follow_a_symlink(store, tmp_path, rel):
    link_to_moved_copy(store / "p/runs/r" / rel, tmp_path)
    with pytest.raises(CorruptRunError, match="is a symbolic link") as info:
        localtrack.Api(store).run("p/r").history_table()
    assert info.value.path == str(store / "p/runs/r" / rel)


def test_a_fifo_in_place_of_a_segment_is_refused_not_waited_on(store, remote):
    seg = store / "p/runs/r/segments/00000000.parquet"
    seg.unlink()
    os.mkfifo(seg)
    res = cli("sync", "--to", str(remote), "--dir", str(store), timeout=30)
    assert res.returncode == 1 and "is not a regular file" in res.stderr, res.stderr
    with pytest.raises(CorruptRunError, match="is not a regular file"):
        localtrack.Api(store).run("p/r").history_table()


# -- links in the directory remote, and sync's own files ----------------------------------------


def test_a_symlink_in_the_remote_is_not_written_through(store, remote, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (remote / "p/runs/r").mkdir(parents=True)
    (remote / "p/runs/r/segments").symlink_to(outside)
    why = sync_refused(store, remote)
    assert f"{str(remote / 'p/runs/r/segments')!r} in the remote" in why and "symbolic link" in why
    assert list(outside.iterdir()) == []


def test_a_symlinked_temporary_folder_of_the_remote_is_not_swept(store, remote, tmp_path):
    outside = tmp_path / "outside"
    old = secret_file(outside / "old-file")
    os.utime(old, (time.time() - 7200, time.time() - 7200))  # older than the sweep's hour
    remote.mkdir()
    (remote / TMP_DIR).symlink_to(outside)
    res = cli("sync", "--to", str(remote), "--dir", str(store))
    assert res.returncode != 0 and "symbolic link" in res.stderr, res.stderr
    assert old.read_bytes() == SECRET


def test_a_damaged_sync_state_cannot_delete_outside_the_remote(store, remote, tmp_path):
    localtrack.sync(str(remote), dir=store)
    (remote / "p/runs/r/wal/00000000.jsonl").mkdir()  # a log folder a sync sent before sealing
    victim = secret_file(tmp_path / "victim" / "keep")
    state_path = next((store / "p/runs/r/sync").iterdir())
    state = loads(state_path.read_bytes())
    # a name whose seq the manifest covers: sync would delete that "log folder" from the remote
    state["logs"]["wal/00000000.jsonl/../../../../../../victim"] = state["logs"]["wal/00000001.jsonl"]
    state["sig"] = None
    state_path.write_bytes(dumps(state))
    assert localtrack.sync(str(remote), dir=store).ok  # the state is dropped: all is checked again
    assert victim.read_bytes() == SECRET


def test_symlinked_sync_files_are_not_written_through(store, remote, tmp_path):
    victim = secret_file(tmp_path / "victim")
    lock = store / ".sync" / f"{remote_key(str(remote))}.lock"
    lock.parent.mkdir()
    lock.symlink_to(victim)  # opening the lock truncates it
    with pytest.raises(SyncError, match="is a symbolic link"):
        localtrack.sync(str(remote), dir=store)
    assert victim.read_bytes() == SECRET
    lock.unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    (store / "p/runs/r/sync").symlink_to(outside)  # sync state written through it
    assert "sync of run 'p/r' is a symbolic link" in sync_refused(store, remote)
    assert list(outside.iterdir()) == []


@pytest.mark.seal_may_fail
def test_the_sealer_does_not_write_through_a_symlinked_segments_folder(store, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    segments = store / "p/runs/r/segments"
    shutil.rmtree(segments)
    segments.symlink_to(outside)
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")
    run = localtrack.init(project="p", id="r", dir=store, resume="must")
    run.log({"x": 25})
    run.finish()
    settle(store)
    assert list(outside.iterdir()) == []
    assert "is a symbolic link" in (store / "p/runs/r/seal.log").read_text()
    assert (store / "p/runs/r/wal/00000001.jsonl").is_file()  # the log keeps the steps


@pytest.mark.parametrize("which", ["log", "events"])
def test_resume_refuses_a_symlinked_log_and_leaves_its_target_alone(store, tmp_path, which):
    """A writer cuts torn tails and appends: through a link that would be a file elsewhere."""
    run = localtrack.init(project="p", id="l", dir=store)
    run.log({"x": 1.0})
    run.finish()
    rdir = store / "p" / "runs" / "l"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n" + b"torn junk")
    if which == "log":
        (rdir / "wal").mkdir(exist_ok=True)
        link = rdir / "wal" / "00000009.jsonl"
    else:
        link = rdir / "events.jsonl"
        link.unlink()
    link.symlink_to(victim)
    with pytest.raises(localtrack.errors.CorruptRunError, match="symbolic link"):
        localtrack.init(project="p", id="l", resume="must", dir=store)
    assert victim.read_bytes() == b"precious\n" + b"torn junk"
    from localtrack import _locks

    assert not _locks.is_held(store / "p" / "locks" / "l.lock")  # the failed init released it
