"""The runs index (issue 19): a derived file that makes listing fast and is never needed.

Real stores written by real processes. A listing must show what reading each run on its own
shows, whatever the index holds: missing, damaged, stale (a run resumed, deleted, created
while listed, written live), in a read-only store, in a synced copy. An entry is written
only for a run unchanged for ``MARGIN_NS`` (2 s), so the tests that need entries list until
the index holds them (bounded waits).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

import localtrack
from localtrack import _runindex
from localtrack._ui._data import StoreView
from localtrack.errors import CorruptRunError, InvalidNameError

from .helpers import run_script, script, settle, wait_for
from .test_damaged_store import chmod_restore, cli, unprivileged  # noqa: F401 - fixtures

WRITE = """
import sys, localtrack
store, rid, steps, code = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
run = localtrack.init(project="p", id=rid, dir=store, resume="allow",
                      config={"lr": 0.1, "opt": {"name": "adam"}, "id": rid})
for i in range(steps):
    run.log({"loss": 1.0 / (i + 1), "i": i})
run.summary["best"] = steps
run.finish(exit_code=code)
"""


def write(store: Path, rid: str, steps: int = 5, code: int = 0) -> None:
    """A run written (or resumed and written on) by a real process."""
    res = run_script(WRITE, str(store), rid, str(steps), str(code))
    assert res.returncode == 0, res.stderr


def index_path(store: Path) -> Path:
    return store / "p" / _runindex.INDEX


def entries(store: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(index_path(store).read_bytes())["runs"])
    except (FileNotFoundError, ValueError):
        return {}


def view(run: localtrack.ApiRun) -> tuple[Any, ...]:
    """Everything a listing gives of a run."""
    return (run.path, run.name, run.state, run.last_step, run.created, run.updated, run.config,
            run.summary, run.events, run.meta, run.tags, run.group)


def listed(store: Path) -> dict[str, tuple[Any, ...]]:
    return {run.id: view(run) for run in localtrack.Api(store).runs("p")}


def direct(store: Path) -> dict[str, tuple[Any, ...]]:
    """Each run read on its own (no listing, no index): the truth a listing must equal."""
    api = localtrack.Api(store)
    ids = sorted(p.name for p in (store / "p" / "runs").iterdir() if not p.name.startswith("."))
    return {rid: view(api.run(f"p/{rid}")) for rid in ids}


def list_until_indexed(store: Path, ids: set[str]) -> None:
    wait_for(lambda: (listed(store), set(entries(store)) >= ids)[1], timeout=30,
             what=f"index entries for {sorted(ids)}")


@pytest.fixture
def indexed(store: Path) -> Path:
    """Three finished runs (one failed), all in the index."""
    for rid, code in (("a", 0), ("b", 0), ("c", 1)):
        write(store, rid, code=code)
    settle(store)
    list_until_indexed(store, {"a", "b", "c"})
    return store


def write_shapes(store: Path) -> None:
    """Runs of every shape: finished, failed, killed, rewound, forked."""
    write(store, "plain", steps=7)
    write(store, "failed", steps=3, code=2)
    write(store, "rewound", steps=7)
    killed = script("""
        import os, signal, sys, localtrack
        run = localtrack.init(project="p", id="killed", dir=sys.argv[1], config={"x": [1, 2]})
        for i in range(4):
            run.log({"v": float("inf") if i == 3 else i})
        os.kill(os.getpid(), signal.SIGKILL)
    """, str(store))
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    res = run_script("""
        import sys, localtrack
        store = sys.argv[1]
        with localtrack.init(project="p", dir=store, resume_from="rewound?_step=3") as run:
            run.log({"loss": -3.0})
        with localtrack.init(project="p", id="fork", dir=store, fork_from="failed?_step=1") as run:
            run.log({"forked": 1})
    """, str(store))
    assert res.returncode == 0, res.stderr


def test_listing_equals_reading_each_run_with_and_without_the_index(store, sealing):
    write_shapes(store)
    settle(store)
    truth = direct(store)
    assert truth["killed"][2] == "crashed" and truth["failed"][2] == "failed"
    assert truth["plain"][3] == 6 and truth["plain"][7] == {"loss": 1 / 7, "i": 6, "best": 7}
    assert truth["fork"][3] == 2 and truth["fork"][7]["forked"] == 1
    assert truth["rewound"][3] == 4 and truth["rewound"][7]["loss"] == -3.0
    assert listed(store) == truth                   # read from the runs (no index yet)
    list_until_indexed(store, set(truth))
    assert listed(store) == truth                   # from the index
    assert not (store / "p" / _runindex.INDEX).is_symlink()


def test_the_index_is_what_a_listing_reads_while_stamps_match(indexed):
    """The staleness tests below mean something only because the index is really used."""
    data = json.loads(index_path(indexed).read_bytes())
    data["runs"]["a"]["last_step"] = 999
    index_path(indexed).write_bytes(json.dumps(data).encode())  # its checksum no longer matches
    assert listed(indexed)["a"][3] == 4
    runs = json.dumps(data["runs"]).encode()  # the entries written as docs/format.md says
    head = json.dumps({"format": data["format"], "kind": data["kind"], "crc": zlib.crc32(runs)})
    index_path(indexed).write_bytes(head.encode()[:-1] + b',"runs":' + runs + b"}")
    assert listed(indexed)["a"][3] == 999
    assert localtrack.Api(indexed).run("p/a").last_step == 4  # Api.run never uses it
    index_path(indexed).unlink()
    assert listed(indexed) == direct(indexed)


@pytest.mark.parametrize("damage", ["deleted", "garbage", "truncated", "empty", "not-an-index",
                                    "wrong-types", "directory"])
def test_a_missing_or_damaged_index_is_ignored_and_rebuilt(indexed, damage):
    path = index_path(indexed)
    good = path.read_bytes()
    truth = direct(indexed)
    path.unlink()
    if damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        path.write_bytes(good[:len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not-an-index":
        path.write_bytes(b'{"runs": [1, 2]}')
    elif damage == "wrong-types":
        data = json.loads(good)
        data["runs"]["a"]["meta"] = 5
        data["runs"]["b"]["config"] = [1]
        data["runs"]["c"]["state"] = "exploded"
        path.write_bytes(json.dumps(data).encode())
    elif damage == "directory":
        path.mkdir()
    assert listed(indexed) == truth
    if damage == "directory":  # not ours to remove: listed without an index, nothing written
        assert path.is_dir()
        return
    list_until_indexed(indexed, set(truth))
    assert set(json.loads(path.read_bytes())["runs"]) == set(truth)
    assert listed(indexed) == truth


def test_temp_files_of_a_killed_index_writer_are_swept(indexed):
    old, fresh = (indexed / "p" / f".tmp-index.json.{tag}" for tag in ("dead", "busy"))
    for path in (old, fresh):
        path.write_bytes(b"{half")
    os.utime(old, (1, 1))
    index_path(indexed).unlink()
    list_until_indexed(indexed, {"a", "b", "c"})
    assert not old.exists() and fresh.exists()  # a fresh one may be another lister's


def test_a_run_resumed_and_finished_again_is_read_anew(indexed):
    before = listed(indexed)["a"]
    write(indexed, "a", steps=3)  # resumes: steps 5..7
    now = listed(indexed)["a"]
    assert now == direct(indexed)["a"]
    assert (before[3], now[3]) == (4, 7) and now[7]["i"] == 2 and len(now[8]) > len(before[8])
    write(indexed, "c", steps=1, code=0)  # the failed run, finished cleanly this time
    assert listed(indexed)["c"][2] == "finished"


def test_a_deleted_run_leaves_the_listing_and_the_index(indexed):
    shutil.rmtree(indexed / "p" / "runs" / "b")
    assert set(listed(indexed)) == {"a", "c"}
    assert set(entries(indexed)) == {"a", "c"}
    write(indexed, "b", steps=2)  # a new run under the same id: not the old entry
    assert listed(indexed)["b"] == direct(indexed)["b"] and listed(indexed)["b"][3] == 1


def test_a_live_run_shows_its_live_values_then_its_end(indexed):
    proc = script("""
        import sys, localtrack
        run = localtrack.init(project="p", id="a", dir=sys.argv[1], resume="must")
        for i in range(20):
            run.log({"loss": -1.0, "live": i})
        run.summary["best"] = "live"
        print("ready", flush=True)
        sys.stdin.readline()
        run.finish()
    """, str(indexed), stdin=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        run = next(r for r in localtrack.Api(indexed).runs("p") if r.id == "a")
        assert run.state == "running" and run.last_step == 24
        assert run.summary["live"] == 19 and run.summary["best"] == "live"
        assert listed(indexed)["b"] == direct(indexed)["b"]
    finally:
        _, err = proc.communicate(b"\n", timeout=60)
    assert proc.returncode == 0, err.decode()
    assert listed(indexed)["a"][2:4] == ("finished", 24)


def test_runs_created_while_listed_are_listed_whole_or_not_at_all(store, caplog):
    write(store, "first")
    maker = script("""
        import sys, localtrack
        for n in range(30):
            with localtrack.init(project="p", id=f"n{n:02d}", dir=sys.argv[1]) as run:
                run.log({"n": n})
    """, str(store))
    seen = 0
    with caplog.at_level(logging.WARNING, logger="localtrack"):
        for _ in range(2000):  # bounded: the maker needs far fewer listings than this
            for run in localtrack.Api(store).runs("p"):
                assert run.state in ("running", "finished") and run.last_step in (-1, 0, 4)
                assert run.config == {"lr": 0.1, "opt": {"name": "adam"}, "id": "first"} \
                    if run.id == "first" else run.config == {}
            seen += 1
            if maker.poll() is not None:
                break
    maker.communicate(timeout=60)
    assert maker.returncode == 0 and seen > 1
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]
    settle(store)
    assert listed(store) == direct(store) and len(direct(store)) == 31


def test_an_unreadable_run_is_skipped_and_the_rest_listed(indexed, caplog):
    (indexed / "p" / "runs" / "b" / "run.json").write_bytes(b"{not json")
    (indexed / "p" / "runs" / "c" / "config.json").write_bytes(b"[1, 2]")
    with caplog.at_level(logging.WARNING, logger="localtrack"):
        runs = {r.id: r for r in localtrack.Api(indexed).runs("p")}
    assert set(runs) == {"a", "c"}
    assert any("skipped p/b" in r.getMessage() and "not valid JSON" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(CorruptRunError, match="config.json"):
        _ = runs["c"].config  # listed, and its damage raised as reading it alone raises it
    assert view(runs["a"]) == view(localtrack.Api(indexed).run("p/a"))
    assert "b" not in entries(indexed) and "c" not in entries(indexed)


@pytest.mark.parametrize("target", ["run.json", "events.jsonl", "config.json"])
def test_a_run_made_unreadable_after_indexing_is_not_listed_from_the_index(
        indexed, unprivileged, chmod_restore, target):  # noqa: F811 - fixtures
    path = indexed / "p" / "runs" / "b" / target
    chmod_restore(path, 0)  # a chmod sets the file's ctime: the stamp no longer matches
    res = cli("runs", "--dir", str(indexed), preexec=unprivileged)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "p/a" in res.stdout and "p/c" in res.stdout
    if target == "config.json":  # listed (as reading it alone opens it), its config unread
        assert "p/b" in res.stdout
        return
    assert "p/b" not in res.stdout and "skipped p/b" in res.stderr, (res.stdout, res.stderr)
    assert "Permission denied" in res.stderr


def test_listers_in_other_processes_never_see_a_broken_index(indexed):
    for rid in ("d", "e"):
        write(indexed, rid)
    lister = """
        import sys, localtrack
        for _ in range(40):
            ids = sorted(r.id for r in localtrack.Api(sys.argv[1]).runs("p"))
            assert ids == ["a", "b", "c", "d", "e"], ids
    """
    procs = [script(lister, str(indexed)) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    list_until_indexed(indexed, {"a", "b", "c", "d", "e"})
    assert listed(indexed) == direct(indexed)


def test_a_synced_copy_lists_and_gets_no_index(store, tmp_path):
    for rid in ("a", "b"):
        write(store, rid)
    settle(store)
    remote = tmp_path / "remote"
    localtrack.sync(str(remote), dir=str(store))
    list_until_indexed(store, {"a", "b"})  # by now the copy's files are older than the margin
    local = listed(store)
    copy = listed(remote)
    assert set(copy) == {"a", "b"}
    for rid in copy:  # the same run, but another folder and other file times
        assert copy[rid][:5] == local[rid][:5] and copy[rid][6:] == local[rid][6:]
    assert not (remote / "p" / _runindex.INDEX).exists()


READ_ONLY = """
import json, os, subprocess, sys, time, localtrack
store = sys.argv[1]
def write(rid):
    with localtrack.init(project="p", id=rid, dir=store, config={"rid": rid}) as run:
        for i in range(3):
            run.log({"x": i})
