"""``localtrack doctor``: report what is wrong with stored runs and, with --fix, repair what can be.

Repairs are the ones a writer makes on open anyway, done for runs nobody will
reopen: cut a torn log tail (keeping a ``.broken`` copy), delete orphan
segments, log files a manifest already covers, and temp files. Damage with
good data after it (a bad record in the middle, a missing segment, a garbled
metadata file) is reported with the file and offset, never "fixed" by
dropping data. A live run is only inspected. A shared run's writers' folders
(labels/<label>/) are checked and repaired as a run's history each, a live
writer's only inspected. A folder that is not a run (a
stray copy, a bad name, no run.json) and a run that cannot be read at all are
findings too: one of them never stops the check of the others. A copy that `localtrack sync`
wrote is checked the way readers read it, and never repaired (sync again to do that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import (
    _blobs,
    _durable,
    _frames,
    _fsutil,
    _labels,
    _layout,
    _locks,
    _naming,
    _sealer,
    _segments,
    _store,
    _wal,
)
from ._artifacts import GRACE_SECONDS, artifacts_dir, orphan_blobs
from ._remotes._dir import open_file
from .errors import CorruptRunError, LocaltrackError, RunNotFoundError, UsageError

_SEALER_WAIT = 60.0
_BUILDING = re.compile(re.escape(_fsutil.TMP_PREFIX) + r"(.+)-[0-9a-f]{8}")  # see _start._writer


@dataclass
class Finding:
    run: str
    path: str
    problem: str
    fixable: bool
    fixed: bool = False


def check_run(root: Path, project: _naming.ProjectName, rid: _naming.RunId,
              fix: bool = False) -> list[Finding]:
    """Everything wrong with one run; with ``fix``, repair the fixable part (not for live runs).

    A sealer process may still be at work on a run that just finished: its half-written
    segment would look like a dead sealer's leftovers, so the check waits for it.
    """
    rdir = _layout.run_dir(root, project, rid)
    try:
        with _store.reading(rdir, project=project, run_id=rid):
            with _sealer.hold(rdir, timeout=_SEALER_WAIT, create=False):
                return _check_run(project, rid, rdir, fix)
    except TimeoutError as exc:
        return [Finding(f"{project}/{rid}", str(rdir), f"not checked: {exc}", False)]
    except LocaltrackError as exc:  # e.g. the run folder cannot be read: the next run can
        return [Finding(f"{project}/{rid}", exc.path or str(rdir), f"not checked: {exc}", False)]


def _check_run(project: _naming.ProjectName, rid: _naming.RunId, rdir: Path,
               fix: bool) -> list[Finding]:
    name = f"{project}/{rid}"
    ctx: _naming.Ctx = {"project": project, "run_id": rid}
    found: list[Finding] = []
    meta = None
    try:
        meta = _store.read_meta(rdir, **ctx)
    except LocaltrackError as exc:
        found.append(Finding(name, str(rdir / _store.RUN_JSON), str(exc), False))
    for file, what in ((_store.CONFIG_JSON, "config"), (_store.SUMMARY_JSON, "summary")):
        try:
            _store.read_tree(rdir / file, what, **ctx)
        except LocaltrackError as exc:
            found.append(Finding(name, str(rdir / file), str(exc), False))
    found += _check_history(name, rdir, fix, ctx)
    if meta is not None and _labels.is_shared(meta):
        found += _check_labels(name, rdir, fix, ctx)
    return found


def _check_labels(name: str, rdir: Path, fix: bool, ctx: _naming.Ctx) -> list[Finding]:
    """A shared run's writers (see _labels): each label's folder is checked and repaired as a
    run's history, under its own seal lock, unless its writer lives; a folder a writer died
    building (``labels/.tmp-<label>-<hex>``) is removed once its label's folder exists (no
    writer builds that label again; before, the label's next start removes it)."""
    found: list[Finding] = []
    names = _labels.labels(rdir)
    for label in names:
        ldir = _layout.label_dir(rdir, label)
        where = f"{name} (writer {label!r})"
        try:
            with _sealer.hold(ldir, timeout=_SEALER_WAIT, create=False):
                found += _check_history(where, ldir, fix, ctx)
        except TimeoutError as exc:
            found.append(Finding(where, str(ldir), f"not checked: {exc}", False))
    folder = rdir / "labels"
    dead = sorted(p for p in folder.iterdir() if p.name.startswith(_fsutil.TMP_PREFIX)) \
        if folder.is_dir() else []
    for path in dead:
        built = _BUILDING.fullmatch(path.name)
        done = built is not None and built.group(1) in names
        finding = Finding(name, str(path), "the folder of a writer that died while creating its "
                          "label" + ("" if done else " (removed by that label's next start)"), done)
        if fix and done:
            _fsutil.remove_tree(path)
            finding.fixed = True
        found.append(finding)
    return found


