"""Power loss, LevelDB/ALICE style: crash images built from what the writer had fsynced.

A real writer process logs (default fsync policy, a short interval) while every fsync of a
history log or of the durable watermark is recorded: the file's bytes just before the fsync
(what it is sure to persist) are snapshotted once it returns. The writer is SIGKILLed at a
random instant. Each crash image takes, per file, the last completed snapshot ("old") and the
bytes at the kill ("new"), and mixes them the way page-cache writeback and disks do: a prefix
(file order), random 4 KiB pages, random 512 B sectors, or everything but one lost page. Every
image must open for a writer, keep every step the snapshots held, read back contiguous before
and after the resume, pass doctor, and take new steps.

POWERLOSS_IMAGES sets the number of images (default 100; the soak figures in
docs/reliability.md come from 1,000).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import localtrack
from localtrack import _codec, _doctor, _durable, _frames, _sealer, _wal

from .helpers import script, settle, wait_for

SNAPSHOT_FSYNCS = """
import os, threading
real_fsync, lock, count = os.fsync, threading.Lock(), [0]

def fsync(fd):
    path = os.readlink(f"/proc/self/fd/{fd}")
    if "/wal/" not in path:
        return real_fsync(fd)
    data = os.pread(fd, 1 << 30, 0)      # fsync persists at least these bytes
    real_fsync(fd)
    with lock:                           # completed: the snapshot counts
        count[0] += 1
        name = f"{count[0]:06d}-" + os.path.basename(path)
        with open(os.path.join(snaps, name + ".tmp"), "wb") as fh:
            fh.write(data)
        os.rename(os.path.join(snaps, name + ".tmp"), os.path.join(snaps, name))

os.fsync = fsync
"""  # a writer script's prelude: every fsync of a file under wal/ snapshots it into ``snaps``

WRITER = """
import os, sys, random, numpy as np, localtrack
from localtrack import _frames, _logfile, _sealer, _stream, _wal
store, snaps, seed, rotate = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
media = sys.argv[5] == "1"
os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = str(1 << 40)
_sealer.request = lambda *a, **k: None   # no sealing: every durable step stays in the logs
if rotate:
    os.environ["LOCALTRACK_ROTATE_BYTES"] = "100000"
""" + SNAPSHOT_FSYNCS + """
rng = random.Random(seed)
run = localtrack.init(project="p", id="w", dir=store)
print("start", flush=True)
for i in range(10**6):
    row = {"x": float(i), "pad": "z" * rng.choice((0, 20, 200))}
    if media and rng.random() < 0.3:     # items of a few bytes to 3 pages, in the blob log
        side = rng.choice((2, 20, 60))
        row["img"] = localtrack.Image(np.full((side, side), i % 256, np.uint8))
    kind = rng.random()
    if kind < 0.2:                       # framed rows (explicit steps) as well as plain ones
        s = run.step
        run.log(row, step=s)
        run.log({"y": 1.0}, step=s, commit=True)
    elif kind < 0.25:
        run.log({"partial": 1.0}, commit=False)
        run.log(row)
    else:
        run.log(row)
    if rng.random() < 0.01:
        run.summary["best"] = i
