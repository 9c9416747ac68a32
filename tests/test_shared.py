"""Shared runs (init(mode="shared")): several real writer processes on one run id, each with
its own label's log; SIGKILL some, resume all, read the merged history; the run's state from
every writer; what a writer that is not the primary may change; older readers refuse it."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import localtrack
from localtrack import _layout
from localtrack.errors import RunLockedError, UsageError

from . import s3server, test_sync_media
from .helpers import read_as_older, run_script, script, settle, wait_for

s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures
remote_uri = test_sync_media.remote_uri  # a directory remote or a bucket on loopback S3

WRITER = """
import sys, localtrack
store, label, primary, n = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
run = localtrack.init(project="p", id="job", dir=store, config={"lr": 0.1},
                      settings=localtrack.Settings(mode="shared", x_label=label,
                                                   x_primary=primary))
print("start", run.step, flush=True)
for i in range(n):
    s = run.step
    run.log({"x": float(s), "rank": label, "pad": "z" * (i % 7 * 60)})
    print(s, flush=True)  # step s is acknowledged: log() returned
run.finish()
print("finished", flush=True)
"""

LABELS = [f"rank{i}" for i in range(8)]
ENV = {"LOCALTRACK_ROTATE_BYTES": "6000", "LOCALTRACK_SEAL_MIN_BYTES": "1000",
       "LOCALTRACK_SHARED_WAIT": "120"}


class Writer:
    """A writer process and the steps it acknowledged (read from its stdout by a thread)."""

    def __init__(self, store: Path, label: str, n: int, kill_after: int | None = None) -> None:
        self.label = label
        self.kill_after = kill_after
        self.start: int | None = None
        self.acked: list[int] = []
        self.finished = False
        self.proc = script(WRITER, str(store), label, "1" if label == "rank0" else "0", str(n),
                           env=ENV)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word = line.decode().split()
            if word[0] == "start":
                self.start = int(word[1])
            elif word[0] == "finished":
                self.finished = True
            else:
                self.acked.append(int(word[0]))
                if self.kill_after is not None and len(self.acked) == self.kill_after:
                    self.proc.send_signal(signal.SIGKILL)

    def wait(self) -> int:
        code = self.proc.wait(timeout=180)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        assert self.proc.stderr is not None and self.proc.stdout is not None
        self.err = self.proc.stderr.read().decode()
        self.proc.stderr.close()
        self.proc.stdout.close()
        return code


def _label_steps(run: localtrack.ApiRun, label: str) -> list[int]:
    return run.history_table(["x"], label=label).column("_step").to_pylist()


def test_eight_writers_killed_and_resumed(store):
    """8 writers on one id, 3 SIGKILLed at random: every acknowledged step of every label is on
    disk, contiguous; the run is crashed, not running; all 8 resume, each at its own last step
    + 1; the merged history has every label's rows; each label's logs were sealed."""
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    victims = set(rng.sample(LABELS, 3))
    writers = [Writer(store, label, 300, rng.randint(1, 280) if label in victims else None)
               for label in LABELS]
    codes = {w.label: w.wait() for w in writers}
    for w in writers:
        if w.label in victims:
            assert codes[w.label] == -signal.SIGKILL, (seed, w.label, w.err)
        else:
            assert codes[w.label] == 0 and w.finished, (seed, w.label, w.err)
    settle(store)
    run = localtrack.Api(store).run("p/job")
    assert run.labels == LABELS
    assert run.state == "crashed", seed  # no writer lives; 3 died without a word
    last = {}
    for w in writers:
        steps = _label_steps(run, w.label)
        assert steps == list(range(len(steps))), (seed, w.label)  # contiguous from 0
        assert set(w.acked) <= set(steps), (seed, w.label)  # every acknowledged step is there
        assert w.start == 0
        last[w.label] = steps[-1] if steps else -1
    assert run.config == {"lr": 0.1}

    resumed = [Writer(store, label, 40) for label in LABELS]
    for w in resumed:
        assert w.wait() == 0 and w.finished, (seed, w.label, w.err)
        assert w.start == last[w.label] + 1, (seed, w.label)  # each at its own last step + 1
        assert w.acked == list(range(last[w.label] + 1, last[w.label] + 41))
    settle(store)
    run = localtrack.Api(store).run("p/job")
    assert run.state == "finished"
    table = run.history_table(["x"])
    assert set(table.column("_label").to_pylist()) == set(LABELS)
    assert table.column("_step").to_pylist() == sorted(table.column("_step").to_pylist())
    for label in LABELS:
        steps = _label_steps(run, label)
        assert steps == list(range(last[label] + 41)), (seed, label)
        rows = [r for r in table.to_pylist() if r["_label"] == label]
        assert [r["_step"] for r in rows] == steps
        assert all(r["x"] == float(r["_step"]) for r in rows)
        ldir = _layout.label_dir(store / "p" / "runs" / "job", label)
        manifest = json.loads((ldir / "manifest.json").read_bytes())
        assert manifest["segments"] and manifest["sealed_through"] >= 0, label  # sealed
    assert run.last_step == max(last.values()) + 40
    assert run.summary["x"] == float(max(last.values()) + 40)
    sql = localtrack.Api(store).query("SELECT _label, max(_step) AS m FROM history GROUP BY 1")
    assert dict(zip(sql.column("_label").to_pylist(), sql.column("m").to_pylist(),
                    strict=True)) == {label: last[label] + 40 for label in LABELS}


HOLD = """
import os, sys, time, localtrack
run = localtrack.init(project="p", id="job", dir=sys.argv[1], settings={"mode": "shared"})
run.log({"x": 1.0})
print("open", run.step, flush=True)
deadline = time.monotonic() + 120
while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.01)
run.finish()
"""


def _hold(store: Path, stop: Path, rank: str) -> subprocess.Popen:
    proc = script(HOLD, str(store), str(stop), env={"SLURM_PROCID": rank})
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("open"), proc.stderr.read() if proc.stderr else line
    return proc


def _end(proc: subprocess.Popen) -> int:
    """Wait for ``proc`` and close its pipes; its exit code (stderr checked by the caller's
    assert message)."""
    _, err = proc.communicate(timeout=60)
    assert proc.returncode is not None, err
    return proc.returncode


def _state(store: Path) -> str:
    return localtrack.Api(store).run("p/job").state


def test_the_state_follows_every_writer(store, tmp_path):
    """running while any writer lives (the primary finished or not); then crashed when one was
    killed, preempted when one was preempted, finished only when every writer finished."""
    primary = localtrack.init(project="p", id="job", dir=store, mode="shared",
                              settings=localtrack.Settings(x_label="rank0", x_primary=True))
    primary.log({"x": 0.0})
    stop = tmp_path / "stop"
    other = _hold(store, stop, "1")  # label from SLURM_PROCID: rank1
    primary.finish()
    assert _state(store) == "running"
    assert localtrack.Api(store).runs("p")[0].state == "running"
    other.send_signal(signal.SIGKILL)
    _end(other)
    wait_for(lambda: _state(store) == "crashed", timeout=30, what="the killed writer's lock")
    assert localtrack.Api(store).run("p/job").labels == ["rank0", "rank1"]
    other = _hold(store, stop, "1")  # resumed
    assert _state(store) == "running"
    other.send_signal(signal.SIGTERM)
    assert _end(other) != 0
    assert _state(store) == "preempted"
    stop.touch()
    other = script(HOLD, str(store), str(stop), env={"SLURM_PROCID": "1"})
    assert _end(other) == 0
    assert _state(store) == "finished"
    run = localtrack.Api(store).run("p/job")
    assert _label_steps(run, "rank1") == [0, 1, 2]
    assert run.history_table(label="rank0").column("_step").to_pylist() == [0]
    with pytest.raises(UsageError, match="its labels are rank0, rank1"):
        run.history_table(label="rank9")


def test_only_the_primary_changes_the_config_and_summary(store, caplog):
    """A writer that is not the primary keeps its config and summary changes to itself, with
    one warning; the primary's are stored."""
    primary = localtrack.init(project="p", id="job", dir=store, config={"lr": 0.1},
                              settings=localtrack.Settings(mode="shared", x_label="rank0",
                                                           x_primary=True))
    other = localtrack.init(project="p", id="job", dir=store, config={"lr": 9.0},
                            reinit="create_new",
                            settings=localtrack.Settings(mode="shared", x_label="rank1"))
    other.config.update({"b": 2})
    other.summary["best"] = 1
    other.name = "renamed"
    warned = [r for r in caplog.records if "not the primary writer" in r.getMessage()]
    assert len(warned) == 1
    primary.summary["best"] = 7
    primary.config.update({"c": 3})
    other.finish()
    primary.finish()
    run = localtrack.Api(store).run("p/job")
    assert run.config == {"lr": 0.1, "c": 3}
    assert run.summary["best"] == 7
    assert run.name == "job"


