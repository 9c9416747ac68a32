"""W&B's read API: Api().runs(filters=, order=), ApiRun.history(samples=, keys=, pandas=),
scan_history(), and the run's W&B attributes.

Runs are written by real scripts in subprocesses (finished, failed, killed, live, rewound,
forked, over many sealed segments); every filter case names the runs it must return, and
every hostile filter must be a UsageError naming what is wrong, before any run is read.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

import localtrack
from localtrack.errors import CorruptRunError, UsageError

from .helpers import run_script, script, settle

WRITER = """
import os, signal, sys, localtrack
store = sys.argv[1]
specs = [  # id, config, tags, group, val/acc, exit code
    ("a", {"lr": 1e-2, "opt": {"name": "adam"}, "a.b": 1, "flag": True}, ["base"], "g1", 0.5, 0),
    ("b", {"lr": 1e-3, "opt": {"name": "sgd"}, "flag": 1}, ["base", "x"], "g1", 0.95, 0),
    ("c", {"lr": 1e-4, "opt": {"name": "adam"}}, [], "g2", 0.97, 1),
    ("d", {"lr": "auto"}, ["x"], None, None, 0),
]
for rid, config, tags, group, acc, code in specs:
    run = localtrack.init(project="p", id=rid, name=f"name-{rid}", dir=store, config=config,
                          tags=tags, group=group, job_type="train", entity="team", notes="n")
    for s in range(5):
        run.log({"loss": 1.0 / (s + 1)})
    if acc is not None:
        run.log({"val/acc": acc})
    run.finish(exit_code=code)
run = localtrack.init(project="p", id="e", dir=store, config={"lr": 0.5})
run.log({"loss": 9.0})
os.kill(os.getpid(), signal.SIGKILL)  # crashed: no finish, no lock holder
"""


@pytest.fixture(scope="module")
def five(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs a..e in project p: finished a, b, d; failed c; crashed e (created in that order)."""
    store = tmp_path_factory.mktemp("five") / "store"
    res = run_script(WRITER, str(store))
    assert res.returncode == -signal.SIGKILL, res.stderr
    settle(store)
    return store


def ids(runs: list[localtrack.ApiRun]) -> list[str]:
    return [r.id for r in runs]


def test_the_runs_are_as_written(five):
    api = localtrack.Api(five)
    assert [(r.id, r.state) for r in api.runs("p")] == [
        ("a", "finished"), ("b", "finished"), ("c", "failed"), ("d", "finished"), ("e", "crashed")]
    b = api.run("team/p/b")
    assert (b.id, b.name, b.entity, b.project, b.tags, b.group, b.job_type, b.notes) == (
        "b", "name-b", "team", "p", ["base", "x"], "g1", "train", "n")
    assert b.config["opt"] == {"name": "sgd"} and b.summary["val"]["acc"] == 0.95
    summary = b.summary  # nested on '/', and W&B's flat keys find the same values
    assert summary["val/acc"] == summary.get("val/acc") == 0.95 and "val/acc" in summary
    assert "val/nope" not in summary and summary.get("loss/x", 7) == 7 and "val" in summary
    with pytest.raises(KeyError):
        _ = summary["val/acc/x"]
    assert b.lastHistoryStep == b.last_step == 5
    assert b.url.endswith("#/p/p/r/b") and b.created_at[:4].isdigit() and "T" in b.created_at
    assert api.run("p/b").path == api.run("team/p/runs/b").path == "p/b"