def listing():
    return {r.id: [r.state, r.last_step, r.config, r.summary] for r in localtrack.Api(store).runs("p")}
write("old")
index = os.path.join(store, "p", "index.json")
deadline = time.monotonic() + 30
while not os.path.exists(index) and time.monotonic() < deadline:
    listing()
write("new")                 # not in the index: read from its files
with open(index, "rb") as fh:
    before = fh.read()
subprocess.run(["mount", "-o", "remount,ro", store], check=True)
seen = listing()
with open(index, "rb") as fh:
    after = fh.read()
print(json.dumps({"listing": seen, "index_kept": before == after,
                  "indexed": sorted(json.loads(before)["runs"])}))
"""


def test_a_read_only_store_still_lists(tmp_path):
    from .test_resources import _in_tmpfs

    out = _in_tmpfs(READ_ONLY, tmp_path, size="8m")
    assert out["indexed"] == ["old"] and out["index_kept"]
    for rid in ("old", "new"):
        assert out["listing"][rid] == ["finished", 2, {"rid": rid}, {"x": 2}]


def test_the_dashboard_rows_are_the_same_from_the_index(indexed):
    rows = StoreView(localtrack.Api(indexed)).runs("p")
    index_path(indexed).unlink()
    fresh = StoreView(localtrack.Api(indexed)).runs("p")
    assert [{**r, "duration": 0} for r in rows] == [{**r, "duration": 0} for r in fresh]
    assert [r["steps"] for r in rows] == [5, 5, 5] and rows[2]["state"] == "failed"


def test_the_dashboard_poll_sends_only_what_changed(indexed):
    from .test_ui_server import get_json
    from .ui_helpers import UIProcess

    poll = StoreView(localtrack.Api(indexed)).poll
    first = poll("p")
    assert first["since"] is None and [r["id"] for r in first["runs"]] == ["a", "b", "c"]
    again = poll("p", first["stamp"])
    assert again["runs"] == [] and again["paths"] == ["p/a", "p/b", "p/c"]
    write(indexed, "b", steps=2)  # resumed and finished again
    shutil.rmtree(indexed / "p" / "runs" / "c")
    later = poll("p", again["stamp"])
    assert [r["id"] for r in later["runs"]] == ["b"] and later["runs"][0]["steps"] == 7
    assert later["paths"] == ["p/a", "p/b"]  # what the page drops: the paths not there
    assert len(poll("p", "another-server.1")["runs"]) == 2  # a stamp of another server: all
    ui = UIProcess(indexed)
    try:
        full = get_json(ui.url, "/api/runs", project="p")
        assert [r["id"] for r in full["runs"]] == ["a", "b"]
        assert get_json(ui.url, "/api/runs", project="p", since=full["stamp"])["runs"] == []
    finally:
        ui.stop()


# -- the one-pass read and the threads of a cold listing (issue 19: <= 2 s for 10,000 runs) --------

LIVE = """
import sys, localtrack
run = localtrack.init(project="p", id="live", dir=sys.argv[1], config={"k": 1})
for i in range(3):
    run.log({"x": i})
