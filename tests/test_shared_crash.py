"""Shared runs (init(mode="shared")) under crashes and sync.

Power loss: the harness of test_powerloss applied to several real writer processes of one
shared run (the primary and other labels), each recording the bytes of every fsync of its
label's logs and durable watermark; all of them are SIGKILLed at one instant (the machine lost
power), and each crash image mixes, per file, the last completed snapshot with the bytes at the
kill as page-cache writeback and disks do. Every image must open for a reader with every label,
show each label's history as a contiguous prefix of what its writer logged (nothing invented,
every fsynced step kept), read as crashed, and let every label resume at its own last step + 1.
POWERLOSS_IMAGES scales it as it scales test_powerloss (default: 8 images here).

Sync: a shared run with several labels, some live, synced to the loopback S3 server more than
once while they log, reads back from the remote as from the local store; a resync is a no-op.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
import warnings
from pathlib import Path

import pytest

import localtrack
from localtrack import _doctor, _sealer

from . import s3server
from .helpers import script, settle, wait_for
from .test_powerloss import KINDS, SNAPSHOT_FSYNCS, _durable_state, _mix, _synced_steps

s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures

WRITER = """
import os, sys, random, localtrack
from localtrack import _sealer
store, snaps, label, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = str(1 << 40)
_sealer.request = lambda *a, **k: None   # no sealing: every durable step stays in the logs
""" + SNAPSHOT_FSYNCS + """
rng = random.Random(seed)
run = localtrack.init(project="p", id="job", dir=store, config={"lr": 0.1},
                      settings=localtrack.Settings(mode="shared", x_label=label,
                                                   x_primary=label == "rank0"))
print("start", run.step, flush=True)
for i in range(10**6):
    s = run.step
    row = {"x": float(s), "who": label, "pad": "z" * rng.choice((0, 20, 200))}
    kind = rng.random()
    if kind < 0.2:                       # framed rows (explicit steps) as well as plain ones
        run.log(row, step=s)
        run.log({"y": float(s)}, step=s, commit=True)
    elif kind < 0.25:
        run.log({"partial": float(s)}, commit=False)
        run.log(row)
    else:
        run.log(row)
    if label == "rank0" and rng.random() < 0.01:
        run.summary["best"] = i
"""

LABELS = ["rank0", "rank1", "rank2"]


def _write_and_kill(root: Path, seed: int, rotate: bool) -> tuple[Path, Path]:
    """A shared run whose writers (rank0 the primary, rank1, rank2) were all SIGKILLed at one
    instant, and the folder of each label's fsync snapshots (snaps/<label>/)."""
    store, snaps = root / "store", root / "snaps"
    env = {"LOCALTRACK_FSYNC_INTERVAL": "0.03", "LOCALTRACK_SHARED_WAIT": "60"}
    if rotate:
        env["LOCALTRACK_ROTATE_BYTES"] = "150000"
    procs = []
    for n, label in enumerate(LABELS):
        (snaps / label).mkdir(parents=True)
        proc = script(WRITER, str(store), str(snaps / label), label, str(seed * 10 + n), env=env)
        procs.append(proc)
        if n == 0:  # the primary creates the run; the others would wait for it anyway
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"start 0\n", proc.communicate(timeout=30)[1].decode()
    for proc in procs[1:]:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"start 0\n", proc.communicate(timeout=30)[1].decode()
    run_dir = store / "p" / "runs" / "job"
    wait_for(lambda: all(_synced_steps(_label_wal(run_dir, label), _durable_state(snaps / label))
                         for label in LABELS), timeout=60, what="a synced step of every writer")
    time.sleep(random.Random(seed).uniform(0.1, 0.5))
    for proc in procs:  # the power goes: every writer stops at once
        proc.send_signal(signal.SIGKILL)
    for proc in procs:
        proc.communicate(timeout=30)
    return store, snaps


def _label_wal(run_dir: Path, label: str) -> Path:
    return run_dir / "labels" / label / "wal"


def _image(store: Path, old: dict[str, dict[str, bytes]], dest: Path, how: str,
           rng: random.Random) -> None:
    shutil.copytree(store, dest)
    for label in LABELS:
        wal_dir = _label_wal(dest / "p" / "runs" / "job", label)
        for path in wal_dir.iterdir():
            path.write_bytes(_mix(old[label].get(path.name, b""), path.read_bytes(), how, rng))


