"""Artifact formats: new versions are format 2 (blobs named by BLAKE3); a store holding format-1
versions (SHA-256 blobs, written here by hand as localtrack before format 2 wrote them) is read,
downloaded, deduplicated, synced and garbage-collected beside them; an older reader refuses."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import blake3
import orjson
import pytest

import localtrack
from localtrack._doctor import check_store
from localtrack.errors import CorruptRunError

from . import s3server
from .helpers import run_gc, run_script

s3_server, s3, remote = s3server.s3_server, s3server.s3, s3server.remote  # the loopback S3 fixtures

A, B = b"shared shard " * 1000, b"format-1 only " * 700


def _b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _adir(store: Path) -> Path:
    return store / "p" / "artifacts"


def write_format_1(store: Path, name: str, version: int, files: dict[str, bytes]) -> None:
    """A format-1 version as localtrack wrote it before format 2 (docs/format.md): SHA-256
    blobs at blobs/<sh>/<sha256>, read-only, and the manifest naming them."""
    entries = {}
    for path, data in files.items():
        sha = _sha(data)
        blob = _adir(store) / "blobs" / sha[:2] / sha
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        blob.chmod(0o444)
        entries[path] = {"sha256": sha, "size": len(data)}
    listing = "\n".join(f"{p}\0{entries[p]['sha256']}" for p in sorted(entries))
    manifest = {"format": 1, "name": name, "type": "model", "version": version,
                "description": None, "metadata": {"old": True}, "created": time.time(),
                "logged_by": None, "files": entries, "references": {},
                "digest": _sha(listing.encode())}
    ndir = _adir(store) / "names" / name
    (ndir / "aliases").mkdir(parents=True, exist_ok=True)
    (ndir / f"v{version}.json").write_bytes(orjson.dumps(manifest))


def _manifest(store: Path, name: str, version: int) -> dict:
    return orjson.loads((_adir(store) / "names" / name / f"v{version}.json").read_bytes())


def _one_version(tmp_path: Path) -> Path:
    """A store holding p/model:v0, a format-2 version of one file w.bin (A); returns the store."""
    store = tmp_path / "store"
    (tmp_path / "w.bin").write_bytes(A)
    with localtrack.init(project="p", dir=store) as run:
        run.log_artifact(tmp_path / "w.bin", name="model", type="model")
    return store


def _rewrite_v0(store: Path, **fields: object) -> None:
    """Replace ``fields`` in p/model:v0's manifest, as a damaged or newer store holds it."""
    path = _adir(store) / "names" / "model" / "v0.json"
    path.write_bytes(orjson.dumps({**_manifest(store, "model", 0), **fields}))


def _blob_files(store: Path) -> set[str]:
    """Every file under blobs/, as a path relative to artifacts/."""
    blobs = _adir(store) / "blobs"
    return {p.relative_to(_adir(store)).as_posix() for p in blobs.rglob("*") if p.is_file()}


def _downloaded(art: localtrack.Artifact, root: Path) -> dict[str, bytes]:
    out = Path(art.download(root=root))
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _age(store: Path) -> None:
    old = time.time() - 2 * 24 * 3600
    for p in (_adir(store) / "blobs").rglob("*"):
        os.utime(p, (old, old))


