"""The resume contract, driven from a table, plus environment variables and steps."""

from __future__ import annotations

import json

import pytest

import localtrack
import localtrack._durable
from localtrack.errors import InvalidNameError, RunExistsError, RunNotFoundError, UsageError

from .helpers import settle


def _make(store, rid="r1", steps=3):
    run = localtrack.init(project="p", id=rid, dir=store, config={"lr": 0.1})
    for i in range(steps):
        run.log({"loss": float(i)})
    run.summary["best"] = 7
    run.finish()
    return run


@pytest.mark.parametrize("mode,exists,expect", [
    pytest.param("must", True, "resume", id="must-exists"),
    pytest.param("must", False, RunNotFoundError, id="must-missing"),
    pytest.param("allow", True, "resume", id="allow-exists"),
    pytest.param("allow", False, "create", id="allow-missing"),
    pytest.param("never", True, RunExistsError, id="never-exists"),
    pytest.param("never", False, "create", id="never-missing"),
    pytest.param(None, True, RunExistsError, id="none-exists"),
    pytest.param(None, False, "create", id="none-missing"),
    pytest.param(False, True, RunExistsError, id="false-exists"),
    pytest.param("auto", True, "resume", id="auto-id-exists"),
    pytest.param("auto", False, "create", id="auto-id-missing"),
    pytest.param(True, False, "create", id="true-id-missing"),
])
def test_resume_table(store, mode, exists, expect):
    if exists:
        _make(store)
    if isinstance(expect, type):
        with pytest.raises(expect) as info:
            localtrack.init(project="p", id="r1", resume=mode, dir=store)
        assert "'r1'" in str(info.value) and "'p'" in str(info.value)
        if exists:  # the stored run is untouched
            assert localtrack.Api(store).run("p/r1").history_table().num_rows == 3
        return
    run = localtrack.init(project="p", id="r1", resume=mode, dir=store)
    assert run.resumed is (expect == "resume")
    assert run.starting_step == run.step == (3 if expect == "resume" else 0)
    run.finish()


@pytest.mark.parametrize("mode", ["must", "allow"])
def test_must_and_allow_need_an_id(store, mode):
    with pytest.raises(UsageError, match="needs a run id"):
        localtrack.init(project="p", resume=mode, dir=store)


def test_bad_resume_value(store):
    with pytest.raises(UsageError, match="resume='sometimes'"):
        localtrack.init(project="p", resume="sometimes", dir=store)


def test_resumed_run_continues_exactly(store, sealing):
    _make(store, steps=5)
    run = localtrack.init(project="p", id="r1", resume="must", dir=store)
    assert (run.resumed, run.starting_step, run.step) == (True, 5, 5)
    assert run.config.lr == 0.1
    assert run.summary["best"] == 7 and run.summary["loss"] == 4.0
    run.log({"loss": 10.0})
    run.finish()
    stored = localtrack.Api(store).run("p/r1")
    assert stored.history_table().column("_step").to_pylist() == list(range(6))
    assert [e["event"] for e in stored.events] == ["started", "finished", "resumed", "finished"]
    assert stored.events[2]["step"] == 5


def test_resume_updates_config_and_metadata(store):
    _make(store)
    run = localtrack.init(project="p", id="r1", resume="allow", dir=store, config={"bs": 8},
                          name="second", tags=["a"])
    assert run.config.as_dict() == {"lr": 0.1, "bs": 8} and run.name == "second"
    run.finish()
    stored = localtrack.Api(store).run("p/r1")
    assert stored.name == "second" and stored.tags == ["a"]


def test_env_variables_and_explicit_args_win(store, tmp_path, monkeypatch):
    _make(store, rid="envrun")
    monkeypatch.setenv("LOCALTRACK_DIR", str(store))
    monkeypatch.setenv("LOCALTRACK_PROJECT", "p")
    monkeypatch.setenv("LOCALTRACK_RUN_ID", "envrun")
    monkeypatch.setenv("LOCALTRACK_RESUME", "must")
    run = localtrack.init()
    assert (run.id, run.project, run.resumed, run.step) == ("envrun", "p", True, 3)
    run.finish()
    other = tmp_path / "other"
    run = localtrack.init(project="q", id="fresh", resume="never", dir=other)
    assert (run.id, run.project, run.resumed) == ("fresh", "q", False)
    assert run.dir.startswith(str(other))
    run.finish()


def test_default_dir_is_under_cwd(tmp_path):
    run = localtrack.init(project="p")
    assert run.dir.startswith(str(tmp_path / "work" / "localtrack-runs" / "p" / "runs"))
    run.finish()


@pytest.mark.parametrize("bad", [
    pytest.param("../escape", id="parent"), pytest.param("a/b", id="slash"),
    pytest.param("a\\b", id="backslash"), pytest.param("a\x00b", id="nul"),
    pytest.param(".hidden", id="dot-first"), pytest.param("..", id="dotdot"),
    pytest.param("x" * 129, id="too-long"), pytest.param("", id="empty"),
    pytest.param("a..b", id="inner-dotdot"), pytest.param("sp ace", id="space"),
])
@pytest.mark.parametrize("what", ["id", "project"])
def test_hostile_names_are_rejected_before_writing(store, bad, what):
    kwargs = {"project": "p", "id": "ok", what: bad}
    with pytest.raises(InvalidNameError) as info:
        localtrack.init(dir=store, **kwargs)
    assert repr(bad) in str(info.value)
    assert not store.exists()


