"""Torture: SIGKILL at random instants (also inside sealing and finish()) while a reader lists
the run, many writers at once, and a stateful model check of log/seal/crash/resume/finish.

TORTURE_KILLS sets the kill-loop length (default 30; the soak figures in
docs/reliability.md come from 300)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import warnings
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import localtrack
from localtrack import _sealer

from .helpers import script

WRITER = """
import os, random, sys, localtrack
os.environ["LOCALTRACK_ROTATE_BYTES"] = "20000"  # seal often, so kills land inside sealing
os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "2000"  # and finish() seals too
rng = random.Random(int(sys.argv[2]))
run = localtrack.init(project="p", id="t", resume="allow", dir=sys.argv[1])
print("start", run.step, flush=True)
for i in range(rng.randint(50, 3000)):
    s = run.step
    row = {"x": float(s), "pad": "z" * rng.choice((0, 10, 300, 3000))}
    if rng.random() < 0.3:
        row[f"sparse{rng.randint(0, 20)}"] = rng.random()
    if rng.random() < 0.1:          # a partial step first, completed by the next log()
        run.log({"partial": s}, commit=False)
    if rng.random() < 0.05:
        run.log(row, step=s, commit=True)
    else:
        run.log(row)
    if rng.random() < 0.01:
        run.config.update({"i": i})
    if rng.random() < 0.01:
        run.summary["best"] = s
    print(s, flush=True)            # step s is acknowledged: log() returned
print("finishing", flush=True)
run.finish()                        # kills land in here too
print("finished", flush=True)
"""

READER = """
import os, sys, time, localtrack
stop, deadline = sys.argv[2], time.monotonic() + 600  # the deadline only ends an orphaned reader
reads = 0
while True:
    last = os.path.exists(stop)  # one whole pass after the stop file appears: reads >= 1
    try:
        for r in localtrack.Api(sys.argv[1]).runs("p"):
            steps = r.history_table(["x"]).column("_step").to_pylist()
            assert steps == list(range(len(steps))), "reader saw a gap or duplicate"
            r.summary, r.config, r.state
            reads += 1
    except localtrack.errors.RunNotFoundError:
        pass
    if last or time.monotonic() > deadline:
        break
    time.sleep(0.01)
