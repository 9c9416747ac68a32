"""Opening a run for writing: resolve the resume mode, take the run's lock, create or reopen.

Nothing is written before the resume decision is known and the lock is held: a refused
init() (a typo'd id with resume="must", a run another process writes, a synced store)
leaves the store as it was. The auto-resume pointer is written last, once the run is open.

resume="auto" without an id continues a run started with the same working directory and job
identity (``_cluster``): it tries the runs the pointers name, newest first, and takes the first
whose lock it gets without waiting. A run whose writer lives is passed over, so concurrent
processes each get a run (a new one when none is free), and restarts after a crash of all of
them each claim one distinct crashed run. The flock is the only arbiter: a process killed at
any instant leaves pointer files that name runs, and a dead process's lock is free.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _fsutil, _labels, _layout, _locks, _naming, _resume, _segments, _settings, _store
from ._codec import dumps, encode_tree
from ._locks import RunLock
from ._run import Run, Shared
from ._settings import Settings
from .errors import RunLockedError, RunNotFoundError, UsageError

log = logging.getLogger("localtrack")


def start(settings: Settings, fields: dict[str, Any], config: dict[str, Any] | None,
          on_close: Callable[[Run], None], resume_from: str | None = None,
          fork_from: str | None = None) -> Run:
    """Open or create the run the settings ask for, holding its lock; ``on_close(run)`` is
    called when finish() has released it. ``resume_from="RUN_ID?_step=N"``: resume that run
    rewound to step N (the rows after it archived, see LogStream._rewind);
    ``fork_from="RUN_ID?_step=N"``: a new run whose history starts with that run's through N."""
    if settings.shared is not None:
        return _start_shared(settings, fields, config, on_close, resume_from, fork_from)
    root, project = settings.root, settings.project
    mode, rid = settings.resume, settings.run_id
    rewind_to: int | None = None
    fork: tuple[_naming.RunId, int] | None = None
    if resume_from is not None:
        if fork_from is not None:
            raise UsageError("resume_from continues a run and fork_from starts a new one: pass "
                             "one of them.", project=project)
        rid, rewind_to = _rewind_target(resume_from, mode, rid)
        mode = "must"
    elif fork_from is not None:
        fork = _naming.run_at_step(fork_from, "fork_from")
        if mode not in (None, "never"):
            raise UsageError(f"fork_from={fork_from!r} starts a new run; resume={mode!r} would "
                             "continue one. Drop resume=.", project=project, run_id=fork[0])
        if not _layout.run_dir(root, project, fork[0]).exists():
            raise RunNotFoundError(f"Cannot fork run {fork[0]!r} in project {project!r}: it does "
                                   "not exist; check the id and dir=.", project=project,
                                   run_id=fork[0])
    _refuse_synced(root, project, rid)
    adir = _layout.auto_dir(root, project, os.getcwd(), settings.resume_key)
    claimed: _store.Pointer | None = None
    lock: RunLock | None = None
    if mode == "auto" and rid is None:
        found = _claim(settings, adir)
        if found is not None:
            claimed, lock = found
            rid = claimed.rid
    _resume.check_mode(mode, rid is not None)
    rid = rid or _naming.new_run_id()
    ctx = {"project": project, "run_id": rid}
    if mode == "must":  # a typo'd id must leave nothing behind, not even a lock file
        _resume.decide(mode, _layout.run_dir(root, project, rid).exists(), **ctx)
    if lock is None:
        lock = RunLock(_layout.lock_path(root, project, rid), **ctx)
        lock.acquire()
    pointer = _layout.auto_pointer_path(adir, rid)
    try:
        run = _open(settings, rid, fields, config, lock, pointer, on_close, mode, rewind_to, fork)
        with _fsutil.storage_errors("write the auto-resume pointer", pointer, **ctx):
            _store.write_pointer(pointer, rid, settings.resume_key)
            if claimed is not None and claimed.path != pointer:
                # A format-3 pointer, now replaced. If we die before this: both name this run.
                _fsutil.unlink(claimed.path)
    except BaseException:
        lock.release()
        raise
    return run