def test_shared_needs_an_id_and_distinct_labels(store, monkeypatch):
    with pytest.raises(UsageError, match="must agree on its id"):
        localtrack.init(project="p", dir=store, mode="shared")
    with pytest.raises(UsageError, match="must agree on its id"):
        localtrack.init(project="p", dir=store, settings=localtrack.Settings(mode="shared"))
    with pytest.raises(UsageError, match="x_label"):
        localtrack.init(project="p", id="job", dir=store,
                        settings=localtrack.Settings(mode="shared", x_label="../x"))
    with pytest.raises(UsageError, match="x_primary"):
        localtrack.init(project="p", id="job", dir=store,
                        settings=localtrack.Settings(mode="shared", x_primary="yes"))
    monkeypatch.setenv("RANK", "0")  # torchrun's: label rank0, the primary
    first = localtrack.init(project="p", id="job", dir=store, mode="shared")
    assert first._shared is not None and first._shared.label == "rank0" and first._shared.primary
    res = run_script("""
import sys, localtrack
try:
    localtrack.init(project="p", id="job", dir=sys.argv[1], mode="shared")
except localtrack.errors.RunLockedError as exc:
    print("locked")
""", str(store), env={"RANK": "0"})
    assert res.stdout.strip() == "locked", res.stderr
    first.finish()
    with pytest.raises(UsageError, match="several writers"):
        localtrack.init(project="p", id="job", dir=store, resume="allow")  # not shared: refused
    localtrack.init(project="p", id="solo", dir=store).finish()
    with pytest.raises(UsageError, match="single writer"):
        localtrack.init(project="p", id="solo", dir=store, mode="shared")
    with pytest.raises(UsageError, match="one writer"):
        localtrack.Api(store).run("p/solo").history_table(label="rank0")
    with pytest.raises(UsageError, match=r"media\(label='rank0'\).*one writer"):
        localtrack.Api(store).run("p/solo").media("img", label="rank0")