def _check_history(name: str, rdir: Path, fix: bool, ctx: _naming.Ctx) -> list[Finding]:
    """A run's history folder (a run's, or a shared run's label's): its manifest, segments,
    logs, events and temp files; with ``fix``, the repairs a writer makes when it opens it,
    unless its writer lives (holds the lock _layout.lock_of_run_dir names)."""
    found: list[Finding] = []

    def report(path: Path, problem: str, fixable: bool) -> Finding:
        finding = Finding(name, str(path), problem, fixable)
        found.append(finding)
        return finding

    try:
        manifest = _segments.load_manifest(rdir, **ctx)
    except LocaltrackError as exc:
        report(rdir / _segments.MANIFEST, str(exc), False)
        return found
    named = set()
    for seg in manifest["segments"]:
        path = rdir / "segments" / seg["file"]
        named.add(seg["file"])
        problem = _segment_problem(path, seg["rows"], rdir)
        if problem:
            report(path, f"{problem}; {_segments.steps_text(seg)} need a copy from a sync "
                   "remote or a backup", False)
    seg_dir = rdir / "segments"
    stray = [p for p in seg_dir.iterdir() if p.suffix == ".parquet" and p.name not in named] \
        if seg_dir.is_dir() else []
    for path in stray:
        report(path, "orphan segment (a sealer died before the manifest named it; the log "
               "still holds its steps)", True)
    for seq in _segments.wal_seqs(rdir):
        path = _layout.wal_path(rdir, seq)
        if seq <= manifest["sealed_through"]:
            report(path, "log file already sealed (a sealer died before deleting it)", True)
    temps = [p for d in (rdir, seg_dir, rdir / "wal") if d.is_dir() for p in d.iterdir()
             if p.name.startswith(_fsutil.TMP_PREFIX)]
    for path in temps:
        report(path, "temp file of a writer that died", True)
    torn: list[tuple[Path, int]] = []
    seqs = [s for s in _segments.wal_seqs(rdir) if s > manifest["sealed_through"]]
    last_log = _layout.wal_path(rdir, seqs[-1]) if seqs else None
    mark = _durable.read(rdir)
    hole = False  # a history log before this one was cut short by a crash
    for path, durable in [(_layout.wal_path(rdir, s), _durable.durable_offset(mark, s)) for s in seqs] \
            + [(rdir / _store.EVENTS, _durable.ALL)]:
        if not path.exists():
            continue
        if hole and path.name != _store.EVENTS:
            report(path, "follows a log file a crash cut short: its steps would follow a hole "
                   "(never synced; set aside as .broken)", True)
            continue
        data = path.read_bytes()
        try:
            good_end = _wal.check(data, path, durable=durable).end
        except LocaltrackError as exc:
            report(path, str(exc), False)
            continue
        junk = _frames.data_end(data) - good_end  # NUL padding of a mapped log is no damage
        if junk:
            report(path, f"torn tail of {junk} bytes at byte {good_end} (a writer "
                   "died mid-append, or power was lost before an fsync; those bytes were never "
                   "synced)", True)
            torn.append((path, good_end))
            hole = path.name != _store.EVENTS
        elif path.name != _store.EVENTS and _durable.lost_end(data, good_end, durable,
                                                               path == last_log):
            report(path, "a closed log file lost its end to a power cut (its last pages were "
                   "never synced)", True)
            hole = True
        elif path.name != _store.EVENTS and durable < good_end and (
                bad := _blobs.first_bad_ref(rdir, data[durable:], good_end - durable)) is not None:
            report(path, f"the row at byte {durable + bad} refers to media that a crash lost "
                   "(never synced): a torn tail", True)
            hole = True
    if fix and any(f.fixable for f in found):
        if _locks.is_held(_layout.lock_of_run_dir(rdir)):
            for f in found:
                f.problem += " [not repaired: the run is live]"
        else:
            _durable.repair(rdir, seqs, warn=False, **ctx)
            for path, good_end in torn:  # the events (the logs are repaired as a writer does)
                if path.name == _store.EVENTS:
                    _wal.cut_torn_tail(path, good_end, warn=False, **ctx)
            _segments.cleanup(rdir, manifest, everything=True)
            for path in temps:
                _fsutil.unlink(path)
            for f in found:
                f.fixed = f.fixable
    return found


