"""log(), config, summary and finish() from many threads at once (a training loop plus a
thread logging system stats or an async eval callback): one step counter per run, every
acknowledged row on disk exactly once, no raw exceptions."""

from __future__ import annotations

import subprocess
import textwrap
import threading
import warnings

import pytest

import localtrack

from .helpers import script, settle


@pytest.fixture
def small_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rotate every few KiB, so that threads race through rotation too."""
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "20000")


def _race(threads: int, body) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        try:
            body(t)
        except BaseException as exc:  # what a user thread would see
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in pool), "a thread hung"
    return errors


@pytest.mark.parametrize("threads", [2, 8])
def test_threads_log_every_kind_of_row(store, small_logs, threads):
    run = localtrack.init(project="p", id="r", dir=store)
    per_thread = 1500

    def body(t: int) -> None:
        for i in range(per_thread):
            row = {"t": float(t), "i": float(i), "pad": "z" * (i % 50)}
            if i % 7 == 0:
                run.log({"nested": {"t": t}, **row})  # the general (framed) path
            elif i % 11 == 0:
                run.log({"part": float(i)}, commit=False)
                run.log(row)
            else:
                run.log(row)  # the plain fast path
            if i % 97 == 0:
                run.config.update({f"c{t}": i})
                run.summary[f"s{t}"] = i
                assert run.summary["t"] is not None

    errors = _race(threads, body)
    assert not errors, errors
    run.finish()
    table = localtrack.Api(store).run("p/r").history_table(["t", "i"])
    steps = table.column("_step").to_pylist()
    assert steps == list(range(threads * per_thread))  # one counter: no gap, no duplicate
    seen = sorted(zip(table.column("t").to_pylist(), table.column("i").to_pylist(), strict=True))
    assert seen == sorted((float(t), float(i)) for t in range(threads) for i in range(per_thread))
    stored = localtrack.Api(store).run("p/r")
    assert stored.config == {f"c{t}": max(range(0, per_thread, 97)) for t in range(threads)}
    assert stored.state == "finished"


def test_explicit_steps_from_two_threads_keep_one_counter(store, small_logs):
    """Two threads log with explicit steps: rows at an older step than the run's are dropped
    with a warning (W&B's rule), never written out of order."""
    run = localtrack.init(project="p", id="r", dir=store)
    counter = iter(range(10**9))
    lock = threading.Lock()

    def body(t: int) -> None:
        for _ in range(2000):
            with lock:
                step = next(counter)
            run.log({"t": float(t), "step": float(step)}, step=step)

    with warnings.catch_warnings():  # whether a row comes late depends on thread switches
        warnings.filterwarnings("ignore", "Dropped a log", UserWarning)
        errors = _race(2, body)
    assert not errors, errors
    run.finish()
    steps = localtrack.Api(store).run("p/r").history_table(["step"]).column("_step").to_pylist()
    assert steps == sorted(set(steps)) and len(steps) > 1000


def test_finish_from_another_thread_while_threads_log(store, small_logs):
    """A row whose log() returned is on disk; a log() after finish() is a RunStateError."""
    run = localtrack.init(project="p", id="r", dir=store)
    acked: list[list[float]] = [[] for _ in range(4)]
    started = threading.Event()

    def body(t: int) -> None:
        if t == 3:
            started.wait(30)
            run.finish()
            return
        for i in range(100_000):
            try:
                run.log({"t": float(t), "i": float(i)})
            except localtrack.errors.RunStateError:
                return
            acked[t].append(float(i))
            if i == 500:
                started.set()

    errors = _race(4, body)
    assert not errors, errors
    table = localtrack.Api(store).run("p/r").history_table(["t", "i"])
    steps = table.column("_step").to_pylist()
    assert steps == list(range(len(steps)))
    on_disk = list(zip(table.column("t").to_pylist(), table.column("i").to_pylist(), strict=True))
    for t in range(3):
        assert [i for tt, i in on_disk if tt == t] == acked[t]


EXIT_WHILE_READING = """
import sys, threading, time, localtrack
api = localtrack.Api(sys.argv[1])

def read():
    while True:
        api.run("p/sealed").history_table()

threading.Thread(target=read, daemon=True).start()
time.sleep(float(sys.argv[2]))
print("exiting", flush=True)
"""


def test_a_process_exits_while_a_daemon_thread_reads_sealed_history(store, monkeypatch):
    """A script (or the dashboard, whose request threads are daemons) ends while a daemon thread
    is inside a Parquet read: the process exits, with its own status. It hung for good in
    Arrow's thread-pool shutdown when Arrow read through the Python file, and about 1 exit in
    30-60 died of SIGABRT ("terminate called without an active exception": a thread ended
    by pthread_exit at finalization inside a C++ destructor, see _exitgate)."""
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "200000")
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")
    run = localtrack.init(project="p", id="sealed", dir=store)
    for i in range(20000):
        run.log({f"k{j}": float(i + j) for j in range(20)})
    run.finish()
    settle(store)
    assert len(list((store / "p" / "runs" / "sealed" / "segments").glob("*.parquet"))) >= 5
    for delay in [f"{0.2 + i / 10:.1f}" for i in range(15)]:  # 15 exits, 0.2 s to 1.6 s in
        proc = script(EXIT_WHILE_READING, str(store), delay)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"the process did not exit within 60 s of its end (delay {delay})")
        assert (proc.returncode, out) == (0, b"exiting\n"), (delay, err.decode())


