"""localtrack: a W&B-shaped experiment tracker that keeps runs in plain local files.

``localtrack.run``, ``localtrack.config`` and ``localtrack.summary`` follow the
active run (None before init()).

Only the first argument of init(), sweep(), agent() and sync() is positional: W&B's
``init("team", "proj")`` (entity, project) would otherwise silently make "proj" the run id.
"""

from __future__ import annotations

import os as _os
from typing import Any as _Any

from ._artifacts import Artifact
from ._media import Histogram
from ._query import Api, ApiRun
from ._richmedia import Audio, Html, Image, Molecule, Object3D, Table, Video
from ._run import Run
from ._session import Settings, init
from .errors import LocaltrackError

__version__ = "0.1.0"

__all__ = [
    "Api",
    "ApiRun",
    "Artifact",
    "Audio",
    "Histogram",
    "Html",
    "Image",
    "LocaltrackError",
    "Molecule",
    "Object3D",
    "Run",
    "Settings",
    "Table",
    "Video",
    "__version__",
    "agent",
    "finish",
    "init",
    "log",
    "log_artifact",
    "sweep",
    "sync",
    "use_artifact",
]


def log(data: dict[str, _Any] | None = None, step: int | None = None,
        commit: bool | None = None) -> None:
    """Log to the active run (see Run.log); ``log()`` commits the step ``commit=False`` left open."""
    from . import _session
    from .errors import UsageError

    run = _session.current()
    if run is None:
        raise UsageError("localtrack.log() needs an active run: call localtrack.init() first.")
    run.log(data, step=step, commit=commit)


def log_artifact(artifact_or_path: _Any, name: str | None = None, type: str | None = None,
                 aliases: list[str] | None = None) -> _Any:
    """Log an artifact from the active run (see Run.log_artifact)."""
    return _active("log_artifact").log_artifact(artifact_or_path, name=name, type=type,
                                                aliases=aliases)


def use_artifact(artifact_or_name: _Any) -> _Any:
    """Use an artifact in the active run (see Run.use_artifact)."""
    return _active("use_artifact").use_artifact(artifact_or_name)


def _active(what: str) -> _Any:
    from . import _session
    from .errors import UsageError

    run = _session.current()
    if run is None:
        raise UsageError(f"localtrack.{what}() needs an active run: call localtrack.init() first.")
    return run


def finish(exit_code: int = 0) -> None:
    """Finish the active run, if any."""
    from . import _session

    run = _session.current()
    if run is not None:
        run.finish(exit_code=exit_code)


def sweep(config: dict[str, _Any], *, project: str | None = None,
          dir: str | _os.PathLike[str] | None = None) -> str:
    """Create a sweep from a W&B-style config; returns its id (see docs/sweeps.md)."""
    from ._sweeps import _queue

    return _queue.create(config, project=project, dir=dir)


def agent(sweep_id: str, *, function: _Any = None, count: int | None = None,
          project: str | None = None, dir: str | _os.PathLike[str] | None = None) -> int:
    """Run jobs of a sweep (``function`` in this process, else the sweep's program)."""
    from ._sweeps import _agent

    return _agent.agent(sweep_id, function=function, count=count, project=project, dir=dir)


def sync(to: str | _os.PathLike[str], *, dir: str | _os.PathLike[str] | None = None,
         runs: list[str] | str | None = None, watch: bool = False, poll: float | None = None,
         clean: bool = False, jobs: int | None = None) -> _Any:
    """Upload runs of the store ``dir`` to ``to`` (a directory, or an s3://, gs:// or hdfs:// URI).

    Incremental and safe to interrupt: only what is new goes up. ``runs`` limits it to
    ``"project"`` or ``"project/id"`` entries. ``jobs`` runs go up at a time (default 4 to a
    directory, 16 to an object store). Returns a report; raises SyncError when something is
    left pending. ``watch=True`` keeps syncing until interrupted. See docs/sync.md.
    """
    from ._sync import sync as _sync

    return _sync(to, dir=dir, runs=runs, watch=watch, poll=poll, clean=clean, jobs=jobs)


def __getattr__(name: str) -> _Any:
    if name in ("run", "config", "summary"):
        from . import _session

        return _session.module_attr(name)
    raise AttributeError(f"module 'localtrack' has no attribute {name!r}")