@pytest.mark.parametrize(("filters", "expected"), [
    pytest.param({}, "abcde", id="empty"),
    pytest.param({"config.lr": {"$lt": 5e-3}}, "bc", id="lt-skips-a-string"),
    pytest.param({"config.lr.value": 1e-3}, "b", id="wandb-config-value"),
    pytest.param({"config.lr": "auto"}, "d", id="eq-string"),
    pytest.param({"config.opt.name": "adam"}, "ac", id="nested-config"),
    pytest.param({"config.a.b": 1}, "a", id="config-key-with-a-dot"),
    pytest.param({"config.flag": True}, "a", id="bool-is-no-number"),
    pytest.param({"config.flag": 1}, "b", id="number-is-no-bool"),
    pytest.param({"summary_metrics.val/acc": {"$gt": 0.9}}, "bc", id="summary-slash-key"),
    pytest.param({"summary_metrics.val.acc": {"$gte": 0.95}}, "bc", id="summary-dotted"),
    pytest.param({"summary_metrics.val/acc": {"$exists": False}}, "de", id="exists-false"),
    pytest.param({"summary_metrics.val/acc": {"$ne": 0.5}}, "bcde", id="ne-matches-missing"),
    pytest.param({"summary_metrics.val/acc": {"$gt": 0.9, "$lt": 0.96}}, "b", id="range"),
    pytest.param({"state": "finished"}, "abd", id="state"),
    pytest.param({"state": {"$in": ["failed", "crashed"]}}, "ce", id="state-in"),
    pytest.param({"tags": "x"}, "bd", id="tags-contains"),
    pytest.param({"tags": {"$in": ["base"]}}, "ab", id="tags-in"),
    pytest.param({"tags": {"$nin": ["base"]}}, "cde", id="tags-nin"),
    pytest.param({"tags": ["base", "x"]}, "b", id="tags-exact-list"),
    pytest.param({"$or": [{"group": "g2"}, {"config.lr": "auto"}]}, "cd", id="or"),
    pytest.param({"$and": [{"group": "g1"}, {"summary_metrics.val/acc": {"$gte": 0.95}}]}, "b",
                 id="and"),
    pytest.param({"$nor": [{"group": "g1"}]}, "cde", id="nor"),
    pytest.param({"$not": {"state": "finished"}}, "ce", id="not-top"),
    pytest.param({"config.lr": {"$not": {"$lt": 5e-3}}}, "ade", id="not-field"),
    pytest.param({"group": None}, "de", id="none-is-missing"),
    pytest.param({"display_name": {"$regex": "^name-[ab]$"}}, "ab", id="regex"),
    pytest.param({"display_name": {"$regex": "NAME-C", "$options": "i"}}, "c", id="regex-options"),
    pytest.param({"displayName": "name-d"}, "d", id="camel-alias"),
    pytest.param({"name": "c"}, "c", id="name-is-the-id"),
    pytest.param({"entity": "team", "job_type": "train"}, "abcd", id="entity-job-type"),
    pytest.param({"config.lr": {"$gt": "a"}}, "d", id="strings-compare-with-strings"),
])
def test_filters(five, filters: dict[str, Any], expected: str):
    assert "".join(ids(localtrack.Api(five).runs("team/p", filters=filters))) == expected


def test_created_at_compares_as_w_and_b_s_iso_strings(five):
    api = localtrack.Api(five)
    since_c = ids(api.runs("p", filters={"created_at": {"$gte": api.run("p/c").created_at}}))
    assert set("cde") <= set(since_c) and since_c == sorted(since_c)  # a, b: maybe same second
    assert ids(api.runs("p", filters={"createdAt": {"$lt": "2000-01-01T00:00:00"}})) == []
    assert ids(api.runs("p", filters={"created_at": {"$lt": 2e9}})) == []  # a number: no string


@pytest.mark.parametrize(("order", "expected"), [
    pytest.param("-summary_metrics.val/acc", "cbade", id="desc-missing-last"),
    pytest.param("+summary_metrics.val/acc", "abcde", id="asc-missing-last"),
    pytest.param("+created_at", "abcde", id="created-asc"),
    pytest.param("-created_at", "edcba", id="created-desc"),
    pytest.param("config.lr", "cbaed", id="numbers-then-strings"),
    pytest.param("-config.lr.value", "deabc", id="desc-strings-first"),
])
def test_order(five, order: str, expected: str):
    assert "".join(ids(localtrack.Api(five).runs("p", order=order))) == expected


def test_filters_and_order_together(five):
    runs = localtrack.Api(five).runs("p", filters={"state": {"$ne": "crashed"}},
                                     order="-summary_metrics.val/acc", per_page=2)
    assert ids(runs) == ["c", "b", "a", "d"]


def _deep(levels: int) -> dict[str, Any]:
    filt: dict[str, Any] = {"state": "finished"}
    for _ in range(levels):
        filt = {"$not": filt}
    return filt