def _refuse_synced(root: Path, project: _naming.ProjectName, rid: _naming.RunId | None) -> None:
    """Refused before any lock file is created there (a root that cannot be looked at raises)."""
    if _store.is_store(root) and (root / _layout.REMOTE_ID).exists():
        raise UsageError(f"{root} is a store written by `localtrack sync`; synced stores are "
                         "read-only. Resume the original run, or read this one with "
                         "localtrack.Api.", project=project, run_id=rid)


def _start_shared(settings: Settings, fields: dict[str, Any], config: dict[str, Any] | None,
                  on_close: Callable[[Run], None], resume_from: str | None,
                  fork_from: str | None) -> Run:
    """init(mode="shared"): open this writer's part of a run several processes write (see
    _labels). The primary creates or resumes the run as start() does, holding the run's lock;
    every writer, the primary too, holds its label's lock and appends to its label's history.
    Another writer waits (LOCALTRACK_SHARED_WAIT) for the primary to have created the run."""
    assert settings.shared is not None
    label, primary = settings.shared
    root, project, rid = settings.root, settings.project, settings.run_id
    if rid is None:
        raise UsageError('mode="shared" needs an id: every writer (each rank of the job) opens '
                         "the same run, so they must agree on its id. Pass the same id= to each "
                         "(or set LOCALTRACK_RUN_ID / WANDB_RUN_ID), e.g. from the job's id.",
                         project=project)
    ctx: _naming.Ctx = {"project": project, "run_id": rid}
    if resume_from is not None or fork_from is not None:
        raise UsageError('mode="shared" cannot rewind or fork a run (each writer has its own '
                         "history): drop resume_from=/fork_from=.", **ctx)
    _refuse_synced(root, project, rid)
    pointer = _layout.auto_pointer_path(  # never written: the writers' shared id is the resume key
        _layout.auto_dir(root, project, os.getcwd(), settings.resume_key), rid)
    if primary:
        lock = RunLock(_layout.lock_path(root, project, rid), **ctx)
        lock.acquire()
        mode = settings.resume if settings.resume in ("must", "never") else "allow"
        try:
            if mode == "must":
                _resume.decide(mode, _layout.run_dir(root, project, rid).exists(), **ctx)
            fields = {**fields, "format": _layout.SHARED_FORMAT, "shared": {"primary": label}}
            return _open(settings, rid, fields, config, lock, pointer, on_close, mode, None, None)
        except BaseException:
            lock.release()
            raise
    rdir = _layout.run_dir(root, project, rid)
    meta = _wait_for_primary(rdir, _settings.shared_wait(), label, ctx)
    shared, existed = _writer(rdir, label, primary, ctx)
    try:
        run = Run(settings=settings, rid=rid, rdir=rdir, meta=meta, lock=shared.lock,
                  pointer=pointer, resumed=existed, on_close=on_close, shared=shared)
        _record_start(run, settings)
    except BaseException:
        shared.lock.release()
        raise
    if config:
        run.config.update(config)  # (not stored: the primary owns the config; one warning)
    return run


