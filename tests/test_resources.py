"""Running out of space: a clear error, nothing stored lost, and the run goes on afterwards."""

from __future__ import annotations

import pytest

import localtrack

from .helpers import run_script

FILL = """
import resource, sys, localtrack
run = localtrack.init(project="p", id="full", dir=sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
# RLIMIT_FSIZE stands in for a full disk: the kernel fails the write with EFBIG, as it would
# with ENOSPC, and Python ignores SIGXFSZ. (No tmpfs can be mounted without root here.)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
try:
    for i in range(100_000):
        run.log({"x": i, "pad": "y" * 97})
except localtrack.errors.StorageError as exc:
    print("failed at", run.step, flush=True)
    print(exc, flush=True)
    assert isinstance(exc, OSError)
for _ in range(3):                      # still full: the same clear error, no damage
    try:
        run.log({"x": -1, "pad": "z" * 5000})
    except localtrack.errors.StorageError:
        pass
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))   # space is back
run.log({"x": run.step, "pad": "after"})
run.finish()
print("finished", run.step, flush=True)
"""


def test_full_disk_is_a_clear_error_and_the_run_continues(store):
    res = run_script(FILL, str(store))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    failed_at = int(lines[0].split()[-1])
    assert "'full'" in lines[1] and "file size limit" in lines[1]
    assert 100 < failed_at < 300
    table = localtrack.Api(store).run("p/full").history_table()
    assert table.column("_step").to_pylist() == list(range(failed_at + 1))
    assert table.column("x").to_pylist() == list(range(failed_at + 1))
    assert table.column("pad").to_pylist()[-1] == "after"


def test_history_df_with_pandas(store):
    run = localtrack.init(project="p", dir=store)
    run.log({"a": 1.0})
    run.log({"a": 2.0, "b": "x"})
    run.finish()
    df = localtrack.Api(store).run(f"p/{run.id}").history_df()
    assert list(df["a"]) == [1.0, 2.0] and list(df["_step"]) == [0, 1]


NS_DISK_FULL = """
import json, os, sys, localtrack
store = sys.argv[1]
filler = os.path.join(store, "filler")
run = localtrack.init(project="p", id="full", dir=store)
with open(filler, "wb") as fh:           # leave ~40 KiB free on the 256 KiB tmpfs
    fh.write(b"x" * (256 - 40) * 1024)
errors, step_at_error = 0, None
for i in range(5000):
    try:
        run.log({"x": i, "pad": "y" * 200})
    except localtrack.errors.StorageError as exc:
        errors += 1
        step_at_error = run.step if step_at_error is None else step_at_error
        message = str(exc)
        if errors == 3:
            break
os.remove(filler)                        # space comes back
run.log({"x": -1, "pad": "after"})
run.finish()
table = localtrack.Api(store).run("p/full").history_table()
print(json.dumps({"errors": errors, "step_at_error": step_at_error, "message": message,
                  "steps": table.column("_step").to_pylist(), "x": table.column("x").to_pylist()}))
"""

NS_READ_ONLY = """
import json, subprocess, sys, localtrack
store = sys.argv[1]
run = localtrack.init(project="p", id="ro", dir=store)
for i in range(5):
    run.log({"x": i})
run.finish()
subprocess.run(["mount", "-o", "remount,ro", store], check=True)
try:
    localtrack.init(project="p", id="ro", resume="must", dir=store)
    outcome = "no error"
except localtrack.errors.LocaltrackError as exc:
    outcome = f"{type(exc).__name__}: {exc}"
api = localtrack.Api(store).run("p/ro")
print(json.dumps({"outcome": outcome, "steps": api.history_table().num_rows, "state": api.state}))
"""


def _in_tmpfs(code: str, tmp_path, size: str = "256k"):
    """Run ``code`` against a genuinely small tmpfs mounted in a user namespace (no root needed)."""
    import json
    import shutil
    import subprocess
    import sys
    import textwrap

    if shutil.which("unshare") is None:
        pytest.skip("unshare is missing: the RLIMIT_FSIZE test above covers a full disk")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    probe = subprocess.run(["unshare", "-Urm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces unavailable ({probe.stderr.decode().strip()}): "
                    "the RLIMIT_FSIZE test above covers a full disk")
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    shell = (f"mount -t tmpfs -o size={size} tmpfs {mnt} && "
             f"exec {sys.executable} {script} {mnt}")
    res = subprocess.run(["unshare", "-Urm", "sh", "-c", shell], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_real_enospc_on_a_small_tmpfs(tmp_path):
    out = _in_tmpfs(NS_DISK_FULL, tmp_path)
    assert out["errors"] == 3 and "disk is full" in out["message"] and "'full'" in out["message"]
    n = out["step_at_error"]
    assert n > 10
    assert out["steps"] == list(range(n + 1)) and out["x"][:n] == list(range(n))
    assert out["x"][n] == -1


def test_read_only_store_is_a_clear_error_and_reads_still_work(tmp_path):
    pytest.importorskip("pyarrow")
    out = _in_tmpfs(NS_READ_ONLY, tmp_path, size="4m")
    assert out["outcome"].startswith("StorageError") and "not writable" in out["outcome"]
    assert out["steps"] == 5 and out["state"] == "finished"