EXIT_WHILE_IN_ARROW_WORK = """
import sys, threading, time
from localtrack import _exitgate
inside = threading.Event()

def work(name):
    if name == "late":  # comes once the main thread has ended, while the exit waits
        threading.main_thread().join()
        time.sleep(0.5)
    with _exitgate.arrow_work():
        print(name, "in", flush=True)
        inside.set()
        time.sleep(2.0)
        print(name, "out", flush=True)

threading.Thread(target=work, args=("first",), daemon=True).start()
inside.wait(10)
threading.Thread(target=work, args=("late",), daemon=True).start()
print("exiting", flush=True)
"""


def test_exit_waits_for_arrow_work_of_daemon_threads_and_lets_no_new_one_start():
    """The exit waits for a daemon thread's Arrow work to end (its objects freed while the
    thread can still take the GIL), and a daemon thread that would start some then stops
    where it stands rather than be ended inside it."""
    proc = script(EXIT_WHILE_IN_ARROW_WORK)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split("\n") == ["first in", "exiting", "first out", ""], err.decode()


# Work on Arrow objects after a gated read (compute, conversions), in a daemon thread while the
# process exits: a dashboard request, a user's Api read. Each is made slow where it would be
# past the gated segment reads; the exit must wait for it.
SLOW_AFTER_THE_READ = {
    "dashboard-request": """
        import urllib.request
        from localtrack._ui import _server
        server = _server.make_server(store, port=0)
        server.view.history = slowed(server.view.history)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = server.url + "api/history?path=p/r&keys=loss"
        threading.Thread(target=lambda: urllib.request.urlopen(url, timeout=60).read(),
                         daemon=True).start()
        """,
    "api-read": """
        from localtrack import _segments
        _segments.read_history = slowed(_segments.read_history)
        threading.Thread(target=lambda: localtrack.Api(store).run("p/r").history_table(["loss"]),
                         daemon=True).start()
        """,
}


@pytest.mark.parametrize("case", sorted(SLOW_AFTER_THE_READ))
def test_exit_waits_for_a_daemon_thread_s_read_past_its_segment_reads(store, case):
    """pyarrow compute in a daemon thread at interpreter exit crashed a plain script (SIGSEGV,
    2 exits in 60): a dashboard request and an Api history read are Arrow work as a whole."""
    with localtrack.init(project="p", id="r", dir=store) as run:
        for i in range(20):
            run.log({"loss": 1.0 / (i + 1)})
    settle(store)
    code = textwrap.dedent("""
        import sys, threading, time, localtrack
        store = sys.argv[1]
        inside = threading.Event()

        def slowed(real):  # the call, then 2 s more of its thread's work on what it read
            def slow(*args, **kwargs):
                out = real(*args, **kwargs)
                print("in", flush=True)
                inside.set()
                time.sleep(2.0)
                print("out", flush=True)
                return out
            return slow
        """) + textwrap.dedent(SLOW_AFTER_THE_READ[case]) + textwrap.dedent("""
        inside.wait(30)
        print("exiting", flush=True)
        """)
    proc = script(code, str(store))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split("\n") == ["in", "exiting", "out", ""], err.decode()
