"""localtrack.Histogram: made as W&B makes it, logged beside scalars, read back the same from
the JSONL logs and from Parquet, kept through a SIGKILL, refused clearly when it cannot be one."""

from __future__ import annotations

import json
import math
import signal
import subprocess

import numpy as np
import pytest

import localtrack
from localtrack import _cli, _media
from localtrack.errors import InvalidValueError, UnsupportedTypeError, UsageError

from .helpers import run_script, script, settle


def _numpy(values, bins):
    counts, edges = np.histogram(values, bins=bins)
    return tuple(counts.tolist()), tuple(edges.tolist())


def _logged(store, rows, *, live=False):
    """(history rows, summary, histograms("h")) of a run that logged ``rows``: read while it
    is live (the JSONL log) or after finish() (sealed, with the ``sealing`` fixture)."""
    run = localtrack.init(project="p", dir=store)
    for row in rows:
        run.log(row)
    if not live:
        run.finish()
        settle(store)  # the sealer is done: the rows are read from what it left
    stored = localtrack.Api(store).run(f"p/{run.id}")
    out = stored.history_table().to_pylist(), stored.summary, stored.histograms("h")
    run.finish()
    return out


# -- making one ------------------------------------------------------------------------------


def test_from_a_list_bins_as_numpy_does():
    values = [0.5, 1.0, 1.0, 2.5, 7.0, -3.0]
    h = localtrack.Histogram(values, num_bins=4)
    assert (h.counts, h.edges) == _numpy(values, 4)
    assert h.histogram == list(h.counts) and h.bins == list(h.edges)  # W&B's names
    assert len(localtrack.Histogram(values).counts) == 64  # W&B's default


@pytest.mark.parametrize("values", [
    pytest.param(list(np.random.default_rng(1).normal(size=5000)), id="normal"),
    pytest.param(list(np.random.default_rng(2).uniform(-1e-9, 1e-9, size=997)), id="tiny-range"),
    pytest.param([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5], id="integers"),
    pytest.param([2.0] * 7, id="one-value"),
    pytest.param([], id="empty"),
    pytest.param([1e300, -1e300, 0.0], id="huge"),
])
@pytest.mark.parametrize("bins", [1, 7, 64, 512])
def test_pure_python_binning_is_numpys(values, bins):
    """Without numpy a list is binned in Python: the same counts and edges as np.histogram."""
    assert _media.bin_python([float(v) for v in values], bins) == _numpy(values, bins)


def test_without_numpy_a_list_is_binned_and_logged(store):
    out = run_script("""
        import sys
        sys.modules["numpy"] = None  # as if numpy were not installed
        import localtrack
        h = localtrack.Histogram([1, 2, 2, 3, 3, 3], num_bins=3)
        run = localtrack.init(project="p", id="r", dir=sys.argv[1])
        run.log({"h": h})
        run.finish()
        print(h.counts, "numpy" in sys.modules and sys.modules["numpy"] is not None)
    """, str(store))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(1,", "2,", "3)", "False"]
    assert localtrack.Api(store).run("p/r").summary["h"].counts == (1, 2, 3)


def test_from_numpy_arrays_of_any_shape_and_dtype():
    x = np.random.default_rng(3).normal(size=(20, 50))
    assert localtrack.Histogram(x, num_bins=10).counts == _numpy(x.ravel(), 10)[0]
    ints = np.arange(100, dtype=np.uint8)
    assert localtrack.Histogram(ints, num_bins=5).counts == (20,) * 5
    assert sum(localtrack.Histogram(x.astype(np.float16)).counts) == 1000


def test_from_torch_tensors():
    torch = pytest.importorskip("torch", reason="torch is not installed (tested where it is)")
    w = torch.randn(30, 40, requires_grad=True)  # a parameter: still on the autograd graph
    h = localtrack.Histogram(w, num_bins=16)
    assert (h.counts, h.edges) == _numpy(w.detach().double().numpy().ravel(), 16)
    assert sum(localtrack.Histogram(w.to(torch.bfloat16)).counts) == 1200  # no numpy dtype
    counts, edges = torch.histogram(w.detach(), bins=8)  # float counts, whole numbers
    assert localtrack.Histogram(np_histogram=(counts, edges)).counts == tuple(
        int(c) for c in counts.tolist())


