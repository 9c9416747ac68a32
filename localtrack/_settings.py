"""Settings resolved when init() is called: defaults < WANDB_* env < LOCALTRACK_* env < arguments.

Nothing is read at import time, so tests and users can change the
environment between runs. docs/env.md lists every variable. W&B's variables
(``WANDB_RUN_ID``, ``WANDB_RESUME``, ...) are read here only, each as the fallback
of the localtrack one, so a script started the W&B way runs the same here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

import orjson

from . import _cluster, _layout, _naming
from .errors import UsageError

# The values init() documents, spelled out for users' type checkers. The checks below stay the
# rule at runtime: they also take any case, and "true"/"yes"/"1" for resume, as env vars give.
Mode: TypeAlias = Literal["offline", "disabled", "online", "shared", "dryrun"]
FsyncPolicy: TypeAlias = Literal["periodic", "always", "never"]
ResumeMode: TypeAlias = Literal["must", "allow", "never", "auto"]
Resume: TypeAlias = ResumeMode | bool | None
# W&B's reinit: what init() does while a run is active (see _session.init).
ReinitMode: TypeAlias = Literal["default", "return_previous", "finish_previous", "create_new"]
Reinit: TypeAlias = ReinitMode | bool | None

RESUME_MODES: tuple[str, ...] = get_args(ResumeMode)
MODES = ("offline", "disabled")
# W&B's other modes: there is nothing online, so "online", its old name "run" and "shared"
# write the local store ("shared": one of several writers of a run, see Settings.shared);
# "dryrun" is W&B's old name of "offline".
_MODE_ALIASES = {"online": "offline", "run": "offline", "shared": "offline", "dryrun": "offline"}
REINIT_MODES: tuple[str, ...] = get_args(ReinitMode)
FSYNC_POLICIES: tuple[str, ...] = get_args(FsyncPolicy)
DEFAULT_PROJECT = "uncategorized"
_TRUE = ("true", "1", "yes", "auto")
_FALSE = ("false", "0", "no", "", "none")
_YES = ("true", "1", "yes", "on")
ROTATE_BYTES = 16 << 20  # a history log file this big is closed at the next step boundary
SEAL_MIN_BYTES = 1 << 20  # a finished run's last log this big is sealed; a smaller one stays JSONL
UPLOAD_CHUNK_BYTES = 8 << 20  # sync streams a file to a remote this much at a time


@dataclass(frozen=True)
class Settings:
    root: Path
    project: _naming.ProjectName
    run_id: _naming.RunId | None
    resume: str | None
    mode: str
    fsync: str
    fsync_interval: float
    rotate_bytes: int = ROTATE_BYTES
    seal_min_bytes: int = SEAL_MIN_BYTES
    # Which job this process is (auto-resume key) and what its scheduler says (_cluster).
    resume_key: str | None = None
    cluster: Mapping[str, Mapping[str, str | int]] = field(default_factory=dict)
    # mode="shared": (this writer's label, whether it is the primary); None: the run's only writer
    shared: tuple[_naming.RunId, bool] | None = None


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


def _env(name: str) -> str | None:
    """LOCALTRACK_<name>, else W&B's WANDB_<name>; None when neither is set (or both are empty)."""
    env = os.environ
    return env.get(f"LOCALTRACK_{name}") or env.get(f"WANDB_{name}") or None


def branch_points(resume_from: str | None, fork_from: str | None) -> tuple[str | None, str | None]:
    """init()'s ``resume_from`` / ``fork_from``; when neither is given, LOCALTRACK_RESUME_FROM /
    LOCALTRACK_FORK_FROM (else WANDB_...): a requeued job's script says where to continue from
    without a code change."""
    if resume_from is None and fork_from is None:
        return _env("RESUME_FROM"), _env("FORK_FROM")
    return resume_from, fork_from


def store_location(dir: str | os.PathLike[str] | None = None) -> str | None:
    """``dir``, else LOCALTRACK_DIR, else WANDB_DIR, as given (a path or a remote URI); None
    for the default. W&B's ``dir`` and WANDB_DIR are one setting, so here both name the store."""
    return os.fspath(dir) if dir is not None else _env("DIR")


def artifact_remote() -> str | None:
    """LOCALTRACK_ARTIFACT_REMOTE: a synced copy (a directory or a URI such as ``s3://``) that
    use_artifact() reads a version from when the run's own store lacks it."""
    return os.environ.get("LOCALTRACK_ARTIFACT_REMOTE") or None


