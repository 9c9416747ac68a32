"""Artifacts read from a synced copy (a directory or the loopback S3 server) by another node:
Api(dir=remote).artifact(s), use_artifact through LOCALTRACK_ARTIFACT_REMOTE, downloads checked
against the manifest, blobs streamed up by sync."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import localtrack
from localtrack import _artifacts
from localtrack._remotes import open_remote
from localtrack.errors import ArtifactNotFoundError, CorruptRunError, SyncError

from . import s3server
from .helpers import run_script

s3_server, s3, remote = s3server.s3_server, s3server.s3, s3server.remote  # the loopback S3 fixtures

NODE_A = """
import sys, localtrack
from pathlib import Path
store, work, remotes = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
with localtrack.init(project="p", dir=store) as run:
    for step in range(3):
        (work / "ckpt").mkdir(exist_ok=True)
        (work / "ckpt" / "weights.bin").write_bytes(bytes([step]) * 300_000)
        (work / "ckpt" / "step.txt").write_text(str(step))
        art = localtrack.Artifact("model", "model", metadata={"step": step})
        run.log_artifact(art.add_dir(work / "ckpt"), aliases=["best"] if step == 1 else None)
    run.log_artifact(localtrack.Artifact("data", "dataset").add_file(work / "ckpt" / "step.txt"))
for remote in remotes:
    assert localtrack.sync(remote, dir=store).ok
print(run.id)
"""

NODE_B = """
import sys, localtrack
from pathlib import Path
store, out = sys.argv[1], Path(sys.argv[2])
with localtrack.init(project="p", dir=store) as run:
    latest = run.use_artifact("model:latest")
    best = run.use_artifact("model:best")
    print(run.id, latest.version, best.version, latest.metadata["step"])
    print(latest.download(root=out / "latest"))
    print(run.use_artifact("p/model:v0").download(root=out / "v0"))
"""


def _digest(path: Path) -> str:
    """The content address this version's writer gives a file (format 2: BLAKE3)."""
    return "blake3:" + _artifacts._hash_file(path, "blake3")


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _digest(p) for p in root.rglob("*") if p.is_file()}


def _blob_key(art: localtrack.Artifact, entry: str) -> str:
    """The key of an artifact file's blob in a synced copy of project p."""
    return "p/artifacts/" + _artifacts.blob_path(*_artifacts.address(art._manifest["files"][entry]))


def _corrupt_blob(uri: str, key: str, server: s3server.S3Server | None) -> None:
    """Flip the remote copy of one blob (same size: only its hash can tell)."""
    if server is None:
        path = Path(uri) / key
        os.chmod(path, 0o644)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return
    fs = server.filesystem()
    bucket = uri.split("://", 1)[1].split("/", 1)[0]
    path = f"{bucket}/team/{key}"
    with fs.open_input_stream(path) as fh:
        data = bytearray(fh.read())
    data[len(data) // 2] ^= 0xFF
    with fs.open_output_stream(path) as fh:
        fh.write(bytes(data))


def test_another_node_uses_and_downloads_what_a_node_synced(
        tmp_path: Path, remote: tuple[str, dict[str, str]], request: pytest.FixtureRequest) -> None:
    """Node A logs versions and syncs them; node B (its own store, its own process, no link to
    A) uses them by alias through LOCALTRACK_ARTIFACT_REMOTE; its use is recorded in its store
    and reaches the remote with its next sync; Api(dir=remote) reads them too."""
    uri, env = remote
    store_a, store_b, work = tmp_path / "a", tmp_path / "b", tmp_path / "work-a"
    work.mkdir()
    a = run_script(NODE_A, str(store_a), str(work), uri, env=env, timeout=120)
    assert a.returncode == 0, a.stderr
    writer = a.stdout.split()[-1]
    b = run_script(NODE_B, str(store_b), str(tmp_path / "out"), timeout=120,
                   env={**env, "LOCALTRACK_ARTIFACT_REMOTE": uri})
    assert b.returncode == 0, b.stderr
    user, latest, best, step = b.stdout.splitlines()[0].split()
    assert (latest, best, step) == ("v2", "v1", "2")
    local = localtrack.Api(store_a)
    for name, version in (("latest", 2), ("v0", 0)):
        want = {f.path: f.digest for f in local.artifact(f"p/model:v{version}").files()}
        assert _files(tmp_path / "out" / name) == want
    assert not list((store_b / "p" / "artifacts").rglob("v*.json"))  # nothing copied into B
    used = sorted(p.name for p in (store_b / "p" / "artifacts").rglob(f"p@{user}.json"))
    assert len(used) == 3
    # The copy read with the Api, as an analyst's notebook would (the s3 fixture set the
    # credentials in this process).
    api = localtrack.Api(uri)
    art = api.artifact("p/model:best")
    assert (art.version, art.metadata, art.logged_by().id) == ("v1", {"step": 1}, writer)
    assert [f.path for f in art.files()] == ["step.txt", "weights.bin"]
    assert [a.qualified_name for a in api.artifacts(type="model")] == \
        ["p/model:v0", "p/model:v1", "p/model:v2"]
    assert [a.qualified_name for a in api.artifacts(name="p/data")] == ["p/data:v0"]
    root = Path(art.download(root=tmp_path / "nb"))
    assert (root / "step.txt").read_text() == "1"
    assert localtrack.sync(uri, dir=store_b).ok
    assert [r.id for r in localtrack.Api(uri).artifact("p/model:v2").used_by()] == [user]
    # A damaged blob: a clear error naming the file and the version, nothing in the root.
    server = request.getfixturevalue("s3") if env else None
    _corrupt_blob(uri, _blob_key(art, "weights.bin"), server)
    with pytest.raises(CorruptRunError, match=r"'weights\.bin' of artifact 'p/model:v1'.*damaged"):
        localtrack.Api(uri).artifact("p/model:v1").download(root=tmp_path / "bad" / "x")
    assert not (tmp_path / "bad" / "x").exists()
    with pytest.raises(ArtifactNotFoundError, match="model"):
        localtrack.Api(uri).artifact("p/model:v7")


def test_use_artifact_without_a_remote_says_how_to_name_one(tmp_path: Path) -> None:
    with localtrack.init(project="p", dir=tmp_path / "b") as run, \
            pytest.raises(ArtifactNotFoundError, match="LOCALTRACK_ARTIFACT_REMOTE"):
        run.use_artifact("model:latest")


def test_a_missing_remote_blob_leaves_nothing_half_written(
        tmp_path: Path, remote: tuple[str, dict[str, str]], request: pytest.FixtureRequest) -> None:
    """Two files, the second's blob gone from the copy: the first is not left in the root
    either (a download lands whole or not at all)."""
    uri, env = remote
    store = tmp_path / "store"
    (tmp_path / "a.bin").write_bytes(b"a" * 1000)
    (tmp_path / "b.bin").write_bytes(b"b" * 1000)
    with localtrack.init(project="p", dir=store) as run:
        art = localtrack.Artifact("m", "model").add_file(tmp_path / "a.bin")
        run.log_artifact(art.add_file(tmp_path / "b.bin", name="sub/b.bin"))
    localtrack.sync(uri, dir=store)
    key = _blob_key(art, "sub/b.bin")
    if env:
        bucket = uri.split("://", 1)[1].split("/", 1)[0]
        request.getfixturevalue("s3").filesystem().delete_file(f"{bucket}/team/{key}")
    else:
        (Path(uri) / key).unlink()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CorruptRunError, match=r"'sub/b\.bin' of artifact 'p/m:v0' is missing"):
        localtrack.Api(uri).artifact("p/m:latest").download(root=out)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("kind", ["dir", "s3"])
