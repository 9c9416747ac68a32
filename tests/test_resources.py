"""Running out of space: a clear error, nothing stored lost, and the run goes on afterwards."""

from __future__ import annotations

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
    table = localtrack.Api(store).run("p/full").history()
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
