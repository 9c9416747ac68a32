"""Sync: copy a store's runs to a remote store, once or watching. One role per module:

- ``_upload``: one run's incremental upload and its state file; the order of writes that keeps
  the remote readable at every instant, and why a rerun after a kill is harmless.
- ``_syncer``: which runs, one pass over them (``jobs`` runs at a time, each failure pending),
  status, --clean.
- ``_watch``: the daemon loop (file events or polling, backoff while the remote is down).

``_watch`` imports ``_syncer``, which imports ``_upload``; nothing here imports this package's
users, and nothing prints (the CLI does).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from ..errors import SyncError
from . import _watch
from ._syncer import Progress, RunStatus, Syncer, SyncReport, human_bytes, open_syncer
from ._watch import watch

__all__ = ["Progress", "RunStatus", "SyncReport", "Syncer", "human_bytes", "open_syncer", "sync",
           "watch"]


def sync(to: str | os.PathLike[str], *, dir: str | os.PathLike[str] | None = None,
         runs: Iterable[str] | str | None = None, watch: bool = False, poll: float | None = None,
         clean: bool = False, retries: int = 4, jobs: int | None = None,
         progress: Progress | None = None, stop: threading.Event | None = None,
         max_lag: float = _watch.DEFAULT_MAX_LAG) -> SyncReport:
    """Upload what is pending (or keep uploading, with ``watch``); see localtrack.sync."""
    syncer = open_syncer(to, dir, runs, clean=clean, retries=retries, jobs=jobs, progress=progress,
                         stop=stop)
    with syncer:
        if watch:
            return _watch.watch(syncer, poll=poll, max_lag=max_lag)
        syncer.check()
        report = syncer.run_once()
    if report.pending:
        lines = "\n".join(f"  {path}: {why}" for path, why in sorted(report.pending.items()))
        raise SyncError(f"{len(report.pending)} run(s) not fully synced to {report.remote}:\n{lines}\n"
                        "Run the same sync again to continue where it stopped.",
                        pending=report.pending)
    return report