def _wait_for_primary(rdir: Path, seconds: float, label: str, ctx: _naming.Ctx) -> dict[str, Any]:
    """The shared run's run.json, once its primary writer has created it (polled, bounded)."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.05) + 2):
        if (rdir / _store.RUN_JSON).exists():
            meta = _store.read_meta(rdir, project=ctx["project"], run_id=ctx["run_id"])
            if not _labels.is_shared(meta):
                raise UsageError(f"{_naming.run_label(ctx)} exists and was written by a single "
                                 'writer; mode="shared" cannot add writers to it. Use a new id.',
                                 **ctx)
            return meta
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    raise RunNotFoundError(f"Writer {label!r} of the shared {_naming.run_label(ctx)} waited "
                           f"{seconds:g} s for its primary writer to create the run, in vain. "
                           "Start one writer with x_primary=True (by default the one of rank 0: "
                           "RANK or SLURM_PROCID 0), with the same id and dir; or raise "
                           "LOCALTRACK_SHARED_WAIT.", **ctx)


def _writer(rdir: Path, label: str, primary: bool, ctx: _naming.Ctx) -> tuple[Shared, bool]:
    """This writer's label of a shared run: its lock held, its folder made if new (built under
    a temporary name and renamed into place, as a run's); and whether the folder existed."""
    lock = RunLock(rdir / "locks" / f"{label}.lock", **ctx)
    lock.acquire()  # RunLockedError: another live process writes under this label
    ldir = _layout.label_dir(rdir, label)
    try:
        existed = ldir.is_dir()
        if not existed:
            with _fsutil.storage_errors("create the writer's folder", ldir, **ctx):
                _fsutil.ensure_dir(ldir.parent)
                mine = re.compile(re.escape(f"{_fsutil.TMP_PREFIX}{label}-") + "[0-9a-f]{8}")
                for dead in ldir.parent.iterdir():  # a dead start's (ours: we hold the lock)
                    if mine.fullmatch(dead.name):
                        _fsutil.remove_tree(dead)
                tmp = ldir.parent / f"{_fsutil.TMP_PREFIX}{label}-{secrets.token_hex(4)}"
                (tmp / "wal").mkdir(parents=True)
                (tmp / "wal" / "durable").touch()  # nothing is durable yet (see _durable)
                _fsutil.fsync_dir(tmp / "wal")
                _fsutil.fsync_dir(tmp)
                _fsutil.rename_durable(tmp, ldir)
    except BaseException:
        lock.release()
        raise
    return Shared(label, ldir, lock, primary), existed


def _record_start(run: Run, settings: Settings) -> None:
    """The ``started``/``resumed`` event, with the host and the job's facts."""
    cluster = {k: dict(v) for k, v in settings.cluster.items()}
    event = "resumed" if run.resumed else "started"
    extra: dict[str, Any] = {"cluster": cluster} if cluster else {}
    if settings.shared is not None:
        extra["label"] = settings.shared[0]
    run._event(event, host=_locks.hostname(), **extra)


def _rewind_target(resume_from: str, mode: str | None,
                   rid: _naming.RunId | None) -> tuple[_naming.RunId, int]:
    """The run and step ``resume_from`` names, checked against the other arguments."""
    target, step = _naming.run_at_step(resume_from, "resume_from")
    if mode == "never":
        raise UsageError(f"resume_from={resume_from!r} continues run {target!r}, and "
                         "resume='never' forbids that; drop one of them.", run_id=target)
    if rid is not None and rid != target:
        raise UsageError(f"resume_from={resume_from!r} names run {target!r} but id={rid!r}; "
                         "resume_from continues the run it names: drop id= or make them equal.",
                         run_id=target)
    return target, step


