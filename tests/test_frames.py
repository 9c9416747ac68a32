"""Format 3's history log: plain rows (orjson's bytes alone) between framed rows whose checksum
covers them. Steps and times of plain rows, the frame that closes a log, what a torn framed
line and a damaged one each become, a killed writer's unframed rows, and format 2 logs."""

from __future__ import annotations

import json
import re
import signal
import tempfile
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import localtrack
from localtrack import _frames, _wal
from localtrack.errors import CorruptRunError

from .helpers import script, steps_of


def _log_file(store: Path, rid: str = "r") -> Path:
    return next((store / "p" / "runs" / rid / "wal").glob("*.jsonl"))


def _killed_after(store: Path, rows: int) -> None:
    """A writer that logged ``rows`` rows as fast as it could, the last ones surely plain
    (after its last frame), then was SIGKILLed."""
    proc = script("""
        import sys, time, localtrack
        run = localtrack.init(project="p", id="r", dir=sys.argv[1])
        for i in range(int(sys.argv[2])):
            if i == max(1, int(sys.argv[2]) - 5):
                run._stamp_due = float("inf")  # no frame for the last rows, however slow
            run.log({"x": i})
        print("logged", flush=True)
        time.sleep(60)
    """, str(store), str(rows))
    try:
        assert proc.stdout.readline() == b"logged\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().rstrip(b"\0").splitlines()


def test_plain_rows_get_the_next_step_and_the_last_framed_time(store):
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(2000):
        run.log({"x": float(i)})
        if i % 500 == 499:
            time.sleep(0.003)  # the next row is framed
    lines = _lines(_log_file(store))
    plain = [line for line in lines if b"_step" not in line]
    assert plain and all(re.fullmatch(rb'\{"x":\d+\.0\}', line) for line in plain)  # orjson's bytes
    assert len(lines) - len(plain) >= 4  # the first row and the three after a pause are framed
    table = localtrack.Api(store).run("p/r").history_table()
    assert table.column("_step").to_pylist() == list(range(2000))
    assert table.column("x").to_pylist() == [float(i) for i in range(2000)]
    times = table.column("_timestamp").to_pylist()
    assert None not in times and times == sorted(times)
    assert run.summary["x"] == 1999.0
    run.finish()
    assert _lines(_log_file(store))[-1].startswith(_frames.END_BODY + b',"_crc":')
    checked = _frames.validate(_log_file(store).read_bytes())
    assert checked.bad_at is None and checked.frame_end == checked.end  # checksummed to the end
    assert steps_of(store, "p/r") == list(range(2000))


def test_rows_after_partial_explicit_and_odd_rows_carry_their_own_step(store):
    run = localtrack.init(project="p", id="r", dir=store)
    run.log({"a": 1.0})
    run.log({"b": 2.0}, commit=False)
    run.log({"c": 3.0})  # completes step 1
    run.log({"d": 4.0})
    run.log({"e": 5.0}, step=10)  # an explicit step stays open (W&B): the next row joins it
    run.log({"f": 6.0})
    run.log({"_end": True})  # the closing frame's key, as a user key: an ordinary row
    run.log({"g": None})  # the general path
    run.log({"h": 7.0})
    run.finish()
    table = localtrack.Api(store).run("p/r").history_table()
    rows = {r["_step"]: {k: v for k, v in r.items() if v is not None and k != "_timestamp"}
            for r in table.to_pylist()}
    assert rows == {0: {"_step": 0, "a": 1.0}, 1: {"_step": 1, "b": 2.0, "c": 3.0},
                    2: {"_step": 2, "d": 4.0}, 10: {"_step": 10, "e": 5.0, "f": 6.0},
                    11: {"_step": 11, "_end": True}, 12: {"_step": 12}, 13: {"_step": 13, "h": 7.0}}