def test_from_np_histogram():
    x = np.random.default_rng(4).normal(size=300)
    counts, edges = np.histogram(x, bins=12)
    h = localtrack.Histogram(np_histogram=(counts, edges))
    assert (h.counts, h.edges) == (tuple(counts.tolist()), tuple(edges.tolist()))
    assert localtrack.Histogram(np_histogram=([1, 2], [0, 1, 5])).edges == (0.0, 1.0, 5.0)


def test_a_histogram_cannot_be_changed():
    h = localtrack.Histogram([1, 2, 3])
    with pytest.raises(AttributeError, match="cannot be changed"):
        h.counts = (1,)  # type: ignore[misc]
    assert h == localtrack.Histogram([1, 2, 3]) and hash(h) == hash(localtrack.Histogram([1, 2, 3]))


@pytest.mark.parametrize("kwargs, error, words", [
    pytest.param({"sequence": [1.0], "num_bins": 0}, InvalidValueError, "from 1 to 512", id="0-bins"),
    pytest.param({"sequence": [1.0], "num_bins": 513}, InvalidValueError, "from 1 to 512",
                 id="513-bins"),
    pytest.param({"sequence": [1.0], "num_bins": 2.5}, UnsupportedTypeError, "num_bins",
                 id="float-bins"),
    pytest.param({"sequence": [1.0], "num_bins": True}, InvalidValueError, "num_bins",
                 id="bool-bins"),
    pytest.param({"sequence": ["a", "b"]}, UnsupportedTypeError, "numbers", id="strings"),
    pytest.param({"sequence": "abc"}, UnsupportedTypeError, "sequence of numbers", id="a-string"),
    pytest.param({"sequence": [1.0, None]}, UnsupportedTypeError, "numbers", id="none-in-list"),
    pytest.param({"sequence": [[1.0], [2.0, 3.0]]}, UnsupportedTypeError, "one shape", id="ragged"),
    pytest.param({"sequence": 5}, UnsupportedTypeError, "sequence of numbers", id="a-number"),
    pytest.param({"sequence": [1.0, math.nan, math.inf, 2.0]}, InvalidValueError,
                 "2 of the 4 values are NaN or infinite", id="nan-inf"),
    pytest.param({}, InvalidValueError, "neither", id="nothing"),
    pytest.param({"sequence": [1.0], "np_histogram": ([1], [0, 1])}, InvalidValueError, "both",
                 id="both"),
    pytest.param({"np_histogram": ([1, 2], [0, 1])}, InvalidValueError, "2 counts need 3 edges",
                 id="mismatched"),
    pytest.param({"np_histogram": ([1] * 513, list(range(514)))}, InvalidValueError,
                 "from 1 to 512", id="513-counts"),
    pytest.param({"np_histogram": ([], [0])}, InvalidValueError, "from 1 to 512", id="no-counts"),
    pytest.param({"np_histogram": ([0.5, 0.5], [0, 1, 2])}, InvalidValueError, "density=True",
                 id="density"),
    pytest.param({"np_histogram": ([-1, 2], [0, 1, 2])}, InvalidValueError, "whole numbers >= 0",
                 id="negative-count"),
    pytest.param({"np_histogram": ([1, 2], [0, 2, 1])}, InvalidValueError, "must not decrease",
                 id="decreasing-edges"),
    pytest.param({"np_histogram": ([1], [0, math.inf])}, InvalidValueError, "NaN or infinite",
                 id="infinite-edge"),
    pytest.param({"np_histogram": ([1, 2],)}, InvalidValueError, "(counts, edges) pair",
                 id="not-a-pair"),
    pytest.param({"sequence": np.histogram([1.0, 2.0])}, InvalidValueError, "np_histogram=",
                 id="pair-as-values"),
])
def test_what_is_not_a_histogram_is_refused_clearly(kwargs, error, words):
    with pytest.raises(error) as info:
        localtrack.Histogram(**kwargs)
    assert isinstance(info.value, UsageError) and words in str(info.value), str(info.value)


# -- logging and reading it back -------------------------------------------------------------