KEYS = ["x", "who", "y", "partial"]


def _logged(row: dict, label: str) -> bool:
    """Whether ``row`` is one the writer logged: its values are those of its step and label (a
    step whose ``commit=False`` part was written before the crash and its row not, has only it)."""
    step = float(row["_step"])
    if row["x"] is None:
        return row["partial"] == step and row["who"] is None and row["y"] is None
    return (row["x"] == step and row["who"] == label and row["y"] in (None, step)
            and row["partial"] in (None, step))


def _check_image(image: Path, synced: dict[str, int], what: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # torn tails cut, logs set aside
        api_run = localtrack.Api(image).run("p/job")
        assert api_run.labels == LABELS, what
        assert api_run.state == "crashed", what  # no writer lives; none finished
        assert api_run.config == {"lr": 0.1}, what
        merged = api_run.history_table(KEYS)
        last = {}
        for label in LABELS:
            rows = api_run.history_table(KEYS, label=label).to_pylist()
            steps = [r["_step"] for r in rows]
            assert steps == list(range(len(steps))), f"{what}, {label}: a gap before the resume"
            assert len(steps) >= synced[label], (
                f"{what}, {label}: steps up to {synced[label] - 1} were synced, {len(steps)} read")
            invented = [r for r in rows if not _logged(r, label)]
            assert not invented, f"{what}, {label}: rows its writer never logged: {invented[:3]}"
            assert [r for r in merged.to_pylist() if r["_label"] == label] == rows, what
            last[label] = len(steps) - 1
        assert api_run.last_step == max(last.values()), what
        _doctor.check_store(image)
        runs = {}
        for label in LABELS:  # the primary first: the others join its run
            runs[label] = localtrack.init(project="p", id="job", dir=image, reinit="create_new",
                                          settings=localtrack.Settings(
                                              mode="shared", x_label=label,
                                              x_primary=label == "rank0"))
    for label, run in runs.items():
        assert run.step == last[label] + 1, f"{what}, {label}: resumed at {run.step}, " \
            f"its last step read was {last[label]}"
        for _ in range(5):
            run.log({"x": float(run.step), "who": label})
    for label in reversed(LABELS):
        runs[label].finish()
    settle(image)  # the repaired logs are sealed, and sealing must not fail
    failed = [log.read_text() for log in image.rglob(_sealer.LOG) if "failed" in log.read_text()]
    assert not failed, f"{what}: sealing failed: {failed}"
    api_run = localtrack.Api(image).run("p/job")
    assert api_run.state == "finished", what
    for label in LABELS:
        rows = api_run.history_table(KEYS, label=label).to_pylist()
        assert [r["_step"] for r in rows] == list(range(last[label] + 6)), f"{what}, {label}"
        assert all(_logged(r, label) for r in rows), f"{what}, {label}"
        assert all(r["x"] == float(r["_step"]) for r in rows[-5:]), f"{what}, {label}"

    assert not [f for f in _doctor.check_store(image) if not f.fixed], f"{what}: doctor finds damage"


def test_power_loss_images_of_a_shared_run(tmp_path: Path) -> None:
    images = max(8, int(os.environ.get("POWERLOSS_IMAGES", "60")) // 12)
    per_crash = 4
    rng = random.Random(20261202)
    checked = 0
    crash = 0
    while checked < images:
        rotate = crash % 2 == 0
        store, snaps = _write_and_kill(tmp_path / f"c{crash}", 300 + crash, rotate)
        run_dir = store / "p" / "runs" / "job"
        old = {label: _durable_state(snaps / label) for label in LABELS}
        synced = {label: _synced_steps(_label_wal(run_dir, label), old[label])
                  for label in LABELS}
        assert all(synced.values()), f"crash {crash}: a writer fsynced no step: {synced}"
        for k in range(min(per_crash, images - checked)):
            how = KINDS[k % len(KINDS)]
            image = tmp_path / f"c{crash}" / f"image{k}"
            _image(store, old, image, how, rng)
            _check_image(image, synced, f"crash {crash} (rotation {rotate}), image {k} ({how})")
            shutil.rmtree(image)
            checked += 1
        shutil.rmtree(tmp_path / f"c{crash}")
        crash += 1
    print(f"\nshared power loss: {checked} crash images of {crash} crashes of "
          f"{len(LABELS)} writers, each opened, read, resumed per label")
    assert checked == images


def test_the_primary_sweeps_the_temp_files_of_a_dead_primary(store: Path) -> None:
    """A primary killed while replacing summary.json leaves .tmp-summary.json.<hex> in the run
    folder (not in its label's, which its history's repair sweeps): the next primary removes it
    (found by the crash images above: doctor reported it after every writer had resumed)."""
    settings = localtrack.Settings(mode="shared", x_label="rank0", x_primary=True)
    localtrack.init(project="p", id="job", dir=store, settings=settings).finish()
    rdir = store / "p" / "runs" / "job"
    (rdir / ".tmp-summary.json.deadbeef").write_bytes(b"{")
    (rdir / "labels" / "rank0" / ".tmp-manifest.json.deadbeef").write_bytes(b"{")
    assert len([f for f in _doctor.check_store(store) if not f.fixed]) >= 1
    localtrack.init(project="p", id="job", dir=store, settings=settings).finish()
    assert not list(rdir.rglob(".tmp-*"))
    assert not [f for f in _doctor.check_store(store) if not f.fixed]


def _same(here: localtrack.ApiRun, there: localtrack.ApiRun, what: str) -> None:
    """The remote copy reads as the local run: labels, state, merged and per-label history,
    last step, summary, config."""
    assert there.labels == here.labels, what
    assert there.state == here.state, what
    assert there.last_step == here.last_step, what
    assert there.history_table().to_pylist() == here.history_table().to_pylist(), what
    for label in here.labels:
        assert (there.history_table(label=label).to_pylist()
                == here.history_table(label=label).to_pylist()), (what, label)
    assert dict(there.summary) == dict(here.summary), what
    assert there.config == here.config, what


def test_a_shared_run_synced_to_s3_while_its_writers_log(store: Path, s3: s3server.S3Server,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Three writers (rank0 the primary, rank1, rank2) logging sealed segments and live logs;
    synced to S3 four times while some live: each time the S3 copy reads as the local run
    (merged history, each label's, state, summary); a final resync uploads nothing."""
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "3000")
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "1000")
    uri = s3.uri(s3.new_bucket())
    runs = {label: localtrack.init(project="p", id="job", dir=store, config={"lr": 0.1},
                                   reinit="create_new",
                                   settings=localtrack.Settings(mode="shared", x_label=label,
                                                                x_primary=label == "rank0"))
            for label in LABELS}
    runs["rank0"].define_metric("loss", summary="min")

    def log(labels: list[str], n: int) -> None:
        for i in range(n):
            for label in labels:
                run = runs[label]
                run.log({"x": float(run.step), "loss": 1.0 / (1 + i + len(label)),
                         "pad": label * 10})

    def check(what: str) -> None:
        settle(store)
        report = localtrack.sync(uri, dir=store)
        assert report.ok and report.runs == 1, (what, report)
        _same(localtrack.Api(store).run("p/job"), localtrack.Api(uri).run("p/job"), what)

    log(LABELS, 120)
    runs["rank0"].summary["best"] = 3
    check("all three live")
    assert localtrack.Api(uri).run("p/job").state == "running"
    log(["rank1", "rank2"], 80)  # the primary idles; the others grow their live logs
    runs["rank0"].finish()
    check("the primary finished, two live")
    log(["rank2"], 150)
    runs["rank1"].finish()
    check("one live")
    assert localtrack.Api(uri).run("p/job").state == "running"
    runs["rank2"].finish()
    check("all finished")
    there = localtrack.Api(uri).run("p/job")
    assert there.state == "finished" and there.summary["best"] == 3
    assert [len(there.history_table(label=label)) for label in LABELS] == [120, 200, 350]
    assert there.summary["loss"] == {"min": min(1.0 / (120 + 5), 1.0 / (150 + 5))}
    assert (store / "p" / "runs" / "job" / "labels" / "rank2" / "segments").is_dir()
    again = localtrack.sync(uri, dir=store)
    assert again.ok and again.uploaded_files == 0 and again.uploaded_bytes == 0
    _same(localtrack.Api(store).run("p/job"), localtrack.Api(uri).run("p/job"), "resynced")
