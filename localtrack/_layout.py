"""The on-disk format version and pure path arithmetic (no I/O).

    <root>/<project>/runs/<id>/run.json            identity and static metadata
                               config.json         the run config (atomically replaced)
                               summary.json        values the user set in run.summary
                               events.jsonl        framed lifecycle events (append-only)
                               manifest.json       sealed segments (atomically replaced)
                               wal/<seq>.jsonl     framed history records (append-only)
                               segments/<seq>.parquet   sealed, immutable history
                               seal.lock, seal.again, seal.log   the sealer's lock, request mark, log
    <root>/<project>/locks/<id>.lock               writer lock; holds the holder's pid/host
    <root>/<project>/auto/<cwd-hash>.json          auto-resume pointer for one working directory

See docs/format.md; bump FORMAT_VERSION on any incompatible change.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ._naming import ProjectName, RunId

FORMAT_VERSION = 3
DEFAULT_DIR = "localtrack-runs"
REMOTE_ID = ".localtrack-remote.json"  # at the root of a store that `localtrack sync` wrote


def project_dir(root: Path, project: ProjectName) -> Path:
    return root / project


def runs_dir(root: Path, project: ProjectName) -> Path:
    return root / project / "runs"


def run_dir(root: Path, project: ProjectName, rid: RunId) -> Path:
    return root / project / "runs" / rid


def lock_path(root: Path, project: ProjectName, rid: RunId) -> Path:
    return root / project / "locks" / f"{rid}.lock"


def lock_of_run_dir(rdir: Path) -> Path:
    """The writer lock of the run stored in ``rdir`` (a run directory made by run_dir)."""
    return rdir.parent.parent / "locks" / f"{rdir.name}.lock"


def auto_pointer_path(root: Path, project: ProjectName, cwd: str) -> Path:
    """The pointer of one working directory, keyed by its bytes (the same under any locale)."""
    digest = hashlib.sha256(os.fsencode(cwd)).hexdigest()[:24]
    return root / project / "auto" / f"{digest}.json"


def path_text(path: str) -> str:
    """``path`` as text that JSON can hold: a directory name that is not UTF-8 reaches Python
    with lone surrogates (os.getcwd(), sys.argv), which orjson refuses; its bytes become
    ``\\xff`` escapes, for people to read (nothing parses a stored path back)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def wal_path(rdir: Path, seq: int) -> Path:
    return rdir / "wal" / f"{seq:08d}.jsonl"


def segment_name(seq: int) -> str:
    return f"{seq:08d}.parquet"


def seq_of(path: Path) -> int | None:
    """Sequence number of a wal/segment file name, or None for anything else."""
    stem = path.name.split(".", 1)[0]
    return int(stem) if stem.isdigit() and len(stem) == 8 else None