@pytest.mark.parametrize(("kwargs", "names"), [
    pytest.param({"filters": {"config.lr": {"$where": 1}}}, "'$where'", id="unknown-op"),
    pytest.param({"filters": {"$expr": {}}}, "'$expr'", id="unknown-top-op"),
    pytest.param({"filters": {"config.lr": {"$in": 5}}}, "$in", id="in-not-list"),
    pytest.param({"filters": {"config.lr": {"$exists": "yes"}}}, "$exists", id="exists-not-bool"),
    pytest.param({"filters": {"config.lr": {"$regex": 5}}}, "$regex", id="regex-not-str"),
    pytest.param({"filters": {"display_name": {"$regex": "("}}}, "'('", id="bad-regex"),
    pytest.param({"filters": {"display_name": {"$options": "i"}}}, "$options", id="options-alone"),
    pytest.param({"filters": {"display_name": {"$regex": "a", "$options": "q"}}}, "$options",
                 id="options-bad-letter"),
    pytest.param({"filters": {"config.lr": {"$not": 5}}}, "$not", id="not-not-dict"),
    pytest.param({"filters": {"lr": 1}}, "'lr'", id="unknown-field"),
    pytest.param({"filters": {"config": 1}}, "'config'", id="no-key"),
    pytest.param({"filters": {1: 2}}, "1", id="non-str-field"),
    pytest.param({"filters": {"$and": []}}, "$and", id="and-empty"),
    pytest.param({"filters": {"$or": {"state": "x"}}}, "$or", id="or-not-list"),
    pytest.param({"filters": "state"}, "'state'", id="not-a-dict"),
    pytest.param({"filters": _deep(500)}, "deeper", id="deep-nesting"),
    pytest.param({"order": ""}, "order=''", id="order-empty"),
    pytest.param({"order": "-"}, "order='-'", id="order-sign-only"),
    pytest.param({"order": 5}, "order=5", id="order-not-str"),
    pytest.param({"order": "-lr"}, "'lr'", id="order-unknown-field"),
    pytest.param({"per_page": 0}, "per_page", id="per-page-zero"),
    pytest.param({"per_page": "50"}, "per_page", id="per-page-str"),
    pytest.param({"path": 5}, "5", id="path-not-str"),
])
def test_hostile_arguments_are_a_usage_error_naming_them(five, tmp_path, kwargs, names):
    for store in (five, tmp_path / "no-store"):  # checked before any run is read
        with pytest.raises(UsageError) as info:
            localtrack.Api(store).runs(**{"path": "p", **kwargs})
        assert names in str(info.value)


def test_a_run_whose_summary_cannot_be_read_is_left_out_of_a_summary_filter(five, tmp_path, caplog):
    store = tmp_path / "store"
    shutil.copytree(five, store)
    (store / "p" / "runs" / "b" / "summary.json").write_text("{not json")
    api = localtrack.Api(store)
    with caplog.at_level(logging.WARNING, logger="localtrack"):
        assert ids(api.runs("p", filters={"summary_metrics.val/acc": {"$gt": 0}})) == ["a", "c"]
    assert any("p/b" in r.getMessage() and "summary" in r.getMessage() for r in caplog.records)
    assert ids(api.runs("p", filters={"state": "finished"})) == ["a", "b", "d"]  # no summary read
    with pytest.raises(CorruptRunError):
        _ = api.run("p/b").summary


# -- history and scan_history ------------------------------------------------------------------