def test_a_writer_waits_for_its_primary_then_gives_up(store, monkeypatch):
    monkeypatch.setenv("LOCALTRACK_SHARED_WAIT", "0.2")
    began = time.monotonic()
    with pytest.raises(localtrack.errors.RunNotFoundError, match="primary"):
        localtrack.init(project="p", id="job", dir=store,
                        settings=localtrack.Settings(mode="shared", x_label="rank5"))
    assert time.monotonic() - began < 60
    assert not (store / "p" / "runs" / "job").exists()


def test_an_older_reader_refuses_a_shared_run(store):
    """A shared run records format 6: a localtrack that reads format 5 refuses it rather than
    showing its (empty) top-level history; sync leaves it pending rather than copy half."""
    with localtrack.init(project="p", id="job", dir=store, mode="shared",
                         settings={"x_label": "rank0", "x_primary": True}) as run:
        run.log({"x": 1.0})
    [said] = read_as_older(store, 5, "p/job")
    assert "uses format 6, newer than this localtrack understands (5)" in said


def _same(a: localtrack.ApiRun, b: localtrack.ApiRun) -> None:
    assert a.labels == b.labels and a.state == b.state and a.last_step == b.last_step
    assert a.history_table().to_pylist() == b.history_table().to_pylist()
    assert dict(a.summary) == dict(b.summary) and a.config == b.config


def test_sync_copies_every_writer(store, tmp_path, monkeypatch):
    """A synced copy reads as the local run: every label's rows (sealed and live), the state
    (running while a writer lives, from the copied owner records), and --clean keeps it."""
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "3000")
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "1000")
    remote = tmp_path / "remote"
    primary = localtrack.init(project="p", id="job", dir=store, mode="shared", config={"a": 1},
                              settings={"x_label": "rank0", "x_primary": True})
    other = localtrack.init(project="p", id="job", dir=store, mode="shared", reinit="create_new",
                            settings={"x_label": "rank1"})
    for i in range(300):
        primary.log({"x": float(i), "pad": "p" * 40})
        if i % 2:
            other.log({"x": -float(i)})
    primary.finish()
    settle(store)
    localtrack.sync(str(remote), dir=store)
    there = localtrack.Api(remote).run("p/job")
    assert there.state == "running"  # rank1 lives
    _same(localtrack.Api(store).run("p/job"), there)
    other.log({"x": 1.5})
    other.finish()
    settle(store)
    localtrack.sync(str(remote), dir=store)
    here, there = localtrack.Api(store).run("p/job"), localtrack.Api(remote).run("p/job")
    assert there.state == "finished"
    _same(here, there)
    assert len(here.history_table(label="rank0")) == 300
    assert (store / "p" / "runs" / "job" / "labels" / "rank0" / "segments").is_dir()
    localtrack.sync(str(remote), dir=store, clean=True)
    assert localtrack.Api(store).run("p/job").labels == ["rank0", "rank1"]  # kept


def test_two_writers_cannot_share_a_label(store):
    localtrack.init(project="p", id="job", dir=store, mode="shared",
                    settings={"x_label": "rank0", "x_primary": True})
    with pytest.raises(RunLockedError):
        localtrack.init(project="p", id="job", dir=store, mode="shared", reinit="create_new",
                        settings={"x_label": "rank0", "x_primary": False})


def test_a_dead_start_of_a_label_is_swept_by_its_next_start(store):
    """A writer killed while building its label's folder leaves labels/.tmp-<label>-<hex>, which
    no reader lists; the next start of that label removes it, and only its own."""
    with localtrack.init(project="p", id="job", dir=store, mode="shared",
                         settings={"x_label": "rank0", "x_primary": True}):
        labels = store / "p" / "runs" / "job" / "labels"
        (labels / ".tmp-rank3-deadbeef" / "wal").mkdir(parents=True)
        (labels / ".tmp-rank3-x-deadbeef" / "wal").mkdir(parents=True)
        assert localtrack.Api(store).run("p/job").labels == ["rank0"]
        localtrack.init(project="p", id="job", dir=store, mode="shared", reinit="create_new",
                        settings={"x_label": "rank3"}).finish()
        assert sorted(p.name for p in labels.iterdir()) == [".tmp-rank3-x-deadbeef", "rank0",
                                                            "rank3"]


