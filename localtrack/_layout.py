"""The on-disk format version and pure path arithmetic (no I/O).

    <root>/<project>/runs/<id>/run.json            identity and static metadata
                               config.json         the run config (atomically replaced)
                               summary.json        values the user set in run.summary
                               events.jsonl        framed lifecycle events (append-only)
                               manifest.json       sealed segments (atomically replaced)
                               wal/<seq>.jsonl     framed history records (append-only)
                               segments/<seq>.parquet   sealed, immutable history
                               seal.lock, seal.again, seal.log   the sealer's lock, request mark, log
                               labels/<label>/     a shared run's history of one writer (format 6):
                                                   manifest.json, wal/, segments/, events.jsonl, seal.*
                               locks/<label>.lock  that writer's lock
    <root>/<project>/locks/<id>.lock               writer lock; holds the holder's pid/host
    <root>/<project>/auto/<key-hash>/<id>.json     auto-resume pointers: one per run started with
                                                   that (working directory, job identity)
    <root>/<project>/auto/<cwd-hash>.json          a single pointer of format 3 and before (read)

See docs/format.md; bump FORMAT_VERSION on any incompatible change.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ._naming import ProjectName, RunId

FORMAT_VERSION = 3  # what a run is written as, unless it uses a later feature:
REWOUND_FORMAT = 4  # a run whose manifest holds rewinds (older readers would show their archive)
MEDIA_FORMAT = 5  # a run with media checked by XXH3 (older readers would take them for damaged)
SHARED_FORMAT = 6  # a run of several writers (init(mode="shared")): its history is per label
KNOWN_FORMAT = 6  # the newest format this version reads
DEFAULT_DIR = "localtrack-runs"
REMOTE_ID = ".localtrack-remote.json"  # at the root of a store that `localtrack sync` wrote


def project_dir(root: Path, project: ProjectName) -> Path:
    return root / project


def runs_dir(root: Path, project: ProjectName) -> Path:
    return root.joinpath(project, "runs")


def run_dir(root: Path, project: ProjectName, rid: RunId) -> Path:
    return root.joinpath(project, "runs", rid)  # one parse: listings call it per run


def run_dir_text(root: str, project: ProjectName, rid: RunId) -> str:
    """``str(run_dir(Path(root), project, rid))`` for an absolute root, without making a Path."""
    return os.path.join(root, project, "runs", rid)


def locks_dir(root: Path, project: ProjectName) -> Path:
    return root.joinpath(project, "locks")


def lock_path(root: Path, project: ProjectName, rid: RunId) -> Path:
    return root.joinpath(project, "locks", f"{rid}.lock")


def lock_of_run_dir(rdir: Path) -> Path:
    """The writer lock of the run stored in ``rdir`` (a run directory made by run_dir)."""
    return rdir.parent.parent / "locks" / f"{rdir.name}.lock"


def labels_dir(rdir: Path) -> Path:
    """The folder of a shared run's writers (one history per label)."""
    return rdir / "labels"


def label_dir(rdir: Path, label: str) -> Path:
    """One writer's history of a shared run: laid out as a run's history (manifest, wal/,
    segments/), so the writer, the sealer and the readers use it as they use a run folder;
    its lock is where lock_of_run_dir() looks: ``<rdir>/locks/<label>.lock``."""
    return rdir / "labels" / label


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def auto_dir(root: Path, project: ProjectName, cwd: str, key: str | None) -> Path:
    """The pointers of one working directory and job identity (``_cluster.identity``), keyed by
    the directory's bytes (the same under any locale); without an identity, by those alone."""
    data = os.fsencode(cwd) if key is None else os.fsencode(cwd) + b"\0" + key.encode()
    return root / project / "auto" / _digest(data)


def auto_pointer_path(adir: Path, rid: RunId) -> Path:
    """The pointer of one run in an auto_dir (removed when that run finishes cleanly)."""
    return adir / f"{rid}.json"


def legacy_auto_pointer_path(root: Path, project: ProjectName, cwd: str) -> Path:
    """The one pointer per working directory that stores before auto_dir had."""
    return root / project / "auto" / f"{_digest(os.fsencode(cwd))}.json"


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
