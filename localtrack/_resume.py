"""The resume contract as a pure decision: (mode, id given, run exists) -> create or resume.

"auto" is turned into an id and "allow" by the caller (it reads the pointers of
this directory and job, and claims one run through its lock); whether a claimed
run is continued or forgotten is ``claim``; everything else is decided here,
before any byte is written.
"""

from __future__ import annotations

import enum

from .errors import RunExistsError, RunNotFoundError, UsageError


class Outcome(enum.Enum):
    CREATE = "create"
    RESUME = "resume"


def check_mode(mode: str | None, id_given: bool) -> None:
    """Reject combinations that can never work (before locking anything)."""
    if mode in ("must", "allow") and not id_given:
        raise UsageError(f"resume={mode!r} needs a run id: pass id=... or set LOCALTRACK_RUN_ID, "
                         "or use resume='auto' to resume the last run started in this directory.")


def decide(mode: str | None, exists: bool, *, project: str, run_id: str) -> Outcome:
    where = f"Run {run_id!r} in project {project!r}"
    if mode == "must":
        if not exists:
            raise RunNotFoundError(f"{where} does not exist, and resume='must' needs it; check the "
                                   "id and dir=, or use resume='allow'.", project=project,
                                   run_id=run_id)
        return Outcome.RESUME
    if mode in ("allow", "auto"):
        return Outcome.RESUME if exists else Outcome.CREATE
    if exists:
        hint = ("resume='never' forbids reusing it" if mode == "never"
                else "a new run cannot reuse it")
        raise RunExistsError(f"{where} already exists and {hint}; pass resume='allow' or "
                             "resume='must' to continue it, or choose another id.",
                             project=project, run_id=run_id)
    return Outcome.CREATE


class Claim(enum.Enum):
    """What auto-resume does with one run its pointers name, once it holds that run's lock."""

    RESUME = "resume"  # crashed, failed or preempted: continue it
    FORGET = "forget"  # gone, or finished cleanly (a finish() died before removing the pointer)


def claim(exists: bool, ended: str | None) -> Claim:
    """``ended`` is how the run ended (``_store.end_state``); a run whose writer lives is never
    asked about: its lock cannot be taken, so auto-resume passes over it."""
    return Claim.RESUME if exists and ended != "finished" else Claim.FORGET
