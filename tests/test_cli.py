"""The command line, run as a real process."""

from __future__ import annotations

import subprocess
import sys

import localtrack


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localtrack", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_help():
    res = cli("--help")
    assert res.returncode == 0 and "runs" in res.stdout and "show" in res.stdout


def test_runs_and_show(store):
    run = localtrack.init(project="mnist", id="abc", dir=store, config={"lr": 0.1}, name="first")
    for i in range(7):
        run.log({"loss": 1.0 / (i + 1)})
    run.summary["best"] = 0.9
    run.finish()
    res = cli("runs", "--dir", str(store))
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("mnist/abc"))
    assert "first" in line and "finished" in line and " 7 " in line
    res = cli("show", "mnist/abc", "--dir", str(store), "--rows", "2")
    assert res.returncode == 0, res.stderr
    assert "lr: 0.1" in res.stdout and "best: 0.9" in res.stdout
    assert "last 2 of 7 rows" in res.stdout and "0.14285714285714285" in res.stdout


def test_clear_errors(store, tmp_path):
    res = cli("runs", "--dir", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "No localtrack store" in res.stderr and "Traceback" not in res.stderr
    localtrack.init(project="p", dir=store).finish()
    res = cli("show", "p/missing", "--dir", str(store))
    assert res.returncode == 2 and "No run 'missing'" in res.stderr
    res = cli("show", "p/../x", "--dir", str(store))
    assert res.returncode == 2 and "Invalid" in res.stderr


def test_demo(tmp_path):
    res = cli("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "crashed" in res.stdout and "contiguous and duplicate-free: True" in res.stdout


def test_demo_refuses_a_store_that_is_a_file_at_once(tmp_path):
    (tmp_path / "store").write_text("not a store")
    res = cli("demo", "--dir", str(tmp_path / "store"), cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith(f"error: {str(tmp_path / 'store')!r} is not a localtrack store")
    assert "training" not in res.stdout  # no child was started


def test_demo_says_when_its_child_fails_instead_of_waiting(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "demo").write_text("a file where the demo project goes")
    res = cli("demo", "--dir", str(tmp_path / "store"), cwd=tmp_path)  # 60 s: the old wait
    assert res.returncode == 1, res.stdout + res.stderr
    assert "the training child ended (exit status 1) before the demo could kill it" in res.stderr
    assert "IndexError" not in res.stderr