print("reads", reads, flush=True)
"""


def _stop_reader(reader: subprocess.Popen, stop: Path) -> tuple[int, str]:
    """Ask the reader to finish its pass and exit; (exit code, stdout + stderr) for the caller
    to check: a reader that crashed on what it saw must fail the test."""
    stop.touch()
    try:
        out, err = reader.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # a hung reader fails the test too (exit code -9)
        reader.kill()
        out, err = reader.communicate()
    return reader.returncode, out.decode() + err.decode()


def _reads(code: int, output: str) -> int:
    """How many run reads the reader made; fails the test if it crashed or printed no count."""
    assert code == 0, f"the concurrent reader exited {code}:\n{output}"
    counts = [int(line.split()[1]) for line in output.splitlines() if line.startswith("reads ")]
    assert counts, f"the concurrent reader printed no count:\n{output}"
    return counts[-1]


def test_kill_loop(store, tmp_path):
    kills = int(os.environ.get("TORTURE_KILLS", "30"))
    rng = random.Random(20261126)
    reader = script(READER, str(store), str(tmp_path / "stop-reader"))
    acked_max, lost, unreadable, finishes, in_finish = -1, 0, 0, 0, 0
    t0 = time.monotonic()
    try:
        for k in range(kills):
            proc = script(WRITER, str(store), str(k))
            assert proc.stdout.readline().startswith(b"start")
            time.sleep(rng.uniform(0.0, 0.6))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
            words = out.decode().split()
            finishes += "finished" in words
            in_finish += "finishing" in words and "finished" not in words
            acked = [int(w) for w in words if w.isdigit()]
            if acked:
                acked_max = max(acked_max, acked[-1])
            try:
                table = localtrack.Api(store).run("p/t").history_table(["x", "partial"])
            except localtrack.LocaltrackError:
                unreadable += 1
                continue
            steps = table.column("_step").to_pylist()
            assert steps == list(range(len(steps))), f"gap or duplicate after kill {k}"
            # x == step, or the kill fell between a commit=False record and its completion:
            # then the step holds just that acknowledged partial record.
            for s, x, partial in zip(steps, table.column("x").to_pylist(),
                                     table.column("partial").to_pylist(), strict=True):
                assert x == float(s) or (x is None and partial == s), (s, x, partial)
            lost += max(0, acked_max - steps[-1])
    finally:
        reader_end = _stop_reader(reader, tmp_path / "stop-reader")
    reads = _reads(*reader_end)
    report = {"kills": kills, "steps_lost": lost, "unreadable_runs": unreadable,
              "killed_inside_finish": in_finish, "finished_before_kill": finishes,
              "steps_on_disk": acked_max + 1, "reader_reads": reads,
              "seconds": round(time.monotonic() - t0, 1)}
    (tmp_path / "kill_loop.json").write_text(json.dumps(report))
    print("kill loop:", report)
    assert lost == 0 and unreadable == 0
    assert reads > 0 or kills == 0  # its last pass, after the kills, read the run
    with warnings.catch_warnings():  # the last kill may have cut a copy short: a torn tail,
        warnings.simplefilter("ignore", RuntimeWarning)  # cut (with this warning) on resume
        run = localtrack.init(project="p", id="t", resume="must", dir=store)
    assert run.step >= acked_max + 1
    run.finish()
    assert localtrack.Api(store).run("p/t").state == "finished"


def test_eight_writers_and_a_reader(store, tmp_path):
    code = """
        import sys, localtrack
        run = localtrack.init(project="p", id=f"w{sys.argv[2]}", dir=sys.argv[1])
        for i in range(2000):
            run.log({"x": i, "who": sys.argv[2]})
        run.finish()
    """
    reader = script(READER, str(store), str(tmp_path / "stop-reader"))
    writers = [script(code, str(store), str(i)) for i in range(8)]
    ended = [(w.communicate(timeout=120)[1], w.returncode) for w in writers]
    reader_end = _stop_reader(reader, tmp_path / "stop-reader")  # every pipe read before any assert
    for werr, rc in ended:
        assert rc == 0, werr.decode()
    assert _reads(*reader_end) >= 8  # its last pass, after the writers, read every run
    runs = localtrack.Api(store).runs("p")
    assert sorted(r.id for r in runs) == [f"w{i}" for i in range(8)]
    for r in runs:
        table = r.history_table()
        assert table.column("x").to_pylist() == list(range(2000)) and r.state == "finished"
        assert set(table.column("who").to_pylist()) == {r.id[1:]}


class RunModel(RuleBasedStateMachine):
    """The store against a dict of acknowledged steps, through logs, seals, crashes and resumes."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.tmp = tempfile.TemporaryDirectory()
        self.store = Path(self.tmp.name)
        self.model: dict[int, dict[str, object]] = {}
        self.next_step = 0
        self.run: localtrack.Run | None = None

    @initialize()
    def start(self) -> None:
        self.run = localtrack.init(project="p", id="m", dir=self.store)

    def _open(self) -> localtrack.Run:
        if self.run is None:
            self.run = localtrack.init(project="p", id="m", resume="must", dir=self.store)
            assert self.run.step == self.next_step
        return self.run

    @rule(values=st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=30))
    def log(self, values: list[float]) -> None:
        run = self._open()
        for v in values:
            self.model.setdefault(run.step, {})["v"] = v
            run.log({"v": v})
            self.next_step = run.step

    @rule(v=st.integers(0, 9))
    def partial_then_commit(self, v: int) -> None:
        run = self._open()
        self.model.setdefault(run.step, {}).update({"p": v, "v": 1.0})
        run.log({"p": v}, commit=False)
        run.log({"v": 1.0})
        self.next_step = run.step

    @rule(gap=st.integers(1, 5))
    def jump(self, gap: int) -> None:
        run = self._open()
        step = run.step + gap
        self.model[step] = {"v": -1.0}
        run.log({"v": -1.0}, step=step, commit=True)
        self.next_step = run.step

    @rule()
    def seal(self) -> None:
        run = self._open()
        run._log._rotate()
        _sealer.wait_idle(Path(run.dir))

    @rule()
    def crash(self) -> None:
        """What SIGKILL leaves: the page cache (the mapped log's padding too), no finish, the
        lock dropped."""
        if self.run is not None:
            self.run._drop()
            self.run = None

    @rule()
    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

    @invariant()
    def history_matches(self) -> None:
        table = localtrack.Api(self.store).run("p/m").history_table()
        rows = {r["_step"]: {k: v for k, v in r.items() if not k.startswith("_") and v is not None}
                for r in table.to_pylist()}
        assert rows == self.model

    def teardown(self) -> None:
        if self.run is not None:
            self.run.finish()
        rdir = Path(self.store) / "p" / "runs" / "m"
        if rdir.exists():
            _sealer.wait_idle(rdir)
        self.tmp.cleanup()


TestRunModel = RunModel.TestCase
TestRunModel.settings = settings(max_examples=20, stateful_step_count=15, deadline=None)
