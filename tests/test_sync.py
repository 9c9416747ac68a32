"""Sync to a directory remote and to a real S3 server on loopback; the remote reads as a store."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import localtrack
from localtrack import _sync, _wal
from localtrack._codec import dumps, loads
from localtrack._remotes import _chunks, open_remote, redact, remote_key
from localtrack._remotes._base import Entry
from localtrack._remotes._dir import DirRemote
from localtrack._sync import _upload, _watch
from localtrack.errors import RemoteError, SyncError, UsageError

from . import s3server
from .helpers import run_script, settle
from .s3server import ACCESS_KEY, SECRET_KEY, S3Server

s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures

PAD = "x" * 90  # ~1.2 MiB over 10k steps: finish() seals it into a Parquet segment


def make_store(store: Path) -> None:
    """Runs of every shape: sealed + unsealed history, resumed, crashed, NaN, strings, summary."""
    run = localtrack.init(project="p", id="big", dir=store, config={"lr": 0.1, "opt": {"b": 2}},
                          name="big one", tags=["t"])
    for i in range(10_000):
        run.log({"loss": 1.0 / (i + 1), "pad": PAD})
    run.finish()
    run = localtrack.init(project="p", id="big", dir=store, resume="must")
    for i in range(300):
        run.log({"loss": math.nan if i == 5 else -i, "acc": i, "tag": f"s{i}"})
    run.summary["best"] = 0.5
    run.finish()
    run = localtrack.init(project="p", id="small", dir=store)
    run.log({"a": 1, "b": {"c": "x"}})
    run.log({"a": math.inf}, commit=False)
    run.log({"d": None})
    run.finish(exit_code=3)
    run = localtrack.init(project="q", id="crashed", dir=store)
    for i in range(50):
        run.log({"x": i})
    run._drop()  # no finish(): the run reads as crashed once this process lets go of its lock
    from localtrack import _session

    _session.forget(run)
    settle(store)  # sealing runs after finish(): let it end, so passes below see a still store


def assert_same(local_dir, remote_dir) -> None:
    local, remote = localtrack.Api(local_dir), localtrack.Api(remote_dir)
    lruns = {r.path: r for r in local.runs()}
    rruns = {r.path: r for r in remote.runs()}
    assert sorted(lruns) == sorted(rruns)
    for path, lr in lruns.items():
        rr = rruns[path]
        assert (rr.name, rr.tags, rr.state, rr.last_step) == (lr.name, lr.tags, lr.state, lr.last_step)
        assert rr.config == lr.config and rr.summary == lr.summary
        assert [e["event"] for e in rr.events] == [e["event"] for e in lr.events]
        assert same_table(rr.history_table(), lr.history_table()), path


def same_table(a, b) -> bool:
    """Equal schema and values, NaN equal to NaN (Table.equals says NaN != NaN)."""
    return a.schema == b.schema and repr(a.to_pylist()) == repr(b.to_pylist())


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "AWS_"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "localtrack", *args], capture_output=True, text=True,
                          timeout=timeout, env=full)


@pytest.fixture
def remote_uri(request, tmp_path):
    """A directory remote or a fresh bucket on the loopback S3 server."""
    if request.param == "dir":
        return str(tmp_path / "remote")
    server = request.getfixturevalue("s3")
    return server.uri(server.new_bucket())


@pytest.mark.parametrize("remote_uri", ["dir", "s3"], indirect=True)
def test_remote_is_a_store_equal_to_the_local_one(store, remote_uri):
    make_store(store)
    report = localtrack.sync(remote_uri, dir=store)
    assert report.ok and report.runs == 3 and report.uploaded_files > 10
    assert_same(store, remote_uri)
    assert localtrack.Api(store).run("p/big").history_table().num_rows == 10_300
    again = localtrack.sync(remote_uri, dir=store)
    assert again.ok and again.uploaded_files == 0 and again.uploaded_bytes == 0


def test_live_run_goes_up_incrementally_with_few_chunks(store, tmp_path):
    remote = tmp_path / "remote"
    run = localtrack.init(project="p", id="live", dir=store)
    sizes = []
    for round_ in range(40):
        run.log({"x": round_, "y": "z" * round_})
        report = localtrack.sync(str(remote), dir=store)
        sizes.append(report.uploaded_bytes)
        remote_steps = localtrack.Api(remote).run("p/live").history_table().column("_step").to_pylist()
        assert remote_steps == list(range(round_ + 1))
        assert localtrack.Api(remote).run("p/live").state == "running"
    chunks = os.listdir(remote / "p/runs/live/wal/00000000.jsonl")
    assert len(chunks) <= 8, chunks  # merged as a binary counter, not one per pass
    # Each pass sends its new record merged with a few small chunks, not the whole log: every
    # byte goes up a few times (log2 of the passes), where resending the log would be ~20 times.
    # (Merging is by size, so any one pass may merge everything: bound the total, not a pass.)
    log_bytes = _wal.data_size(store / "p/runs/live/wal/00000000.jsonl")  # without the padding
    assert sum(sizes[1:]) <= 8 * log_bytes, (sizes, log_bytes)
    run.finish()
    localtrack.sync(str(remote), dir=store)
    assert_same(store, remote)
    assert localtrack.Api(remote).run("p/live").state == "finished"


def test_status_lists_pending_then_up_to_date(store, tmp_path):
    make_store(store)
    remote = str(tmp_path / "remote")
    res = cli("sync", "--to", remote, "--dir", str(store), "--status")
    assert res.returncode == 0, res.stderr
    assert "3 of 3 run(s) pending" in res.stdout and "never" in res.stdout
    res = cli("sync", "--to", remote, "--dir", str(store), "p")
    assert res.returncode == 0, res.stderr
    assert "synced 2 of 2 run(s)" in res.stdout
    res = cli("sync", "--to", remote, "--dir", str(store), "--status")
    assert "1 of 3 run(s) pending" in res.stdout
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("q/crashed"))
    assert "crashed" in line and "file(s)" in line
    res = cli("sync", "--to", remote, "--dir", str(store))
    assert res.returncode == 0 and "synced 1 of 3" in res.stdout
    res = cli("sync", "--to", remote, "--dir", str(store))
    assert res.returncode == 0 and "nothing to upload: 3 run(s) up to date" in res.stdout


def test_remote_store_read_by_the_cli(store, s3):
    make_store(store)
    uri = s3.uri(s3.new_bucket())
    res = cli("sync", "--to", uri, "--dir", str(store), env=s3.env())
    assert res.returncode == 0, res.stderr
    res = cli("runs", "--dir", uri, env=s3.env())
    assert res.returncode == 0, res.stderr
    assert "p/big" in res.stdout and "10300" in res.stdout and "crashed" in res.stdout
    res = cli("show", "p/small", "--dir", uri, env=s3.env())
    assert res.returncode == 0, res.stderr
    assert "failed" in res.stdout and "a: inf" in res.stdout


def test_unreachable_remote_is_pending_and_exits_non_zero(store):
    make_store(store)
    uri = "s3://nobucket/x?endpoint_override=127.0.0.1:9&scheme=http"
    env = {**S3Server().env()}
    res = cli("sync", "--to", uri, "--dir", str(store), "--retries", "0", env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Could not reach" in res.stderr and "every run is pending" in res.stderr
    assert "Traceback" not in res.stderr
    with pytest.raises(RemoteError) as info:
        localtrack.Api(uri).runs()
    assert info.value.transient


def test_missing_bucket_and_bad_uris_are_one_clear_error(store, s3):
    make_store(store)
    res = cli("sync", "--to", s3.uri("no-such-bucket"), "--dir", str(store), env=s3.env())
    assert res.returncode == 2 and "bucket 'no-such-bucket'" in res.stderr and "does not exist" in res.stderr
    res = cli("sync", "--to", "s3://b/x?colour=red", "--dir", str(store), env=s3.env())
    assert res.returncode == 2 and "unknown query parameter(s) colour" in res.stderr
    res = cli("sync", "--to", "nosuchscheme://b/x", "--dir", str(store))
    assert res.returncode == 2 and "Cannot open the remote" in res.stderr and "Traceback" not in res.stderr
    with pytest.raises(UsageError):
        localtrack.sync(str(store), dir=store)  # a store is not its own remote


def test_no_credential_is_printed_or_written(store, s3, tmp_path):
    make_store(store)
    bucket = s3.new_bucket()
    uri = (f"s3://{ACCESS_KEY}:{SECRET_KEY}@{bucket}/team?endpoint_override=127.0.0.1:{s3.port}"
           "&scheme=http")
    outputs = []
    for args in (["sync", "--to", uri], ["sync", "--to", uri, "--status"], ["runs", "--dir", uri],
                 ["sync", "--to", uri.replace(bucket, "missing-bucket")],
                 ["sync", "--to", uri.replace(str(s3.port), "9"), "--retries", "0"]):
        res = cli(*args, *(["--dir", str(store)] if args[0] == "sync" else []),
                  env={"AWS_EC2_METADATA_DISABLED": "true"})
        outputs.append(res.stdout + res.stderr)
    assert "synced 3 of 3" in outputs[0] and "p/big" in outputs[2]
    assert "Could not reach" in outputs[4]
    for text in outputs:
        assert SECRET_KEY not in text and ACCESS_KEY not in text, text
    fs = s3.filesystem()
    import pyarrow.fs as pafs

    remote_files = [i.path for i in fs.get_file_info(pafs.FileSelector(bucket, recursive=True))
                    if i.type == pafs.FileType.File]
    blobs = [p.read_bytes() for p in store.rglob("*") if p.is_file()]
    blobs += [fs.open_input_stream(p).read() for p in remote_files]
    assert len(blobs) > 20
    for blob in blobs:
        assert SECRET_KEY.encode() not in blob and ACCESS_KEY.encode() not in blob
    assert redact(uri) == f"s3://{bucket}/team?endpoint_override=127.0.0.1:{s3.port}&scheme=http"


def test_clean_removes_only_finished_runs_complete_on_the_remote(store, tmp_path):
    make_store(store)
    failed = localtrack.init(project="q", id="failed", dir=store)
    failed.log({"x": 1})
    failed.finish(exit_code=1)  # may be resumed: --clean keeps it (issue 16)
    with localtrack.init(project="q", id="done", dir=store, config={"k": 1}) as done:
        done.log({"x": 1})
    remote = tmp_path / "remote"
    localtrack.sync(str(remote), dir=store)
    before = {r.path: r.history_table() for r in localtrack.Api(remote).runs()}
    (remote / "q/runs/done/config.json").write_text('{"tampered": 1}')  # sizes differ now
    res = cli("sync", "--to", str(remote), "--dir", str(store), "--clean")
    assert res.returncode == 0, res.stderr
    assert "removed local copy of p/big" in res.stdout
    assert (res.stdout + res.stderr).count("removed") == 1  # said once, not logged as well
    assert "not cleaning q/done: config.json differs" in res.stderr
    left = sorted(r.path for r in localtrack.Api(store).runs())
    # a changed copy is kept; a failed (p/small, q/failed) or crashed run may be resumed
    assert left == ["p/small", "q/crashed", "q/done", "q/failed"]
    assert same_table(localtrack.Api(remote).run("p/big").history_table(), before["p/big"])
    again = localtrack.init(project="p", id="big", dir=store, resume="allow")
    assert again.step == 0 and not again.resumed  # the id is free again
    again.finish()


def test_store_to_store(store, tmp_path, s3):
    make_store(store)
    usb = tmp_path / "usb"
    localtrack.sync(str(usb), dir=store)
    uri = s3.uri(s3.new_bucket())
    localtrack.sync(uri, dir=usb)
    assert_same(store, uri)
    assert localtrack.sync(uri, dir=usb).uploaded_files == 0


def test_rewritten_local_log_is_uploaded_again(store, tmp_path):
    remote = tmp_path / "remote"
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(20):
        run.log({"x": i})
    localtrack.sync(str(remote), dir=store)
    run.finish()
    wal = store / "p/runs/r/wal/00000000.jsonl"
    data = wal.read_bytes()
    lines = data.splitlines(keepends=True)
    wal.write_bytes(b"".join(lines[:10]))  # as if power was lost after sync read the page cache
    run = localtrack.init(project="p", id="r", dir=store, resume="must")
    for i in range(3):
        run.log({"x": -i})
    run.finish()
    report = localtrack.sync(str(remote), dir=store)
    assert report.ok
    assert_same(store, remote)


def test_another_sync_to_the_same_remote_is_refused(store, tmp_path):
    make_store(store)
    remote = str(tmp_path / "remote")
    lock = store / ".sync" / f"{remote_key(remote)}.lock"
    with _sync.open_syncer(remote, store):
        record = lock.read_bytes()
        assert loads(record)["pid"] == os.getpid()
        with pytest.raises(SyncError, match="Another localtrack sync"):
            localtrack.sync(remote, dir=store)
        res = cli("sync", "--to", remote, "--dir", str(store))
        assert res.returncode == 2 and "Another localtrack sync" in res.stderr
        assert f"pid {os.getpid()}" in res.stderr
        assert lock.read_bytes() == record  # a refused sync leaves the holder's record alone
    assert lock.read_bytes() == b""
    assert localtrack.sync(remote, dir=store).ok


SYNC_ON_A_FULL_DISK = """
import resource, sys, localtrack
# RLIMIT_FSIZE stands in for a full disk (see test_resources): writing the lock's owner record fails.
resource.setrlimit(resource.RLIMIT_FSIZE, (16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    localtrack.sync(sys.argv[2], dir=sys.argv[1])
except localtrack.errors.StorageError as exc:
    print(exc)
"""


def test_a_full_disk_while_taking_the_sync_lock_is_a_storage_error(store, tmp_path):
    one_run(store)
    remote = str(tmp_path / "remote")
    res = run_script(SYNC_ON_A_FULL_DISK, str(store), remote)
    assert res.returncode == 0 and "owner record into the lock file" in res.stdout, res.stderr
    assert f"{remote_key(remote)}.lock" in res.stdout
    assert (store / ".sync" / f"{remote_key(remote)}.lock").read_bytes() == b""
    assert localtrack.sync(remote, dir=store).ok


def one_run(store: Path) -> None:
    with localtrack.init(project="p", id="r", dir=store) as run:
        run.log({"x": 1})
    settle(store)


def test_folders_that_are_not_runs_are_skipped_with_one_warning(store, tmp_path, caplog):
    one_run(store)
    (store / "p/runs/stray").mkdir()  # no run.json
    (store / "p/runs/bad name").mkdir()
    (store / "bad name/runs").mkdir(parents=True)
    remote = str(tmp_path / "remote")
    with _sync.open_syncer(remote, store) as syncer:
        syncer.check()
        reports = [syncer.run_once() for _ in range(2)]  # the daemon lists on every full pass
    assert all(r.ok and r.runs == 1 for r in reports)
    warned = sorted(r.message for r in caplog.records if r.message.startswith("skipped "))
    assert [w.split(":")[0] for w in warned] == ["skipped bad name", "skipped p/bad name",
                                                 "skipped p/stray"]
    assert "has no run.json" in warned[2] and "not a valid project name" in warned[0]
    res = cli("sync", "--to", remote, "--dir", str(store))
    assert res.returncode == 0 and "localtrack: skipped p/stray: has no run.json" in res.stderr
    assert "nothing to upload: 1 run(s) up to date" in res.stdout


STATE_KEYS = ["v", "remote", "remote_id", "segments", "manifest", "logs", "files", "lock", "sig",
              "synced_at", "blobs"]


def state_file(store: Path) -> Path:
    return next((store / "p/runs/r/sync").iterdir())


def test_the_sync_state_keeps_its_documented_fields(store, tmp_path):
    one_run(store)
    remote = str(tmp_path / "remote")
    localtrack.sync(remote, dir=store)
    data = state_file(store).read_bytes()
    state = loads(data)
    assert list(state) == STATE_KEYS and state["v"] == 1 and state["remote"] == remote
    assert sorted(state["logs"]) == ["events.jsonl", "wal/00000000.jsonl"]
    assert all(list(e) == ["sent", "chunks", "tail", "frame"] for e in state["logs"].values())
    assert _upload.SyncState.parse(data, remote, state["remote_id"]).dump() == data
    assert _upload.SyncState.parse(data, remote, "another-remote").dump() != data


@pytest.mark.parametrize("damage", [
    pytest.param(lambda s: s["logs"]["events.jsonl"].update(sent="x"), id="sent-not-a-number"),
    pytest.param(lambda s: s["logs"]["events.jsonl"].update(chunks=[[0]]), id="chunk-without-size"),
    pytest.param(lambda s: s["logs"].update({"events.jsonl": 5}), id="log-not-a-record"),
    pytest.param(lambda s: s.update(files=["run.json"]), id="files-not-a-map"),
])
def test_a_sync_state_with_a_bad_field_is_dropped_and_all_checked_again(store, tmp_path, damage):
    one_run(store)
    remote = str(tmp_path / "remote")
    localtrack.sync(remote, dir=store)
    state = loads(state_file(store).read_bytes())
    damage(state)
    state_file(store).write_bytes(dumps(state))
    with localtrack.init(project="p", id="r", dir=store, resume="must") as run:
        run.log({"x": 2})
    settle(store)
    assert localtrack.sync(remote, dir=store).ok
    assert_same(store, remote)


def test_damaged_log_stops_at_the_damage(store, tmp_path):
    remote = tmp_path / "remote"
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(10):
        run.log({"x": i})
    run.finish()
    wal = store / "p/runs/r/wal/00000000.jsonl"
    data = bytearray(wal.read_bytes())
    cut = data.index(b'"x":4')
    data[cut + 4] = ord("9")  # the frame covering record 4 fails its checksum
    wal.write_bytes(bytes(data))
    with pytest.raises(SyncError) as info:
        localtrack.sync(str(remote), dir=store)
    assert "damaged record" in info.value.pending["p/r"]
    chunk = next((remote / "p/runs/r/wal/00000000.jsonl").iterdir()).read_bytes()
    # what went up is what the checksums vouch for: whole frames before the damage
    assert chunk == bytes(data[:len(chunk)]) and 0 < len(chunk) < cut
    assert b'"_crc":' in chunk.splitlines()[-1]


def test_chunks_join_overlaps_and_stop_at_gaps():
    assert _chunks.join([(0, b"abc"), (3, b"de")]) == b"abcde"
    assert _chunks.join([(3, b"de"), (0, b"abcde"), (1, b"bc")]) == b"abcde"
    assert _chunks.join([(0, b"ab"), (3, b"de")]) == b"ab"
    assert _chunks.join([(1, b"b")]) == b""
    entries = {_chunks.chunk_name(0): Entry(False, 3, 0), _chunks.chunk_name(3): Entry(False, 2, 0),
               _chunks.chunk_name(9): Entry(False, 2, 0), ".tmp-x": Entry(False, 5, 0)}
    assert _chunks.chain_end(entries) == 5


def test_a_walk_lists_every_object_below_a_folder(tmp_path, s3):
    """Remote.walk: every object below a key by its relative path, temporaries (files and
    folders) left out, the same from a local folder, a directory remote (folder by folder)
    and S3 (one listing of the prefix)."""
    files = {"a/wal/00000000.jsonl/0000000000000000.jsonl": b"x", "a/events.jsonl": b"yz",
             "b/c/d": b"", "top": b"t"}
    skipped = {"a/.tmp-part": b"no", ".tmp-sync/a/b": b"no"}
    root = tmp_path / "remote"
    for rel, data in {**files, **skipped}.items():
        (root / "labels" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "labels" / rel).write_bytes(data)
    bucket = open_remote(s3.uri(s3.new_bucket()))
    for rel, data in {**files, **skipped}.items():
        bucket.put(f"labels/{rel}", data)
    s3.requests.clear()
    listed = bucket.walk("labels")
    assert [r for r in s3.requests if r[0] == "GET"] == [s3.requests[0]]  # one listing
    for walk in (listed, DirRemote(root).walk("labels"), _chunks.walk(root / "labels")):
        assert {rel: e.size for rel, e in walk.items()} == {rel: len(d) for rel, d in files.items()}
        assert not any(e.is_dir for e in walk.values())
    assert bucket.walk("nothing") == DirRemote(root).walk("nothing") == {}
    assert _chunks.walk(root / "nothing") == {}


def test_merge_counts_like_a_binary_counter():
    assert _upload.merge_count([[0, 10]]) == 1
    assert _upload.merge_count([[0, 10], [10, 10]]) == 2
    assert _upload.merge_count([[0, 20], [20, 10]]) == 1
    assert _upload.merge_count([[0, 20], [20, 10], [30, 10]]) == 3
    assert _upload.merge_count([[0, 2 << 20], [2 << 20, 3 << 20]]) == 1  # big chunks stay


@pytest.mark.parametrize(("path", "expected"), [
    pytest.param("/mnt/lustre/store", "lustre", id="lustre"),
    pytest.param("/home/u/store", "nfs4", id="nfs-home"),
    pytest.param("/tmp/x", "ext4", id="local"),
    pytest.param("/mnt/my disk/s", "gpfs", id="escaped-space"),
])
def test_mount_type_from_proc_mounts(path, expected, monkeypatch):
    mounts = ("/dev/sda1 / ext4 rw 0 0\nserver:/home /home nfs4 rw 0 0\n"
              "10.0.0.1@o2ib:/fs /mnt/lustre lustre rw 0 0\nfs1 /mnt/my\\040disk gpfs rw 0 0\n")
    monkeypatch.setattr(os.path, "realpath", lambda p: str(p))
    assert _watch.mount_type(Path(path), mounts) == expected
    assert (expected in _watch.NETWORK_FS) == (expected != "ext4")


def test_dirty_runs_from_event_paths(tmp_path):
    dirty = _watch._Dirty(tmp_path)
    for rel in ("p/runs/a/wal/00000000.jsonl", "p/locks/b.lock", "p/runs/c/sync/k.json",
                "p/runs/.tmp-d-1/run.json", "p/auto/x.json", ".sync/k.lock"):
        dirty.touched(str(tmp_path / rel))
    assert sorted(dirty.take()) == [("p", "a"), ("p", "b")]


def test_open_remote_kinds(tmp_path):
    assert open_remote(str(tmp_path)).url == str(tmp_path)
    assert open_remote(f"file://{tmp_path}").url == str(tmp_path)
    with pytest.raises(UsageError, match="both an access key and a secret key"):
        open_remote("s3://b/p?access_key=only")


def test_a_wiped_remote_is_filled_again(store, tmp_path):
    make_store(store)
    remote = tmp_path / "remote"
    first = localtrack.sync(str(remote), dir=store)
    import shutil

    shutil.rmtree(remote)  # someone emptied the bucket / formatted the disk
    again = localtrack.sync(str(remote), dir=store)
    assert again.uploaded_files == first.uploaded_files
    assert_same(store, remote)


def test_history_of_a_merged_step_with_a_key_only_ever_null(store, tmp_path):
    """Regression: a step merged from two records plus a key logged only as None broke history()."""
    run = localtrack.init(project="p", id="r", dir=store)
    run.log({"a": 1})
    run.log({"a": 2.0}, commit=False)
    run.log({"d": None})
    table = localtrack.Api(store).run("p/r").history_table()
    assert table.column_names == ["_step", "_timestamp", "a", "d"]
    assert table.column("a").to_pylist() == [1.0, 2.0] and table.column("d").to_pylist() == [None, None]
    run.finish()
    localtrack.sync(str(tmp_path / "remote"), dir=store)
    assert_same(store, tmp_path / "remote")


class FlakyRemote(DirRemote):
    """A real directory remote whose first uploads fail as a dropped connection would."""

    def __init__(self, root, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def put(self, key: str, data: bytes) -> None:
        if self.failures:
            self.failures -= 1
            raise RemoteError(f"Could not write {key!r}: connection reset", url=self.url, transient=True)
        super().put(key, data)


def test_transient_failures_are_retried_with_backoff(store, tmp_path, caplog):
    make_store(store)
    remote = FlakyRemote(tmp_path / "remote", failures=2)
    caplog.set_level(logging.INFO, logger="localtrack")
    started = time.monotonic()
    with _sync.Syncer(store, remote, retries=3, jobs=1) as syncer:
        syncer.check()  # its first write (the remote's id) meets the two failures
        report = syncer.run_once()
    assert report.ok and remote.failures == 0
    assert time.monotonic() - started >= 1.5  # waited 0.5 s, then 1 s
    assert [r.message.split("; ")[-1] for r in caplog.records if "retrying" in r.message] == [
        "retrying in 0.5 s", "retrying in 1.0 s"]
    assert_same(store, tmp_path / "remote")
    other = FlakyRemote(tmp_path / "other", failures=0)
    with _sync.Syncer(store, other, retries=1) as syncer:
        syncer.check()
        other.failures = 99  # the connection drops for good after the check
        report = syncer.run_once()
    assert set(report.pending) == {"p/big", "p/small", "q/crashed"}  # one run failed; the rest waited
    assert all("connection reset" in why for why in report.pending.values())


def test_a_remote_inside_the_store_is_refused(store):
    make_store(store)
    with pytest.raises(UsageError, match="inside it"):
        localtrack.sync(str(store / "backup"), dir=store)


# -- several runs at a time (--jobs) -------------------------------------------------------------


def many_runs(store: Path, n: int = 12) -> None:
    """Small finished runs, a crashed one, and forks (one of a fork) whose ids sort before
    their parents', so that id order alone would send a fork first."""
    for i in range(n):
        with localtrack.init(project="many", id=f"r{i:02d}", dir=store, config={"i": i}) as run:
            for step in range(30):
                run.log({"v": step * i, "s": f"x{step}"})
    with localtrack.init(project="many", id="a-fork", dir=store, fork_from="r07?_step=20") as run:
        run.log({"v": -1.0})
    with localtrack.init(project="many", id="a-fork2", dir=store, fork_from="a-fork?_step=21") as run:
        run.log({"v": -2.0})
    settle(store)


class RecordingRemote(DirRemote):
    """A real directory remote that notes the order of its writes (from any thread)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.puts: list[str] = []

    def put(self, key: str, data: bytes) -> None:
        super().put(key, data)
        self.puts.append(key)  # list.append is atomic: the threads' order, as the remote saw it


def remote_objects(uri: str) -> dict[str, bytes]:
    """Every object of a remote but its random id, by key."""
    remote = open_remote(uri)

    def walk(key: str) -> dict[str, bytes]:
        out = {}
        for name, entry in remote.list(key).items():
            sub = f"{key}/{name}" if key else name
            if entry.is_dir:
                out.update(walk(sub))
            elif sub != ".localtrack-remote.json":
                out[sub] = remote.get(sub)
        return out

    return walk("")


@pytest.mark.parametrize("remote_uri", ["dir", "s3"], indirect=True)
def test_many_runs_with_four_jobs_end_as_with_one(store, remote_uri, tmp_path):
    make_store(store)
    many_runs(store)
    one = str(tmp_path / "one")
    first = localtrack.sync(one, dir=store, jobs=1)
    progress = Counting()  # what the four threads report, as a progress bar sees it
    report = _sync.sync(remote_uri, dir=store, jobs=4, progress=progress)
    assert report.ok and report.runs == 17 and report.synced_runs == sorted(report.synced_runs)
    assert progress.advanced == report.uploaded_bytes <= progress.total
    assert (report.uploaded_files, report.uploaded_bytes) == (first.uploaded_files, first.uploaded_bytes)
    assert_same(store, remote_uri)
    assert localtrack.Api(remote_uri).run("many/a-fork2").history_table().num_rows == 23
    objects = remote_objects(remote_uri)
    assert objects == remote_objects(one) and len(objects) > 60
    again = localtrack.sync(remote_uri, dir=store, jobs=4)
    assert again.ok and again.uploaded_files == 0 and again.runs == 17


def test_each_run_keeps_its_upload_order_and_a_fork_follows_its_parent(store, tmp_path):
    many_runs(store)
    orders = []
    for jobs in (1, 4):
        remote = RecordingRemote(tmp_path / f"remote{jobs}")
        with _sync.Syncer(store, remote, jobs=jobs) as syncer:
            syncer.check()
            assert syncer.run_once().ok
        orders.append(remote.puts)
    serial, parallel = orders
    assert sorted(serial) == sorted(parallel)
    for run in {key.split("/")[2] for key in serial if "/runs/" in key}:
        prefix = f"many/runs/{run}/"
        assert [k for k in parallel if k.startswith(prefix)] == [k for k in serial if k.startswith(prefix)]
        assert [k for k in serial if k.startswith(prefix)][-1] == prefix + "run.json"  # last

    def last_put(order: list[str], run: str) -> int:
        return max(i for i, k in enumerate(order) if k.startswith(f"many/runs/{run}/"))

    def first_put(order: list[str], run: str) -> int:
        return min(i for i, k in enumerate(order) if k.startswith(f"many/runs/{run}/"))

    for order in orders:  # ids sort a-fork, a-fork2, r00 ...: id order would send forks first
        assert last_put(order, "r07") < first_put(order, "a-fork")
        assert last_put(order, "a-fork") < first_put(order, "a-fork2")


def test_a_damaged_run_does_not_stop_the_others(store, tmp_path):
    many_runs(store)
    wal = store / "many/runs/r03/wal/00000000.jsonl"
    data = bytearray(wal.read_bytes())
    cut = data.index(b'"v":30')  # step 10 of r03
    data[cut + 4] = ord("9")  # its frame fails its checksum
    wal.write_bytes(bytes(data))
    remote = tmp_path / "remote"
    with pytest.raises(SyncError) as info:
        localtrack.sync(str(remote), dir=store, jobs=4)
    assert list(info.value.pending) == ["many/r03"]
    assert "damaged record" in info.value.pending["many/r03"]
    local = {r.path: r for r in localtrack.Api(store).runs()}
    remote_runs = {r.path: r for r in localtrack.Api(remote).runs()}
    # its run.json goes up last, so the damaged run is not listed there; every other run is whole
    assert sorted(remote_runs) == sorted(set(local) - {"many/r03"})
    for path, rr in remote_runs.items():
        assert same_table(rr.history_table(), local[path].history_table()), path
    assert (remote / "many/runs/r03/wal/00000000.jsonl").is_dir()  # what the checksums vouch for


class Counting:
    """A progress display (the Progress protocol) that counts; with ``stop_after``, its user
    presses Ctrl-C once that many bytes went up."""

    def __init__(self, stop=None, stop_after: int = 0) -> None:
        self.stop, self.stop_after, self.total, self.advanced = stop, stop_after, 0, 0

    def start(self, total_bytes: int) -> None:
        self.total = total_bytes

    def advance(self, nbytes: int) -> None:
        self.advanced += nbytes
        if self.stop is not None and self.advanced >= self.stop_after:
            self.stop.set()

    def close(self) -> None:
        pass


def test_a_stop_ends_the_runs_in_flight_between_two_uploads(store, tmp_path):
    many_runs(store)
    import threading

    stop = threading.Event()
    progress = Counting(stop, stop_after=3000)
    remote = tmp_path / "remote"
    with _sync.open_syncer(str(remote), store, jobs=4, progress=progress, stop=stop) as syncer:
        syncer.check()
        report = syncer.run_once()
    assert report.pending and 0 < report.uploaded_bytes < progress.total
    assert set(report.pending.values()) <= {
        "stopped", "stopped before it was complete; the next sync continues it",
        "it is a fork of many/r07, which is not fully synced yet",
        "it is a fork of many/a-fork, which is not fully synced yet"}
    from .test_sync_faults import assert_remote_is_a_prefix

    assert_remote_is_a_prefix(store, remote)
    assert localtrack.sync(str(remote), dir=store, jobs=4).ok
    assert_same(store, remote)


def test_jobs_defaults_and_bad_values(store, tmp_path, s3):
    one_run(store)
    assert _sync.open_syncer(str(tmp_path / "r"), store).jobs == _sync._syncer.DIR_JOBS == 4
    assert _sync.open_syncer(s3.uri(s3.new_bucket()), store).jobs == _sync._syncer.OBJECT_STORE_JOBS == 16
    for bad in (0, -2, 1.5, True):
        with pytest.raises(UsageError, match="jobs="):
            localtrack.sync(str(tmp_path / "r"), dir=store, jobs=bad)
    res = cli("sync", "--to", str(tmp_path / "r"), "--dir", str(store), "--jobs", "0")
    assert res.returncode == 2 and "jobs=0" in res.stderr and "Traceback" not in res.stderr
    res = cli("sync", "--help")
    assert "default 4 to a directory, 16 to an object store" in " ".join(res.stdout.split())
    res = cli("sync", "--to", str(tmp_path / "r"), "--dir", str(store), "--jobs", "2")
    assert res.returncode == 0 and "synced 1 of 1 run(s)" in res.stdout, res.stderr
