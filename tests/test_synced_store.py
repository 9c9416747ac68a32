"""A store written by sync is for reading: resuming a run there is a clear error, not a traceback."""

from __future__ import annotations

import pytest

import localtrack
from localtrack.errors import UsageError

from .helpers import settle


def test_resuming_inside_a_synced_copy_is_refused(store, tmp_path):
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(5):
        run.log({"x": i})
    run.finish()                      # a small tail stays a log, which sync sends as chunks
    remote = tmp_path / "remote"
    localtrack.sync(str(remote), dir=str(store))
    assert localtrack.Api(remote).run("p/r").history_table().num_rows == 5
    with pytest.raises(UsageError, match="read-only"):
        localtrack.init(project="p", id="r", resume="must", dir=remote)
    again = localtrack.init(project="p", id="r", resume="must", dir=store)   # the original is fine
    assert again.step == 5
    again.finish()


@pytest.mark.parametrize("sealing", ["parquet", "jsonl"], indirect=True)
def test_resuming_a_sealed_run_in_a_synced_copy_writes_nothing_there(store, tmp_path, sealing):
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(5):
        run.log({"x": i})
    run.finish()
    settle(store)
    remote = tmp_path / "remote"
    localtrack.sync(str(remote), dir=str(store))
    before = sorted(p.relative_to(remote) for p in remote.rglob("*"))
    for mode in ("must", "allow", "auto"):
        with pytest.raises(UsageError, match="read-only"):
            localtrack.init(project="p", id="r", resume=mode, dir=remote)
    assert sorted(p.relative_to(remote) for p in remote.rglob("*")) == before


def test_a_run_whose_first_upload_is_under_way_is_left_out_of_a_synced_copy_quietly(
        store, tmp_path, caplog):
    """Sync writes run.json last: a reader of a directory remote mid-upload sees a folder
    without it. That is not damage there (in a store a writer made, it is reported)."""
    with localtrack.init(project="p", id="a", dir=store) as run:
        run.log({"x": 1})
    settle(store)
    remote = tmp_path / "remote"
    localtrack.sync(str(remote), dir=store)
    partial = remote / "p" / "runs" / "b"
    partial.mkdir()
    (partial / "events.jsonl").write_bytes(b"")  # what an upload may have put there first
    with caplog.at_level("WARNING", logger="localtrack"):
        assert [r.id for r in localtrack.Api(remote).runs("p")] == ["a"]
    assert "skipped" not in caplog.text and "run.json" not in caplog.text, caplog.text
    (store / "p" / "runs" / "b").mkdir()  # the same folder in a writer's store: reported
    with caplog.at_level("WARNING", logger="localtrack"):
        assert [r.id for r in localtrack.Api(store).runs("p")] == ["a"]
    assert "has no run.json" in caplog.text