def shared_wait() -> float:
    """LOCALTRACK_SHARED_WAIT: how long a writer of a shared run that is not the primary waits
    for the primary to create the run (seconds, default 120)."""
    text = os.environ.get("LOCALTRACK_SHARED_WAIT", "").strip() or "120"
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e9:
        raise UsageError(f"Invalid LOCALTRACK_SHARED_WAIT={text!r}: give seconds, a number >= 0 "
                         "(default 120).")
    return value


def list_threads() -> int | None:
    """LOCALTRACK_LIST_THREADS: how many threads a listing reads the runs the runs index does
    not hold on; None (unset or ``auto``): on the calling thread while the first reads come from
    the page cache, on a few threads once they wait on the disk."""
    text = os.environ.get("LOCALTRACK_LIST_THREADS", "").strip()
    if not text or text.lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 256:
        raise UsageError(f"Invalid LOCALTRACK_LIST_THREADS={text!r}: give 'auto' (the default) or "
                         "a number of threads from 0 (read on the calling thread) to 256.")
    return value


def upload_chunk_bytes() -> int:
    """LOCALTRACK_UPLOAD_CHUNK_BYTES: how much of a file sync holds at a time while streaming
    it to a remote (an artifact's blob)."""
    return _size("UPLOAD_CHUNK_BYTES", UPLOAD_CHUNK_BYTES, 1)


