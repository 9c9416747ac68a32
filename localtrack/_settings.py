"""Settings resolved when init() is called: defaults < LOCALTRACK_* env < arguments.

Nothing is read at import time, so tests and users can change the
environment between runs. docs/env.md lists every variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

import orjson

from . import _cluster, _layout, _naming
from .errors import UsageError

# The values init() documents, spelled out for users' type checkers. The checks below stay the
# rule at runtime: they also take any case, and "true"/"yes"/"1" for resume, as env vars give.
Mode: TypeAlias = Literal["offline", "disabled", "online"]
FsyncPolicy: TypeAlias = Literal["periodic", "always", "never"]
ResumeMode: TypeAlias = Literal["must", "allow", "never", "auto"]
Resume: TypeAlias = ResumeMode | bool | None

RESUME_MODES: tuple[str, ...] = get_args(ResumeMode)
MODES = ("offline", "disabled")  # "online" is read as "offline"
FSYNC_POLICIES: tuple[str, ...] = get_args(FsyncPolicy)
DEFAULT_PROJECT = "uncategorized"
_TRUE = ("true", "1", "yes", "auto")
_FALSE = ("false", "0", "no", "", "none")


@dataclass(frozen=True)
class Settings:
    root: Path
    project: _naming.ProjectName
    run_id: _naming.RunId | None
    resume: str | None
    mode: str
    fsync: str
    fsync_interval: float
    # Which job this process is (auto-resume key) and what its scheduler says (_cluster).
    resume_key: str | None = None
    cluster: Mapping[str, Mapping[str, str | int]] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepContext:
    """What an agent hands a job: the sweep wins over init() arguments, config is merged."""

    sweep_id: str
    params: dict[str, Any]


def sweep_context() -> SweepContext | None:
    sweep_id = os.environ.get("LOCALTRACK_SWEEP_ID")
    if not sweep_id:
        return None
    text = os.environ.get("LOCALTRACK_SWEEP_PARAMS", "{}")
    try:
        params = orjson.loads(text)
    except ValueError:
        raise UsageError(f"LOCALTRACK_SWEEP_PARAMS is not JSON: {text[:80]!r}") from None
    return SweepContext(sweep_id, params if isinstance(params, dict) else {})


def resume_mode(value: object, source: str = "resume") -> str | None:
    """W&B's resume values: True means "auto", False/None mean a new run."""
    if value is None or value is False:
        return None
    if value is True:
        return "auto"
    if isinstance(value, str):
        low = value.strip().lower()
        if low in RESUME_MODES:
            return low
        if low in _TRUE:
            return "auto"
        if low in _FALSE:
            return None
    raise UsageError(f"Invalid {source}={value!r}: use one of {', '.join(map(repr, RESUME_MODES))}, "
                     "True (= 'auto'), False or None.")


def store_location(dir: str | os.PathLike[str] | None = None) -> str | None:
    """``dir``, else LOCALTRACK_DIR, as given (a path or a remote URI); None for the default."""
    return os.fspath(dir) if dir is not None else os.environ.get("LOCALTRACK_DIR") or None


def root_dir(dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(store_location(dir) or _layout.DEFAULT_DIR).expanduser().absolute()


def default_project(project: str | None = None) -> str | None:
    """``project``, else LOCALTRACK_PROJECT (None when neither is set)."""
    return project or os.environ.get("LOCALTRACK_PROJECT") or None


def resolve(*, project: str | None, run_id: str | None, resume: object,
            dir: str | os.PathLike[str] | None, mode: str | None, fsync: str | None) -> Settings:
    env = os.environ
    mode = (mode if mode is not None else env.get("LOCALTRACK_MODE") or "offline").lower()
    if mode == "online":
        mode = "offline"  # there is nothing online: the W&B value keeps ported code working
    if mode not in MODES:
        raise UsageError(f"Invalid mode={mode!r}: use 'offline' (the default) or 'disabled'.")
    fsync = (fsync if fsync is not None else env.get("LOCALTRACK_FSYNC") or "periodic").lower()
    if fsync not in FSYNC_POLICIES:
        raise UsageError(f"Invalid fsync={fsync!r}: use 'periodic' (default), 'always' or 'never'.")
    interval_text = env.get("LOCALTRACK_FSYNC_INTERVAL", "1.0")
    try:
        interval = float(interval_text)
    except ValueError:
        raise UsageError(f"Invalid LOCALTRACK_FSYNC_INTERVAL={interval_text!r}: "
                         "give seconds as a number.") from None
    if resume is None and env.get("LOCALTRACK_RESUME") is not None:
        resume = resume_mode(env["LOCALTRACK_RESUME"], "LOCALTRACK_RESUME")
    rid = run_id if run_id is not None else env.get("LOCALTRACK_RUN_ID") or None
    return Settings(
        root=root_dir(dir),
        project=_naming.project_name(
            project if project is not None else env.get("LOCALTRACK_PROJECT") or DEFAULT_PROJECT),
        run_id=_naming.run_id(rid) if rid is not None else None,
        resume=resume_mode(resume),
        mode=mode,
        fsync=fsync,
        fsync_interval=interval,
        resume_key=_cluster.identity(env) if mode != "disabled" else None,
        cluster=_cluster.facts(env) if mode != "disabled" else {},
    )
