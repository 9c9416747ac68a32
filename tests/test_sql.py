"""SQL over a store (issue 19, section 4): `localtrack query` / Api.query on DuckDB, and the
store read directly by other engines (DuckDB's and Polars' Parquet readers, Spark when
installed), on stores written by real subprocesses, locally and after `localtrack sync` to a
directory and to a loopback S3 server.

Expected values come from what the writers logged (a formula of run and step), not from the
code under test.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import localtrack
from localtrack.errors import UsageError

from .helpers import run_script, settle
from .s3server import remote, s3, s3_server  # noqa: F401  (fixtures)

duckdb = pytest.importorskip("duckdb")

ROOT = Path(__file__).resolve().parents[1]
STEPS = 30
LRS = {"a": 1e-2, "b": 5e-4, "c": 1e-4, "d": 2e-3, "e": 1e-5}

WRITER = """
import json, sys, localtrack
import os
root, seal, lrs, steps = sys.argv[1], sys.argv[2] == "parquet", json.loads(sys.argv[3]), int(sys.argv[4])
if seal:
    os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0"  # every finished tail sealed into Parquet
for i, (rid, lr) in enumerate(lrs.items()):
    run = localtrack.init(project="p", id=rid, dir=root, group=f"g{i % 2}", tags=["t", rid],
                          config={"lr": lr, "opt": {"name": "adam"}})
    for s in range(steps):
        run.log({"loss": (i + 1) / (s + 1), "val/acc": s * 0.01 * (i + 1)})
    run.finish()