def test_steps_explicit_commit_and_going_back(store, sealing):
    run = localtrack.init(project="p", dir=store)
    run.log({"a": 1.0})                          # step 0
    run.log({"val": 0.5}, step=run.step)         # accumulates into step 1
    run.log({"b": 2.0}, commit=False)            # still step 1
    run.log({"a": 3.0})                          # completes step 1
    assert run.step == 2
    run.log({"a": 4.0}, step=5)                  # jump to 5, not committed
    run.log({"c": 1.0})                          # step 5 completed
    with pytest.warns(UserWarning, match="steps must not go back"):
        run.log({"a": 9.0}, step=2)
    run.log({"a": 10.0}, step=1)                 # dropped quietly (warned once)
    run.log({"a": 6.0})
    run.finish()
    rows = localtrack.Api(store).run(f"p/{run.id}").history_table().to_pylist()
    assert [r["_step"] for r in rows] == [0, 1, 5, 6]
    assert rows[1]["val"] == 0.5 and rows[1]["b"] == 2.0 and rows[1]["a"] == 3.0
    assert rows[2]["a"] == 4.0 and rows[2]["c"] == 1.0


@pytest.mark.parametrize("step", [1.5, "3", True, -1])
def test_bad_step(store, step):
    run = localtrack.init(project="p", dir=store)
    with pytest.raises(UsageError):
        run.log({"a": 1}, step=step)
    run.finish()


def test_log_after_finish_is_a_state_error(store):
    run = localtrack.init(project="p", dir=store)
    run.finish()
    run.finish()  # idempotent
    with pytest.raises(localtrack.LocaltrackError, match="finished"):
        run.log({"a": 1})


def test_many_segments_and_resume(store, monkeypatch):
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "2000")
    run = localtrack.init(project="p", id="seg", dir=store)
    for i in range(500):
        run.log({"i": i, "pad": "x" * 40})  # ~60 bytes a row: a window fills every ~70 rows
    run.finish()
    settle(store)
    segs = list((store / "p" / "runs" / "seg" / "segments").glob("*.parquet"))
    assert len(segs) > 5
    manifest = json.loads((store / "p" / "runs" / "seg" / "manifest.json").read_text())
    assert sorted(s["file"] for s in manifest["segments"]) == sorted(p.name for p in segs)
    assert len(list((store / "p" / "runs" / "seg" / "wal").glob("*.jsonl"))) <= 1  # small tail
    run = localtrack.init(project="p", id="seg", resume="must", dir=store)
    assert run.step == 500
    run.log({"i": 500})
    stored = localtrack.Api(store).run("p/seg")
    assert stored.history_table(["i"]).column("i").to_pylist() == list(range(501))
    assert stored.summary["i"] == 500
    run.finish()


def test_must_on_a_missing_id_leaves_nothing_behind(store):
    """A typo'd id is an error, and no lock file (or anything else) is left in the store."""
    localtrack.init(project="p", id="real", dir=store).finish()
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    with pytest.raises(RunNotFoundError):
        localtrack.init(project="p", id="raal", resume="must", dir=store)
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_a_row_whose_first_key_is_end_keeps_its_step(store):
    """``_end`` is a legal key; a framed row that starts with it is no closing line."""
    run = localtrack.init(project="p", id="e", dir=store)
    run.log({"a": 1.0})
    run.log({"_end": True, "b": 2.0}, step=7)
    run.log({"_end": True}, step=9)
    run._drop()  # the writer dies: no closing line, no finish
    again = localtrack.init(project="p", id="e", resume="must", dir=store)
    assert again.step == 10
    again.log({"a": 3.0})
    again.finish()
    assert localtrack.Api(store).run("p/e").history_table(["a"]).column("_step").to_pylist() == [0, 7, 9, 10]


def test_corruption_found_on_resume_names_the_file_offset(store, monkeypatch):
    """The offset of damage found in a log's tail window is the file's, not the window's."""
    monkeypatch.setenv("LOCALTRACK_FSYNC", "always")  # every row is synced: damage is corruption
    run = localtrack.init(project="p", id="o", dir=store)
    for i in range(3000):
        run.log({"x": float(i)}, step=i)  # framed rows: the tail window holds whole frames
    run._log.sync_now()  # (the flusher's job: fsync, and the durable watermark)
    run._drop()
    wal = next((store / "p" / "runs" / "o" / "wal").glob("*.jsonl"))
    data = bytearray(wal.read_bytes().rstrip(b"\0"))
    at = data.rindex(b'"x":2990.0')
    data[at + 5] = ord("7")
    wal.write_bytes(bytes(data))
    with pytest.raises(localtrack.errors.CorruptRunError) as info:
        localtrack.init(project="p", id="o", resume="must", dir=store)
    line_start = data.rindex(b"\n", 0, at) + 1
    assert info.value.offset == line_start > 100_000
