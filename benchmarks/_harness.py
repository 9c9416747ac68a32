"""The one timing harness of the benchmark scripts: fresh processes, repeats, medians.

A benchmark script describes its workloads as data and names its workers: functions of a
JSON-able dict that a child process runs when the script is re-invoked with the hidden
``--worker NAME --arg JSON`` flags (``serve``). ``Children`` starts those children by fork/exec
and wait4 (wall time, CPU time, peak RSS) and reads back the one ``RESULT`` line each prints.
``rounds`` is the one repeat loop: every repeat runs each system once, in an order rotated by
one per repeat, so a change in the machine's load falls on every system alike; results are
reported as the median and min .. max (``stat_row``).

The systems under test are ``Tracker`` entries: the lines a user writes to import, init, log a
row and finish. Every tracker runs in the same timed skeleton (``Tracker.timed``, four clocks:
import, init, loop, finish) and the same standalone script (``Tracker.script``), so the loop
that is timed is written once and a tracker cannot be timed differently from the others.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
Row = tuple[str, str, str]  # a table row: measure, median, min .. max


# -- children: one fresh process per measurement ---------------------------------------------------


class ChildError(RuntimeError):
    """A child exited with another status than expected, or printed no result."""


@dataclass(frozen=True)
class Children:
    """How a benchmark script starts its children."""

    script: str  # the benchmark file, re-invoked with --worker
    timeout: float  # seconds: the default bound on every child
    src: str | None = None  # a localtrack source tree put first on the children's PYTHONPATH
    clean: bool = False  # leave the parent's LOCALTRACK_* variables out of the children's env

    def run(self, cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
            timeout: float | None = None) -> dict[str, Any]:
        """fork/exec, wait4: wall time, CPU time and peak RSS of the child, and its output."""
        full_env = {k: v for k, v in os.environ.items()
                    if not (self.clean and k.startswith("LOCALTRACK_"))}
        full_env.update(env or {})
        if self.src:
            full_env["PYTHONPATH"] = os.pathsep.join(
                [self.src] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else []))
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    env=full_env, cwd=cwd)
            timer = threading.Timer(self.timeout if timeout is None else timeout, proc.kill)
            timer.start()
            try:
                _, status, ru = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            return {"rc": proc.returncode, "wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
                    "maxrss": ru.ru_maxrss * 1024, "stdout": out.read().decode(errors="replace"),
                    "stderr": err.read().decode(errors="replace")}

    def spawn(self, name: str, args: Mapping[str, Any], *, env: dict[str, str] | None = None,
              cwd: str | None = None, timeout: float | None = None,
              expect_kill: bool = False) -> dict[str, Any]:
        """Run worker ``name`` of the script in a fresh process: its result, with the child's
        ``_wall``, ``_cpu`` and ``_maxrss``."""
        cmd = [sys.executable, os.path.abspath(self.script), "--worker", name, "--arg",
               json.dumps(args)]
        child = self.run(cmd, env=env, cwd=cwd, timeout=timeout)
        if child["rc"] != (-9 if expect_kill else 0):
            tail = (child["stderr"].strip().splitlines() or ["(no stderr)"])[-1]
            raise ChildError(f"worker {name} exited {child['rc']}: {tail}")
        for line in reversed(child["stdout"].splitlines()):
            if line.startswith("RESULT "):
                res: dict[str, Any] = json.loads(line[len("RESULT "):])
                res["_wall"], res["_cpu"], res["_maxrss"] = (child["wall"], child["cpu"],
                                                             child["maxrss"])
                return res
        raise ChildError(f"worker {name} printed no result: {child['stderr'][-500:]}")


def print_result(result: Any) -> None:
    """The child's side of ``spawn``: the one line the parent reads back."""
    sys.stdout.flush()
    sys.stdout.write("\nRESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def serve(workers: Mapping[str, Callable[[dict[str, Any]], Any]], name: str, arg: str) -> None:
    """Run one worker in this (child) process and print its result for the parent."""
    print_result(workers[name](json.loads(arg)))


# -- the repeat loop -------------------------------------------------------------------------------


def rounds(names: Sequence[T], repeats: int, once: Callable[[T, int], R], *,
           warmup: bool = False) -> Iterator[tuple[int, dict[T, R]]]:
    """The one repeat loop: yields (repeat, {name: once(name, repeat)}) for each repeat.

    Each repeat runs every name once, back to back, starting one name further on than the
    repeat before, so the ratios taken within a repeat compare runs made under the same load.
    A repeat is yielded only when all of it ran: an exception of ``once`` ends the loop and
    leaves out the repeat it interrupted. ``warmup`` first runs every name once, untimed
    (page cache, .pyc files), with repeat -1.
    """
    if warmup:
        for name in names:
            once(name, -1)
    for r in range(repeats):
        k = r % len(names)
        yield r, {name: once(name, r) for name in [*names[k:], *names[:k]]}


# -- figures ---------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def unit(scale: float, spec: str) -> Callable[[float], str]:
    """A formatter of figures: the value times ``scale``, written as ``spec``."""
    return lambda v: spec.format(v * scale)


f_us, f_ms, f_s = unit(1e6, "{:.2f} us"), unit(1e3, "{:.1f} ms"), unit(1, "{:.3f} s")
f_x, f_mib, f_b = unit(1, "{:.2f}x"), unit(2**-20, "{:.1f} MiB"), unit(1, "{:.1f} B")


def stat_row(label: str, values: list[float], f: Callable[[float], str]) -> Row:
    """One measure over the repeats: its median, and min .. max."""
    if not values:
        return (label, "n/a", "")
    return (label, f(med(values)), f"{f(min(values))} .. {f(max(values))}")


def print_table(rows: list[Row], markdown: bool) -> None:
    head = ("measure", "median", "min .. max")
    if markdown:
        print(f"| {head[0]} | {head[1]} | {head[2]} |")
        print("| --- | ---: | ---: |")
        for a, b, c in rows:
            print(f"| {a.strip()} | {b} | {c} |")
        return
    w0 = max(len(head[0]), *(len(r[0]) for r in rows))
    w1 = max(len(head[1]), *(len(r[1]) for r in rows))
    print(f"{head[0]:<{w0}}  {head[1]:>{w1}}  {head[2]}")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 20}")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:>{w1}}  {c}")


