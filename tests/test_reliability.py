"""Damaged files on purpose: torn tails at every offset, flipped bytes, broken segments and
metadata. Each is either recovered (only the torn tail dropped, with a warning) or a clear
CorruptRunError naming the file; `localtrack doctor` reports it and repairs what is safe."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import localtrack
from localtrack.errors import CorruptRunError

from .helpers import settle


def _run_with_log(store: Path, rid: str = "r", steps: int = 5, seal: bool = False) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOCALTRACK_SEAL_MIN_BYTES", str(0 if seal else 1 << 40))
        run = localtrack.init(project="p", id=rid, dir=store, config={"lr": 0.1})
        for i in range(steps):
            run.log({"x": float(i), "s": "v" * i})
        run.summary["best"] = 1
        run.finish()
    settle(store)  # sealing runs in a child process after finish()
    return store / "p" / "runs" / rid


def _wal(rdir: Path) -> Path:
    return next((rdir / "wal").glob("*.jsonl"))


def test_torn_tail_at_every_byte_offset(tmp_path):
    pristine = tmp_path / "pristine"
    data = _wal(_run_with_log(pristine)).read_bytes()
    starts = [i + 1 for i, b in enumerate(data) if b == ord("\n")][:-1]
    first_cut = starts[-2]                      # anywhere inside the last two records
    for cut in range(first_cut, len(data)):
        store = tmp_path / f"cut{cut}"
        shutil.copytree(pristine, store)
        wal = _wal(store / "p" / "runs" / "r")
        wal.write_bytes(data[:cut])
        complete = sum(1 for s in starts + [len(data)] if s <= cut)
        steps = localtrack.Api(store).run("p/r").history_table().column("_step").to_pylist()
        assert steps == list(range(complete)), cut
        if cut in (first_cut, len(data) - 1):  # and a writer repairs and continues
            ctx = pytest.warns(RuntimeWarning, match="torn tail") if cut not in starts else None
            if ctx is None:
                run = localtrack.init(project="p", id="r", resume="must", dir=store)
            else:
                with ctx:
                    run = localtrack.init(project="p", id="r", resume="must", dir=store)
            assert run.step == complete
            run.log({"x": -1.0})
            run.finish()
            steps = localtrack.Api(store).run("p/r").history_table().column("_step").to_pylist()
            assert steps == list(range(complete + 1))
        shutil.rmtree(store)


def test_zeros_at_the_end_are_padding_and_cut_silently(tmp_path):
    """A block the file system extended but never wrote reads as zeros, like the unused end of
    a mapped log's window: nothing acknowledged is there, so it goes without a warning."""
    rdir = _run_with_log(tmp_path / "s")
    size = _wal(rdir).stat().st_size
    with open(_wal(rdir), "ab") as fh:
        fh.write(b"\0" * 4096)
    assert localtrack.Api(tmp_path / "s").run("p/r").history_table().num_rows == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = localtrack.init(project="p", id="r", resume="must", dir=tmp_path / "s")
    assert run.step == 5 and _wal(rdir).stat().st_size == size
    assert not list(_wal(rdir).parent.glob("*.broken"))
    run.finish()


def test_a_torn_record_before_the_padding_is_a_torn_tail(tmp_path):
    rdir = _run_with_log(tmp_path / "s")
    with open(_wal(rdir), "ab") as fh:
        fh.write(b'{"x":5.0,"_st' + b"\0" * 100 + b'ep":5}' + b"\0" * 4000)  # a copy cut short
    with pytest.warns(RuntimeWarning, match="119 bytes"):
        run = localtrack.init(project="p", id="r", resume="must", dir=tmp_path / "s")
    assert run.step == 5
    run.finish()


def test_flipped_bytes_in_the_middle_are_reported_with_file_and_offset(tmp_path):
    pristine = tmp_path / "pristine"
    data = _wal(_run_with_log(pristine)).read_bytes()
    starts = [0] + [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    for pos in range(starts[1], starts[2]):      # every byte of the second record
        store = tmp_path / f"flip{pos}"
        shutil.copytree(pristine, store)
        wal = _wal(store / "p" / "runs" / "r")
        damaged = bytearray(data)
        damaged[pos] ^= 0x20
        wal.write_bytes(bytes(damaged))
        with pytest.raises(CorruptRunError) as info:
            localtrack.Api(store).run("p/r").history_table()
        assert str(wal) in str(info.value) and info.value.offset is not None, pos
        shutil.rmtree(store)


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage"])
def test_broken_segment_is_a_clear_error(tmp_path, damage):
    rdir = _run_with_log(tmp_path / "s", seal=True)
    seg = next((rdir / "segments").glob("*.parquet"))
    if damage == "truncate":
        seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])
    elif damage == "delete":
        seg.unlink()
    else:
        seg.write_bytes(b"not parquet at all" * 10)
    with pytest.raises(CorruptRunError) as info:
        localtrack.Api(tmp_path / "s").run("p/r").history_table()
    assert seg.name in str(info.value)