def test_a_new_version_is_format_2_with_blake3_names(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(A)
    store = tmp_path / "store"
    with localtrack.init(project="p", dir=store) as run:
        art = localtrack.Artifact("model", "model").add_file(tmp_path / "w.bin")
        run.log_artifact(art.add_reference("s3://bucket/big.bin"))
    manifest = _manifest(store, "model", 0)
    assert manifest["format"] == 2
    assert manifest["files"] == {"w.bin": {"blake3": _b3(A), "size": len(A)}}
    listing = "big.bin\0ref\0s3://bucket/big.bin"
    assert manifest["digest"] == _b3(f"w.bin\0{_b3(A)}\n{listing}".encode()) == art.digest
    assert _blob_files(store) == {f"blobs/blake3/{_b3(A)[:2]}/{_b3(A)}"}
    ref, stored_file = localtrack.Api(store).artifact("p/model:v0").files()
    assert (stored_file.path, stored_file.digest, stored_file.sha256, stored_file.size) == \
        ("w.bin", f"blake3:{_b3(A)}", None, len(A))
    assert (ref.uri, ref.digest) == ("s3://bucket/big.bin", None)


def test_a_format_1_store_downloads_dedups_and_is_gc_safe(tmp_path: Path) -> None:
    """v0 is format 1 (by hand); the same files logged again are a new format-2 version v1
    (docs/format.md: the digests differ), logged once more they are v1 again (not written),
    and with one file changed v2 (the other's BLAKE3 blob reused). Every version downloads its
    own bytes; gc keeps the blobs of both kinds that a version names and collects the orphans
    of both kinds."""
    store, work = tmp_path / "store", tmp_path / "src"
    work.mkdir()
    write_format_1(store, "model", 0, {"a.bin": A, "sub/b.bin": B})
    api = localtrack.Api(store)
    old = api.artifact("p/model:latest")
    assert (old.version, old.metadata, old.aliases) == ("v0", {"old": True}, ["latest"])
    assert sorted((f.path, f.sha256, f.digest) for f in old.files()) == [
        ("a.bin", _sha(A), f"sha256:{_sha(A)}"), ("sub/b.bin", _sha(B), f"sha256:{_sha(B)}")]
    assert _downloaded(old, tmp_path / "d0") == {"a.bin": A, "sub/b.bin": B}
    assert _downloaded(old, tmp_path / "d0") == {"a.bin": A, "sub/b.bin": B}  # again: a no-op
    (work / "a.bin").write_bytes(A)
    (work / "sub").mkdir()
    (work / "sub" / "b.bin").write_bytes(B)
    with localtrack.init(project="p", dir=store) as run:
        used = run.use_artifact("model:v0")
        assert [r.id for r in used.used_by()] == [run.id]
        same = run.log_artifact(localtrack.Artifact("model", "model").add_dir(work))
        again = run.log_artifact(localtrack.Artifact("model", "model").add_dir(work))
        (work / "sub" / "b.bin").write_bytes(b"new")
        changed = run.log_artifact(localtrack.Artifact("model", "model").add_dir(work),
                                   aliases=["best"])
    assert (same.version, again.version, changed.version) == ("v1", "v1", "v2")
    assert [_manifest(store, "model", v)["format"] for v in range(3)] == [1, 2, 2]
    assert _blob_files(store) == {
        f"blobs/{_sha(A)[:2]}/{_sha(A)}", f"blobs/{_sha(B)[:2]}/{_sha(B)}",
        f"blobs/blake3/{_b3(A)[:2]}/{_b3(A)}", f"blobs/blake3/{_b3(B)[:2]}/{_b3(B)}",
        f"blobs/blake3/{_b3(b'new')[:2]}/{_b3(b'new')}"}
    assert [a.version for a in api.artifacts(name="p/model")] == ["v0", "v1", "v2"]
    assert api.artifact("p/model:best").logged_by().id == run.id
    # Orphans of both kinds, and a temporary: old ones go, named blobs of both formats stay.
    orphans = [_adir(store) / "blobs" / "ee" / ("ee" * 32),
               _adir(store) / "blobs" / "blake3" / "ff" / ("ff" * 32),
               _adir(store) / "blobs" / ".tmp-0123456789abcdef"]
    named = _blob_files(store)
    for collect in ("doctor --fix", "gc"):
        for path in orphans:
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(b"no manifest names me")
        _age(store)
        if collect == "gc":
            done = run_gc(store)
            assert done.returncode == 0 and "3 garbage file(s) deleted" in done.stdout, done
        else:
            fixed = [f for f in check_store(store, fix=True) if "orphan" in f.problem]
            assert sorted(Path(f.path) for f in fixed if f.fixed) == sorted(orphans)
        assert _blob_files(store) == named
    for v, want in ((0, {"a.bin": A, "sub/b.bin": B}), (1, {"a.bin": A, "sub/b.bin": B}),
                    (2, {"a.bin": A, "sub/b.bin": b"new"})):
        assert _downloaded(api.artifact(f"p/model:v{v}"), tmp_path / f"out{v}") == want


def test_a_damaged_format_1_blob_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_format_1(store, "model", 0, {"a.bin": A})
    blob = _adir(store) / "blobs" / _sha(A)[:2] / _sha(A)
    blob.chmod(0o644)
    blob.write_bytes(A[:-1] + b"!")
    with pytest.raises(CorruptRunError, match=r"'a\.bin' of artifact 'p/model:v0' is damaged.*sha256"):
        localtrack.Api(store).artifact("p/model:v0").download(root=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_blob_whose_bytes_are_not_its_blake3_name_is_refused_on_download(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (tmp_path / "ok.bin").write_bytes(A)
    (tmp_path / "w.bin").write_bytes(B)
    with localtrack.init(project="p", dir=store) as run:
        art = localtrack.Artifact("model", "model").add_file(tmp_path / "ok.bin")
        run.log_artifact(art.add_file(tmp_path / "w.bin"))
    blob = _adir(store) / "blobs" / "blake3" / _b3(B)[:2] / _b3(B)
    blob.chmod(0o644)
    blob.write_bytes(bytes([B[0] ^ 1]) + B[1:])  # same size: only the hash can tell
    with pytest.raises(CorruptRunError, match=r"'w\.bin' of artifact 'p/model:v0' is damaged.*blake3"):
        localtrack.Api(store).artifact("p/model:v0").download(root=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # not even the good file


def test_a_mixed_store_syncs_and_downloads_from_the_copy(
        tmp_path: Path, remote: tuple[str, dict[str, str]]) -> None:
    """A format-1 version and format-2 versions sharing its file go up each blob once (both
    kinds, each checked against its own hash); another node reads every version from the copy."""
    uri, env = remote
    store = tmp_path / "store"
    write_format_1(store, "model", 0, {"a.bin": A, "b.bin": B})
    (tmp_path / "a.bin").write_bytes(A)
    with localtrack.init(project="p", dir=store) as run:
        run.log_artifact(tmp_path / "a.bin", name="model", type="model")
        (tmp_path / "a.bin").write_bytes(b"changed")
        run.log_artifact(tmp_path / "a.bin", name="model", type="model")
    report = localtrack.sync(uri, dir=store)
    assert report.ok
    assert report.uploaded_bytes >= len(A) * 2 + len(B) + len(b"changed")
    assert localtrack.sync(uri, dir=store).uploaded_files == 0
    if not env:  # the directory copy holds the same blobs, under the same paths
        assert _blob_files(Path(uri)) == _blob_files(store) and len(_blob_files(store)) == 4
    reader = f"""
import sys, localtrack
from pathlib import Path
api = localtrack.Api({uri!r})
for v in range(3):
    out = Path(api.artifact(f"p/model:v{{v}}").download(root=Path(sys.argv[1]) / f"v{{v}}"))
    print(v, sorted((p.name, p.read_bytes()[:7].decode()) for p in out.iterdir()))
"""
    got = run_script(reader, str(tmp_path / "node-b"), env=env, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == [
        "0 [('a.bin', 'shared '), ('b.bin', 'format-')]", "1 [('a.bin', 'shared ')]",
        "2 [('a.bin', 'changed')]"]


OLDER_READER = """
import sys, localtrack
from pathlib import Path
from localtrack import _artifacts
_artifacts.ARTIFACT_FORMAT = 1
try:
    localtrack.Api(sys.argv[1]).artifact("p/model:v0")
except localtrack.errors.CorruptRunError as exc:
    print(exc)
orphans, damaged = _artifacts.orphan_blobs(Path(sys.argv[1]), "p", grace=0)
print(len(orphans), len(damaged))
"""


def test_an_older_reader_is_told_a_format_2_artifact_is_newer(tmp_path: Path) -> None:
    """A localtrack that reads format 1 only refuses a format-2 manifest, and its gc (which
    cannot read it) collects no blob: one it cannot read the manifest of may be named."""
    store = _one_version(tmp_path)
    res = run_script(OLDER_READER, str(store))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "uses artifact format 2, newer than this localtrack understands (1); upgrade" in lines[0]
    assert lines[1] == "0 1"


@pytest.mark.parametrize("fmt", [0, 3, "2", True, None], ids=["zero", "three", "text", "bool", "none"])
def test_a_manifest_of_an_unknown_format_is_refused(tmp_path: Path, fmt: object) -> None:
    store = _one_version(tmp_path)
    _rewrite_v0(store, format=fmt)
    with pytest.raises(CorruptRunError, match="upgrade localtrack" if fmt == 3 else "not valid"):
        localtrack.Api(store).artifact("p/model:v0")


@pytest.mark.parametrize("entry", [
    pytest.param({"sha256": "ab" * 32, "size": 3}, id="format-1-entry-in-format-2"),
    pytest.param({"blake3": "ab" * 32, "sha256": "ab" * 32, "size": 3}, id="both-hashes"),
    pytest.param({"blake3": "AB" * 32, "size": 3}, id="upper-case-hex"),
    pytest.param({"blake3": "ab" * 31, "size": 3}, id="short-hex"),
    pytest.param({"blake3": "ab" * 32, "size": "3"}, id="size-text"),
])
def test_a_format_2_entry_without_one_valid_blake3_is_refused(tmp_path: Path, entry: dict) -> None:
    store = _one_version(tmp_path)
    _rewrite_v0(store, files={"w.bin": entry})
    with pytest.raises(CorruptRunError, match="has no valid blake3 and size"):
        localtrack.Api(store).artifact("p/model:v0")