"""


def loss(rid: str, step: int) -> float:
    return (list(LRS).index(rid) + 1) / (step + 1)


def acc(rid: str, step: int) -> float:
    return step * 0.01 * (list(LRS).index(rid) + 1)


def write(root: Path, sealing: str = "parquet") -> Path:
    res = run_script(WRITER, str(root), sealing, json.dumps(LRS), str(STEPS), timeout=120)
    assert res.returncode == 0, res.stderr
    settle(root)
    return root


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "localtrack", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("sealing", ["parquet", "jsonl"])
def test_views_hold_what_the_writers_logged(store, sealing):
    write(store, sealing)
    segments = list(store.glob("p/runs/*/segments/*.parquet"))
    assert (len(segments) == len(LRS)) if sealing == "parquet" else not segments
    api = localtrack.Api(store)

    runs = {r["id"]: r for r in api.query("SELECT * FROM runs").to_pylist()}
    assert set(runs) == set(LRS)
    for i, (rid, lr) in enumerate(LRS.items()):
        row = runs[rid]
        assert (row["project"], row["state"], row["group"], row["tags"]) == \
            ("p", "finished", f"g{i % 2}", ["t", rid])
        assert row["config.lr"] == lr and row["config.opt.name"] == "adam"
        assert row["summary.loss"] == loss(rid, STEPS - 1)
        assert row["summary.val/acc"] == acc(rid, STEPS - 1)

    rows = api.query('SELECT run_id, project, _step, loss, "val/acc" FROM history').to_pylist()
    assert len(rows) == len(LRS) * STEPS
    for row in rows:
        assert row["project"] == "p"
        assert row["loss"] == loss(row["run_id"], row["_step"])
        assert row["val/acc"] == acc(row["run_id"], row["_step"])
    assert sorted((r["run_id"], r["_step"]) for r in rows) == \
        sorted((rid, s) for rid in LRS for s in range(STEPS))
    cols = api.query("SELECT * FROM history LIMIT 1").column_names
    assert cols[:4] == ["run_id", "project", "_step", "_timestamp"]

    events = api.query("SELECT run_id, event, step, exit_code FROM events "
                       "WHERE event = 'finished' ORDER BY run_id").to_pylist()
    assert events == [{"run_id": rid, "event": "finished", "step": STEPS, "exit_code": 0}
                      for rid in sorted(LRS)]


def _live_writer(store: Path) -> subprocess.Popen[bytes]:
    """A run that logged 25 steps and keeps its log open (nothing sealed), until stdin closes."""
    from .helpers import script

    return script("""
        import sys, localtrack
        run = localtrack.init(project="p", id="live", dir=sys.argv[1])
        for s in range(25):
            run.log({"loss": 1.0 / (s + 1)})
        print("ready", flush=True)
        sys.stdin.read()
        run.finish()
    """, str(store), stdin=subprocess.PIPE)


def test_unsealed_rows_of_a_live_run_are_in_history_but_not_in_the_parquet(store):
    write(store)
    proc = _live_writer(store)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        api = localtrack.Api(store)
        rows = api.query("SELECT _step, loss FROM history WHERE run_id = 'live' ORDER BY _step")
        assert rows.column("_step").to_pylist() == list(range(25))
        assert rows.column("loss").to_pylist() == [1.0 / (s + 1) for s in range(25)]
        state = api.query("SELECT state FROM runs WHERE id = 'live'").column("state").to_pylist()
        assert state == ["running"]
        # Other engines reading the Parquet files see sealed rows only: the live log is JSONL.
        assert not list(store.glob("p/runs/live/segments/*.parquet"))
    finally:
        _, err = proc.communicate(b"", timeout=60)  # closes stdin: the writer finishes
        assert proc.returncode == 0, err


def test_rewound_and_forked_runs_read_as_the_read_api_does(store):
    write(store)
    res = run_script("""
        import sys, localtrack
        import os
        os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0"
        root = sys.argv[1]
        run = localtrack.init(project="p", dir=root, resume_from="a?_step=9")  # rows 10..29 archived
        for s in range(10, 15):
            run.log({"loss": -1.0})
        run.finish()
        fork = localtrack.init(project="p", id="f", dir=root, fork_from="b?_step=4")
        fork.log({"loss": -2.0})
        fork.finish()
    """, str(store), timeout=120)
    assert res.returncode == 0, res.stderr
    settle(store)
    api = localtrack.Api(store)

    def steps(rid: str) -> list[tuple[int, float]]:
        table = api.query(f"SELECT _step, loss FROM history WHERE run_id = '{rid}' ORDER BY _step")
        return list(zip(table.column("_step").to_pylist(), table.column("loss").to_pylist(),
                        strict=True))

    assert steps("a") == [(s, loss("a", s)) for s in range(10)] + [(s, -1.0) for s in range(10, 15)]
    assert steps("f") == [(s, loss("b", s)) for s in range(5)] + [(5, -2.0)]
    for rid in ("a", "f", "b"):
        hist = api.run(f"p/{rid}").history_table(["loss"])
        assert steps(rid) == list(zip(hist.column("_step").to_pylist(),
                                      hist.column("loss").to_pylist(), strict=True))


def _readme_queries() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## SQL", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block
    return [shlex.split(line)[1:] for line in block.group(1).splitlines()
            if line.startswith("localtrack query")]


def test_readme_examples_answer_their_questions(store):
    """The README's two queries, run as written (plus --dir), answer what their comments ask."""
    write(store)
    best, curve = _readme_queries()
    res = cli(*best, "--dir", str(store), "--format", "json")
    assert res.returncode == 0, res.stderr
    got = [json.loads(line) for line in res.stdout.splitlines()]
    want = sorted(((rid, acc(rid, STEPS - 1)) for rid, lr in LRS.items() if lr < 1e-3),
                  key=lambda x: -x[1])
    assert [(r["id"], r["best"]) for r in got] == want

    res = cli(*curve, "--dir", str(store))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "group,_step,loss" and len(lines) == 1 + 2 * STEPS
    groups = {g: [rid for i, rid in enumerate(LRS) if i % 2 == int(g[1])] for g in ("g0", "g1")}
    for line in lines[1:]:
        group, step, mean = line.split(",")
        expected = sum(loss(rid, int(step)) for rid in groups[group]) / len(groups[group])
        assert math.isclose(float(mean), expected, rel_tol=1e-12)


