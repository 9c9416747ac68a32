"""The sweep's shared state on disk: the jobs, the run queue, and who runs what.

    <root>/<project>/sweeps/<sweep_id>/sweep.json     the validated config (immutable)
                                       state.json     jobs and queue (atomically replaced)
                                       lock           flock held for each short transaction
                                       agents/<id>.json   an agent's owner record; its mtime
                                                          is the agent's heartbeat
                                       agents/<id>.lock   flock held by the agent and passed
                                                          to each program it runs

Every change is read-modify-write of state.json under the lock, so any number
of agents on any number of nodes (with flock-coherent shared storage) claim
work without two running the same job. A job whose agent died (same host and
pid namespace: its pid is gone; otherwise no heartbeat for LEASE seconds) and
whose locks are free (no flock on the run's lock nor on the agent's, which its
program inherits) is settled as "no status": stopped if early termination marked it
(``job["stop"]``, set once by whichever agent decided it), else requeued if
the run called mark_preempting(), or if it never came to exist (the node was
lost while the program started, before init()); crashed otherwise. A program
killed by a signal before init() is requeued too.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import _fsutil, _layout, _locks, _naming, _settings, _store
from .._codec import decode_tree, dumps, encode_tree, loads
from ..errors import CorruptRunError, LocaltrackError, LockUnavailableError, SweepNotFoundError
from . import _hyperband, _search, _spec

log = logging.getLogger("localtrack")

LEASE_SECONDS = 60.0
_LOCK_TIMEOUT = 60.0


def sweep_dir(root: Path, project: _naming.ProjectName, sweep_id: str) -> Path:
    return root / project / "sweeps" / sweep_id


def create(config: dict[str, Any], *, project: str | None = None,
           dir: str | os.PathLike[str] | None = None) -> str:
    """Validate ``config`` and create the sweep; returns its id."""
    spec = _spec.parse(config)
    root = _settings.root_dir(dir)
    proj = _naming.project_name(_settings.default_project(project) or config.get("project")
                                or _settings.DEFAULT_PROJECT)
    sweep_id = _naming.new_run_id()
    sdir = sweep_dir(root, proj, sweep_id)
    where = f"sweep {sweep_id!r}"
    with _fsutil.storage_errors("create the sweep", sdir):
        _fsutil.ensure_dir(sdir / "agents")
        _fsutil.atomic_write(sdir / "state.json", dumps({"created": 0, "jobs": {}, "queue": []}))
        # sweep.json last: a sweep exists once it has its config.
        _fsutil.atomic_write(sdir / "sweep.json", dumps({
            "format": _layout.FORMAT_VERSION, "id": sweep_id, "project": proj,
            "created": time.time(), "config": encode_tree(spec.raw, where)}))
    return sweep_id


def _state_problem(state: Any) -> str | None:
    """What makes ``state`` no sweep state (see the module docstring), or None."""
    if state is None:
        return "it is missing"
    if not isinstance(state, dict):
        return f"it holds {type(state).__name__}, not an object"
    if not isinstance(state.get("jobs"), dict) or not isinstance(state.get("queue"), list):
        return "it lacks its jobs or its queue"
    if type(state.get("created")) is not int:
        return "it lacks the count of runs created"
    for run_id, job in state["jobs"].items():
        if not (isinstance(job, dict) and isinstance(job.get("status"), str)
                and isinstance(job.get("params"), dict) and type(job.get("requeues")) is int):
            return f"job {run_id!r} is not a job record"
    if not all(isinstance(r, str) and r in state["jobs"] for r in state["queue"]):
        return "its queue names a run that is no job"
    return None


class SweepStore:
    """One sweep's files; every mutation is a short transaction under the sweep lock."""

    def __init__(self, root: Path, project: _naming.ProjectName, sweep_id: str) -> None:
        self.root, self.project, self.id = root, project, _naming.run_id(sweep_id)
        self.dir = sweep_dir(root, project, sweep_id)
        meta = _store.read_json(self.dir / "sweep.json", "sweep")
        if not isinstance(meta, dict):
            raise SweepNotFoundError(f"No sweep {sweep_id!r} in project {project!r} under "
                                     f"{str(root)!r}; create it with localtrack.sweep().",
                                     project=project)
        if not isinstance(meta.get("config"), dict):
            raise CorruptRunError(f"{self.dir / 'sweep.json'} of sweep {sweep_id!r} in project "
                                  f"{project!r} holds no config; the file is damaged. Restore it "
                                  "from a backup or sync remote, or create a new sweep.",
                                  path=str(self.dir / "sweep.json"), project=project)
        self.config: dict[str, Any] = decode_tree(meta["config"])
        self.spec = _spec.parse(self.config)

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Hold the sweep lock; yield the state; write it back atomically if no error."""
        path = self.dir / "lock"
        try:
            with _locks.hold(path, _LOCK_TIMEOUT):
                state = self.read_state()
                yield state
                _fsutil.atomic_write(self.dir / "state.json", dumps(state))
        except TimeoutError as exc:
            raise LockUnavailableError(
                f"Could not lock sweep {self.id!r} ({path}) within {_LOCK_TIMEOUT:.0f} s: another "
                "agent may hang inside a transaction.", project=self.project) from exc

    def read_state(self) -> dict[str, Any]:
        """state.json, checked: a file of another shape (hand-edited, or not a sweep's) is a
        CorruptRunError naming it, never a KeyError or TypeError deep in an agent."""
        path = self.dir / "state.json"
        state = _store.read_json(path, "sweep state", project=self.project)
        problem = _state_problem(state)
        if problem:
            raise CorruptRunError(f"{path} of sweep {self.id!r} in project {self.project!r} is not "
                                  f"a sweep state: {problem}. Restore it from a backup or sync "
                                  "remote, or create a new sweep.", path=str(path),
                                  project=self.project)
        return state  # type: ignore[no-any-return]

    # -- agents ----------------------------------------------------------------------------

    @contextmanager
    def registered_agent(self) -> Iterator[tuple[str, int | None]]:
        """This process as an agent: its owner record, and its lock's descriptor for the
        programs it runs to inherit (None where the file system has no locks: the first
        transaction says so). An inherited flock is held while any holder lives, so a program
        that outlived its agent keeps its job alive even before init() locks its run."""
        agent_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        record, lock = (self.dir / "agents" / f"{agent_id}{ext}" for ext in (".json", ".lock"))
        self.heartbeat(agent_id)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            held = _locks.try_flock(fd)  # (never held by another: agent ids are unique)
        except OSError:
            held = False
        try:
            yield agent_id, fd if held else None
        finally:
            # Record first: while it exists the agent counts as alive, whatever its lock says.
            record.unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
            os.close(fd)

    def heartbeat(self, agent_id: str) -> None:
        path = self.dir / "agents" / f"{agent_id}.json"
        _fsutil.atomic_write(path, dumps({"agent": agent_id, **_locks.this_process()}), sync=False)

    def _agent_alive(self, agent_id: str) -> bool:
        path = self.dir / "agents" / f"{agent_id}.json"
        try:
            record = loads(path.read_bytes())
            age = time.time() - path.stat().st_mtime
        except (OSError, ValueError):
            return False
        alive = _locks.holder_alive(record)
        return alive if alive is not None else age < LEASE_SECONDS

    # -- jobs --------------------------------------------------------------------------------

    def _run_alive(self, run_id: str) -> bool:
        return _locks.is_held(_layout.lock_path(self.root, self.project, _naming.run_id(run_id)))

    def _events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's lifecycle events; none when its program died before init() made the run
        (no run folder) or before init() recorded its start (a folder, no events yet)."""
        rdir = _layout.run_dir(self.root, self.project, _naming.run_id(run_id))
        return _store.events(rdir)

    def _settle(self, state: dict[str, Any], run_id: str, exit_status: int | None) -> str:
        """Apply the requeue table to a job that ended; returns its new status.

        A job early termination marked (``job["stop"]``) is stopped, whatever its status. A
        run with no events whose program left no status (its node was lost) or was killed
        by a signal (a preemption; Popen's negative status) died before init() made it: nothing
        said it must not be requeued, and nothing of it is lost by starting it again. A program
        that exited with a status before init() (an import error) failed. Everything requeued
        past ``max_requeues`` is failed (given up on), never crashed. Only the last process's
        events count: one that finished its run finished, whatever ended it after that (a
        preemption landing as it exits); mark_preempting() holds for the process that called it.
        """
        job = state["jobs"][run_id]
        job["exit_status"] = exit_status
        job["updated"] = time.time()
        job.pop("agent", None)
        if "stop" in job:  # early termination chose it: ended on purpose, never requeued
            job["status"] = "stopped"
            return "stopped"
        events = self._events(run_id)
        starts = [i for i, e in enumerate(events) if e.get("event") in ("started", "resumed")]
        life = events[starts[-1]:] if starts else events  # the last process's
        if exit_status == 0 or any(e.get("event") == "finished" and e.get("exit_code") == 0
                                   for e in life):
            # A signal or a lost node after the program finished its run loses nothing of it.
            job["status"] = "finished"
            return "finished"
        never_started = not events and (exit_status is None or exit_status < 0)
        preempting = any(e.get("event") == "preempting" for e in life)  # mark_preempting()
        if never_started or preempting:
            if job["requeues"] < self.spec.max_requeues:
                job["status"] = "queued"
                job["requeues"] += 1
                state["queue"].append(run_id)
            else:
                job["status"] = "failed"
        else:
            job["status"] = "failed" if exit_status is not None else "crashed"
        return str(job["status"])

    def _agent_lock_held(self, agent_id: str) -> bool:
        """Whether the agent or a program it started (which inherited the lock) still runs."""
        return _locks.is_held(self.dir / "agents" / f"{agent_id}.lock")

    def _reap(self, state: dict[str, Any]) -> None:
        for run_id, job in state["jobs"].items():
            agent = job.get("agent", "")
            if job["status"] == "running" and not self._agent_alive(agent) \
                    and not self._agent_lock_held(agent) and not self._run_alive(run_id):
                self._settle(state, run_id, None)

    def claim(self, agent_id: str) -> tuple[str, dict[str, Any]] | None:
        """The next job for this agent: the run queue first, then a new suggestion."""
        with self.transaction() as state:
            self._reap(state)
            if state["queue"]:
                run_id = state["queue"].pop(0)
            else:
                if self.spec.run_cap is not None and state["created"] >= self.spec.run_cap:
                    return None
                params = _search.suggest(self.spec, state, self._results(state),
                                         random.Random(f"{self.id}:{state['created']}"))
                if params is None:
                    return None
                run_id = _naming.new_run_id()
                state["jobs"][run_id] = {"params": params, "requeues": 0, "index": state["created"]}
                state["created"] += 1
            job = state["jobs"][run_id]
            job.update(status="running", agent=agent_id, claimed=time.time())
            return run_id, dict(job["params"])

    def finish_job(self, run_id: str, exit_status: int | None) -> str:
        with self.transaction() as state:
            return self._settle(state, run_id, exit_status)

    def mark_stops(self, decisions: dict[str, dict[str, float]]) -> list[str]:
        """Record early termination's decisions on the jobs still running and not yet marked
        (so a job is marked once, whichever agent decided first); returns those marked now."""
        marked = []
        with self.transaction() as state:
            for run_id, why in decisions.items():
                job = state["jobs"].get(run_id)
                if job is not None and job["status"] == "running" and "stop" not in job:
                    job["stop"] = {**why, "at": time.time()}
                    marked.append(run_id)
        return marked

    def metric_history(self, run_id: str) -> list[float]:
        """The metric's logged values (finite numbers), in order, negated for maximize: what
        hyperband counts as iterations. Empty for a run that has no files or cannot be read."""
        if self.spec.metric is None:
            return []
        rid = _naming.run_id(run_id)
        rdir = _layout.run_dir(self.root, self.project, rid)
        name = self.spec.metric["name"]
        try:
            column = _store.columns(rdir, [name], {"project": self.project, "run_id": rid})
        except FileNotFoundError:
            return []
        except LocaltrackError as exc:
            log.warning("sweep %s: no history of %s from run %s: %s", self.id, name, run_id, exc)
            return []
        sign = -1.0 if self.spec.metric["goal"] == "maximize" else 1.0
        return [sign * float(v) for v in column.get(name, []) if _hyperband.is_number(v)]

    def _results(self, state: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
        """(params, metric) of finished jobs, for bayes."""
        if self.spec.metric is None:
            return []
        out = []
        for run_id, job in state["jobs"].items():
            if job["status"] == "finished":
                value = self.metric_of(run_id)
                if value is not None:
                    out.append((job["params"], value))
        return out

    def metric_of(self, run_id: str) -> float | None:
        if self.spec.metric is None:
            return None
        rid = _naming.run_id(run_id)
        try:
            summary = _store.summary(_layout.run_dir(self.root, self.project, rid),
                                     project=self.project, run_id=rid)
        except FileNotFoundError:  # a run that never started has no files
            return None
        except LocaltrackError as exc:  # a damaged run: the search goes on without its metric
            log.warning("sweep %s: no metric from run %s: %s", self.id, run_id, exc)
            return None
        value: Any = summary
        for part in self.spec.metric["name"].split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)
