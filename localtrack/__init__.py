"""localtrack: a W&B-shaped experiment tracker that keeps runs in plain local files.

``localtrack.run``, ``localtrack.config`` and ``localtrack.summary`` follow the
active run (None before init()).

Only the first argument of init(), sweep(), agent() and sync() is positional: W&B's
``init("team", "proj")`` (entity, project) would otherwise silently make "proj" the run id.
"""

from __future__ import annotations

import os as _os
from pathlib import Path as _Path
from typing import Any as _Any

from . import plot
from ._alerts import AlertLevel
from ._artifacts import Artifact
from ._media import Histogram
from ._metrics import Metric as _Metric
from ._plots import plot_table
from ._query import Api, ApiRun
from ._richmedia import Audio, Html, Image, Molecule, Object3D, Table, Video
from ._run import Run
from ._session import Settings, init
from .errors import LocaltrackError

__version__ = "0.1.0"

__all__ = [
    "AlertLevel",
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
    "alert",
    "define_metric",
    "finish",
    "init",
    "log",
    "log_artifact",
    "login",
    "mark_preempting",
    "plot",
    "plot_table",
    "restore",
    "save",
    "setup",
    "sweep",
    "sync",
    "teardown",
    "unwatch",
    "use_artifact",
    "watch",
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


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the active run, if any (``exit_code`` None: success)."""
    from . import _session

    run = _session.current()
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


def _active(what: str) -> Run:
    from . import _session
    from .errors import UsageError

    run = _session.current()
    if run is None:
        raise UsageError(f"localtrack.{what}() needs an active run: call localtrack.init() first.")
    return run


def mark_preempting() -> None:
    """Run.mark_preempting on the active run (W&B's ``wandb.mark_preempting()``)."""
    _active("mark_preempting").mark_preempting()


def define_metric(name: str, step_metric: str | None = None, *, step_sync: bool | None = None,
                  summary: str | None = None, goal: str | None = None,
                  hidden: bool | None = None, overwrite: bool | None = None) -> _Metric:
    """Run.define_metric on the active run."""
    return _active("define_metric").define_metric(name, step_metric, step_sync=step_sync,
                                                  summary=summary, goal=goal, hidden=hidden,
                                                  overwrite=overwrite)


def alert(title: str, text: str, level: str | AlertLevel = "INFO",
          wait_duration: _Any = None) -> None:
    """Run.alert on the active run."""
    _active("alert").alert(title, text, level, wait_duration)


def watch(models: _Any, criterion: _Any = None, log: str | None = "gradients",
          log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
    """Run.watch on the active run."""
    _active("watch").watch(models, criterion, log, log_freq, idx, log_graph)


def unwatch(models: _Any = None) -> None:
    """Run.unwatch on the active run (nothing without one)."""
    from . import _session

    run = _session.current()
    if run is not None:
        run.unwatch(models)


def save(glob_str: str | _os.PathLike[str], base_path: str | _os.PathLike[str] | None = None,
         policy: str = "live") -> list[str]:
    """Run.save on the active run."""
    return _active("save").save(glob_str, base_path, policy)


def restore(name: str, run_path: str | None = None, replace: bool = False,
            root: str | _os.PathLike[str] | None = None, *,
            dir: str | _os.PathLike[str] | None = None) -> _Any:
    """A file that ``run.save()`` stored, opened for reading: of the run ``run_path``
    (``"project/id"`` or ``"entity/project/id"`` in the store ``dir``) or the active run;
    with ``root``, copied there first (``replace``: over a file already there)."""
    from . import _files

    if run_path is None:
        run = _active("restore")
        where: _Any = run.dir and _Path(run.dir)  # "" for a disabled run
        label = f"run {run.path}"
    else:
        api_run = Api(dir=dir).run(run_path)
        where, label = api_run._rdir, f"run {api_run.path}"
    return _files.open_saved(where, name, root, replace, label)


def login(*args: _Any, **kwargs: _Any) -> bool:
    """W&B's login(): there is nothing to log in to; returns True."""
    return True


def setup(*args: _Any, **kwargs: _Any) -> None:
    """W&B's setup(): nothing to set up."""


def teardown(exit_code: int | None = None) -> None:
    """W&B's teardown(): nothing to tear down (finish() ends runs; exit finishes the rest)."""


def sweep(sweep: dict[str, _Any] | None = None, *, entity: str | None = None,
          project: str | None = None, dir: str | _os.PathLike[str] | None = None,
          config: dict[str, _Any] | None = None) -> str:
    """Create a sweep from a W&B-style config (W&B's ``sweep=``, or ``config=``); returns its id
    (see docs/sweeps.md). ``entity`` is W&B's: a store has one namespace, so it changes nothing."""
    from ._sweeps import _queue
    from .errors import UsageError

    spec = sweep if sweep is not None else config
    if spec is None or (sweep is not None and config is not None):
        raise UsageError("localtrack.sweep() takes the sweep's config once: as its first argument "
                         "(W&B's sweep=) or as config=, " + ("and got neither." if spec is None
                                                            else "not both."))
    return _queue.create(spec, project=project, dir=dir)


def agent(sweep_id: str, *, function: _Any = None, count: int | None = None,
          entity: str | None = None, project: str | None = None,
          dir: str | _os.PathLike[str] | None = None) -> int:
    """Run jobs of a sweep (``function`` in this process, else the sweep's program); ``entity``
    is W&B's and changes nothing here (one namespace per store)."""
    from ._sweeps import _agent

    return _agent.agent(sweep_id, function=function, count=count, project=project, dir=dir)


def sync(to: str | _os.PathLike[str], *, dir: str | _os.PathLike[str] | None = None,
         runs: list[str] | str | None = None, watch: bool = False, poll: float | None = None,
         clean: bool = False, jobs: int | None = None, max_lag: float = 10.0) -> _Any:
    """Upload runs of the store ``dir`` to ``to`` (a directory, or an s3://, gs:// or hdfs:// URI).

    Incremental and safe to interrupt: only what is new goes up. ``runs`` limits it to
    ``"project"`` or ``"project/id"`` entries. ``jobs`` runs go up at a time (default 4 to a
    directory, 16 to an object store). Returns a report; raises SyncError when something is
    left pending. ``watch=True`` keeps syncing until interrupted, warning when a change waits
    more than ``max_lag`` seconds to go up. See docs/sync.md.
    """
    from ._sync import sync as _sync

    return _sync(to, dir=dir, runs=runs, watch=watch, poll=poll, clean=clean, jobs=jobs,
                 max_lag=max_lag)


# W&B's integrations as attributes of the module (``wandb.xgboost.WandbCallback``): each
# imports its framework, so it is imported when first named, never by ``import localtrack``.
_INTEGRATIONS = ("keras", "lightgbm", "sklearn", "xgboost")


def __getattr__(name: str) -> _Any:
    if name in ("run", "config", "summary"):
        from . import _session

        return _session.module_attr(name)
    if name in _INTEGRATIONS:
        import importlib

        from .errors import UsageError

        try:
            return importlib.import_module(f"{__name__}.integrations.{name}")
        except ModuleNotFoundError as exc:
            needed = (exc.name or name).partition(".")[0]
            raise UsageError(f"localtrack.{name} (W&B's wandb.{name}) needs {needed}: pip "
                             f"install {needed}, or 'localtrack[integrations]'.") from exc
    raise AttributeError(f"module 'localtrack' has no attribute {name!r}")