def test_a_missing_column_is_a_usage_error_quoting_duckdb(store):
    write(store)
    with pytest.raises(UsageError, match=r'Referenced column "nope" not found'):
        localtrack.Api(store).query("SELECT nope FROM history")
    res = cli("query", "SELECT summary_nope FROM runs", "--dir", str(store))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: The query failed: Binder Error: Referenced column "
                                 '"summary_nope" not found'), res.stderr


def test_without_duckdb_the_error_names_the_extra(store):
    write(store)
    res = run_script("""
        import sys
        sys.modules["duckdb"] = None  # as if not installed: its import raises ImportError
        from localtrack import _cli
        sys.exit(_cli.main(["query", "SELECT * FROM runs", "--dir", sys.argv[1]]))
    """, str(store))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "pip install 'localtrack[sql]'" in res.stderr


def test_a_key_of_two_kinds_across_runs_is_read_as_text(store):
    res = run_script("""
        import sys, localtrack
        import os
        os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0"
        for rid, value in (("n", 1.5), ("s", "high")):
            run = localtrack.init(project="p", id=rid, dir=sys.argv[1])
            run.log({"x": value})
            run.finish()
    """, str(store))
    assert res.returncode == 0, res.stderr
    settle(store)
    rows = localtrack.Api(store).query("SELECT run_id, x FROM history ORDER BY run_id").to_pylist()
    assert rows == [{"run_id": "n", "x": "1.5"}, {"run_id": "s", "x": '"high"'}]


def test_a_damaged_run_is_left_out_with_a_warning(store, caplog):
    write(store)
    seg = next((store / "p" / "runs" / "c" / "segments").glob("*.parquet"))
    seg.write_bytes(b"not parquet")
    with caplog.at_level(logging.WARNING, logger="localtrack"):
        table = localtrack.Api(store).query("SELECT DISTINCT run_id FROM history ORDER BY 1")
    assert table.column("run_id").to_pylist() == sorted(set(LRS) - {"c"})
    assert any("p/c" in r.getMessage() and "cannot be read" in r.getMessage()
               for r in caplog.records)


def test_project_limits_every_view(store):
    write(store)
    res = run_script("""
        import sys, localtrack
        run = localtrack.init(project="other", id="o", dir=sys.argv[1])
        run.log({"loss": 9.0})
        run.finish()
    """, str(store))
    assert res.returncode == 0, res.stderr
    api = localtrack.Api(store)
    assert api.query("SELECT count(DISTINCT project) AS n FROM history").to_pylist() == [{"n": 2}]
    for view in ("runs", "history", "events"):
        table = api.query(f"SELECT DISTINCT project FROM {view}", project="other")
        assert table.column("project").to_pylist() == ["other"]


# -- the store read without localtrack (docs/format.md, "Reading a store with other engines") --


def _doc_block(lang: str, title: str) -> str:
    text = (ROOT / "docs" / "format.md").read_text()
    section = text.split("## Reading a store with other engines", 1)[1].split("\n## ", 1)[0]
    for match in re.finditer(rf"```{lang}\n(.*?)```", section, re.S):
        if title in match.group(1):
            return match.group(1)
    raise AssertionError(f"no {lang} block with {title!r} in docs/format.md")


def _expected_sealed() -> list[tuple[str, str, int, float]]:
    return sorted(("p", rid, s, loss(rid, s)) for rid in LRS for s in range(STEPS))


def test_duckdb_reads_the_segments_with_the_documented_query(store):
    write(store)
    sql = _doc_block("sql", "read_parquet").replace("STORE", str(store))
    rows = duckdb.sql(sql).fetchall()
    assert sorted((p, r, s, x) for p, r, s, x in rows) == _expected_sealed()


def test_polars_reads_the_segments_with_the_documented_scan(store):
    pl = pytest.importorskip("polars")
    write(store)
    code = _doc_block("python", "scan_parquet").replace("STORE", str(store))
    scope: dict[str, object] = {"pl": pl}
    exec(code, scope)
    frame = scope["history"].select("project", "run_id", "_step", "loss").collect()  # type: ignore[attr-defined]
    assert sorted(frame.iter_rows()) == _expected_sealed()