def test_logged_beside_scalars_reads_back_sealed_and_live_the_same(store, sealing):
    rng = np.random.default_rng(5)
    hists = [localtrack.Histogram(rng.normal(i, 1, size=200), num_bins=8) for i in range(3)]
    rows = [{"loss": 1.0, "h": hists[0]}, {"loss": 0.5}, {"loss": 0.25, "h": hists[1],
                                                        "nested": {"h": hists[2]}}]
    live = _logged(store / "live", rows, live=True)
    done = _logged(store / "done", rows)
    for history, summary, by_step in (live, done):
        assert [r["_step"] for r in history] == [0, 1, 2]
        assert [r["loss"] for r in history] == [1.0, 0.5, 0.25]
        assert history[0]["h"] == {"counts": list(hists[0].counts), "edges": list(hists[0].edges)}
        assert history[1]["h"] is None
        assert history[2]["nested/h"]["counts"] == list(hists[2].counts)
        assert summary["h"] == hists[1] and summary["nested"]["h"] == hists[2]
        assert by_step == [(0, hists[0]), (2, hists[1])]
    strip = [{k: v for k, v in r.items() if k != "_timestamp"} for r in live[0]]
    assert strip == [{k: v for k, v in r.items() if k != "_timestamp"} for r in done[0]]