LONG = """
import sys, localtrack
import os
os.environ["LOCALTRACK_ROTATE_BYTES"], os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "20000", "0"
run = localtrack.init(project="p", id=sys.argv[2], dir=sys.argv[1])
for i in range(int(sys.argv[3])):
    row = {"loss": float(i), "i": i}
    if i % 10 == 0:
        row["val/acc"] = i / 10
    run.log(row)
run.finish()
"""


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run p/long: 3,000 steps over many sealed segments; val/acc every 10th step."""
    store = tmp_path_factory.mktemp("long") / "store"
    res = run_script(LONG, str(store), "long", "3000", timeout=120)
    assert res.returncode == 0, res.stderr
    settle(store)
    assert len(list((store / "p" / "runs" / "long" / "segments").glob("*.parquet"))) >= 3
    return store


def test_history_samples_evenly_as_pandas(long_run):
    run = localtrack.Api(long_run).run("p/long")
    df = run.history()
    assert type(df).__name__ == "DataFrame" and len(df) == 500
    assert {"_step", "_timestamp", "loss", "i", "val/acc"} <= set(df.columns)
    steps = list(df["_step"])
    assert steps[0] == 0 and steps[-1] == 2999 and steps == sorted(set(steps))
    assert max(b - a for a, b in zip(steps, steps[1:], strict=False)) <= 7
    assert list(df["loss"]) == [float(s) for s in steps]
    assert len(run.history(1000)) == 1000  # W&B's positional samples: once a TypeError
    assert len(run.history(samples=10_000)) == 3000


def test_history_with_keys_keeps_only_rows_that_logged_them(long_run):
    run = localtrack.Api(long_run).run("p/long")
    rows = run.history(samples=5, keys=["val/acc"], pandas=False)
    assert rows == [{"_step": s, "val/acc": s / 10} for s in (0, 750, 1500, 2240, 2990)]
    df = run.history(keys=["val/acc", "loss"], x_axis="i")
    assert list(df.columns) == ["_step", "i", "val/acc", "loss"] and len(df) == 300
    assert run.history(keys=["nope"], pandas=False) == []
    assert run.history(stream="system", pandas=False) == []
    full = run.history(samples=3, pandas=False)
    assert [r["_step"] for r in full] == [0, 1500, 2999]
    assert [set(r) for r in full] == [{"_step", "_timestamp", "loss", "i", "val/acc"},
                                      {"_step", "_timestamp", "loss", "i", "val/acc"},
                                      {"_step", "_timestamp", "loss", "i"}]  # logged keys only


@pytest.mark.parametrize("call", [
    pytest.param(lambda r: r.history(["loss"]), id="keys-positional-as-samples"),
    pytest.param(lambda r: r.history(0), id="zero-samples"),
    pytest.param(lambda r: r.history(True), id="bool-samples"),
    pytest.param(lambda r: r.history(keys="loss"), id="keys-a-string"),
    pytest.param(lambda r: r.history(keys=[1]), id="keys-not-names"),
    pytest.param(lambda r: r.history(stream="gpu"), id="unknown-stream"),
    pytest.param(lambda r: r.history(pandas="yes"), id="pandas-not-bool"),
    pytest.param(lambda r: r.scan_history(page_size=0), id="scan-page-size"),
    pytest.param(lambda r: r.scan_history(min_step="3"), id="scan-min-step"),
    pytest.param(lambda r: r.scan_history(keys="loss"), id="scan-keys-a-string"),
])
def test_bad_history_arguments_are_usage_errors(five, call):
    with pytest.raises(UsageError):
        call(localtrack.Api(five).run("p/a"))  # raised at the call, not at the first row


def test_scan_history_is_every_row_as_dicts(long_run):
    run = localtrack.Api(long_run).run("p/long")
    rows = list(run.scan_history(page_size=7))
    table = run.history_table().to_pylist()
    assert rows == [{k: v for k, v in r.items() if v is not None} for r in table]
    assert [r["_step"] for r in run.scan_history(min_step=995, max_step=1005)] == list(range(995, 1005))
    assert list(run.scan_history(keys=["val/acc"], min_step=15, max_step=41)) == [
        {"_step": 20, "val/acc": 2.0}, {"_step": 30, "val/acc": 3.0}, {"_step": 40, "val/acc": 4.0}]
    assert list(run.scan_history(keys=["nope"])) == []
    assert list(run.scan_history(min_step=5000)) == []


def test_scan_history_reads_a_segment_only_when_it_reaches_it(long_run, tmp_path):
    """Not the whole run at once: a segment removed after the first row is found missing only
    when the scan reaches it (with the message a damaged run gives)."""
    store = tmp_path / "store"
    shutil.copytree(long_run, store)
    scan = localtrack.Api(store).run("p/long").scan_history()
    assert next(scan)["_step"] == 0
    segments = sorted((store / "p" / "runs" / "long" / "segments").glob("*.parquet"))
    segments[-1].unlink()
    seen = 1
    with pytest.raises(CorruptRunError, match="missing"):
        for _ in scan:
            seen += 1
    assert 1000 < seen < 3000


def test_history_without_pandas_says_what_to_do(five):
    code = """
import sys

class NoPandas:  # pandas not installed: importing it fails as it would
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'", name=name)

sys.meta_path.insert(0, NoPandas())
import localtrack
from localtrack.errors import UsageError
run = localtrack.Api(sys.argv[1]).run("p/a")
print(len(run.history(pandas=False)))
try:
    run.history()
except UsageError as exc:
    print("UsageError", exc)
