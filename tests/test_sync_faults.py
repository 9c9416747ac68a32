"""Sync under faults, with real processes: SIGKILL at random instants, and a remote that goes away."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

import localtrack

from . import s3server
from .helpers import run_script, script, settle, wait_for
from .test_sync import PAD, assert_same, make_store, many_runs, same_table

s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures


def sync_cmd(remote, store, *extra: str) -> list[str]:
    return [sys.executable, "-m", "localtrack", "sync", "--to", str(remote), "--dir", str(store), *extra]


def env_without_localtrack(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALTRACK_")}
    env.update(extra)
    return env


def stop_daemon(daemon: subprocess.Popen[bytes], hard: bool = False) -> None:
    """Ctrl-C the daemon (it must exit 0), or, ``hard``, kill one still running (a failed test)."""
    if not hard:
        daemon.send_signal(signal.SIGINT)
        assert daemon.wait(timeout=30) == 0
    elif daemon.poll() is None:
        daemon.kill()
        daemon.wait()


def assert_remote_is_a_prefix(store, remote) -> None:
    """What a reader of the remote sees at any instant: each run's history is a prefix of the local one."""
    local = {r.path: r for r in localtrack.Api(store).runs()}
    for rr in localtrack.Api(remote).runs():
        remote_rows = rr.history_table().to_pylist()
        local_rows = local[rr.path].history_table().to_pylist()
        assert repr(remote_rows) == repr(local_rows[:len(remote_rows)]), rr.path


