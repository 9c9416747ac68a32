"""The only place a string becomes a validated name: a project, a run id, a store file.

Validated values are distinct types (``ProjectName``, ``RunId``) so that only
they build paths: a run id can never walk out of the store. The names a store
itself holds (log, segment and chunk file names, docs/format.md) are checked
here too, by the exact patterns the format gives, before any of them becomes a
path: a received store is input like any other.
"""

from __future__ import annotations

import re
import secrets
from typing import NewType, TypedDict

from .errors import InvalidNameError, UsageError

ProjectName = NewType("ProjectName", str)
RunId = NewType("RunId", str)

MAX_LEN = 128
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
# ASCII digits only: str.isdigit() also takes other scripts' digits, which int() reads as numbers.
_LOG_RE = re.compile(r"([0-9]{8})\.jsonl")        # wal/<seq>.jsonl
_SEGMENT_RE = re.compile(r"([0-9]{8})\.parquet")  # segments/<seq>.parquet
_CHUNK_RE = re.compile(r"([0-9]{16})\.jsonl")     # <log>/<offset>.jsonl on a remote


class Ctx(TypedDict, total=False):
    """Which run an error is about; passed along as ``**ctx`` down to the error."""

    project: str
    run_id: str


def run_label(ctx: Ctx) -> str:
    """``run 'p/id'`` for a message, or ``the run`` when the context does not name one."""
    if "project" in ctx and "run_id" in ctx:
        return f"run {ctx['project'] + '/' + ctx['run_id']!r}"
    return "the run"


def _check(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidNameError(f"{kind} must be a string, got {type(value).__name__} {value!r}.")
    problem = None
    if not value:
        problem = "it is empty"
    elif len(value) > MAX_LEN:
        problem = f"it is {len(value)} characters long (at most {MAX_LEN})"
    elif ".." in value:
        problem = "it contains '..'"
    elif not _NAME_RE.fullmatch(value):
        problem = "only letters, digits, '-', '_' and '.' are allowed, starting with a letter or digit"
    if problem:
        raise InvalidNameError(
            f"Invalid {kind} {value!r}: {problem}. Choose a name like 'mnist-2' or 'run_01'."
        )
    return value


def project_name(value: object) -> ProjectName:
    """Validate a project name."""
    return ProjectName(_check("project name", value))


def run_id(value: object) -> RunId:
    """Validate a run id."""
    return RunId(_check("run id", value))


def artifact_name(value: object) -> str:
    """Validate an artifact name (a folder of the store, like a run id)."""
    return _check("artifact name", value)


_VERSION_RE = re.compile(r"v[0-9]+")


def alias_name(value: object) -> str:
    """Validate an artifact alias: a name, and not ``v<N>``, which names a version."""
    alias = _check("artifact alias", value)
    if _VERSION_RE.fullmatch(alias):
        raise InvalidNameError(f"Invalid artifact alias {alias!r}: 'v<N>' names a version, so it "
                               "cannot be an alias. Choose a name like 'best' or 'epoch-3'.")
    return alias


def version_number(value: str) -> int | None:
    """The N of ``v<N>``, None for any other string."""
    return int(value[1:]) if _VERSION_RE.fullmatch(value) else None


def new_run_id() -> RunId:
    """A fresh random id, 8 characters of [a-z0-9] like W&B's."""
    return RunId("".join(secrets.choice(_ID_ALPHABET) for _ in range(8)))


def parse_path(value: str) -> tuple[ProjectName, RunId]:
    """Split ``"project/id"`` into validated parts."""
    project, sep, rid = value.partition("/")
    if not sep:
        raise InvalidNameError(f"Expected 'PROJECT/RUN_ID', got {value!r}.")
    return project_name(project), run_id(rid)


_AT_STEP_RE = re.compile(r"(?P<id>[^?]+)\?_step=(?P<step>[0-9]+)")


def run_at_step(value: object, what: str) -> tuple[RunId, int]:
    """W&B's ``"RUN_ID?_step=N"`` (``resume_from``, ``fork_from``) as a run id and a step."""
    match = _AT_STEP_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise UsageError(f"{what}={value!r} is not a run and a step: write it as "
                         f"'RUN_ID?_step=N' with N >= 0, e.g. {what}='abc123?_step=1000'.")
    return run_id(match["id"]), int(match["step"])


def _number(pattern: re.Pattern[str], name: object) -> int | None:
    match = pattern.fullmatch(name) if isinstance(name, str) else None
    return int(match[1]) if match else None


def log_seq(name: object) -> int | None:
    """The sequence number of a history log file name (``<seq>.jsonl``), None for any other name."""
    return _number(_LOG_RE, name)


def segment_seq(name: object) -> int | None:
    """The sequence number of a segment file name (``<seq>.parquet``), None for any other name."""
    return _number(_SEGMENT_RE, name)


def chunk_offset(name: object) -> int | None:
    """The byte offset of a log chunk's name (``<offset>.jsonl``, 16 digits), None for any other."""
    return _number(_CHUNK_RE, name)
