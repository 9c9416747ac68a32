"""What the dashboard shows of sweeps: read through ``Api.sweep()``, local stores only.

A sweep lives in ``<root>/<project>/sweeps/<id>/sweep.json`` (plus its state); the list is
found by scanning those files. A remote store has no sweeps to show (sweeps need a shared
file system), so its list is empty.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson

from .. import _naming
from .._query import Api
from ..errors import LocaltrackError

logger = logging.getLogger("localtrack")


def sweep_ids(api: Api, project: str) -> list[str]:
    """Ids of the sweeps of ``project`` (those with a sweep.json), sorted."""
    name = _naming.project_name(project)
    if not isinstance(api.root, Path):
        return []
    folder = api.root / name / "sweeps"
    if not folder.is_dir():
        return []
    return sorted(e.name for e in folder.iterdir()
                  if not e.name.startswith(".") and (e / "sweep.json").is_file())


def _created(api: Api, project: str, sweep_id: str) -> float:
    if not isinstance(api.root, Path):
        return 0.0
    path = api.root / project / "sweeps" / sweep_id / "sweep.json"
    try:
        created = orjson.loads(path.read_bytes()).get("created")
        return float(created) if isinstance(created, (int, float)) else path.stat().st_mtime
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return 0.0


def _best(best: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if best is None else {"id": best["id"], "metric": best["metric"]}


def sweeps(api: Api, project: str) -> list[dict[str, Any]]:
    """One row per sweep of ``project``: method, metric, counts per status, best run; newest first."""
    name = _naming.project_name(project)
    out = []
    for sid in sweep_ids(api, name):
        try:
            sw = api.sweep(f"{name}/{sid}")
        except (LocaltrackError, OSError, ValueError):
            # A sweep being created (or damaged) is left out rather than failing the list.
            logger.debug("ui: cannot read sweep %s/%s", name, sid, exc_info=True)
            continue
        out.append({"id": sw.id, "project": name, "path": f"{name}/{sw.id}",
                    "method": sw.config.get("method"), "name": sw.config.get("name"),
                    "metric": sw.metric, "counts": sw.counts(), "runs": len(sw.jobs),
                    "queue": len(sw.queue), "best": _best(sw.best_run()),
                    "created": _created(api, name, sid)})
    return sorted(out, key=lambda s: -s["created"])


def sweep(api: Api, path: str) -> dict[str, Any]:
    """One sweep: its config, queue, runs (status, params, requeues, metric) and best run."""
    sw = api.sweep(path)
    runs = sw.runs
    best = None
    if sw.metric is not None:
        done = [r for r in runs if r["status"] == "finished" and r["metric"] is not None]
        if done:
            pick = min if sw.metric["goal"] == "minimize" else max
            best = pick(done, key=lambda r: r["metric"])
    return {"id": sw.id, "project": sw.project, "path": f"{sw.project}/{sw.id}",
            "method": sw.config.get("method"), "name": sw.config.get("name"),
            "metric": sw.metric, "config": sw.config, "counts": sw.counts(), "queue": sw.queue,
            "runs": runs, "best": _best(best), "created": _created(api, sw.project, sw.id)}