def test_define_metric_summaries_cover_every_writer(store):
    """The primary's define_metric() summaries are computed over every label's rows; the last
    value of a key is the one logged at the latest step."""
    primary = localtrack.init(project="p", id="job", dir=store, mode="shared",
                              settings={"x_label": "rank0", "x_primary": True})
    other = localtrack.init(project="p", id="job", dir=store, mode="shared", reinit="create_new",
                            settings={"x_label": "rank1"})
    primary.define_metric("loss", summary="min")
    for v in (5.0, 4.0, 3.0):
        primary.log({"loss": v, "acc": v})
    for v in (9.0, 1.0, 8.0, 7.0):
        other.log({"loss": v, "acc": v})
    assert primary.summary["loss"] == {"min": 3.0}  # a writer sees its own label
    other.finish()
    primary.finish()
    summary = localtrack.Api(store).run("p/job").summary
    assert summary["loss"] == {"min": 1.0}
    assert summary["acc"] == 7.0  # rank1's step 3 is the latest
    listed = localtrack.Api(store).runs("p")[0].summary
    assert listed["loss"] == {"min": 1.0} and listed["acc"] == 7.0


MEDIA_WRITER = """
import sys, time, numpy as np, localtrack
store, label, primary, n = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
pace = float(sys.argv[5])  # seconds of "training" between steps
run = localtrack.init(project="p", id="job", dir=store,
                      settings=localtrack.Settings(mode="shared", x_label=label,
                                                   x_primary=primary))
print("start", run.step, flush=True)
rank = int(label[4:])
for i in range(n):
    s = run.step
    pixels = np.zeros((6, 5, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = rank, s % 256, s // 256
    row = {"img": localtrack.Image(pixels, caption=f"{label}@{s}"), "x": float(s),
           "pad": "z" * (i % 5 * 80)}
    if s % 10 == 3:  # a list of media under another key
        row["pair"] = [localtrack.Image(pixels[:2]), localtrack.Image(pixels[:3])]
    run.log(row)
    print(s, flush=True)  # step s and its image are acknowledged: log() returned
    time.sleep(pace)
run.finish()
print("finished", flush=True)
"""
MEDIA_LABELS = ["rank0", "rank1", "rank2", "rank3"]


class MediaWriter(Writer):
    def __init__(self, store: Path, label: str, n: int, kill_after: int | None = None,
                 pace: float = 0.0) -> None:
        self.label = label
        self.kill_after = kill_after
        self.start = None
        self.acked = []
        self.finished = False
        self.proc = script(MEDIA_WRITER, str(store), label, "1" if label == "rank0" else "0",
                           str(n), str(pace), env=ENV)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()


