"""The only place a user string becomes a validated project name or run id.

Validated values are distinct types (``ProjectName``, ``RunId``) so that only
they build paths: a run id can never walk out of the store.
"""

from __future__ import annotations

import re
import secrets
from typing import NewType, TypedDict

from .errors import InvalidNameError

ProjectName = NewType("ProjectName", str)
RunId = NewType("RunId", str)

MAX_LEN = 128
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class Ctx(TypedDict, total=False):
    """Which run an error is about; passed along as ``**ctx`` down to the error."""

    project: str
    run_id: str


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


def new_run_id() -> RunId:
    """A fresh random id, 8 characters of [a-z0-9] like W&B's."""
    return RunId("".join(secrets.choice(_ID_ALPHABET) for _ in range(8)))


def parse_path(value: str) -> tuple[ProjectName, RunId]:
    """Split ``"project/id"`` into validated parts."""
    project, sep, rid = value.partition("/")
    if not sep:
        raise InvalidNameError(f"Expected 'PROJECT/RUN_ID', got {value!r}.")
    return project_name(project), run_id(rid)
