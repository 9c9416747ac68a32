"""The agent: claim a job, run it (a function in this process or a program), settle it.

A job runs with LOCALTRACK_RUN_ID / LOCALTRACK_RESUME=allow / LOCALTRACK_SWEEP_*
in its environment, so ``localtrack.init()`` inside picks up the run id, the
parameters as config, and resumes a requeued run from its last step. The exit
status decides the job's fate (see _queue._settle): 0 finished; otherwise
requeued if the run called mark_preempting() or was killed by a signal before
init() made it, else failed. A program inherits the agent's lock, so its job
is not settled while it runs, even if its agent died.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from .. import _fsutil, _naming, _session, _settings
from .._codec import dumps
from ..errors import LocaltrackError, RunStoppedError, UsageError
from . import _hyperband
from ._queue import LEASE_SECONDS, SweepStore

log = logging.getLogger("localtrack")

_POLL_SECONDS = 5.0  # between early-termination checks while a job runs


def parse_sweep_path(value: str, project: str | None,
                     root: Path | None = None) -> tuple[_naming.ProjectName, str]:
    """``"p/SWEEP_ID"``, a bare id with ``project=``, or (as W&B's quickstart calls agent()) a
    bare id alone: then the store's one project that holds a sweep of that id."""
    if "/" in value:
        proj, _, sweep_id = value.partition("/")
    else:
        proj, sweep_id = _settings.default_project(project) or "", value
    sweep_id = str(_naming.run_id(sweep_id))
    if not proj and root is not None:
        found = sorted(p.parent.parent.parent.name
                       for p in root.glob(f"*/sweeps/{sweep_id}/sweep.json"))
        if len(found) > 1:
            raise UsageError(f"Sweep {sweep_id!r} is in several projects ({', '.join(found)}): "
                             "pass 'PROJECT/SWEEP_ID' or project=.")
        proj = found[0] if found else ""
    if not proj:
        raise UsageError(f"Sweep {value!r} needs a project: pass 'PROJECT/SWEEP_ID' or project=.")
    return _naming.project_name(proj), sweep_id


def job_env(store: SweepStore, run_id: str, params: dict[str, Any]) -> dict[str, str]:
    return {"LOCALTRACK_DIR": str(store.root), "LOCALTRACK_PROJECT": store.project,
            "LOCALTRACK_RUN_ID": run_id, "LOCALTRACK_RESUME": "allow",
            "LOCALTRACK_SWEEP_ID": store.id, "WANDB_SWEEP_ID": store.id,  # (scripts test it)
            "LOCALTRACK_SWEEP_PARAMS": dumps(store.spec.nest(params)).decode()}


@contextmanager
def _heartbeat(store: SweepStore, agent_id: str) -> Any:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(LEASE_SECONDS / 4):
            try:
                store.heartbeat(agent_id)
            except OSError:
                log.warning("agent %s could not write its heartbeat", agent_id, exc_info=True)

    thread = threading.Thread(target=beat, name="localtrack-agent-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class _FunctionStop:
    """Stops a function job with RunStoppedError, as W&B's agent does: raised by its run's next
    log() (a point where the writer is consistent), or, if the function has not ended after
    the kill delay (it does not log), raised asynchronously in its thread at its next Python
    instruction, as W&B's. Armed only while the function runs; a raise still pending when it
    returned is withdrawn."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.thread: int | None = None

    def arm(self) -> None:
        with self.guard:
            self.thread = threading.get_ident()

    def disarm(self) -> None:
        with self.guard:
            if self.thread is not None:
                _async_raise(self.thread, None)
            self.thread = None

    def deliver(self, again: bool) -> None:
        """Stop the function: at its run's next log(), or (``again``: after the kill delay) at
        its next instruction."""
        with self.guard:
            if self.thread is None:
                return
            run = _session.current()
            if not again and run is not None:
                run._request_stop()
            else:
                _async_raise(self.thread, RunStoppedError)


def _async_raise(thread: int, exc: type[BaseException] | None) -> None:
    import ctypes  # only when a sweep stops a function run

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread),
                                               None if exc is None else ctypes.py_object(exc))


def _run_function(function: Callable[[], Any], env: dict[str, str],
                  stop: _FunctionStop) -> int:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        try:
            stop.arm()
            function()
        finally:
            stop.disarm()
        code = 0
    except RunStoppedError:
        log.info("sweep run %s stopped by early termination", env["LOCALTRACK_RUN_ID"])
        code = 1
    except Exception:
        log.error("sweep run %s raised", env["LOCALTRACK_RUN_ID"], exc_info=True)
        code = 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    run = _session.current()
    if run is not None and getattr(run, "id", None) == env["LOCALTRACK_RUN_ID"]:
        run.finish(exit_code=code)
    return code


class _Watcher:
    """Early termination from what is on disk, by whichever agent looks: the metric's history
    of every run of the sweep (those of ended jobs read once), hyperband's decision, and the
    decision recorded on the jobs in state.json (once per job, under the sweep lock)."""

    def __init__(self, store: SweepStore) -> None:
        self.store = store
        self.ended: dict[str, list[float]] = {}

    def check(self) -> dict[str, Any]:
        """Mark the running jobs hyperband stops; returns the jobs as they are now."""
        hb = self.store.spec.early_terminate
        assert hb is not None
        jobs: dict[str, Any] = self.store.read_state()["jobs"]
        histories: dict[str, list[float]] = {}
        for run_id, job in jobs.items():
            if run_id in self.ended:
                histories[run_id] = self.ended[run_id]
                continue
            histories[run_id] = self.store.metric_history(run_id)
            if job["status"] in ("finished", "failed", "crashed", "stopped"):
                self.ended[run_id] = histories[run_id]
        running = {r for r, job in jobs.items() if job["status"] == "running" and "stop" not in job}
        decisions = _hyperband.to_stop(hb, histories, running)
        if not decisions:
            return jobs
        for run_id in self.store.mark_stops(decisions):
            why = decisions[run_id]
            log.info("sweep %s: hyperband stops run %s at band %d (%s > threshold %s)",
                     self.store.id, run_id, why["band"], why["value"], why["threshold"])
        jobs = self.store.read_state()["jobs"]
        return jobs


def _seconds(name: str, given: str | None, default: float) -> float:
    """LOCALTRACK_<name> (else W&B's WANDB_<name>), ``given``: seconds > 0, else ``default``."""
    text = (given or "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"Invalid LOCALTRACK_{name} (or WANDB_{name})={text!r}: give a number "
                         f"of seconds > 0 (default {default:g}).")
    return value


@contextmanager
def _early_terminate(store: SweepStore, run_id: str, deliver: Callable[[bool], None],
                     watcher: _Watcher | None) -> Any:
    """While a job runs, check every poll; once its own job is marked, deliver the stop (a
    program: SIGTERM, then SIGKILL once it outlived AGENT_KILL_DELAY seconds: W&B's 30)."""
    if watcher is None:
        yield
        return
    done = threading.Event()
    poll = _seconds("AGENT_POLL", _settings._env("AGENT_POLL"), _POLL_SECONDS)
    kill_delay = _seconds("AGENT_KILL_DELAY", _settings._env("AGENT_KILL_DELAY"), 30.0)

    def watch() -> None:
        sent: float | None = None
        while not done.wait(poll):
            try:
                jobs = watcher.check()
            except (LocaltrackError, OSError):
                log.warning("sweep %s: early termination check failed", store.id, exc_info=True)
                continue
            if "stop" not in jobs.get(run_id, {}):
                continue
            if sent is None:
                sent = time.monotonic()
                deliver(False)
            elif time.monotonic() - sent > kill_delay:
                deliver(True)
                sent = math.inf

    thread = threading.Thread(target=watch, name="localtrack-agent-early-terminate", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def build_command(store: SweepStore, params: dict[str, Any], run_id: str) -> list[str]:
    """W&B's command macros: ${env} ${interpreter} ${program} ${args} ${args_no_hyphens}
    ${args_no_boolean_flags} ${args_json} ${args_json_file}."""
    spec = store.spec
    if spec.program is None and spec.command is None:
        raise UsageError(f"Sweep {store.id!r} has no 'program' or 'command' to run; pass "
                         "function= to localtrack.agent() or add program: to the YAML.")
    template = spec.command or ["${env}", "${interpreter}", "${program}", "${args}"]
    flat = [(k, v) for k, v in params.items()]
    macros: dict[str, list[str]] = {
        "${env}": ["/usr/bin/env"], "${interpreter}": [sys.executable],
        "${program}": [spec.program or ""],
        "${args}": [f"--{k}={_arg(v)}" for k, v in flat],
        "${args_no_hyphens}": [f"{k}={_arg(v)}" for k, v in flat],
        "${args_no_boolean_flags}": [f"--{k}" if v is True else f"--{k}={_arg(v)}"
                                     for k, v in flat if v is not False],
        "${args_json}": [dumps(spec.nest(params)).decode()],
    }
    if "${args_json_file}" in template:
        path = store.dir / "args" / f"{run_id}.json"
        with _fsutil.storage_errors("write the job's arguments", path):
            _fsutil.ensure_dir(path.parent)
            _fsutil.atomic_write(path, dumps(spec.nest(params)))
        macros["${args_json_file}"] = [str(path)]
    out: list[str] = []
    for part in template:
        out.extend(macros.get(part, [part]))
    return out


def _arg(value: Any) -> str:
    """A value as W&B's agent writes it in ${args}: Python's str (``True``, ``[1, 2]``, ``None``),
    so a script that parses the flags as it did under W&B gets what it got there."""
    return str(value)


class _ProgramRunner:
    """Runs one job's program; SIGTERM/SIGINT to the agent is passed on, then the agent stops."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def terminate(self, kill: bool) -> None:
        """Early termination's stop, as W&B's agent: SIGTERM, then SIGKILL if it outlives
        the kill delay."""
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGKILL if kill else signal.SIGTERM)

    def run(self, cmd: list[str], env: dict[str, str], agent_lock: int | None) -> int:
        """Run the program; it inherits the agent's lock, so its job lives while it does."""
        log.info("agent runs: %s", shlex.join(cmd))
        self.child = subprocess.Popen(cmd, env={**os.environ, **env},
                                      pass_fds=() if agent_lock is None else (agent_lock,))
        code = self.child.wait()
        self.child = None
        return code


def agent(sweep_id: str, *, function: Callable[[], Any] | None = None, count: int | None = None,
          project: str | None = None, dir: str | os.PathLike[str] | None = None) -> int:
    """Run jobs of a sweep until it is done or ``count`` jobs ran; returns how many ran."""
    root = _settings.root_dir(dir)
    proj, sid = parse_sweep_path(sweep_id, project, root)
    store = SweepStore(root, proj, sid)
    if count is not None and count < 1:
        raise UsageError(f"count must be >= 1, got {count}.")
    runner, fstop = _ProgramRunner(), _FunctionStop()
    watcher = _Watcher(store) if store.spec.early_terminate is not None else None
    previous: dict[int, Any] = {}
    if function is None and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, runner.on_signal)
    ran = 0
    try:
        with store.registered_agent() as (agent_id, agent_lock), _heartbeat(store, agent_id):
            while (count is None or ran < count) and not runner.stopping:
                job = store.claim(agent_id)
                if job is None:
                    if ran == 0:
                        _say_nothing_left(store)
                    break
                run_id, params = job
                env = job_env(store, run_id, params)
                deliver = fstop.deliver if function is not None else runner.terminate
                with _early_terminate(store, run_id, deliver, watcher):
                    if function is not None:
                        code = _run_function(function, env, fstop)
                    else:
                        code = runner.run(build_command(store, params, run_id), env, agent_lock)
                status = store.finish_job(run_id, code)
                log.info("sweep %s: run %s ended with %s -> %s", sid, run_id, code, status)
                ran += 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ran


def _say_nothing_left(store: SweepStore) -> None:
    """An agent that finds no job at all says why, rather than exiting as if it had worked."""
    counts: dict[str, int] = {}
    for job in store.read_state()["jobs"].values():
        counts[job.get("status", "?")] = counts.get(job.get("status", "?"), 0) + 1
    done = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no jobs"
    log.warning("sweep %s/%s has no job left to run (%s): its search space or run_cap is used "
                "up%s. See `localtrack sweep --status %s/%s`.", store.project, store.id, done,
                "; the running ones belong to other agents" if counts.get("running") else "",
                store.project, store.id)


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"Cannot read sweep config {str(path)!r}: {exc.strerror}.") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"Sweep config {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"Sweep config {str(path)!r} must be a mapping at the top level.")
    return data