def _open(settings: Settings, rid: _naming.RunId, fields: dict[str, Any],
          config: dict[str, Any] | None, lock: RunLock, pointer: Path,
          on_close: Callable[[Run], None], mode: str | None, rewind_to: int | None,
          fork: tuple[_naming.RunId, int] | None) -> Run:
    """Create or reopen the run (its lock is held) and record the start with the job's facts."""
    root, project = settings.root, settings.project
    ctx: _naming.Ctx = {"project": project, "run_id": rid}
    rdir = _layout.run_dir(root, project, rid)
    outcome = _resume.decide(mode, rdir.exists(), **ctx)
    cluster = {k: dict(v) for k, v in settings.cluster.items()}
    fields = {**fields, "cluster": cluster or None}  # the latest start's job; none outside one
    if outcome is _resume.Outcome.CREATE:
        encode_tree(config or {}, f"run {rid!r} in project {project!r}")  # validate first
        manifest: _segments.Manifest | None = None
        if fork is not None:  # the parent's history through the step, by reference
            parent, step = fork
            pdir = _layout.run_dir(root, project, parent)
            ref = _segments.fork_point(pdir, step, project=project, run_id=parent)
            manifest = {**_segments.empty_manifest(), "last_step": step, "last": ref["last"],
                        "parent": ref}
            if ref["last"] is None:  # computed when first needed (see _segments.manifest_last)
                manifest["keys"] = ref["keys"]
            config = {**_store.read_tree(pdir / _store.CONFIG_JSON, "config", project=project,
                                         run_id=parent), **(config or {})}
            fields = {**fields, "format": _layout.REWOUND_FORMAT,
                      "fork": {"project": project, "run": parent, "step": step}}
        _store.sweep_dead_creations(root, project)
        meta = _store.new_meta(project, rid, {k: v for k, v in fields.items() if v is not None})
        rdir = _store.create_run_dir(root, project, rid, meta, config or {}, manifest)
    else:
        meta = _store.read_meta(rdir, **ctx)
        if _labels.is_shared(meta) != (settings.shared is not None):
            raise UsageError(f"{_naming.run_label(ctx)} was written by "
                             + ("several writers: resume it with mode='shared'." if
                                _labels.is_shared(meta) else
                                "a single writer; mode='shared' cannot add writers to it. Use a "
                                "new id."), **ctx)
        changed = {k: v for k, v in fields.items() if v is not None and meta.get(k) != v}
        if meta.get("format", 1) < _layout.FORMAT_VERSION:  # this writer's lines are newer
            changed["format"] = _layout.FORMAT_VERSION
        if changed or (not cluster and "cluster" in meta):
            meta = {k: v for k, v in {**meta, **changed}.items() if k != "cluster" or cluster}
            _fsutil.atomic_write(rdir / _store.RUN_JSON, dumps(meta))
    shared = None
    if settings.shared is not None:  # the primary writer of a shared run: its label too
        _fsutil.sweep_tmp(rdir)  # (its history's cleanup sweeps the label's folder, not the run's)
        shared, _ = _writer(rdir, settings.shared[0], True, ctx)
    try:
        run = Run(settings=settings, rid=rid, rdir=rdir, meta=meta, lock=lock, pointer=pointer,
                  resumed=outcome is _resume.Outcome.RESUME, rewind_to=rewind_to,
                  on_close=on_close, shared=shared)
    except BaseException:
        if shared is not None:
            shared.lock.release()
        raise
    if config and run.resumed:
        run.config.update(config)
    _record_start(run, settings)
    if rewind_to is not None:  # (the manifest, rewritten already, is what decides: see _stream)
        run._event("rewound", from_step=run._log.rewound_from, to=rewind_to)
    if fork is not None:
        run._event("forked", parent=f"{project}/{fork[0]}", from_step=fork[1])
    return run


def _claim(settings: Settings, adir: Path) -> tuple[_store.Pointer, RunLock] | None:
    """The newest run of this directory and job whose lock is free, with the lock held; runs
    that are gone or finished cleanly lose their pointer on the way. None: start a new run."""
    root, project = settings.root, settings.project
    legacy = (_layout.legacy_auto_pointer_path(root, project, os.getcwd())
              if settings.resume_key is None else None)
    with _fsutil.storage_errors("read the auto-resume pointers", adir, project=project):
        pointers, damaged = _store.read_pointers(adir, legacy)
        for path in damaged:
            aside = _store.set_aside_pointer(path)
            log.warning("The auto-resume pointer %s is damaged (not a pointer to a run); it was "
                        "moved to %s for inspection and is not followed: resume='auto' goes on "
                        "with the other runs of this directory, or starts a new run.", path, aside)
    for pointer in pointers:
        ctx = {"project": project, "run_id": pointer.rid}
        path = _layout.lock_path(root, project, pointer.rid)
        if _locks.is_held(path):  # a live writer: pass over it without waiting for the lock
            continue
        lock = RunLock(path, **ctx)
        try:
            lock.acquire(wait=False)
        except RunLockedError:  # another restart claimed it since the probe
            continue
        try:
            rdir = _layout.run_dir(root, project, pointer.rid)
            exists = (rdir / _store.RUN_JSON).exists()
            ended = _store.end_state(_store.events(rdir, **ctx)) if exists else None
            if _resume.claim(exists, ended) is _resume.Claim.RESUME:
                return pointer, lock
            with _fsutil.storage_errors("remove the auto-resume pointer", pointer.path, **ctx):
                _fsutil.unlink(pointer.path)
        except BaseException:
            lock.release()
            raise
        lock.release()
    return None