@pytest.mark.parametrize("kind", ["dir", "s3"])
def test_a_reader_polling_a_parallel_sync_sees_readable_prefixes(store, tmp_path, request, kind):
    """While a sync uploads four runs at a time, every run a reader lists reads, and is a prefix
    of the local one (forks included: each waits for its parent)."""
    make_store(store)
    many_runs(store, 60)
    local = {r.path: r.history_table().to_pylist() for r in localtrack.Api(store).runs()}  # still now
    env = env_without_localtrack()
    if kind == "s3":
        s3 = request.getfixturevalue("s3")
        remote, env = s3.uri(s3.new_bucket()), env_without_localtrack(**s3.env())
    else:
        remote = str(tmp_path / "remote")
    proc = subprocess.Popen(sync_cmd(remote, store, "--jobs", "4"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    try:
        for _ in range(100_000):  # bounded by count and time; normally ends with the sync
            done = proc.poll() is not None
            listed = localtrack.Api(remote).runs()  # every run listed reads, and is a prefix
            for rr in listed:
                rows = rr.history_table().to_pylist()
                assert repr(rows) == repr(local[rr.path][:len(rows)]), rr.path
            seen.add(len(listed))
            if done or time.monotonic() > deadline:
                break
            if not listed:
                time.sleep(0.02)  # the sync is starting: leave it the CPU
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "synced 65 of 65 run(s)" in out.decode()
    assert len(seen) > 1, seen  # the reader saw the remote part-way, not only the end
    assert_same(store, remote)


RESUME_BIG = """
import sys, localtrack
with localtrack.init(project="p", id="big", dir=sys.argv[1], resume="must") as run:
    for _ in range(10_000):  # over 1 MiB: finish() seals a new segment
        run.log({"loss": float(sys.argv[2]), "pad": sys.argv[3]})
"""


@pytest.mark.parametrize("jobs", ["1", "4"])
def test_sigkill_at_random_instants_then_rerun_leaves_the_remote_complete(store, tmp_path, jobs):
    """One run at a time, and four (each run's uploads in order, several runs half-way up)."""
    make_store(store)
    for i in range(30):  # many small runs: many uploads for a kill to land between
        with localtrack.init(project="many", id=f"r{i:02d}", dir=store, config={"i": i}) as run:
            for step in range(20):
                run.log({"v": step * i})
    remote = tmp_path / "remote"
    started = time.monotonic()
    subprocess.run(sync_cmd(tmp_path / "scratch", store, "--jobs", jobs), check=True,
                   capture_output=True, timeout=60)
    full = time.monotonic() - started  # how long an uninterrupted sync lives: kill inside that

    rng = random.Random(20261126)
    live = localtrack.init(project="p", id="live", dir=store)
    kills = []
    for i in range(10):
        for _ in range(300):  # the store keeps changing between (and during) kills
            live.log({"i": i, "pad": PAD})
        if i % 4 == 1:  # another process resumes a run and seals a new segment
            res = run_script(RESUME_BIG, str(store), str(i), PAD)
            assert res.returncode == 0, res.stderr
        proc = subprocess.Popen(sync_cmd(remote, store, "--jobs", jobs), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env_without_localtrack())
        delay = rng.uniform(0.0, full)
        kills.append(round(delay, 3))
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert_remote_is_a_prefix(store, remote)
    live.finish()
    settle(store)  # the sealers of finished runs are done: the store stands still now
    res = subprocess.run(sync_cmd(remote, store, "--jobs", jobs), capture_output=True, text=True,
                         timeout=120, env=env_without_localtrack())
    assert res.returncode == 0, (kills, res.stderr)
    assert_same(store, remote)
    res = subprocess.run(sync_cmd(remote, store), capture_output=True, text=True, timeout=60,
                         env=env_without_localtrack())
    assert "nothing to upload" in res.stdout, res.stdout + res.stderr


WRITER = """
import os, sys, time, localtrack
run = localtrack.init(project="live", id="w", dir=sys.argv[1], config={"lr": 0.1})
stop = sys.argv[2]
deadline = time.monotonic() + 60
while not os.path.exists(stop) and time.monotonic() < deadline:
    run.log({"loss": 1.0 / (run.step + 1)})
    time.sleep(0.01)
run.summary["done"] = True
run.finish()
"""


def test_daemon_keeps_a_live_run_in_step_through_an_s3_outage(store, s3, tmp_path):
    uri = s3.uri(s3.new_bucket())
    stop_file = tmp_path / "stop"
    writer = script(WRITER, str(store), str(stop_file))
    log_path = tmp_path / "daemon.log"
    daemon = None
    try:
        wait_for(lambda: (store / "live/runs/w/run.json").exists(), 30, "the run to start")
        with open(log_path, "wb") as log_file:
            daemon = subprocess.Popen(sync_cmd(uri, store, "--watch"), stdout=log_file, stderr=log_file,
                                      env=env_without_localtrack(**s3.env()))

        def remote_steps() -> int:
            try:
                return localtrack.Api(uri).run("live/w").last_step
            except localtrack.LocaltrackError:
                return -1

        wait_for(lambda: remote_steps() >= 20, 30, "the live run on the remote")
        assert localtrack.Api(uri).run("live/w").state == "running"
        s3.stop()
        # The writer goes on logging; the daemon fails and backs off: wait until it says so.
        wait_for(lambda: "cannot sync to" in log_path.read_text(), 60, "the daemon to give up a pass")
        s3.start()
        target = localtrack.Api(store).run("live/w").last_step
        # A bound on a hang, not a speed target: how fast is benchmarks/bench_limits.py's catch-up.
        wait_for(lambda: remote_steps() >= target, 60, "the remote to catch up after the outage")
        stop_file.touch()
        assert writer.wait(timeout=30) == 0
        local = localtrack.Api(store).run("live/w")

        def finished_and_equal() -> bool:
            try:
                remote = localtrack.Api(uri).run("live/w")
                return remote.state == "finished" and same_table(remote.history_table(),
                                                                 local.history_table())
            except localtrack.LocaltrackError:
                return False

        wait_for(finished_and_equal, 20, "the finished run on the remote")
        assert localtrack.Api(uri).run("live/w").summary["done"] is True
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        stop_file.touch()
        for proc in (writer, daemon):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        writer.communicate()
        if s3._server is None:
            s3.start()
    text = log_path.read_text()
    assert "watching file events" in text
    assert "cannot sync to" in text and "retrying in" in text and "reachable again" in text, text
    assert s3.env()["AWS_SECRET_ACCESS_KEY"] not in text


def test_daemon_polling_picks_up_new_runs(store, tmp_path):
    remote = tmp_path / "remote"
    localtrack.init(project="p", id="first", dir=store).finish()
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log_file:
        daemon = subprocess.Popen(sync_cmd(remote, store, "--watch", "--poll", "0.3", "--jobs", "3"),
                                  stdout=log_file, stderr=log_file, env=env_without_localtrack())
    try:
        wait_for(lambda: (remote / "p/runs/first/run.json").exists(), 20, "the first run")
        for i in range(8):  # several runs changed in one pass: they go up on the daemon's pool
            with localtrack.init(project="p", id=f"next{i}", dir=store) as run:
                run.log({"x": i})
        wait_for(lambda: all((remote / f"p/runs/next{i}/run.json").exists() for i in range(8)), 20,
                 "the new runs")
        stop_daemon(daemon)
    finally:
        stop_daemon(daemon, hard=True)
    text = log_path.read_text()
    assert "polling every 0.3 s, up to 3 run(s) at a time" in text
    assert "falling behind" not in text, text  # 9 small runs: well within the default 10 s
    settle(store)
    assert localtrack.sync(str(remote), dir=store).runs == 9
    assert_same(store, remote)


@pytest.mark.parametrize("mode", [["--poll", "0.3"], []], ids=["polling", "file-events"])
def test_daemon_says_when_changes_wait_longer_than_max_lag(store, tmp_path, mode):
    """A daemon whose passes let a change wait longer than --max-lag says so (with what it saw),
    once a minute, and keeps syncing. Here the limit (1 ms) is below any pass's own length."""
    remote = tmp_path / "remote"
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log_file:
        daemon = subprocess.Popen(sync_cmd(remote, store, "--watch", *mode, "--max-lag", "0.001"),
                                  stdout=log_file, stderr=log_file, env=env_without_localtrack())
    try:
        for i in range(12):
            with localtrack.init(project="p", id=f"r{i}", dir=store) as run:
                run.log({"x": i})
        wait_for(lambda: all((remote / f"p/runs/r{i}/run.json").exists() for i in range(12)), 30,
                 "the runs on the remote")
        wait_for(lambda: "falling behind" in log_path.read_text(), 30, "the falling-behind warning")
        stop_daemon(daemon)
    finally:
        stop_daemon(daemon, hard=True)
    text = log_path.read_text()
    assert text.count("falling behind") == 1, text  # at most once a minute
    assert f"sync to {remote} is falling behind its writers: a change waited" in text, text
    assert "(more than 0.001 s)" in text and "--jobs" in text, text


def test_max_lag_is_checked_and_only_with_watch(store, tmp_path):
    localtrack.init(project="p", id="a", dir=store).finish()
    for extra, says in ((["--max-lag", "5"], "only apply to --watch"),
                        (["--watch", "--max-lag", "0"], "--max-lag must be a number of seconds above 0"),
                        (["--watch", "--max-lag", "nan"], "--max-lag must be")):
        res = subprocess.run(sync_cmd(tmp_path / "remote", store, *extra), capture_output=True,
                             text=True, timeout=60, env=env_without_localtrack())
        assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr, res.stderr