run.summary["s"] = "set"
print("ready", flush=True)
sys.stdin.readline()
run.finish()
"""


def one_pass(store: Path, rid: str) -> tuple[dict[str, Any], list[int]]:
    return _runindex.read_local(f"{store}/p/runs/{rid}", f"{store}/p/locks/{rid}.lock",
                                {"project": "p", "run_id": rid})


def test_the_one_pass_read_equals_reading_the_run_file_by_file(store, sealing):
    """read_local, the cold listing's read, gives read_record's record and stamp()'s stamp for
    runs of every shape: finished, failed, killed, rewound, forked, sealed or not, live."""
    write_shapes(store)
    live = script(LIVE, str(store), stdin=subprocess.PIPE)
    try:
        assert live.stdout is not None and live.stdout.readline() == b"ready\n"
        settle(store)
        ids = sorted(p.name for p in (store / "p" / "runs").iterdir())
        assert len(ids) == 6
        for rid in ids:
            record, stamp = one_pass(store, rid)
            assert record == _runindex.read_record(store, "p", rid), rid
            assert stamp == _runindex.stamp(f"{store}/p/runs/{rid}", f"{store}/p/locks/{rid}.lock")
        assert one_pass(store, "live")[0]["state"] == "running"
        assert one_pass(store, "killed")[0]["state"] == "crashed"
    finally:
        live.communicate(b"\n", timeout=60)
    assert live.returncode == 0
    assert one_pass(store, "live")[0] == _runindex.read_record(store, "p", "live")


def write_many(store: Path, count: int) -> list[str]:
    """``count`` small finished runs (or, already there, resumed and written on), written by
    one real process."""
    res = run_script("""
        import sys, localtrack
        for n in range(int(sys.argv[2])):
            with localtrack.init(project="p", id=f"m{n:03d}", dir=sys.argv[1],
                                 config={"n": n}, resume="allow") as run:
                for i in range(3):
                    run.log({"loss": 1.0 / (i + 1 + n)})
    """, str(store), str(count), timeout=120)
    assert res.returncode == 0, res.stderr
    return [f"m{n:03d}" for n in range(count)]


@pytest.mark.parametrize("threads", ["8", "0"], ids=["threads", "calling-thread"])
def test_a_cold_listing_on_threads_skips_damaged_runs_and_lists_the_rest(
        store, tmp_path, caplog, monkeypatch, threads):
    """Enough runs for the listing's threads: a damaged run, a link where a file should be and
    a run deleted meanwhile each cost only themselves, reported as reading them alone does;
    the same read on the calling thread."""
    monkeypatch.setenv("LOCALTRACK_LIST_THREADS", threads)
    ids = write_many(store, 3 * _runindex.THREADS)
    runs = store / "p" / "runs"
    (runs / ids[1] / "run.json").write_bytes(b"{not json")
    events = runs / ids[2] / "events.jsonl"
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_bytes(events.read_bytes())
    events.unlink()
    events.symlink_to(outside)  # never followed: the run is damaged, not read through the link
    log = runs / ids[3] / "wal" / "00000000.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"loss":', b'"lozz":', 1))  # fails its checksum
    settle(store)
    truth = {rid: v for rid, v in direct_or_none(store).items() if v is not None}
    assert set(truth) == set(ids) - {ids[1], ids[2], ids[3]}
    for _ in range(2):  # no index: every run read, on threads; then from the index
        with caplog.at_level(logging.WARNING, logger="localtrack"):
            runs = {run.id: run for run in localtrack.Api(store).runs("p")}
        said = " ".join(r.getMessage() for r in caplog.records)
        assert f"skipped p/{ids[1]}" in said and "not valid JSON" in said
        assert f"skipped p/{ids[2]}" in said and "symbolic link" in said
        assert set(runs) == set(ids) - {ids[1], ids[2]}
        with pytest.raises(CorruptRunError, match="corrupt from byte"):
            _ = runs.pop(ids[3]).summary  # listed; its damage raised as reading it alone raises it
        assert {rid: view(run) for rid, run in runs.items()} == truth
        list_until_indexed_except(store, set(truth))
    assert not set(entries(store)) & {ids[1], ids[2], ids[3]}
    index_path(store).unlink()
    shutil.rmtree(runs[ids[5]].dir)  # gone between two listings: not there, not damaged
    assert ids[5] not in {run.id for run in localtrack.Api(store).runs("p")}


def list_until_indexed_except(store: Path, ids: set[str]) -> None:
    """list_until_indexed for a store with damaged runs (whose views raise)."""
    wait_for(lambda: (localtrack.Api(store).runs("p"), set(entries(store)) >= ids)[1],
             timeout=30, what=f"index entries for {sorted(ids)}")


def direct_or_none(store: Path) -> dict[str, tuple[Any, ...] | None]:
    """``direct``, with None for a run that cannot be read on its own."""
    api = localtrack.Api(store)
    out: dict[str, tuple[Any, ...] | None] = {}
    for path in sorted((store / "p" / "runs").iterdir()):
        try:
            out[path.name] = view(api.run(f"p/{path.name}"))
        except CorruptRunError:
            out[path.name] = None
    return out


def test_a_stale_index_is_read_anew_on_threads(store, monkeypatch):
    """Every entry stale at once (all runs resumed and written on): the threads read them all."""
    monkeypatch.setenv("LOCALTRACK_LIST_THREADS", "8")
    ids = write_many(store, 3 * _runindex.THREADS)
    settle(store)
    list_until_indexed(store, set(ids))
    assert {view[3] for view in listed(store).values()} == {2}
    write_many(store, len(ids))
    settle(store)
    truth = direct(store)
    assert {view[3] for view in truth.values()} == {5}
    assert listed(store) == truth


@pytest.mark.parametrize("how", ["written-in-place", "renamed-in", "hard-linked"])
def test_a_file_added_after_indexing_is_seen(store, how):
    """A stamp's missing file is not looked at again while the run's folder is unchanged: a
    file that then appears, however it is made, changes the folder, so the run is read anew."""
    res = run_script("""
        import sys, localtrack
        with localtrack.init(project="p", id="bare", dir=sys.argv[1], config={"lr": 1}) as run:
            run.log({"loss": 0.5})
    """, str(store))
    assert res.returncode == 0, res.stderr
    settle(store)
    list_until_indexed(store, {"bare"})
    rdir = store / "p" / "runs" / "bare"
    assert not (rdir / "summary.json").exists()
    old = entries(store)["bare"]["stamp"]
    assert old[6:8] == [-1, -1]  # summary.json: missing
    assert listed(store)["bare"][7] == {"loss": 0.5}
    data = b'{"best": 7}'
    if how == "written-in-place":
        with open(rdir / "summary.json", "wb") as fh:
            fh.write(data)
    elif how == "renamed-in":
        (store / "s.tmp").write_bytes(data)
        os.rename(store / "s.tmp", rdir / "summary.json")
    else:
        (store / "s.json").write_bytes(data)
        os.link(store / "s.json", rdir / "summary.json")
    lock = str(store / "p" / "locks" / "bare.lock")
    now = _runindex.stamp(str(rdir), lock, old)  # what a listing computes from the index's
    assert now == _runindex.stamp(str(rdir), lock) and now is not None and now[6:8] != [-1, -1]
    assert listed(store)["bare"][7] == {"loss": 0.5, "best": 7} == direct(store)["bare"][7]


@pytest.mark.parametrize("enabled", [True, False], ids=["collector-on", "collector-off"])
def test_listing_leaves_the_garbage_collector_as_it_found_it(indexed, enabled):
    """A listing pauses the collector while it builds its runs: afterwards it is on or off as
    before, also after listings on several threads at once and one that fails."""
    import gc
    import threading

    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        assert len(localtrack.Api(indexed).runs("p")) == 3
        assert gc.isenabled() is enabled
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(len(
            localtrack.Api(indexed).runs("p")))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results == [3] * 4 and gc.isenabled() is enabled
        with pytest.raises(InvalidNameError):  # raised inside the listing
            localtrack.Api(indexed).runs("no such!")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_a_cold_listing_reads_here_then_decides_and_equals_each_run_read_alone(store):
    """LOCALTRACK_LIST_THREADS unset: more runs than the first reads that decide whether to
    go on on threads (the page cache here: on the calling thread); every run as read alone,
    runs resumed meanwhile read anew."""
    ids = write_many(store, _runindex.PROBE + 10)
    settle(store)
    truth = direct(store)
    assert listed(store) == truth and set(truth) == set(ids)
    list_until_indexed(store, set(ids))
    write_many(store, _runindex.PROBE + 10)  # every entry stale: read again, the same way
    settle(store)
    assert listed(store) == direct(store) != truth


@pytest.mark.parametrize("value", ["-1", "many", "1000"])
def test_a_bad_list_threads_setting_is_a_usage_error(indexed, monkeypatch, value):
    from localtrack.errors import UsageError

    monkeypatch.setenv("LOCALTRACK_LIST_THREADS", value)
    with pytest.raises(UsageError, match="LOCALTRACK_LIST_THREADS"):
        localtrack.Api(indexed).runs("p")
