"""Opening a run for writing: resolve the resume mode, take the run's lock, create or reopen.

Nothing is written before the resume decision is known and the lock is held: a refused
init() (a typo'd id with resume="must", a run another process writes, a synced store)
leaves the store as it was. The auto-resume pointer is written last, once the run is open.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from . import _fsutil, _layout, _locks, _naming, _resume, _store
from ._codec import dumps, encode_tree
from ._locks import RunLock
from ._run import Run
from ._settings import Settings
from .errors import UsageError


def start(settings: Settings, fields: dict[str, Any], config: dict[str, Any] | None,
          on_close: Callable[[Run], None]) -> Run:
    """Open or create the run the settings ask for, holding its lock; ``on_close(run)`` is
    called when finish() has released it."""
    root, project = settings.root, settings.project
    mode, rid = settings.resume, settings.run_id
    pointer = _layout.auto_pointer_path(root, project, os.getcwd())
    if mode == "auto" and rid is None:
        rid = _store.read_pointer(pointer)
    _resume.check_mode(mode, rid is not None)
    rid = rid or _naming.new_run_id()
    ctx = {"project": project, "run_id": rid}
    if (root / _layout.REMOTE_ID).exists():  # refused before the lock file is created there
        raise UsageError(f"{root} is a store written by `localtrack sync`; synced stores are "
                         "read-only. Resume the original run, or read this one with "
                         "localtrack.Api.", **ctx)
    if mode == "must":  # a typo'd id must leave nothing behind, not even a lock file
        _resume.decide(mode, _layout.run_dir(root, project, rid).exists(), **ctx)
    lock = RunLock(_layout.lock_path(root, project, rid), **ctx)
    lock.acquire()
    try:
        rdir = _layout.run_dir(root, project, rid)
        outcome = _resume.decide(mode, rdir.exists(), project=project, run_id=rid)
        where = f"run {rid!r} in project {project!r}"
        if outcome is _resume.Outcome.CREATE:
            encode_tree(config or {}, where)  # validate before anything is written
            _store.sweep_dead_creations(root, project)
            meta = _store.new_meta(project, rid, {k: v for k, v in fields.items() if v is not None})
            rdir = _store.create_run_dir(root, project, rid, meta, config or {})
        else:
            meta = _store.read_meta(rdir, **ctx)
            changed = {k: v for k, v in fields.items() if v is not None and meta.get(k) != v}
            if meta.get("format", 1) < _layout.FORMAT_VERSION:  # this writer's lines are newer
                changed["format"] = _layout.FORMAT_VERSION
            if changed:
                meta = {**meta, **changed}
                _fsutil.atomic_write(rdir / _store.RUN_JSON, dumps(meta))
        run = Run(settings=settings, rid=rid, rdir=rdir, meta=meta, lock=lock, pointer=pointer,
                  resumed=outcome is _resume.Outcome.RESUME, on_close=on_close)
        if config and run.resumed:
            run.config.update(config)
        run._event("resumed" if run.resumed else "started", host=_locks.hostname())
        with _fsutil.storage_errors("write the auto-resume pointer", pointer, **ctx):
            _store.write_pointer(pointer, rid)
    except BaseException:
        lock.release()
        raise
    return run