def _segment_problem(path: Path, rows: int, rdir: Path) -> str | None:
    """Read through an open file, as readers do: no link is followed, and pyarrow never sees
    the path (it cannot encode a folder name that is not UTF-8)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        return "segment named in the manifest is missing"
    try:
        with open_file(path, rdir) as fh:
            got = pq.ParquetFile(fh).metadata.num_rows
    except (pa.ArrowException, OSError, CorruptRunError) as exc:
        return f"segment cannot be read ({exc})"
    return None if got == rows else f"segment holds {got} rows, the manifest says {rows}"


def check_store(root: Path, targets: list[str] | None = None, fix: bool = False) -> list[Finding]:
    """Check every run under ``root`` (or the given ``project`` / ``project/id`` targets).

    The runs are the ones _store lists; every folder it skips is a finding of its own.
    """
    found: list[Finding] = []
    runs: list[tuple[_naming.ProjectName, _naming.RunId]] = []
    projects: list[_naming.ProjectName] = []
    for target in targets or []:
        if "/" in target:
            project, rid = _naming.parse_path(target)
            if not _store.run_exists(root, project, rid):
                raise RunNotFoundError(f"No run {rid!r} in project {project!r} under "
                                       f"{str(root)!r}.", project=project, run_id=rid)
            runs.append((project, rid))
        else:
            project = _naming.project_name(target)
            if not _layout.runs_dir(root, project).is_dir():
                raise UsageError(f"No project {project!r} under {str(root)!r}.")
            projects.append(project)
    if not targets:
        projects, skipped = _store.list_projects(root)
        found += [Finding(s.where, s.path, s.problem, False) for s in skipped]
    for project in projects:
        ids, skipped = _store.list_runs(root, project)
        found += [Finding(s.where, s.path, s.problem, False) for s in skipped]
        runs += [(project, rid) for rid in ids]
    copy = (root / _layout.REMOTE_ID).exists()
    if copy and fix:
        raise UsageError(f"{str(root)!r} is a copy that `localtrack sync` wrote: --fix repairs "
                         "the store runs are written to; run it there and sync again.")
    for project, rid in runs:
        found += _check_copy(root, project, rid) if copy else check_run(root, project, rid, fix)
    for project in projects:
        found += check_artifacts(root, project, fix)
    return found


def collect_garbage(root: Path, projects: list[str] | None, older_than: float | None,
                    dry_run: bool) -> list[Finding]:
    """``localtrack gc``: what no one will read again, deleted (unless ``dry_run``): artifact
    blobs no version names, older than ``older_than`` seconds (default GRACE_SECONDS). The
    same collection as doctor --fix, with the grace chosen; a run's leftovers stay doctor's
    (they come with repairs)."""
    if (root / _layout.REMOTE_ID).exists():
        raise UsageError(f"{str(root)!r} is a copy that `localtrack sync` wrote: a blob there "
                         "may wait for its manifest's upload. Collect in the source store.")
    if projects:
        names = [_naming.project_name(p) for p in projects]
        found: list[Finding] = []
    else:
        names, skipped = _store.list_projects(root)
        found = [Finding(s.where, s.path, s.problem, False) for s in skipped]
    for project in names:
        found += check_artifacts(root, project, not dry_run,
                                 GRACE_SECONDS if older_than is None else older_than)
    return found


def check_artifacts(root: Path, project: _naming.ProjectName, fix: bool,
                    grace: float = GRACE_SECONDS) -> list[Finding]:
    """Blobs no artifact version names (a writer died before its manifest), collected with
    ``fix`` once older than ``grace`` seconds; a damaged manifest stops the collection."""
    where = f"{project}/artifacts"
    try:
        orphans, damaged = orphan_blobs(root, project, grace=grace)
    except OSError as exc:
        return [Finding(where, str(artifacts_dir(root, project)),
                        f"not checked: {exc}", False)]
    found = [Finding(where, exc.path or "", f"{exc} (no orphan blob is collected meanwhile)",
                     False) for exc in damaged]
    for path in orphans:
        try:
            size = path.stat().st_size
        except OSError:  # gone meanwhile (another collection)
            size = 0
        finding = Finding(where, str(path), f"orphan artifact blob of {size} bytes (a writer "
                          "died before its version's manifest; no version names it)", True)
        if fix:
            _fsutil.unlink(path)
            finding.fixed = True
        found.append(finding)
    return found


def _check_copy(root: Path, project: _naming.ProjectName, rid: _naming.RunId) -> list[Finding]:
    """A run of a sync copy (its logs are folders of chunks): is it readable as readers read it?
    Nothing there is repaired: syncing again from the source store does that."""
    from ._query import ApiRun

    try:
        run = ApiRun(root, project, rid)
        _ = run.last_step, run.summary, run.config
        run.history()
    except LocaltrackError as exc:
        return [Finding(f"{project}/{rid}", exc.path or str(_layout.run_dir(root, project, rid)),
                        f"cannot be read from this sync copy: {exc} Sync again from the source "
                        "store to repair it.", False)]
    return []