def root_dir(dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(store_location(dir) or _layout.DEFAULT_DIR).expanduser().absolute()


def default_project(project: str | None = None) -> str | None:
    """``project``, else LOCALTRACK_PROJECT, else WANDB_PROJECT (None when none is set)."""
    return project or _env("PROJECT")


def resolve(*, project: str | None, run_id: str | None, resume: object,
            dir: str | os.PathLike[str] | None, mode: str | None, fsync: str | None,
            label: object = None, primary: object = None) -> Settings:
    env = os.environ
    asked = (mode if mode is not None else _env("MODE") or "offline").lower()
    mode = _MODE_ALIASES.get(asked, asked)
    if mode not in MODES:
        raise UsageError(f"Invalid mode={mode!r}: use 'offline' (the default) or 'disabled' "
                         "(W&B's 'online', 'shared' and 'dryrun' also write the local store).")
    fsync = (fsync if fsync is not None else env.get("LOCALTRACK_FSYNC") or "periodic").lower()
    if fsync not in FSYNC_POLICIES:
        raise UsageError(f"Invalid fsync={fsync!r}: use 'periodic' (default), 'always' or 'never'.")
    interval_text = env.get("LOCALTRACK_FSYNC_INTERVAL", "1.0")
    try:
        interval = float(interval_text)
    except ValueError:
        raise UsageError(f"Invalid LOCALTRACK_FSYNC_INTERVAL={interval_text!r}: "
                         "give seconds as a number.") from None
    rotate_bytes = _size("ROTATE_BYTES", ROTATE_BYTES, 1)
    seal_min_bytes = _size("SEAL_MIN_BYTES", SEAL_MIN_BYTES, 0)
    if resume is None:
        for name in ("LOCALTRACK_RESUME", "WANDB_RESUME"):
            if env.get(name) is not None:
                resume = resume_mode(env[name], name)
                break
    rid = run_id if run_id is not None else _env("RUN_ID")
    return Settings(
        root=root_dir(dir),
        project=_naming.project_name(
            project if project is not None else _env("PROJECT") or DEFAULT_PROJECT),
        run_id=_naming.run_id(rid) if rid is not None else None,
        resume=resume_mode(resume),
        mode=mode,
        fsync=fsync,
        fsync_interval=interval,
        rotate_bytes=rotate_bytes,
        seal_min_bytes=seal_min_bytes,
        resume_key=_cluster.identity(env) if mode != "disabled" else None,
        cluster=_cluster.facts(env) if mode != "disabled" else {},
        shared=shared_writer(label, primary, env) if asked == "shared" else None,
    )


def shared_writer(label: object, primary: object,
                  env: Mapping[str, str]) -> tuple[_naming.RunId, bool]:
    """mode="shared": this writer's label and whether it is the primary. The label is W&B's
    ``x_label``, else ``rank<N>`` from RANK (torchrun) or SLURM_PROCID, else ``<host>-<pid>``;
    the primary is W&B's ``x_primary``, else the writer of rank 0 (label ``rank0`` without a
    rank variable)."""
    rank = next((env[n].strip() for n in ("RANK", "SLURM_PROCID") if env.get(n, "").strip()), None)
    if rank is not None and not rank.isdigit():
        rank = None
    if label is None:
        label = f"rank{rank}" if rank is not None else f"{os.uname().nodename}-{os.getpid()}"
    if not isinstance(label, str):
        raise UsageError(f"Invalid x_label={label!r}: give a string such as 'rank3'.")
    try:
        checked = _naming.run_id(label)
    except UsageError:
        raise UsageError(f"Invalid x_label={label!r}: a label names the writer's folder, so it "
                         "takes letters, digits, '-', '_' and '.' (at most 128, starting with a "
                         "letter or digit), e.g. 'rank3'.") from None
    if primary is None:
        primary = rank == "0" if rank is not None else checked == "rank0"
    if not isinstance(primary, bool):
        raise UsageError(f"Invalid x_primary={primary!r}: give True (this writer owns the run's "
                         "config, summary and finish), False, or leave it out (rank 0 is).")
    return checked, primary


def _size(name: str, default: int, least: int) -> int:
    """LOCALTRACK_<name>: a number of bytes (an integer, at least ``least``), else ``default``."""
    text = os.environ.get(f"LOCALTRACK_{name}")
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < least:
        raise UsageError(f"Invalid LOCALTRACK_{name}={text!r}: give a whole number of bytes, at "
                         f"least {least} (default {default}).")
    return value


def reinit_mode(value: object) -> str:
    """W&B's reinit values: True is "finish_previous", False "return_previous"; None and
    "default" are "finish_previous" in a notebook (a cell run again) and "return_previous"
    elsewhere, as in W&B."""
    if value is None or value == "default":
        return "finish_previous" if "ipykernel" in sys.modules else "return_previous"
    if value is True or value is False:
        return "finish_previous" if value else "return_previous"
    if isinstance(value, str) and value in REINIT_MODES:
        return value
    raise UsageError(f"Invalid reinit={value!r}: use one of {', '.join(map(repr, REINIT_MODES))}, "
                     "True (= 'finish_previous') or False (= 'return_previous').")


def run_fields(*, entity: str | None, name: str | None, notes: str | None,
               tags: object, group: str | None, job_type: str | None) -> dict[str, Any]:
    """What init() records about a run in run.json: each argument, else W&B's variable
    (WANDB_ENTITY, WANDB_NAME, WANDB_NOTES, WANDB_TAGS as "a,b", WANDB_RUN_GROUP,
    WANDB_JOB_TYPE); None when neither is given."""
    env = os.environ
    if tags is None and env.get("WANDB_TAGS"):
        tags = [t.strip() for t in env["WANDB_TAGS"].split(",") if t.strip()]
    if isinstance(tags, str):
        tags = [tags]  # W&B takes one tag as a string too
    if tags is not None and not (isinstance(tags, (list, tuple))
                                 and all(isinstance(t, str) for t in tags)):
        raise UsageError(f"Invalid tags={tags!r}: give a list of strings.")
    return {"entity": entity if entity is not None else env.get("WANDB_ENTITY") or None,
            "name": name if name is not None else env.get("WANDB_NAME") or None,
            "notes": notes if notes is not None else env.get("WANDB_NOTES") or None,
            "tags": list(tags) if tags else None,
            "group": group if group is not None else env.get("WANDB_RUN_GROUP") or None,
            "job_type": job_type if job_type is not None else env.get("WANDB_JOB_TYPE") or None}


def config_paths() -> list[str]:
    """W&B's WANDB_CONFIG_PATHS: YAML (or JSON) files whose keys go into every run's config."""
    text = os.environ.get("WANDB_CONFIG_PATHS", "")
    return [p.strip() for p in text.split(",") if p.strip()]


def silent(value: bool | None = None) -> bool:
    """``value`` (W&B's ``silent`` setting), else WANDB_SILENT: warnings of init() are quieted."""
    if value is not None:
        return bool(value)
    return os.environ.get("WANDB_SILENT", "").strip().lower() in _YES


def save_code(value: bool | None = None) -> bool:
    """``value`` (init's or the settings' ``save_code``), else WANDB_SAVE_CODE."""
    if value is not None:
        return bool(value)
    return os.environ.get("WANDB_SAVE_CODE", "").strip().lower() in _YES
