"""The one exception tree of localtrack.

    LocaltrackError
    ├── UsageError                  a call that cannot work as written
    │   ├── InvalidNameError        (also ValueError) a bad project/run id or name
    │   ├── InvalidValueError       (also ValueError) a logged key or value that cannot be stored
    │   ├── UnsupportedTypeError    (also TypeError) a logged value of a type that cannot be stored
    │   ├── UnknownArgumentError    (also TypeError) an argument init() does not take
    │   ├── RunStateError           a method called in the wrong run state
    │   ├── SweepConfigError        (also ValueError) a sweep config that cannot run
    │   └── ArtifactError           an artifact's file is missing, changed or loops (nothing logged)
    ├── ArtifactNotFoundError       use_artifact() or Api.artifact() on a missing name/version/alias
    ├── RunNotFoundError            resume="must" or Api.run() on a missing run
    ├── SweepNotFoundError          an agent or Api.sweep() on a missing sweep
    ├── RunStoppedError             a sweep's early termination stopped the run an agent runs
    ├── RunExistsError              resume="never" on an existing run
    ├── RunLockedError              another live process writes that run
    ├── LockUnavailableError        the file system cannot lock (e.g. Lustre noflock)
    ├── StorageError                an OS error while writing (disk full, read-only)
    ├── CorruptRunError             a file of a run (or sweep) fails its checksum or cannot be parsed
    ├── RemoteError                 a sync remote or remote store cannot be reached or refused a request
    └── SyncError                   sync left runs pending, or another sync to that remote is running

Context (project, run, path, holder) travels as keyword-only attributes so
callers can act on it without parsing messages.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactError",
    "ArtifactNotFoundError",
    "CorruptRunError",
    "InvalidNameError",
    "InvalidValueError",
    "LocaltrackError",
    "LockUnavailableError",
    "RemoteError",
    "RunExistsError",
    "RunLockedError",
    "RunNotFoundError",
    "RunStoppedError",
    "RunStateError",
    "StorageError",
    "SweepConfigError",
    "SweepNotFoundError",
    "SyncError",
    "UnknownArgumentError",
    "UnsupportedTypeError",
    "UsageError",
]


class LocaltrackError(Exception):
    """Root of every error localtrack raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        project: str | None = None,
        run_id: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.project = project
        self.run_id = run_id
        self.path = path


class UsageError(LocaltrackError):
    """The call cannot work as written (bad argument combination, no active run)."""


class InvalidNameError(UsageError, ValueError):
    """A project name, run id or key is not allowed."""


class InvalidValueError(UsageError, ValueError):
    """A logged key or value cannot be stored (bad key, int out of range, key collision)."""


class UnsupportedTypeError(UsageError, TypeError):
    """A logged value has a type localtrack cannot store."""


class UnknownArgumentError(UsageError, TypeError):
    """A keyword argument init() does not take (a TypeError, as Python's own would be: code
    written for several W&B versions catches it to retry without a newer argument)."""


class RunStateError(UsageError):
    """A method was called in a state that does not allow it (e.g. log after finish)."""


class SweepConfigError(UsageError, ValueError):
    """A sweep config is invalid; the message names the offending key."""


class SweepNotFoundError(LocaltrackError):
    """The sweep asked for does not exist in the store."""


class ArtifactError(UsageError):
    """An artifact cannot be logged as asked (a file missing or changed while being added, a
    symbolic link loop, a name with another type); nothing of it was made visible."""


class ArtifactNotFoundError(LocaltrackError):
    """The artifact, version or alias asked for does not exist in the store."""


class RunNotFoundError(LocaltrackError):
    """The run asked for does not exist in the store."""


class RunStoppedError(LocaltrackError):
    """A sweep's early termination stopped this run: raised inside the function an agent runs
    (as W&B's agent raises in it), so it ends and the agent goes on to its next job."""

    def __init__(self, message: str = "The sweep's early termination (hyperband) stopped this "
                 "run: its metric was below the band's threshold. Nothing to fix; the agent "
                 "goes on with its next job.", **kw: Any) -> None:
        super().__init__(message, **kw)


class RunExistsError(LocaltrackError):
    """resume="never" was asked for an id that already exists."""


class RunLockedError(LocaltrackError):
    """Another live process holds the run's writer lock."""

    def __init__(self, message: str, *, holder: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.holder = holder or {}


class LockUnavailableError(LocaltrackError):
    """The file system refuses file locks, so exclusion cannot be guaranteed."""


class StorageError(LocaltrackError, OSError):
    """Writing to the store failed (disk full, read-only, quota); stored data is intact."""


class CorruptRunError(LocaltrackError):
    """A file of a run is damaged in a way that cannot be repaired silently."""

    def __init__(self, message: str, *, offset: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.offset = offset


class RemoteError(LocaltrackError):
    """A remote store failed (unreachable, missing bucket, refused credentials); local data is intact.

    ``url`` is the remote without credentials; ``transient`` says whether a retry may help.
    """

    def __init__(self, message: str, *, url: str | None = None, transient: bool = False,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.url = url
        self.transient = transient


class SyncError(LocaltrackError):
    """Sync could not finish: ``pending`` maps each run still pending to the reason."""

    def __init__(self, message: str, *, pending: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.pending = pending or {}