def test_sync_streams_a_blob_larger_than_its_chunk(tmp_path: Path, kind: str,
                                                   request: pytest.FixtureRequest,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob bigger than LOCALTRACK_UPLOAD_CHUNK_BYTES (and, on S3, than pyarrow's part
    size: a multipart upload) arrives whole; the memory it saves is in bench_artifacts."""
    if kind == "dir":
        uri = str(tmp_path / "remote")
    else:
        server = request.getfixturevalue("s3")
        uri = server.uri(server.new_bucket())
    monkeypatch.setenv("LOCALTRACK_UPLOAD_CHUNK_BYTES", "65536")
    store = tmp_path / "store"
    big = tmp_path / "ckpt.bin"
    big.write_bytes(os.urandom(11 << 20) + b"tail")
    with localtrack.init(project="p", dir=store) as run:
        run.log_artifact(big, name="model", type="model")
    report = localtrack.sync(uri, dir=store)
    assert report.ok and report.uploaded_bytes > 11 << 20
    out = Path(localtrack.Api(uri).artifact("p/model:latest").download(root=tmp_path / "out"))
    assert _digest(out / "ckpt.bin") == _digest(big)


def test_a_damaged_local_blob_is_not_uploaded(tmp_path: Path, remote: tuple[str, dict[str, str]],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob whose bytes no longer hash to its name (bit rot, a hand edit) is refused while
    it streams: nothing lands under its name, its version's manifest stays local, the
    artifacts stay pending with the file named; once restored, the next sync sends it."""
    uri, _ = remote
    monkeypatch.setenv("LOCALTRACK_UPLOAD_CHUNK_BYTES", "4096")
    store = tmp_path / "store"
    (tmp_path / "w.bin").write_bytes(os.urandom(50_000))
    with localtrack.init(project="p", dir=store) as run:
        art = run.log_artifact(tmp_path / "w.bin", name="model", type="model")
    key = _blob_key(art, "w.bin")
    sha = key.rpartition("/")[2]
    blob = store / key
    good = blob.read_bytes()
    os.chmod(blob, 0o644)
    blob.write_bytes(good[:40_000] + bytes([good[40_000] ^ 1]) + good[40_001:])
    with pytest.raises(SyncError) as refused:
        localtrack.sync(uri, dir=store)
    why = refused.value.pending["p/artifacts"]
    assert sha in why and "damaged" in why and "not uploaded" in why
    assert open_remote(uri).info(key) is None
    with pytest.raises(ArtifactNotFoundError):
        localtrack.Api(uri).artifact("p/model:v0")
    blob.write_bytes(good)
    assert localtrack.sync(uri, dir=store).ok
    out = Path(localtrack.Api(uri).artifact("p/model:v0").download(root=tmp_path / "out"))
    assert (out / "w.bin").read_bytes() == good
