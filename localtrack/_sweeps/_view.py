"""The read side of a sweep: its jobs, their states, and the best run by the metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import _naming
from ._queue import SweepStore


class Sweep:
    """A sweep as stored (a snapshot): ``Api().sweep("project/SWEEP_ID")``."""

    def __init__(self, root: Path, project: _naming.ProjectName, sweep_id: str) -> None:
        self._store = SweepStore(root, project, sweep_id)
        self.id: str = self._store.id
        self.project: str = project
        self.config: dict[str, Any] = self._store.config
        self.metric: dict[str, str] | None = self._store.spec.metric
        state = self._store.read_state()
        self.queue: list[str] = list(state["queue"])
        self.jobs: dict[str, dict[str, Any]] = state["jobs"]

    @property
    def runs(self) -> list[dict[str, Any]]:
        """One dict per job: run id, status, parameters, requeues, metric value, and what early
        termination decided (``stop``: band, value, threshold; None if it did not stop it)."""
        out = []
        for run_id, job in sorted(self.jobs.items(), key=lambda kv: kv[1].get("index", 0)):
            out.append({"id": run_id, "status": job["status"], "params": job["params"],
                        "requeues": job["requeues"], "exit_status": job.get("exit_status"),
                        "stop": job.get("stop"), "metric": self._store.metric_of(run_id)})
        return out

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs.values():
            counts[job["status"]] = counts.get(job["status"], 0) + 1
        return counts

    def best_run(self) -> dict[str, Any] | None:
        """The finished run with the best metric value (None without metric or results)."""
        if self.metric is None:
            return None
        done = [r for r in self.runs if r["status"] == "finished" and r["metric"] is not None]
        if not done:
            return None
        pick = min if self.metric["goal"] == "minimize" else max
        return pick(done, key=lambda r: r["metric"])

    def __repr__(self) -> str:
        return f"<localtrack.Sweep {self.project}/{self.id} {self.counts()}>"