"""
    res = run_script(code, str(five))
    assert res.returncode == 0, res.stderr
    count, error = res.stdout.splitlines()
    assert count == "6" and "pip install pandas" in error and "pandas=False" in error


def test_reading_a_run_while_it_is_written(tmp_path):
    """history(), scan_history() and filtered runs() on a live run: each read is a prefix of
    the steps, and a filter on state sees it running."""
    store = tmp_path / "store"
    code = """
import sys, time, localtrack
run = localtrack.init(project="p", id="live", dir=sys.argv[1], config={"lr": 0.1})
print("started", flush=True)
i = 0
while i < 200_000 and not sys.stdin.readline().startswith("stop"):
    for _ in range(50):
        run.log({"loss": float(i)})
        i += 1
    print(i, flush=True)
run.finish()
"""
    import subprocess

    seen = []
    with script(code, str(store), stdin=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == b"started"
            api = localtrack.Api(store)
            for _ in range(20):
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
                written = int(proc.stdout.readline())
                run = api.run("p/live")
                rows = list(run.scan_history(keys=["loss"]))
                assert [r["_step"] for r in rows] == list(range(len(rows))) and len(rows) >= written
                df = run.history(samples=50)
                assert df["_step"].iloc[0] == 0 and len(df) <= 50
                assert list(df["_step"]) == sorted(set(df["_step"]))
                assert ids(api.runs("p", filters={"state": "running", "config.lr": 0.1})) == ["live"]
                seen.append(len(rows))
            proc.stdin.write(b"stop\n")
            proc.stdin.flush()
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert seen == sorted(seen) and seen[-1] >= 1000
    assert ids(localtrack.Api(store).runs("p", filters={"state": "finished"})) == ["live"]


REWIND = """
import sys, localtrack
run = localtrack.init(project="p", id=sys.argv[2], dir=sys.argv[1], resume="allow",
                      **({"resume_from": sys.argv[3]} if sys.argv[3] != "-" else {}))
for i in range(run.step, int(sys.argv[4])):
    run.log({"x": float(i) + float(sys.argv[5])})
run.finish()
"""


def test_a_rewound_run_reads_without_the_archived_rows(tmp_path):
    store = tmp_path / "store"
    for args in (("r", "-", "100", "0"), ("r", "r?_step=39", "60", "0.5")):
        res = run_script(REWIND, str(store), *args)
        assert res.returncode == 0, res.stderr
    run = localtrack.Api(store).run("p/r")
    rows = list(run.scan_history())
    assert [r["_step"] for r in rows] == list(range(60))
    assert [r["x"] for r in rows[38:42]] == [38.0, 39.0, 40.5, 41.5]
    assert list(run.history(samples=1000)["x"]) == [r["x"] for r in rows]
    assert run.lastHistoryStep == 59
    assert ids(localtrack.Api(store).runs("p", filters={"summary_metrics.x": 59.5})) == ["r"]


def test_a_fork_reads_its_parents_rows_then_its_own(tmp_path):
    store = tmp_path / "store"
    assert run_script(REWIND, str(store), "a", "-", "50", "0").returncode == 0
    fork = REWIND.replace('resume="allow",', "").replace('"resume_from"', '"fork_from"')
    res = run_script(fork, str(store), "f", "a?_step=19", "30", "100")
    assert res.returncode == 0, res.stderr
    run = localtrack.Api(store).run("p/f")
    xs = [r["x"] for r in run.scan_history()]
    assert xs == [float(i) for i in range(20)] + [i + 100.0 for i in range(20, 30)]
    assert list(run.history(pandas=False)) == list(run.scan_history())
    assert [r["x"] for r in run.scan_history(min_step=18, max_step=22)] == [18.0, 19.0, 120.0, 121.0]
    by_x = localtrack.Api(store).runs("p", order="-summary_metrics.x")
    assert ids(by_x) == ["f", "a"]


def test_files_lists_the_saved_files(five, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(five, store)
    run = localtrack.Api(store).run("p/a")
    assert run.files() == []
    files = store / "p" / "runs" / "a" / "files"
    (files / "ckpt").mkdir(parents=True)
    (files / "model.pt").write_bytes(b"x" * 10)
    (files / "ckpt" / "1.pt").write_bytes(b"yy")
    os.symlink("/etc/hostname", files / "link")  # a store from elsewhere: not a saved file
    got = [(f.name, f.size) for f in run.files()]
    assert got == [("ckpt/1.pt", 2), ("model.pt", 10)]
    assert Path(run.files()[1].path).read_bytes() == b"x" * 10