# -- trackers: the systems under test, as the lines a user writes ----------------------------------

# The timed skeleton. Everything a tracker adds runs where the same line would run in any other
# tracker's loop: its imports inside the import clock, its init inside the init clock, the names
# its loop binds and the loop inside the loop clock, its finish inside the finish clock.
_TIMED = """\
def timed(store, rows, pc):
    t = pc()
{imports}
    t0 = pc()
{watch}
{init}
    t1 = pc()
{bind}
    for {target} in {over}:
{log}
    t2 = pc()
{finish}
    t3 = pc()
    res = {{"import": t0 - t, "init": t1 - t0, "loop": t2 - t1, "finish": t3 - t2}}
{after}
    return res
"""

# The standalone script of the whole-script workload: ``python FILE STORE``, rows made first.
_SCRIPT = """\
import os, sys
PROJECT = {project!r}
store = sys.argv[1]
{rows}
{imports}
{init}
{bind}
for {target} in {over}:
{log}
{finish}
"""


def no_env(scratch: str) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Tracker:
    """One system under test: how it imports, inits, logs a row and finishes, as code lines.

    The lines may use ``store`` (a directory that exists, for the system's files), ``PROJECT``,
    and ``row`` (a dict) or, with ``split``, ``i`` (the step), ``nums`` and ``strs`` (the row's
    numbers and its strings, apart: systems that log them with different calls).
    """

    name: str
    imports: str  # inside the import clock
    init: str  # inside the init clock
    bind: str  # local names the loop uses: inside the loop clock, before the first row
    log: str  # one row
    finish: str  # inside the finish clock
    module: str = ""  # the module a probe imports (peers); "" for what is always there
    split: bool = False  # rows come as (nums, strs) pairs and the loop numbers them: i
    env: Callable[[str], dict[str, str]] = no_env  # the child's environment, given its scratch dir
    in_script: bool = True  # also timed as a whole script
    # Timed loop only, never in the whole script: ``watch`` runs inside the init clock before
    # init (a warning counter, say); ``after`` once the clocks stopped, and may add to ``res``.
    watch: str = ""
    after: str = ""

    def _parts(self, indent: str) -> dict[str, str]:
        def block(code: str, more: str = "") -> str:
            code = textwrap.dedent(code).strip("\n")
            return textwrap.indent(code, indent + more) if code else ""

        return {"imports": block(self.imports), "init": block(self.init),
                "bind": block(self.bind), "log": block(self.log, "    "),
                "finish": block(self.finish), "watch": block(self.watch),
                "after": block(self.after),
                "target": "i, (nums, strs)" if self.split else "row",
                "over": "enumerate(rows)" if self.split else "rows"}

    def timed_source(self) -> str:
        return "\n".join(line for line in _TIMED.format(**self._parts("    ")).splitlines()
                         if line.strip()) + "\n"

    def timed(self, namespace: dict[str, Any]) -> Callable[..., dict[str, Any]]:
        """``timed(store, rows, pc)``: import, init, log every row, finish; the four clocks.

        Compiled with ``namespace`` as its globals (what ``watch`` and ``after`` call); the
        loop's names are locals, as in a hand-written function, so the loop runs the same
        bytecode it would there.
        """
        scope = dict(namespace)
        exec(compile(self.timed_source(), f"<{self.name} timed loop>", "exec"), scope)
        fn: Callable[..., dict[str, Any]] = scope["timed"]
        return fn

    def script(self, project: str, rows: str) -> str:
        """A standalone script, ``python FILE STORE``: ``rows`` (code that binds ``rows``, plain
        dicts of numbers), then import, init, the loop and finish, unclocked."""
        if self.split:
            rows += "\nrows = [(r, {}) for r in rows]"
        text = _SCRIPT.format(project=project, rows=rows, **self._parts(""))
        return "\n".join(line for line in text.splitlines() if line.strip()) + "\n"