def test_a_framed_line_torn_with_its_newline_costs_only_itself(store):
    """SIGKILL in the middle of the copy of a framed line can leave its newline stored and NULs
    inside (memcpy does not store in order): the plain rows before it were acknowledged."""
    _killed_after(store, 5)
    log = _log_file(store)
    torn = b'{"x":5,"_step":5,"_timestamp":17\0\0\0\0\0,"_crc":12345}\n'
    with open(log, "r+b") as fh:
        fh.seek(_wal.data_size(log))
        fh.write(torn)
    with pytest.warns(RuntimeWarning, match="torn tail"):
        again = localtrack.init(project="p", id="r", resume="must", dir=store)
    assert again.step == 5
    again.log({"x": 5})
    again.finish()
    assert steps_of(store, "p/r") == list(range(6))
    assert Path(str(log) + ".broken").read_bytes() == torn


def test_a_whole_framed_line_that_fails_its_checksum_is_damage(store):
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(10):
        run.log({"x": i, "s": "abc"})
    run.finish()
    log = _log_file(store)
    data = bytearray(log.read_bytes())
    data[data.index(b'"s":"abc"}\n{"x":4') + 6] = ord("X")  # still JSON: only a checksum sees it
    log.write_bytes(bytes(data))
    with pytest.raises(CorruptRunError) as info:
        localtrack.Api(store).run("p/r").history_table()
    assert str(log) in str(info.value) and info.value.offset is not None
    with pytest.raises(CorruptRunError):
        localtrack.init(project="p", id="r", resume="must", dir=store)
    assert log.read_bytes() == bytes(data)  # nothing was cut or changed


def test_a_killed_writers_unframed_rows_are_framed_by_the_next_writer(store):
    _killed_after(store, 3000)
    log = _log_file(store)
    before = _frames.validate(log.read_bytes())
    assert before.bad_at is None and before.end > before.frame_end  # rows after the last frame
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # padding alone is no torn tail
        run = localtrack.init(project="p", id="r", resume="must", dir=store)
    assert run.step == 3000
    time.sleep(0.002)
    run.log({"x": 3000})  # framed: its checksum covers the killed writer's plain rows too
    after = _frames.validate(log.read_bytes())
    assert after.bad_at is None and after.frame_end == after.end
    data = bytearray(log.read_bytes())
    data[before.end - 3] ^= 0x01  # a digit of the killed writer's last row: now checksummed
    log.write_bytes(bytes(data))
    assert _frames.validate(bytes(data)).corrupt
    data[before.end - 3] ^= 0x01
    log.write_bytes(bytes(data))
    run.finish()
    assert steps_of(store, "p/r") == list(range(3001))


def test_a_format_2_log_is_read_and_resumed(store):
    run = localtrack.init(project="p", id="r", dir=store)
    run.finish()
    rdir = store / "p" / "runs" / "r"
    meta = json.loads((rdir / "run.json").read_text())
    (rdir / "run.json").write_text(json.dumps({**meta, "format": 2}))
    log = rdir / "wal" / "00000000.jsonl"  # every line framed alone, as version 2 wrote them
    log.write_bytes(b"".join(_frames.frame({"x": float(i), "_step": i, "_timestamp": 1.0 + i})
                             for i in range(3)))
    assert steps_of(store, "p/r") == [0, 1, 2]
    again = localtrack.init(project="p", id="r", resume="must", dir=store)
    assert again.step == 3
    for i in range(3, 50):
        again.log({"x": float(i)})
    again.finish()
    assert json.loads((rdir / "run.json").read_text())["format"] == 3
    assert steps_of(store, "p/r") == list(range(50))
    assert _frames.validate(log.read_bytes()).bad_at is None


