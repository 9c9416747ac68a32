from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import localtrack


def script(code: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           **popen) -> subprocess.Popen:
    """Start ``code`` as a user script in a real Python subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "WANDB_"))}
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=cwd,
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **popen)


def run_gc(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`localtrack gc --dir store ...` as a real command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "WANDB_"))}
    return subprocess.run([sys.executable, "-m", "localtrack", "gc", "--dir", str(store), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def run_script(code: str, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    proc = script(code, *args, **kw)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """``predicate()``'s value once it is truthy; fails naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def steps_of(store: Path, path: str) -> list[int]:
    return localtrack.Api(store).run(path).history_table([]).column("_step").to_pylist()


def settle(root: Path) -> None:
    """Wait until no sealer process works under ``root`` (sealing runs after finish() returns)."""
    from localtrack import _sealer

    for lock in Path(root).rglob(_sealer.SEAL_LOCK):
        _sealer.wait_idle(lock.parent, timeout=120)


_OLDER_READER = """
import sys, localtrack
from localtrack import _layout
_layout.KNOWN_FORMAT = int(sys.argv[2])
api = localtrack.Api(sys.argv[1])
for path in sys.argv[3:]:
    try:
        api.run(path).history_table()
        print(api.run(path).last_step)
    except localtrack.errors.CorruptRunError as exc:
        print(exc)
"""


def read_as_older(store: Path, known_format: int, *paths: str) -> list[str]:
    """What a localtrack that reads formats up to ``known_format`` says of each run: its last
    step, or the error it refuses the run with (one line each, in a real process)."""
    res = run_script(_OLDER_READER, str(store), str(known_format), *paths)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()