def _synced_queries(uri: str) -> list[list[tuple[object, ...]]]:
    api = localtrack.Api(uri)
    return [sorted(tuple(r.values()) for r in api.query(sql).to_pylist())
            for sql in ('SELECT run_id, _step, loss, "val/acc" FROM history',
                        'SELECT id, state, "config.lr", "summary.loss" FROM runs',
                        "SELECT run_id, event, step FROM events")]


def test_query_reads_a_remote_after_sync(store, remote: tuple[str, dict[str, str]]):  # noqa: F811
    """A directory copy, and an S3 one (read through pyarrow.fs)."""
    uri, env = remote
    write(store)
    res = cli("sync", "--to", uri, "--dir", str(store), env=env)
    assert res.returncode == 0, res.stderr
    assert _synced_queries(uri) == _synced_queries(str(store))
    res = cli("query", "SELECT count(*) AS n FROM history", "--dir", uri, "--format", "csv", env=env)
    assert res.returncode == 0 and res.stdout.splitlines() == ["n", str(len(LRS) * STEPS)], res.stderr


def test_spark_reads_the_segments_with_the_documented_read(store):
    """Skips without pyspark: not in CI, whose install it would slow down (pyspark is ~450 MB
    and a JRE; a local Spark session takes ~50 s to start on this 2-core machine)."""
    pytest.importorskip("pyspark", reason="pyspark not installed (needs a JRE too)")
    from pyspark.sql import SparkSession

    write(store)
    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false") \
        .getOrCreate()
    try:
        code = _doc_block("python", "spark.read").replace("STORE", str(store))
        scope: dict[str, object] = {"spark": spark}
        exec(code, scope)
        rows = scope["history"].select("project", "run_id", "_step", "loss").collect()  # type: ignore[attr-defined]
        assert sorted(tuple(r) for r in rows) == _expected_sealed()
    finally:
        spark.stop()


def test_a_query_needing_a_duckdb_extension_fails_without_a_download(store):
    """localtrack's DuckDB never downloads an extension (there may be no network): a query
    reading an s3:// path itself is a usage error quoting DuckDB, at once."""
    write(store)
    with pytest.raises(UsageError, match="httpfs"):
        localtrack.Api(store).query("SELECT * FROM runs, read_parquet('s3://b/x.parquet')")


def test_a_key_of_numbers_histograms_and_unsealed_text_reads_as_text(store):
    """Sealed numbers in one run, a histogram in another, text in a JSONL log: no one type, so
    the history is read into memory and the key is JSON text (no query error from DuckDB)."""
    res = run_script("""
        import sys, localtrack
        import os
        root = sys.argv[1]
        hist = localtrack.Histogram(np_histogram=([1, 2], [0.0, 1.0, 2.0]))
        for rid, value, seal in (("n", 1.5, True), ("h", hist, True), ("t", "high", False)):
            os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0" if seal else str(1 << 40)
            run = localtrack.init(project="p", id=rid, dir=root)
            run.log({"x": value, "y": 1})
            run.finish()
    """, str(store))
    assert res.returncode == 0, res.stderr
    settle(store)
    assert {p.parts[-3] for p in store.glob("p/runs/*/segments/*.parquet")} == {"n", "h"}
    rows = localtrack.Api(store).query("SELECT run_id, x, y FROM history ORDER BY run_id").to_pylist()
    assert [(r["run_id"], r["y"]) for r in rows] == [("h", 1), ("n", 1), ("t", 1)]
    assert rows[1]["x"] == "1.5" and rows[2]["x"] == '"high"'
    assert '"$h"' in rows[0]["x"] and '"counts":[1,2]' in rows[0]["x"]


def test_json_output_is_strict_json_with_nan_as_null(store):
    """`--format json` writes one strict JSON object per line: NaN/Infinity (no JSON form) as null."""
    write(store)
    res = cli("query", "SELECT 'a' AS id, 'NaN'::DOUBLE AS x, 'inf'::DOUBLE AS y, 1.5::DOUBLE AS z",
              "--dir", str(store), "--format", "json")
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert row == {"id": "a", "x": None, "y": None, "z": 1.5}


