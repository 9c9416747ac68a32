"""Sync uploads media blob logs before the rows and manifests that refer to them (issue 20)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import localtrack

from . import s3server
from .helpers import run_script, script, settle

s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures

IMAGES = """
import os, sys
os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0"  # finish() seals even these small logs
import numpy as np
import localtrack

def image(i):
    return localtrack.Image(np.full((4 + i, 5, 3), i * 20, dtype=np.uint8), caption=f"c{i}")
"""

LIVE = IMAGES + """
run = localtrack.init(project="p", id="live", dir=sys.argv[1])
for round_ in range(2):
    for i in range(3):
        run.log({"img": image(round_ * 3 + i), "x": i})
    print("ready", flush=True)
    sys.stdin.readline()  # the test syncs the live run here
run.finish()
"""

DONE = IMAGES + """
with localtrack.init(project="p", id=sys.argv[2], dir=sys.argv[1]) as run:
    for i in range(4):
        run.log({"img": image(i), "x": i})
    run.log({"imgs": [image(7), image(8)]})
"""


@pytest.fixture
def remote_uri(request, tmp_path):
    """A directory remote or a fresh bucket on the loopback S3 server."""
    if request.param == "dir":
        return str(tmp_path / "remote")
    server = request.getfixturevalue("s3")
    return server.uri(server.new_bucket())


def pixels(items: list[tuple[int, object]]) -> list[tuple[int, object]]:
    return [(step, [pixels_of(i) for i in item] if isinstance(item, list) else pixels_of(item))
            for step, item in items]


def pixels_of(image: object) -> tuple[object, ...]:
    return (image.mode, image.size, image.tobytes())  # type: ignore[attr-defined]


def same_media(local: Path, remote: str, path: str, key: str = "img") -> list[tuple[int, object]]:
    mine = pixels(localtrack.Api(local).run(path).media(key))
    assert mine and pixels(localtrack.Api(remote).run(path).media(key)) == mine
    return mine


def remote_wal(remote_uri: str) -> list[str]:
    return sorted(localtrack._remotes.open_remote(remote_uri).list("p/runs/live/wal"))


@pytest.mark.parametrize("remote_uri", ["dir", "s3"], indirect=True)
def test_a_live_run_s_media_go_up_incrementally_before_its_rows(store, remote_uri):
    with script(LIVE, str(store), stdin=subprocess.PIPE) as proc:  # closes its pipes, waits
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for round_ in range(2):
                assert proc.stdout.readline() == b"ready\n"
                report = localtrack.sync(remote_uri, dir=store)
                assert report.ok, report.pending
                got = same_media(store, remote_uri, "p/live")
                assert [step for step, _ in got] == list(range(3 * round_ + 3))
                remote = localtrack._remotes.open_remote(remote_uri)
                assert remote.list("p/runs/live/wal/00000000.blob")  # its chunks
                proc.stdin.write(b"\n")
                proc.stdin.flush()
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()
    settle(store)
    assert localtrack.sync(remote_uri, dir=store).ok
    # sealed now: the blob moved to segments/ on both sides, the remote's wal/ copy is dropped
    assert not (store / "p/runs/live/wal/00000000.blob").exists()
    assert (store / "p/runs/live/segments/00000000.blob").exists()
    assert "00000000.blob" not in remote_wal(remote_uri)
    assert len(same_media(store, remote_uri, "p/live")) == 6
    assert localtrack.Api(remote_uri).run("p/live").state == "finished"


@pytest.mark.parametrize("remote_uri", ["dir", "s3"], indirect=True)
def test_a_finished_run_s_sealed_blob_goes_up_whole(store, remote_uri):
    res = run_script(DONE, str(store), "done")
    assert res.returncode == 0, res.stderr
    settle(store)
    assert (store / "p/runs/done/segments/00000000.blob").exists()
    status = subprocess.run([sys.executable, "-m", "localtrack", "sync", "--to", remote_uri, "--dir",
                             str(store), "--status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    report = localtrack.sync(remote_uri, dir=store)
    assert report.ok, report.pending
    # --status counted the blob log too: what it said was pending is what went up
    assert f" {report.uploaded_files} file(s)" in status.stdout, (status.stdout, report)
    assert len(same_media(store, remote_uri, "p/done")) == 4
    assert [len(items) for _, items in same_media(store, remote_uri, "p/done", "imgs")] == [2]
    again = localtrack.sync(remote_uri, dir=store)
    assert again.ok and again.uploaded_files == 0


def test_a_sync_killed_mid_upload_converges(store, tmp_path):
    res = run_script(DONE, str(store), "done")
    assert res.returncode == 0, res.stderr
    settle(store)
    remote = tmp_path / "remote"
    # Killed after its first upload, again and again: each rerun goes further and ends complete.
    code = """