def test_rows_with_no_framed_row_before_them_are_a_clear_error(store):
    """Not a crash outcome (the writer frames a file's first row): a log cut at the front."""
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(200):  # one row a millisecond is framed: under load the first few may all be
        run.log({"x": i})
    run.finish()
    log = _log_file(store)
    lines = log.read_bytes().splitlines(keepends=True)
    plain = next(n for n, line in enumerate(lines) if b'"_step"' not in line)
    log.write_bytes(b"".join(lines[plain:]))  # every row before the first plain one gone
    for read in (lambda: localtrack.Api(store).run("p/r").history_table(),
                 lambda: localtrack.init(project="p", id="r", resume="must", dir=store)):
        with pytest.raises(CorruptRunError) as info:
            read()
        assert str(log) in str(info.value) and info.value.offset == 0


_values = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32), st.none())
_ops = st.lists(st.tuples(st.sampled_from(["row", "row", "row", "partial", "step", "pause"]),
                          st.dictionaries(st.sampled_from("abc"), _values, min_size=1),
                          st.integers(0, 3)), min_size=1, max_size=40)


@given(_ops, st.booleans())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_mix_of_calls_reads_back_as_logged(ops, seal):
    """Plain and framed rows in any order, against a model of log()'s step rules."""

    model: dict[int, dict] = {}
    step = 0
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as store:
        patch.setenv("LOCALTRACK_SEAL_MIN_BYTES", str(0 if seal else 1 << 40))
        run = localtrack.init(project="p", dir=store)
        for op, row, jump in ops:
            if op == "pause":
                time.sleep(0.0015)  # the next row is framed
                continue
            at = step + jump if op == "step" else step
            if op == "row":
                run.log(row)
            elif op == "partial":
                run.log(row, commit=False)
            else:
                run.log(row, step=at)
            merged = model.setdefault(at, {})
            merged.update({k: v for k, v in row.items() if v is not None})
            step = at + 1 if op == "row" else at
        assert run.step == step
        run.finish()
        table = localtrack.Api(store).run(f"p/{run.id}").history_table()
    got = {r["_step"]: {k: v for k, v in r.items() if k in "abc" and v is not None}
           for r in table.to_pylist()}
    assert got == model


def test_resume_counts_plain_rows_far_past_the_last_framed_one(store):
    """The tail read grows backwards until it reaches a framed row to count from."""
    run = localtrack.init(project="p", id="r", dir=store)
    run.log({"x": 0})
    run._stamp_due = float("inf")  # no frame after the first row, however slow the loop
    for i in range(1, 20_000):
        run.log({"x": i})
    run.finish()
    assert _log_file(store).stat().st_size > 150_000  # far beyond the first 4 KiB read
    again = localtrack.init(project="p", id="r", resume="must", dir=store)
    assert again.step == 20_000
    again.finish()


def test_the_last_framed_row_of_a_chunk_s_end(store):
    """_frames.last_framed_row over a real log's bytes, cut anywhere: the last framed row in
    the whole lines (a cut first line skipped unless the bytes start the log), past plain
    rows and the closing line; None when the lines hold no framed row."""
    run = localtrack.init(project="p", id="r", dir=store)
    for s in range(50):
        run.log({"x": s, "note": '"_step": 9\n'})  # (a string cannot fake a frame: quotes escaped)
    run.finish()
    data = _log_file(store).read_bytes().rstrip(b"\0")
    rows = [json.loads(line) for line in data.splitlines()]
    framed = [r for r in rows if "_step" in r]
    assert framed and "_end" in rows[-1]  # plain rows between frames, then the closing line
    assert _frames.last_framed_row(data, True) == framed[-1]
    for cut in range(0, len(data), 97):
        tail = data[cut:]
        lines = [json.loads(x) for x in (tail if cut == 0 else tail.split(b"\n", 1)[-1]).splitlines()]
        expect = next((r for r in reversed(lines) if "_step" in r), None)
        assert _frames.last_framed_row(tail, cut == 0) == expect, cut
    assert _frames.last_framed_row(b'{"x":1}\n{"x":2}\n', True) is None
    assert _frames.last_framed_row(b"", True) is None