def _pixel_steps(items: list) -> dict[str, list[int]]:
    """Each writer's steps in ``items`` (media() pairs), each item checked to be the image its
    writer logged at its step (by its pixels), the pairs in step then label order."""
    import numpy as np

    got: dict[str, list[int]] = {}
    for pair in items:
        step, image = pair
        rank = int(pair.label[4:])
        pixels = np.asarray(image)
        assert pixels.shape == (6, 5, 3)
        assert (pixels[..., 0] == rank).all() and (pixels[..., 1] == step % 256).all()
        assert (pixels[..., 2] == step // 256).all()
        got.setdefault(pair.label, []).append(step)
    order = [(pair[0], pair.label) for pair in items]
    assert order == sorted(order)
    return got


def _check_pixels(items: list, expect: dict[str, list[int]]) -> None:
    assert _pixel_steps(items) == expect


def test_media_of_every_writer_killed_resumed_and_synced(store, tmp_path):
    """4 writers log an image per step under one key (and lists under another), one SIGKILLed
    mid-stream: every acknowledged image of every label reads back by its pixels, with its
    writer's label, in step then label order; a synced copy reads the same; all resume, each at
    its own last step + 1, its blobs sealed beside its segments; history() has the references
    per label; sync again and read the copy."""
    import numpy as np

    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    victim = rng.choice(MEDIA_LABELS[1:])
    writers = [MediaWriter(store, label, 90, rng.randint(5, 80) if label == victim else None)
               for label in MEDIA_LABELS]
    for w in writers:
        code = w.wait()
        assert code == (-signal.SIGKILL if w.label == victim else 0), (seed, w.label, w.err)
    settle(store)
    run = localtrack.Api(store).run("p/job")
    assert run.state == "crashed"
    steps = {label: _label_steps(run, label) for label in MEDIA_LABELS}
    for w in writers:
        assert set(w.acked) <= set(steps[w.label]) == set(range(len(steps[w.label]))), seed
    items = run.media("img")
    _check_pixels(items, steps)
    remote = tmp_path / "remote"
    localtrack.sync(str(remote), dir=store)
    _check_pixels(localtrack.Api(remote).run("p/job").media("img"), steps)

    resumed = [MediaWriter(store, label, 25) for label in MEDIA_LABELS]
    for w in resumed:
        assert w.wait() == 0 and w.finished, (seed, w.label, w.err)
        assert w.start == len(steps[w.label]), (seed, w.label)
        steps[w.label] += w.acked
    settle(store)
    run = localtrack.Api(store).run("p/job")
    assert run.state == "finished"
    _check_pixels(run.media("img"), steps)
    for label in MEDIA_LABELS:
        assert list(_layout.label_dir(store / "p" / "runs" / "job", label).glob(
            "segments/*.blob")), (seed, label)  # sealed with their segments
    one = run.media("img", label=victim)
    assert [s for s, _ in one] == steps[victim] and {p.label for p in one} == {victim}
    some = run.media("img", steps=[3, 4])
    assert [(p[0], p.label) for p in some] == [
        (s, label) for s in (3, 4) for label in MEDIA_LABELS]
    pairs = run.media("pair")
    assert [len(items) for _, items in pairs] == [2] * len(pairs)
    assert {(p[0], p.label) for p in pairs} == {
        (s, label) for label in MEDIA_LABELS for s in steps[label] if s % 10 == 3}
    assert np.asarray(pairs[0][1][1]).shape == (3, 5, 3)
    rows = run.history(keys=["img"], samples=100000, pandas=False)
    assert {r["_label"] for r in rows} == set(MEDIA_LABELS)
    assert all(r["img"]["$m"]["caption"] == f"{r['_label']}@{r['_step']}" for r in rows)
    assert len(rows) == sum(map(len, steps.values()))
    with pytest.raises(UsageError, match="its labels are rank0, rank1, rank2, rank3"):
        run.media("img", label="rank9")
    localtrack.sync(str(remote), dir=store)
    there = localtrack.Api(remote).run("p/job")
    _check_pixels(there.media("img"), steps)
    assert [len(v) for _, v in there.media("pair")] == [len(v) for _, v in pairs]


def test_a_shared_run_s_media_in_show_sync_and_the_dashboard(store, tmp_path):
    """A live writer's blob log synced as chunks reads back from the copy; `localtrack show`
    counts each key's steps per writer; the dashboard lists a shared run's media with each
    row's writer and serves an item by step and label (a label is needed: two writers logged
    the step), and one writer's histograms."""
    import io

    import numpy as np
    from PIL import Image

    from .test_cli import cli
    from .test_ui_server import get
    from .ui_helpers import UIProcess

    primary = localtrack.init(project="p", id="job", dir=store, mode="shared",
                              settings={"x_label": "rank0", "x_primary": True})
    other = localtrack.init(project="p", id="job", dir=store, mode="shared", reinit="create_new",
                            settings={"x_label": "rank1"})
    for s in range(3):
        primary.log({"img": localtrack.Image(np.full((4, 4, 3), 10 + s, np.uint8))})
        other.log({"img": localtrack.Image(np.full((4, 4, 3), 20 + s, np.uint8)), "x": 1,
                   "h": localtrack.Histogram(np_histogram=([s, 1], [0.0, 1.0, 2.0]))})
    other.log({"img": localtrack.Image(np.full((4, 4, 3), 23, np.uint8))})
    remote = tmp_path / "remote"
    localtrack.sync(str(remote), dir=store)  # both writers live: their blobs go up as chunks
    assert (remote / "p" / "runs" / "job" / "labels" / "rank1" / "wal" / "00000000.blob").is_dir()
    there = localtrack.Api(remote).run("p/job").media("img")
    assert [(p[0], p.label, np.asarray(p[1])[0, 0, 0]) for p in there] == [
        (0, "rank0", 10), (0, "rank1", 20), (1, "rank0", 11), (1, "rank1", 21), (2, "rank0", 12),
        (2, "rank1", 22), (3, "rank1", 23)]
    other.finish()
    primary.finish()
    res = cli("show", "p/job", "--dir", str(store))
    assert res.returncode == 0, res.stderr
    assert "img: 7 step(s) (rank0 3, rank1 4)" in res.stdout
    ui = UIProcess(store)
    try:
        status, _, body = get(ui.url, "/api/media", path="p/job")
        assert status == 200, body
        (img,) = json.loads(body)["media"]
        assert img["steps"] == [0, 0, 1, 1, 2, 2, 3]
        assert img["labels"] == ["rank0", "rank1"] * 3 + ["rank1"]
        for step, label, value in [(1, "rank0", 11), (1, "rank1", 21), (3, "rank1", 23)]:
            status, headers, body = get(ui.url, "/api/media/item", path="p/job", key="img",
                                        step=step, label=label)
            assert status == 200 and headers["content-type"] == "image/png", body
            with Image.open(io.BytesIO(body)) as image:
                assert image.convert("RGB").getpixel((1, 1)) == (value,) * 3
        status, _, body = get(ui.url, "/api/media/item", path="p/job", key="img", step=1)
        assert status == 400 and b"label=" in body
        status, _, body = get(ui.url, "/api/media/item", path="p/job", key="img", step=3,
                              label="rank0")
        assert status == 404 and b"by writer 'rank0'" in body
        status, _, body = get(ui.url, "/api/histograms", path="p/job", key="h", label="rank1")
        assert status == 200 and json.loads(body)["steps"] == [0, 1, 2], body
        status, _, body = get(ui.url, "/api/histograms", path="p/job", key="h", label="rank0")
        assert status == 404 and b"by writer 'rank0'" in body
    finally:
        code, out, err = ui.stop()
    assert code == 0 and "Traceback" not in err, (out, err)


KILLED_WRITER = """
import os, signal, sys, numpy as np, localtrack
store, label, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
run = localtrack.init(project="p", id="job", dir=store,
                      settings=localtrack.Settings(mode="shared", x_label=label, fsync="never"))
for s in range(n):
    run.log({"img": localtrack.Image(np.full((4, 4), s, np.uint8))} if label == "rank1" else
            {"x": float(s)})
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_doctor_checks_and_repairs_every_writer_s_folder(store):
    """Two writers SIGKILLed, then a power cut's damage: rank1's blob lost its last items
    (rows refer to media that is gone), rank2's log has a torn record, and both have temp
    files; a dead start of rank1's folder lies beside. `localtrack doctor` names each writer's
    problem, `--fix` repairs them as the writers would (the live primary's left alone), and
    the run reads back with the damaged rows cut."""
    import numpy as np

    from localtrack import _blobs, _frames

    from .test_cli import cli

    primary = localtrack.init(project="p", id="job", dir=store, mode="shared",
                              settings={"x_label": "rank0", "x_primary": True})
    primary.log({"x": 0.0})
    for label in ("rank1", "rank2"):
        res = run_script(KILLED_WRITER, str(store), label, "8")
        assert res.returncode == -signal.SIGKILL, res.stderr
    rdir = store / "p" / "runs" / "job"
    labels = rdir / "labels"
    os.truncate(labels / "rank1" / "wal" / _blobs.name(0), 16 * 5 + 3)  # items 0..4 whole
    log2 = labels / "rank2" / "wal" / "00000000.jsonl"
    data = log2.read_bytes()
    with open(log2, "r+b") as fh:  # a torn copy into the mapped window: part of a record
        fh.seek(_frames.data_end(data))
        fh.write(b'{"x":8.0,"_st')
    for folder in (labels / "rank1" / "wal", labels / "rank2", labels / "rank0" / "wal"):
        (folder / ".tmp-x.1234").write_bytes(b"half")
    (labels / ".tmp-rank1-deadbeef" / "wal").mkdir(parents=True)  # rank1 exists: dead for good
    (labels / ".tmp-rank7-deadbeef").mkdir()  # rank7's next start removes it

    res = cli("doctor", "--dir", str(store))
    assert res.returncode == 1, res.stderr
    lines = res.stdout.splitlines()

    def says(label: str, text: str) -> list[str]:
        return [ln for ln in lines if f"p/job (writer '{label}')" in ln and text in ln]

    assert says("rank1", "refers to media that a crash lost"), res.stdout
    assert says("rank1", "temp file") and says("rank2", "temp file") and says("rank0", "temp file")
    assert says("rank2", "torn tail of 13 bytes"), res.stdout
    assert [ln for ln in lines if "died while creating its label" in ln and "fixable" in ln
            and ".tmp-rank1-deadbeef" in ln]
    assert [ln for ln in lines if "NEEDS ATTENTION" in ln and ".tmp-rank7-deadbeef" in ln]

    res = cli("doctor", "--fix", "--dir", str(store))
    assert res.returncode == 1, res.stdout  # rank0 lives; rank7's folder waits for rank7
    lines = res.stdout.splitlines()
    assert all("fixed" in ln for ln in says("rank1", "") + says("rank2", "")), res.stdout
    assert says("rank0", "[not repaired: the run is live]")
    assert not (labels / ".tmp-rank1-deadbeef").exists() and (labels / ".tmp-rank7-deadbeef").exists()
    assert (labels / "rank0" / "wal" / ".tmp-x.1234").exists()
    assert not (labels / "rank1" / "wal" / ".tmp-x.1234").exists()
    assert (labels / "rank2" / "wal" / "00000000.jsonl.broken").exists()
    primary.finish()
    res = cli("doctor", "--fix", "--dir", str(store))
    lines = res.stdout.splitlines()
    assert not says("rank1", "") and not says("rank2", ""), res.stdout  # nothing left to repair
    assert not (labels / "rank0" / "wal" / ".tmp-x.1234").exists()
    run = localtrack.Api(store).run("p/job")
    assert [(p[0], int(np.asarray(p[1])[0, 0]), p.label) for p in run.media("img")] == [
        (s, s, "rank1") for s in range(5)]
    assert _label_steps(run, "rank2") == list(range(8))
    resumed = run_script(KILLED_WRITER.replace("os.kill(os.getpid(), signal.SIGKILL)",
                                               "run.finish()"), str(store), "rank1", "2")
    assert resumed.returncode == 0 and "torn tail" not in resumed.stderr, resumed.stderr
    assert [s for s, _ in localtrack.Api(store).run("p/job").media("img")] == list(range(7))


DEFINING_WRITER = """
import sys, localtrack
run = localtrack.init(project="p", id="job", dir=sys.argv[1],
                      settings=localtrack.Settings(mode="shared", x_label="rank1"))
if sys.argv[2] == "define":
    run.define_metric("acc", summary="max")
    run.alert("diverged", "rank1 saw a NaN", level="WARN")
for v in sys.argv[3:]:
    run.log({"acc": float(v), "loss": float(v)})
print(sorted(run.summary["acc"].items()) if "acc" in run.summary else None, flush=True)
run.finish()
"""


def test_every_writer_s_define_metric_and_alert_are_read(store):
    """A writer that is not the primary (a real process) defines a metric and raises an alert:
    readers see both (the run's definitions, its summary over every label, its events with the
    writer's label, `localtrack show`, the SQL events view), and the writer itself, resumed,
    still applies its definition."""
    from .test_cli import cli

    primary = localtrack.init(project="p", id="job", dir=store, mode="shared",
                              settings={"x_label": "rank0", "x_primary": True})
    primary.define_metric("loss", summary="min")
    primary.log({"acc": 0.5, "loss": 0.5})
    res = run_script(DEFINING_WRITER, str(store), "define", "0.7", "0.2", "0.6")
    assert res.returncode == 0 and res.stdout.strip() == "[('max', 0.7)]", res.stderr
    res = run_script(DEFINING_WRITER, str(store), "resume", "0.1")  # its definition holds
    assert res.returncode == 0 and res.stdout.strip() == "[('max', 0.7)]", res.stderr
    primary.log({"acc": 0.9, "loss": 0.9})
    assert primary.summary["acc"] == 0.9  # read when the primary opened: rank1 had not defined it
    primary.finish()
    for run in (localtrack.Api(store).run("p/job"), localtrack.Api(store).runs("p")[0]):
        assert set(run.metrics) == {"loss", "acc"}
        assert run.summary["acc"] == {"max": 0.9} and run.summary["loss"] == {"min": 0.1}
        alerts = [e for e in run.events if e["event"] == "alert"]
        assert [(e["title"], e["level"], e["label"]) for e in alerts] == [("diverged", "WARN", "rank1")]
        times = [e["time"] for e in run.events]
        assert times == sorted(times)
        assert [e["event"] for e in run.events if e.get("label") == "rank1"] == [
            "started", "metric", "alert", "finished", "resumed", "finished"]
    res = cli("show", "p/job", "--dir", str(store))
    assert "[WARN] diverged: rank1 saw a NaN  (writer rank1)" in res.stdout, res.stdout
    sql = localtrack.Api(store).query("SELECT label FROM events WHERE event = 'alert'")
    assert sql.column("label").to_pylist() == ["rank1"]


@pytest.mark.parametrize("remote_uri", ["dir", "s3"], indirect=True)
def test_live_writers_media_synced_again_and_again_always_read_whole(store, remote_uri):
    """3 writers log an image per step (rotating and sealing as they go) while sync runs again
    and again: every read of the copy gets each writer's images from step 0 on, contiguous,
    every one by its pixels (blobs go up before the rows and manifests that refer to them);
    once they finish, the copy holds everything."""
    labels = MEDIA_LABELS[:3]
    writers = [MediaWriter(store, label, 300, pace=0.005) for label in labels]
    seen = dict.fromkeys(labels, 0)
    try:
        wait_for(lambda: all(w.start is not None or w.proc.poll() is not None for w in writers),
                 timeout=120, what="every writer's start")
        for _ in range(60):
            live = any(w.proc.poll() is None for w in writers)
            localtrack.sync(remote_uri, dir=store)
            got = _pixel_steps(localtrack.Api(remote_uri).run("p/job").media("img"))
            for label, steps in got.items():
                assert steps == list(range(len(steps))), label
                assert len(steps) >= seen[label]  # the copy never goes back
                seen[label] = len(steps)
            if not live:
                break
    finally:
        codes = [w.wait() for w in writers]
    assert codes == [0, 0, 0], [w.err for w in writers]
    settle(store)
    report = localtrack.sync(remote_uri, dir=store)
    assert report.ok, report.pending
    got = _pixel_steps(localtrack.Api(remote_uri).run("p/job").media("img"))
    assert {k: (len(v), v[:3], v[-3:]) for k, v in got.items()} == dict.fromkeys(
        labels, (300, [0, 1, 2], [297, 298, 299])), report


def test_a_writer_cuts_the_rows_whose_media_a_power_cut_lost_from_its_label(store):
    """A writer killed with its last images' bytes lost (unsynced pages gone, rows kept): when
    it opens its label again it cuts its log before the first such row (a .broken copy kept),
    as a single writer does, and logs on; the other writers' media are untouched."""
    import numpy as np

    from localtrack import _blobs

    primary = localtrack.init(project="p", id="job", dir=store, mode="shared",
                              settings={"x_label": "rank0", "x_primary": True})
    other = localtrack.init(project="p", id="job", dir=store, mode="shared", reinit="create_new",
                            settings={"x_label": "rank1", "fsync": "never"})
    for s in range(6):
        primary.log({"img": localtrack.Image(np.full((4, 4), 100 + s, np.uint8))})
        other.log({"img": localtrack.Image(np.full((4, 4), s, np.uint8))})
    other._drop()  # killed: nothing more written or synced
    ldir = _layout.label_dir(store / "p" / "runs" / "job", "rank1")
    os.truncate(ldir / "wal" / _blobs.name(0), 16 * 3 + 7)  # items 0..2 whole, 3 torn, 4..5 lost
    with pytest.warns(RuntimeWarning, match="torn tail"):
        other = localtrack.init(project="p", id="job", dir=store, mode="shared",
                                reinit="create_new", settings={"x_label": "rank1"})
    assert other.step == 3
    other.log({"img": localtrack.Image(np.full((4, 4), 33, np.uint8))})
    other.finish()
    primary.finish()
    assert (ldir / "wal" / "00000000.jsonl.broken").exists()
    run = localtrack.Api(store).run("p/job")
    assert [(p[0], int(np.asarray(p[1])[0, 0])) for p in run.media("img", label="rank1")] == [
        (0, 0), (1, 1), (2, 2), (3, 33)]
    assert [(p[0], int(np.asarray(p[1])[0, 0])) for p in run.media("img", label="rank0")] == [
        (s, 100 + s) for s in range(6)]


@pytest.mark.parametrize("seal", [False, True], ids=["logs", "sealed"])
def test_a_key_of_other_kinds_in_another_writer_keeps_every_label(store, monkeypatch, seal):
    """One writer logs images under a key, another text and a list of images under it: the
    joined history holds the key as JSON text (its kinds differ) but `_label` stays the
    writers' names, and each writer's media read back."""
    import numpy as np

    if seal:
        monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")
    primary = localtrack.init(project="p", id="job", dir=store, mode="shared",
                              settings={"x_label": "rank0", "x_primary": True})
    other = localtrack.init(project="p", id="job", dir=store, mode="shared", reinit="create_new",
                            settings={"x_label": "rank1"})
    for s in range(3):
        primary.log({"img": localtrack.Image(np.full((4, 4), s, np.uint8)), "x": s})
        other.log({"img": [localtrack.Image(np.full((4, 4), 50 + s, np.uint8))] * 2 if s == 1
                   else "text"})
    primary.finish()
    settle(store)
    run = localtrack.Api(store).run("p/job")
    table = run.history_table()
    assert table.column("_label").to_pylist() == ["rank0", "rank1"] * 3
    assert [(p[0], p.label) for p in run.media("img")] == [(0, "rank0"), (1, "rank0"),
                                                            (1, "rank1"), (2, "rank0")]
    assert [int(np.asarray(i)[0, 0]) for i in run.media("img", label="rank1")[0][1]] == [51, 51]
    pair = run.media("img", label="rank1")[0]
    assert pickle.loads(pickle.dumps(pair)).label == "rank1"  # a pair survives pickling
    rows = run.history(keys=["img"], pandas=False)
    assert [r["_label"] for r in rows] == ["rank0", "rank1"] * 3
    other.finish()


SUMMARY_WRITER = """
import sys, numpy as np, localtrack
store, label, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rank = int(label[4:])
run = localtrack.init(project="p", id="job", dir=store,
                      settings=localtrack.Settings(mode="shared", x_label=label,
                                                   x_primary=rank == 0))
for s in range(n):
    run.log({"x": rank * 100 + s, "img": localtrack.Image(np.full((2, 3, 3), rank * 16 + s, np.uint8)),
             "pair": [localtrack.Image(np.full((2, 2, 3), rank, np.uint8))] * 2})
run.finish()
"""


@pytest.mark.parametrize(("steps", "winner"), [
    pytest.param({"rank0": 5, "rank1": 10, "rank2": 3}, "rank1", id="furthest-ahead"),
    pytest.param({"rank0": 6, "rank1": 6, "rank2": 6}, "rank0", id="a-tie-goes-to-the-primary"),
    pytest.param({"rank0": 3, "rank1": 8, "rank2": 8}, "rank2", id="else-to-the-later-label"),
])
def test_a_media_key_s_summary_is_the_furthest_writer_s(store, tmp_path, steps, winner):
    """Three writer processes log an image (and a list of two) per step: the run's summary
    value of a media key is, as a number's, the value of the writer furthest ahead (at equal
    last steps the primary's, else the later label's), its references naming that writer's
    label; it is that writer's last item, read by media(label=); the same in a listing and in
    a synced copy."""
    import numpy as np

    procs = [script(SUMMARY_WRITER, str(store), label, str(n), env=ENV) for label, n in steps.items()]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    settle(store)
    remote = tmp_path / "remote"
    localtrack.sync(str(remote), dir=store)
    rank, last = int(winner[4:]), steps[winner] - 1
    for run in (localtrack.Api(store).run("p/job"), localtrack.Api(store).runs("p")[0],
                localtrack.Api(remote).run("p/job")):
        summary = run.summary
        assert summary["x"] == rank * 100 + last
        ref = summary["img"]["$m"]
        assert ref["label"] == winner
        assert [r["$m"]["label"] for r in summary["pair"]] == [winner] * 2
        item = run.media("img", label=winner)[-1]
        assert item[0] == last and (np.asarray(item[1]) == rank * 16 + last).all()
        (row,) = [r for r in run.history(keys=["img"], samples=1000, pandas=False)
                  if r["_label"] == winner and r["_step"] == last]
        assert {k: v for k, v in row["img"]["$m"].items() if v is not None} == {
            k: v for k, v in ref.items() if k != "label"}  # the reference of that item