import os, signal, sys
import localtrack
from localtrack._remotes import _dir
put = _dir.DirRemote.put
def put_then_die(self, key, data):
    put(self, key, data)
    if key.endswith(".blob") or "/wal/" in key or key.endswith("manifest.json"):
        os.kill(os.getpid(), signal.SIGKILL)
_dir.DirRemote.put = put_then_die
localtrack.sync(sys.argv[1], dir=sys.argv[2])
"""
    kills = 0
    for _ in range(10):
        res = run_script(code, str(remote), str(store))
        if res.returncode == 0:
            break
        assert res.returncode == -9, res.stderr
        kills += 1
    assert kills >= 2  # killed after the sealed blob's upload, and after the manifest's at least
    assert localtrack.sync(str(remote), dir=store).ok
    assert len(same_media(store, str(remote), "p/done")) == 4


def test_clean_removes_a_synced_finished_run_with_media_and_keeps_an_unsynced_one(store, tmp_path):
    for rid in ("done", "late"):
        res = run_script(DONE, str(store), rid)
        assert res.returncode == 0, res.stderr
    settle(store)
    remote = tmp_path / "remote"
    assert localtrack.sync(str(remote), dir=store).ok
    expected = pixels(localtrack.Api(store).run("p/done").media("img"))
    # p/late's blob on the remote is not the local one (as if its upload never completed)
    with open(remote / "p/runs/late/segments/00000000.blob", "ab") as fh:
        fh.write(b"x")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "AWS_"))}
    out = subprocess.run([sys.executable, "-m", "localtrack", "sync", "--to", str(remote), "--dir",
                          str(store), "--clean"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "removed local copy of p/done" in out.stdout
    assert "not cleaning p/late: blob log segments/00000000.blob differs" in out.stderr
    assert sorted(r.path for r in localtrack.Api(store).runs()) == ["p/late"]
    assert pixels(localtrack.Api(remote).run("p/done").media("img")) == expected


KILL_AFTER_LOG_CHUNK = """
import os, signal, sys
import localtrack
from localtrack._remotes import _dir
put = _dir.DirRemote.put
def put_then_die(self, key, data):
    put(self, key, data)
    if "/wal/00000000.jsonl/" in key:  # a chunk of history rows is on the remote
        os.kill(os.getpid(), signal.SIGKILL)
_dir.DirRemote.put = put_then_die
localtrack.sync(sys.argv[1], dir=sys.argv[2])
"""


def test_a_sync_killed_right_after_a_log_chunk_leaves_every_remote_row_s_media_readable(
        store, tmp_path):
    remote = tmp_path / "remote"
    with script(LIVE, str(store), stdin=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            assert proc.stdout.readline() == b"ready\n"
            assert localtrack.sync(str(remote), dir=store).ok  # the run is on the remote now
            proc.stdin.write(b"\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"ready\n"  # three more images, still live
            res = run_script(KILL_AFTER_LOG_CHUNK, str(remote), str(store))
            assert res.returncode == -9, res.stderr
            # the rows just sent name items of the blob: those went up before them
            steps = [step for step, _ in localtrack.Api(remote).run("p/live").media("img")]
            assert steps == list(range(6))
            assert localtrack.sync(str(remote), dir=store).ok
            same_media(store, str(remote), "p/live")
            proc.stdin.write(b"\n")
            proc.stdin.flush()
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize("seal", [False, True], ids=["live-blob-chunks", "sealed-blob"])
def test_an_image_s_masks_and_boxes_read_back_from_a_synced_copy(store, tmp_path, monkeypatch,
                                                                 seal):
    """A mask is an item of its own in the blob: sync sends it with the image, and a reader
    of the remote copy finds it through the image's tag (chunks of a live blob, or the sealed
    blob)."""
    import numpy as np

    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0" if seal else str(1 << 40))
    mask = np.zeros((6, 8), np.uint8)
    mask[1:3, 2:5] = 3
    boxes = {"p": {"box_data": [{"position": {"middle": [4, 3], "width": 2, "height": 2},
                                 "domain": "pixel", "class_id": 3}], "class_labels": {3: "x"}}}
    with localtrack.init(project="p", id="mk", dir=store) as run:
        for i in range(3):
            run.log({"img": localtrack.Image(np.full((6, 8, 3), i, np.uint8), boxes=boxes,
                                             masks={"m": {"mask_data": mask * (i % 2)}})})
    settle(store)
    assert (store / "p/runs/mk/segments/00000000.blob").exists() == seal
    remote = str(tmp_path / "remote")
    assert localtrack.sync(remote, dir=store).ok
    read = localtrack.Api(remote).run("p/mk").media("img")
    assert [int(im.masks["m"]["mask_data"].sum()) for _, im in read] == [0, 18, 0]
    assert all(im.boxes["p"]["class_labels"] == {3: "x"} for _, im in read)
    assert pixels(read) == pixels(localtrack.Api(store).run("p/mk").media("img"))