def test_history_of_segments_with_different_columns_live_tails_and_labels(store):
    """The history view over every kind of run at once: a run sealed into several segments
    whose columns differ (a key added later, an integer key widened to float), a run whose
    rows are all in its JSONL log, and a shared run of two labels: each row is its run's, with
    its own values; a filter on one run or label returns exactly its rows."""
    res = run_script("""
        import os, sys, localtrack
        from pathlib import Path
        from localtrack import _sealer
        root = sys.argv[1]
        os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0"  # each finish() seals its tail
        for steps in (range(300), range(300, 600)):  # two sessions: two segments
            run = localtrack.init(project="p", id="multi", dir=root, resume="allow")
            for s in steps:
                run.log({"a": s * 3} if s < 300 else {"a": s * 3 + 0.5, "b": -s})
            run.finish()
            _sealer.wait_idle(Path(run.dir), timeout=60)  # sealed before the next session
        os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = str(1 << 40)
        run = localtrack.init(project="p", id="tail", dir=root)
        for s in range(20):
            run.log({"a": s * 5, "c": "t%d" % s})
        run.finish()
        os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0"
        for label, k in (("rank0", 7), ("rank1", 11)):
            run = localtrack.init(project="p", id="shared", dir=root, settings=localtrack.Settings(
                mode="shared", x_label=label, x_primary=label == "rank0"))
            for s in range(40):
                run.log({"a": s * k})
            run.finish()
    """, str(store), timeout=120)
    assert res.returncode == 0, res.stderr
    settle(store)
    segs = {p.parts[-3] for p in store.glob("p/runs/*/segments/*.parquet")}
    assert segs == {"multi"}
    import pyarrow.parquet as pq

    columns = {tuple(pq.read_schema(p).names) for p in store.glob("p/runs/multi/segments/*.parquet")}
    assert len(columns) > 1  # the segments' schemas differ: one dataset of several schemas
    assert list(store.glob("p/runs/shared/labels/*/segments/*.parquet"))
    api = localtrack.Api(store)

    rows = api.query('SELECT run_id, project, _label, _step, a, b, c FROM history').to_pylist()
    expected = [("multi", None, s, s * 3 + (0.5 if s >= 300 else 0), -s if s >= 300 else None, None)
                for s in range(600)]
    expected += [("tail", None, s, s * 5, None, f"t{s}") for s in range(20)]
    expected += [("shared", label, s, s * k, None, None)
                 for label, k in (("rank0", 7), ("rank1", 11)) for s in range(40)]
    got = [(r["run_id"], r["_label"], r["_step"], r["a"], r["b"], r["c"]) for r in rows]
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    assert {r["project"] for r in rows} == {"p"}
    assert api.query("SELECT * FROM history LIMIT 1").column_names[:4] == \
        ["run_id", "project", "_step", "_timestamp"]

    one = api.query("SELECT _step, a FROM history WHERE run_id = 'multi' AND _step >= 598 "
                    "ORDER BY _step").to_pylist()
    assert one == [{"_step": 598, "a": 1794.5}, {"_step": 599, "a": 1797.5}]
    per_run = api.query("SELECT h.run_id, r.state, count(*) AS n, max(h._step) AS last "
                        "FROM history h JOIN runs r ON r.id = h.run_id "
                        "GROUP BY ALL ORDER BY h.run_id").to_pylist()
    assert per_run == [{"run_id": "multi", "state": "finished", "n": 600, "last": 599},
                       {"run_id": "shared", "state": "finished", "n": 80, "last": 39},
                       {"run_id": "tail", "state": "finished", "n": 20, "last": 19}]
    rank1 = api.query("SELECT max(a) AS top FROM history WHERE _label = 'rank1'").to_pylist()
    assert rank1 == [{"top": 39 * 11}]