@pytest.mark.parametrize("name,read", [
    ("run.json", lambda api: api.run("p/r")),
    ("config.json", lambda api: api.run("p/r").config),
    ("summary.json", lambda api: api.run("p/r").summary),
    ("manifest.json", lambda api: api.run("p/r").history_table()),
])
def test_garbage_metadata_is_a_clear_error(tmp_path, name, read):
    rdir = _run_with_log(tmp_path / "s", seal=True)
    (rdir / name).write_bytes(b"\x00{garbage")
    with pytest.raises(CorruptRunError) as info:
        read(localtrack.Api(tmp_path / "s"))
    assert name in str(info.value)


def doctor(store: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localtrack", "doctor", "--dir", str(store), *args],
                          capture_output=True, text=True, timeout=60)


def test_doctor_reports_and_fixes_what_is_safe(tmp_path):
    store = tmp_path / "s"
    good = _run_with_log(store, "good", seal=True)
    torn = _run_with_log(store, "torn")
    bad = _run_with_log(store, "bad")
    res = doctor(store)
    assert res.returncode == 0 and "0 problem(s)" in res.stdout, res.stdout
    with open(_wal(torn), "ab") as fh:
        fh.write(b'{"_step":5,"x"')
    (good / "segments" / "00000099.parquet").write_bytes(b"orphan")
    (good / "wal" / "00000000.jsonl").write_bytes(b"")          # already sealed
    (good / ".tmp-config.json.abcd").write_bytes(b"{}")
    data = bytearray(_wal(bad).read_bytes())
    data[10] ^= 0x01
    _wal(bad).write_bytes(bytes(data))
    res = doctor(store)
    assert res.returncode == 1
    assert res.stdout.count("fixable with --fix") == 4 and "NEEDS ATTENTION" in res.stdout
    assert "p/bad" in res.stdout and "byte 0" in res.stdout
    res = doctor(store, "--fix")
    assert "4 fixed, 1 left" in res.stdout and res.returncode == 1
    assert (_wal(torn).with_name(_wal(torn).name + ".broken")).read_bytes() == b'{"_step":5,"x"'
    res = doctor(store, "p/good", "p/torn")
    assert res.returncode == 0, res.stdout
    api = localtrack.Api(store)
    assert api.run("p/good").history_table().num_rows == 5 and api.run("p/torn").history_table().num_rows == 5


def test_opening_a_run_removes_what_a_sealer_killed_mid_seal_left(tmp_path):
    """A sealer killed between writing a segment and the manifest leaves the segment (or its
    temp file) under the name of a log the manifest does not cover: opening the run removes
    those by name, without listing the segments, and the log still holds the steps."""
    store = tmp_path / "s"
    rdir = _run_with_log(store)  # its log stays JSONL: not sealed
    name = _wal(rdir).name.replace(".jsonl", ".parquet")
    (rdir / "segments").mkdir()
    orphan, half = rdir / "segments" / name, rdir / "segments" / f".tmp-{name}"
    orphan.write_bytes(b"PAR1 half a segment")
    half.write_bytes(b"PAR1")
    run = localtrack.init(project="p", id="r", resume="must", dir=store)
    assert not orphan.exists() and not half.exists()
    run.finish()
    assert localtrack.Api(store).run("p/r").history_table().column("x").to_pylist() == [0, 1, 2, 3, 4]


def test_events_torn_tail_is_cut_on_resume(tmp_path):
    rdir = _run_with_log(tmp_path / "s")
    with open(rdir / "events.jsonl", "ab") as fh:
        fh.write(b'{"event":"fini')
    with pytest.warns(RuntimeWarning, match="torn tail"):
        run = localtrack.init(project="p", id="r", resume="must", dir=tmp_path / "s")
    run.finish()
    assert localtrack.Api(tmp_path / "s").run("p/r").events[-1]["event"] == "finished"
