"""Instructions per log() row, counted by callgrind: a measure the machine's load does not move.

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=OUT \\
        python benchmarks/callgrind_log.py N [CLOCK_STEP]
    grep '^totals:' OUT

Only the loop of N rows (10 float keys, fsync="never") is instrumented: the script turns
instrumentation on and off around it with callgrind_control. The toggle is asynchronous, so
take (totals(N2) - totals(N1)) / (N2 - N1), e.g. N1 = 2,000 and N2 = 22,000. Under valgrind a
row takes ~50x longer, so a row would be framed (carry its step, time and checksum: once a
millisecond) every few rows instead of one in ~600, and how often would depend on the load:
log() reads a clock that advances CLOCK_STEP seconds per call instead (default 1.6e-6, a row's
real time). CLOCK_STEP=0.002 frames every row: the framed row's cost. Run it with
PYTHONHASHSEED=0 and PYTHONPATH at the tree to measure (one from before the writer split,
where the hot path was in _run, works too).
"""

from __future__ import annotations

import importlib
import itertools
import os
import subprocess
import sys
import tempfile

import localtrack


def _instrument(on: bool) -> None:
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
                   stdout=subprocess.DEVNULL, check=True)


def main() -> None:
    n = int(sys.argv[1])
    step = float(sys.argv[2]) if len(sys.argv) > 2 else 1.6e-6
    pkg = os.path.dirname(localtrack.__file__)
    split = os.path.exists(os.path.join(pkg, "_history.py"))
    hot = importlib.import_module("localtrack._history" if split else "localtrack._run")
    hot._monotonic = itertools.count(0.0, step).__next__  # type: ignore[attr-defined]
    run = localtrack.init(project="p", dir=tempfile.mkdtemp(), fsync="never")
    row = {f"k{i}": 0.5 + i for i in range(10)}
    log = run.log
    for _ in range(200):  # specialize the bytecode first
        log(row)
    _instrument(True)
    for _ in range(n):
        log(row)
    _instrument(False)
    run.finish()


if __name__ == "__main__":
    main()