"""


def _write_and_kill(root: Path, seed: int, rotate: bool, media: bool = False) -> tuple[Path, Path]:
    """A store whose writer was SIGKILLed, and the folder of its fsync snapshots."""
    store, snaps = root / "store", root / "snaps"
    snaps.mkdir(parents=True)
    proc = script(WRITER, str(store), str(snaps), str(seed), "1" if rotate else "0",
                  "1" if media else "0",
                  env={"LOCALTRACK_FSYNC_INTERVAL": "0.03"})
    assert proc.stdout.readline() == b"start\n", proc.stderr.read().decode()
    time.sleep(random.Random(seed).uniform(0.15, 0.6))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return store, snaps


def _durable_state(snaps: Path) -> dict[str, bytes]:
    """The last completed snapshot of each file, by name."""
    last: dict[str, bytes] = {}
    for snap in sorted(p for p in snaps.iterdir() if not p.name.endswith(".tmp")):
        last[snap.name.split("-", 1)[1]] = snap.read_bytes()
    return last


def _synced_steps(wal_dir: Path, old: dict[str, bytes]) -> int:
    """How many steps the snapshots hold: every one must survive any crash image."""
    records: list[dict] = []
    for path in sorted(wal_dir.glob("*.jsonl")):
        checked = _frames.validate(old.get(path.name, b""))
        records += _frames.records(checked.bodies)
        if checked.bad_at is not None:
            break
    steps = {r["_step"] for r in records if "_step" in r}
    return max(steps) + 1 if steps else 0


def _marked_steps(wal_dir: Path, old: dict[str, bytes]) -> int:
    """How many steps the durable watermark of the snapshots covers. With media, this is what
    must survive: a log's fsync may also persist rows logged after the blob log's fsync (the
    flusher fsyncs the blob first, then the log, while the writer goes on), and a crash image
    may have those rows without their media; they are past the watermark, so cut as torn."""
    mark = _durable._read_slots(old.get(_durable.NAME, b""))[1]
    records: list[dict] = []
    for path in sorted(wal_dir.glob("*.jsonl")):
        seq = int(path.name.split(".")[0])
        data = old.get(path.name, b"")
        if seq > mark.seq:
            break
        checked = _frames.validate(data if seq < mark.seq else data[:mark.offset])
        records += _frames.records(checked.bodies)
    steps = {r["_step"] for r in records if "_step" in r}
    return max(steps) + 1 if steps else 0


def _mix(old: bytes, new: bytes, how: str, rng: random.Random) -> bytes:
    """One crash state of a file that held ``old`` on disk and ``new`` in the page cache."""
    size = len(new)
    base = old[:size].ljust(size, b"\0")  # unsynced bytes read back as zeros (fallocated)
    if base == new:
        return new
    first = next(i for i in range(size) if base[i] != new[i])
    if how == "prefix":
        cut = rng.randint(first, size)
        return new[:cut] + base[cut:]
    block = 512 if how == "sectors" else 4096
    start = first - first % block
    blocks = list(range(start, size, block))
    if how == "lost-page":
        lost = rng.choice(blocks)
        return new[:lost] + base[lost:lost + block] + new[lost + block:]
    out = bytearray(base)
    for b in blocks:
        if rng.random() < 0.5:
            out[b:b + block] = new[b:b + block]
    return bytes(out)


def _image(store: Path, old: dict[str, bytes], dest: Path, how: str, rng: random.Random) -> None:
    shutil.copytree(store, dest)
    wal_dir = dest / "p" / "runs" / "w" / "wal"
    for path in wal_dir.iterdir():
        path.write_bytes(_mix(old.get(path.name, b""), path.read_bytes(), how, rng))


def _check_image(image: Path, synced: int, label: str, media: bool = False) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # torn tails cut, logs set aside
        steps = localtrack.Api(image).run("p/w").history_table(["x"]).column("_step").to_pylist()
        assert steps == list(range(len(steps))), f"{label}: a reader saw a gap before the resume"
        _doctor.check_store(image)
        run = localtrack.init(project="p", id="w", resume="must", dir=image)
    assert run.step >= synced, f"{label}: steps up to {synced - 1} were synced, resumed at {run.step}"
    start = run.step
    for i in range(5):
        run.log({"x": float(start + i)})
    run.finish()
    settle(image)  # the repaired logs are sealed, and sealing must not fail
    failed = [log.read_text() for log in image.rglob(_sealer.LOG) if "failed" in log.read_text()]
    assert not failed, f"{label}: sealing failed: {failed}"
    steps = localtrack.Api(image).run("p/w").history_table(["x"]).column("_step").to_pylist()
    assert steps == list(range(start + 5)), f"{label}: not contiguous after the resume"
    if media:  # every item a row refers to is whole: read, checked against its CRC, decoded
        images = localtrack.Api(image).run("p/w").media("img")
        assert all(np.asarray(im).flat[0] == (s % 256) for s, im in images), label
    assert not [f for f in _doctor.check_store(image) if not f.fixed], f"{label}: doctor finds damage"


KINDS = ("prefix", "pages", "sectors", "lost-page")


def test_power_loss_images(tmp_path):
    images = int(os.environ.get("POWERLOSS_IMAGES", "60"))
    per_writer = 24
    rng = random.Random(20261130)
    checked = 0
    for w in range(-(-images // per_writer)):
        rotate = w % 2 == 0
        store, snaps = _write_and_kill(tmp_path / f"w{w}", w, rotate)
        old = _durable_state(snaps)
        synced = _synced_steps(store / "p" / "runs" / "w" / "wal", old)
        for k in range(min(per_writer, images - checked)):
            how = KINDS[k % len(KINDS)]
            image = tmp_path / f"w{w}" / f"image{k}"
            _image(store, old, image, how, rng)
            _check_image(image, synced, f"writer {w} (rotation {rotate}), image {k} ({how})")
            shutil.rmtree(image)
            checked += 1
    print(f"\npower loss: {checked} crash images of {w + 1} killed writers, each opened, "
          "resumed and read back contiguous")
    assert checked == images


def test_power_loss_images_with_media(tmp_path):
    """The same, with images in the blob logs: a row whose media a crash image lost is cut
    as a torn tail when the run is opened, and every item left reads back whole."""
    images = max(8, int(os.environ.get("POWERLOSS_IMAGES", "60")) // 4)
    per_writer = 12
    rng = random.Random(20261201)
    checked = 0
    for w in range(-(-images // per_writer)):
        rotate = w % 2 == 1
        store, snaps = _write_and_kill(tmp_path / f"w{w}", 100 + w, rotate, media=True)
        old = _durable_state(snaps)
        assert any(name.endswith(".blob") for name in old), "no blob log was fsynced"
        synced = _marked_steps(store / "p" / "runs" / "w" / "wal", old)
        assert synced > 0, "the watermark covers no step"
        for k in range(min(per_writer, images - checked)):
            how = KINDS[k % len(KINDS)]
            image = tmp_path / f"w{w}" / f"image{k}"
            _image(store, old, image, how, rng)
            _check_image(image, synced, f"writer {w} (rotation {rotate}), image {k} ({how})",
                         media=True)
            shutil.rmtree(image)
            checked += 1
    assert checked == images


@pytest.mark.parametrize("where", ["synced", "unsynced"])
def test_damage_is_corruption_only_where_the_watermark_says_synced(store, where, monkeypatch):
    """The same flipped byte: a CorruptRunError inside synced data, a torn tail after it."""
    monkeypatch.setenv("LOCALTRACK_FSYNC_INTERVAL", "3600" if where == "unsynced" else "0.02")
    run = localtrack.init(project="p", id="d", dir=store)
    for i in range(200):
        run.log({"x": float(i)}, step=i)  # every row framed
    wal = next((store / "p" / "runs" / "d" / "wal").glob("*.jsonl"))
    if where == "synced":
        end = _wal.data_size(wal)
        wait_for(lambda: _durable.read(wal.parent.parent).offset >= end - 200, what="an fsync")
    data = bytearray(wal.read_bytes())
    data[data.index(b'"x":50.0') + 5] = ord("7")
    run._drop()  # the writer dies: nothing more is written or synced
    wal.write_bytes(bytes(data))
    if where == "synced":
        with pytest.raises(localtrack.errors.CorruptRunError) as info:
            localtrack.Api(store).run("p/d").history_table()
        assert info.value.offset is not None and info.value.offset < data.index(b'"x":57.0')
    else:
        assert localtrack.Api(store).run("p/d").history_table().num_rows == 50
        with pytest.warns(RuntimeWarning, match="torn tail"):
            again = localtrack.init(project="p", id="d", resume="must", dir=store)
        assert again.step == 50
        again.finish()


def test_a_closed_log_that_lost_its_end_past_the_watermark_ends_the_history(store, monkeypatch):
    """The watermark covers a closed log through one of its rows; its pages after that, the
    closing line with them, never reached the disk (they read as zeros), while the next logs'
    pages did. Those logs' steps follow a hole: the reader stops at the loss, and the resuming
    writer continues right after it (it once kept the later logs and resumed past the hole)."""
    monkeypatch.setenv("LOCALTRACK_FSYNC_INTERVAL", "3600")  # no fsync but the ones made here
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "4096")
    monkeypatch.setattr(_sealer, "request", lambda *a, **k: None)  # every step stays in the logs
    run = localtrack.init(project="p", id="d", dir=store)
    for i in range(300):
        run.log({"x": float(i)}, step=i)  # every row framed: any line end is a frame end
    run._drop()  # the power goes: nothing more is written or synced
    rdir = store / "p" / "runs" / "d"
    logs = sorted((rdir / "wal").glob("*.jsonl"))
    assert len(logs) >= 3, logs
    first = logs[0]
    data = first.read_bytes()
    lines = data[:_frames.data_end(data)].splitlines(keepends=True)
    assert lines[-1].startswith(_frames.END_BODY), lines[-1]
    lost_step = _codec.loads(lines[-3])["_step"]  # the last three lines never synced
    mark_at = sum(len(line) for line in lines[:-3])
    marks = _durable.Writer(rdir)
    marks.record(_durable.Mark(int(first.stem), mark_at))
    marks.close()
    first.write_bytes(data[:mark_at] + bytes(len(data) - mark_at))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        steps = localtrack.Api(store).run("p/d").history_table(["x"]).column("_step").to_pylist()
        assert steps == list(range(lost_step))
        with pytest.warns(RuntimeWarning, match="Set aside"):
            again = localtrack.init(project="p", id="d", resume="must", dir=store)
    assert again.step == lost_step
    again.log({"x": float(lost_step)})
    again.finish()
    steps = localtrack.Api(store).run("p/d").history_table(["x"]).column("_step").to_pylist()
    assert steps == list(range(lost_step + 1))
    assert all((rdir / "wal" / f"{p.name}.broken").exists() for p in logs[1:])