def test_the_column_is_a_struct_of_counts_and_edges_in_parquet(store, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq


    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")  # finish() seals the log into Parquet
    run = localtrack.init(project="p", id="r", dir=store)
    run.log({"h": localtrack.Histogram([1, 2, 3], num_bins=3)})
    run.finish()
    settle(store)
    segments = list((store / "p" / "runs" / "r" / "segments").glob("*.parquet"))
    expected = pa.struct([("counts", pa.list_(pa.int64())), ("edges", pa.list_(pa.float64()))])
    assert [pq.read_schema(s).field("h").type for s in segments] == [expected]
    assert localtrack.Api(store).run("p/r").history_table()["h"].type == expected


def test_a_key_mixing_histograms_and_numbers_is_json_text(store, sealing):
    h = localtrack.Histogram([1.0, 2.0], num_bins=2)
    history, summary, by_step = _logged(store, [{"h": h}, {"h": 3.5}, {"h": h}, {"h": "x"}])
    assert [r["h"] for r in history][1:] == ["3.5", _tagged(h), '"x"']
    assert summary["h"] == "x"
    assert by_step == [(0, h), (2, h)]
    history, summary, _ = _logged(store / "2", [{"h": 1.0}, {"h": h}])
    assert summary["h"] == h


def _tagged(h):
    """The JSON text of a histogram in a key of mixed kinds (see docs/format.md)."""
    return json.dumps({"$h": {"counts": list(h.counts), "edges": list(h.edges)}},
                      separators=(",", ":"))


def test_partial_steps_merge_with_a_histogram(store, sealing):
    h = localtrack.Histogram([1.0, 2.0, 2.5], num_bins=2)
    run = localtrack.init(project="p", dir=store)
    run.log({"a": 1.0}, commit=False)
    run.log({"h": h}, commit=False)
    run.log({"b": 2.0})
    run.log({"h": h}, step=5)
    run.finish()
    stored = localtrack.Api(store).run(f"p/{run.id}")
    rows = stored.history_table().to_pylist()
    assert [(r["_step"], r["a"], r["b"]) for r in rows] == [(0, 1.0, 2.0), (5, None, None)]
    assert stored.histograms("h") == [(0, h), (5, h)]


def test_summary_takes_a_histogram_and_a_config_key_cannot_be_its_tag(store):
    h = localtrack.Histogram([1.0, 2.0], num_bins=2)
    run = localtrack.init(project="p", id="r", dir=store)
    run.summary["best"] = h
    run.summary["fake"] = {"$h": {"counts": [1], "edges": [0, 1]}}  # flat keys: fake/$h/counts
    run.log({"$h": 1.0, "a": {"$h": 2.0}})  # history values are never objects: no ambiguity
    run.finish()
    stored = localtrack.Api(store).run("p/r")
    assert stored.summary["best"] == h
    assert stored.summary["fake"] == {"$h": {"counts": [1], "edges": [0, 1]}}  # a dict, as set
    assert stored.summary["$h"] == 1.0 and stored.summary["a"] == {"$h": 2.0}
    with pytest.raises(InvalidValueError, match=r"'\$h'"):
        localtrack.init(project="p", id="c", dir=store, config={"x": {"$h": 1}})


@pytest.mark.parametrize("value, words", [
    pytest.param(np.histogram([1.0, 2.0, 3.0]), "localtrack.Histogram(np_histogram=",
                 id="np-histogram-tuple"),
    pytest.param([localtrack.Histogram([1.0]), localtrack.Histogram([2.0])], "a key of its own",
                 id="list-of-histograms"),
    pytest.param(np.zeros(100), "shape (100,)", id="array"),
])
def test_what_log_refuses_names_the_key_and_run_and_writes_nothing(store, value, words):
    """W&B stores neither an np.histogram() tuple nor a list of histograms as a histogram
    column; we refuse both with the way to log them, and write nothing of the row."""
    run = localtrack.init(project="p", id="r", dir=store)
    with pytest.raises(UnsupportedTypeError) as info:
        run.log({"ok": 1.0, "weights": value})
    message = str(info.value)
    assert "'weights'" in message and "'r'" in message and words in message, message
    run.finish()
    assert localtrack.Api(store).run("p/r").history_table().num_rows == 0


def test_sigkill_after_log_returned_keeps_the_histogram(store):
    proc = script("""
        import sys, localtrack
        run = localtrack.init(project="p", id="k", dir=sys.argv[1])
        for i in range(3):
            run.log({"loss": float(i), "h": localtrack.Histogram([i, i + 1, i + 1], num_bins=2)})
        print("logged", flush=True)
        sys.stdin.read()  # until killed
    """, str(store), stdin=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"logged\n", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    stored = localtrack.Api(store).run("p/k")
    assert stored.state == "crashed"
    assert stored.histograms("h") == [
        (i, localtrack.Histogram([i, i + 1, i + 1], num_bins=2)) for i in range(3)]
    assert stored.summary["h"].counts == (1, 2)
    run = localtrack.init(project="p", id="k", resume="must", dir=store)  # and it goes on
    run.log({"h": localtrack.Histogram([5.0])})
    run.finish()
    assert [s for s, _ in localtrack.Api(store).run("p/k").histograms("h")] == [0, 1, 2, 3]


def test_a_wandb_script_logs_histograms_unchanged(store, tmp_path):
    out = run_script("""
        import numpy as np
        import localtrack as wandb

        wandb.init(project="hist", id="w", config={"bins": 32})
        for epoch in range(3):
            weights = np.random.randn(1000) + epoch
            wandb.log({"epoch": epoch, "weights": wandb.Histogram(weights),
                       "grads": wandb.Histogram(np_histogram=np.histogram(weights, bins=32))})
        wandb.finish()
    """, cwd=tmp_path, env={"WANDB_DIR": str(store)})
    assert out.returncode == 0, out.stderr
    stored = localtrack.Api(store).run("hist/w")
    assert [s for s, _ in stored.histograms("weights")] == [0, 1, 2]
    assert all(len(h.counts) == 64 and sum(h.counts) == 1000 for _, h in stored.histograms("weights"))
    assert all(len(h.counts) == 32 for _, h in stored.histograms("grads"))


def test_show_prints_a_histogram_by_its_size(store, capsys):
    run = localtrack.init(project="p", id="r", dir=store)
    run.log({"h": localtrack.Histogram(np.arange(1000.0)), "x": 1})
    run.finish()
    assert _cli.main(["show", "p/r", "--dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert "h: histogram[64 bins, 1000 values]" in out  # the summary
    assert out.rstrip().splitlines()[-1].split() == ["0", "histogram[64", "bins,", "1000",
                                                      "values]", "1"]


def test_histograms_of_a_key_without_any_is_empty(store):
    run = localtrack.init(project="p", id="r", dir=store)
    run.log({"loss": 0.5, "s": "text"})
    run.finish()
    stored = localtrack.Api(store).run("p/r")
    assert stored.histograms("loss") == stored.histograms("s") == stored.histograms("nope") == []
