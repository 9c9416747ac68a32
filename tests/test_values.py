"""What log() accepts, how it is stored, and that every value comes back exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

import localtrack
from localtrack.errors import InvalidValueError, UnsupportedTypeError


def _roundtrip(store, rows):
    run = localtrack.init(project="p", dir=store)
    for row in rows:
        run.log(row)
    run.finish()
    return localtrack.Api(store).run(f"p/{run.id}")


def _roundtrip_unsealed(store, rows):
    """Same, but read while the run is live (from the log, not Parquet)."""
    run = localtrack.init(project="p", dir=store)
    for row in rows:
        run.log(row)
    stored = localtrack.Api(store).run(f"p/{run.id}")
    table, summary = stored.history_table(), stored.summary
    run.finish()
    return table, summary


@pytest.mark.parametrize("sealed", [True, False], ids=["finished", "live-log"])
def test_non_finite_floats_round_trip(store, sealed, sealing):
    rows = [{"x": math.nan}, {"x": math.inf}, {"x": -math.inf}, {"x": 1.5}]
    if sealed:
        stored = _roundtrip(store, rows)
        table, summary = stored.history_table(), stored.summary
    else:
        table, summary = _roundtrip_unsealed(store, rows)
    values = table.column("x").to_pylist()
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1.5]
    assert summary["x"] == 1.5


def test_summary_keeps_non_finite(store, sealing):
    run = localtrack.init(project="p", dir=store)
    run.log({"x": -math.inf})
    run.summary["best"] = math.nan
    run.finish()
    summary = localtrack.Api(store).run(f"p/{run.id}").summary
    assert summary["x"] == -math.inf and math.isnan(summary["best"])


def test_scalars_of_every_kind(store, sealing):
    big = 2**62 + 1  # beyond 2**53: a float would round it
    stored = _roundtrip(store, [{"i": big, "b": True, "s": "héllo ✓", "n": None, "f": 0.1}])
    row = stored.history_table().to_pylist()[0]
    assert row["i"] == big and row["b"] is True and row["s"] == "héllo ✓"
    assert row["n"] is None and row["f"] == 0.1


def test_numpy_scalars_and_zero_d_arrays(store, sealing):
    stored = _roundtrip(store, [{
        "f32": np.float32(0.25), "f64": np.float64(np.nan), "i64": np.int64(7),
        "b": np.bool_(True), "arr0": np.array(3.5), "s": np.str_("x"),
    }])
    row = stored.history_table().to_pylist()[0]
    assert row["f32"] == 0.25 and math.isnan(row["f64"]) and row["i64"] == 7
    assert row["b"] is True and row["arr0"] == 3.5 and row["s"] == "x"


def test_torch_zero_d_tensor(store):
    torch = pytest.importorskip("torch")
    stored = _roundtrip(store, [{"t": torch.tensor(0.5), "ti": torch.tensor(3)}])
    row = stored.history_table().to_pylist()[0]
    assert row["t"] == 0.5 and row["ti"] == 3


def test_nested_dicts_flatten_in_history_and_nest_in_summary(store, sealing):
    stored = _roundtrip(store, [{"val": {"loss": 0.5, "acc": {"top1": 0.9}}, "train/loss": 0.7}])
    assert set(stored.history_table().column_names) == {
        "_step", "_timestamp", "val/loss", "val/acc/top1", "train/loss"}
    assert stored.summary == {"val": {"loss": 0.5, "acc": {"top1": 0.9}}, "train": {"loss": 0.7}}


@pytest.mark.parametrize("value,err,needle", [
    pytest.param(object(), UnsupportedTypeError, "object", id="object"),
    pytest.param([1, 2], UnsupportedTypeError, "list", id="list"),
    pytest.param(np.zeros(3), UnsupportedTypeError, "(3,)", id="array"),
    pytest.param(2**64, InvalidValueError, "64 bits", id="huge-int"),
])
def test_bad_value_names_the_key_and_the_run_survives(store, value, err, needle):
    run = localtrack.init(project="p", dir=store)
    run.log({"ok": 1.0})
    with pytest.raises(err) as info:
        run.log({"good": 1.0, "bad_key": value})
    assert "bad_key" in str(info.value) and needle in str(info.value) and run.id in str(info.value)
    run.log({"ok": 2.0})
    run.finish()
    rows = localtrack.Api(store).run(f"p/{run.id}").history_table().to_pylist()
    assert [r["_step"] for r in rows] == [0, 1]
    assert "good" not in rows[0] and [r["ok"] for r in rows] == [1.0, 2.0]


@pytest.mark.parametrize("row", [
    pytest.param({"a/b": 1, "a": {"b": 2}}, id="flatten-collision"),
    pytest.param({"_step": 3}, id="reserved-step"),
    pytest.param({"": 1}, id="empty-key"),
    pytest.param({1: 1}, id="int-key"),
])
def test_bad_keys(store, row):
    run = localtrack.init(project="p", dir=store)
    with pytest.raises(InvalidValueError):
        run.log(row)
    assert run.step == 0


def test_type_change_between_steps_is_unified(store, sealing):
    run = localtrack.init(project="p", dir=store)
    run.log({"a": 1})
    run.log({"a": 2.5, "b": "x"})
    run.log({"b": "y"})
    run.finish()
    table = localtrack.Api(store).run(f"p/{run.id}").history_table()
    assert table.column("a").to_pylist() == [1.0, 2.5, None]
    assert table.column("b").to_pylist() == [None, "x", "y"]


def test_config_round_trip_and_validation(store):
    run = localtrack.init(project="p", dir=store, config={"lr": 0.1, "layers": [64, 32],
                                                           "opt": {"name": "adam", "eps": math.inf}})
    run.config.update({"bs": 64})
    run.config.momentum = 0.9
    assert run.config["lr"] == 0.1 and run.config.bs == 64
    with pytest.raises(UnsupportedTypeError):
        run.config["bad"] = object()
    assert "bad" not in run.config
    run.finish()
    config = localtrack.Api(store).run(f"p/{run.id}").config
    assert config == {"lr": 0.1, "layers": [64, 32], "opt": {"name": "adam", "eps": math.inf},
                      "bs": 64, "momentum": 0.9}


def test_number_keys_of_config_summary_and_metadata_are_stored_as_json_writes_them(store):
    """As W&B stores them (Transformers' model config has ``id2label = {0: "LABEL_0"}``)."""
    run = localtrack.init(project="p", dir=store, config={"id2label": {0: "a", 1: "b"}})
    run.config.update({"more": {2.5: 1, True: 2}})
    run.summary["by_class"] = {3: 0.5}
    art = localtrack.Artifact("m", "model", metadata={"labels": {0: "a"}})
    with art.new_file("w.txt") as fh:
        fh.write("w")
    run.log_artifact(art)
    run.finish()
    api = localtrack.Api(store)
    read = api.run(f"p/{run.id}")
    assert read.config == {"id2label": {"0": "a", "1": "b"}, "more": {"2.5": 1, "true": 2}}
    assert read.summary["by_class"] == {"3": 0.5}
    assert api.artifact("p/m:latest").metadata == {"labels": {"0": "a"}}
    other = localtrack.init(project="p", dir=store)
    with pytest.raises(InvalidValueError):  # log() keys stay strings only (W&B's too)
        other.log({"a": {1: 2.0}})
    other.finish()


@pytest.mark.parametrize("rows,expect", [
    pytest.param([{"k": False}, {"k": 0}], 0, id="bool-then-int"),        # hypothesis found these
    pytest.param([{"k": False}, {"k": None}], False, id="none-keeps-last"),
    pytest.param([{"k": "a"}, {"k": math.nan}], math.nan, id="string-then-nan"),
])
def test_summary_of_mixed_kinds(store, sealing, rows, expect):
    run = localtrack.init(project="p", dir=store)
    for row in rows:
        run.log(row)
    run.finish()
    got = localtrack.Api(store).run(f"p/{run.id}").summary["k"]
    assert (math.isnan(got) and math.isnan(expect)) if isinstance(expect, float) else (
        got == expect and type(got) is type(expect))


def test_wide_rows_and_huge_strings_round_trip(store, sealing):
    """Documented limits: any number of keys and any string size are stored; very wide rows are
    slow to seal and read (10^5 keys: ~25 s to seal, ~12 s to read on 2 shared cores)."""
    run = localtrack.init(project="p", dir=store)
    wide = {f"k{i}": float(i) for i in range(10_000)}
    run.log(wide)
    run.log({"big": "x" * 5_000_000, "k1": -1.0})
    run.finish()
    stored = localtrack.Api(store).run(f"p/{run.id}")
    table = stored.history_table()
    assert table.num_columns == 10_003 and table.num_rows == 2
    assert table.column("k9999").to_pylist() == [9999.0, None]
    assert len(table.column("big")[1].as_py()) == 5_000_000
    assert stored.summary["k1"] == -1.0 and stored.summary["k9999"] == 9999.0
