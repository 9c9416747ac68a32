"""define_metric: W&B's metric definitions, stored as ``metric`` events and applied when a
summary is asked for (by the writer or a reader), so a resumed run and the read API know them.

A definition names a key or a glob (``"val/*"``) and says which key is its x axis
(``step_metric``), which aggregates the summary keeps (``summary="min,max"``: the summary of
``"val/loss"`` becomes ``{"min": ..., "max": ...}``, W&B's shape; ``"none"`` leaves the key
out), what ``"best"`` means (``goal``) and whether a dashboard hides it. An exact name wins over
a glob; among globs the latest definition wins. Aggregates are computed from the whole history
(across resumes and rewinds) when the summary is read: log() keeps no running state.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable
from typing import Any

from .errors import UsageError

SUMMARIES = ("min", "max", "mean", "last", "best", "first", "none")
GOALS = {"minimize": "min", "min": "min", "maximize": "max", "max": "max"}
FIELDS = ("step_metric", "step_sync", "summary", "goal", "hidden")


def definition(name: Any, *, step_metric: Any = None, step_sync: Any = None, summary: Any = None,
               goal: Any = None, hidden: Any = None) -> dict[str, Any]:
    """A checked definition (the fields of its event), or a UsageError naming the bad argument."""
    # "*" alone is W&B's every key (Lightning's and Transformers' x axis); W&B refuses "*loss".
    if not isinstance(name, str) or not name or (name.startswith("*") and name != "*"):
        raise UsageError(f"define_metric() needs a metric name, a glob such as 'val/*', or '*' "
                         f"(every key), got {name!r} (a glob may not start with '*').")
    if step_metric is not None and (not isinstance(step_metric, str) or not step_metric
                                    or "*" in step_metric):
        raise UsageError(f"define_metric({name!r}): step_metric must be the name of a logged key "
                         f"(no glob), got {step_metric!r}.")
    out: dict[str, Any] = {"name": name}
    if step_metric is not None:
        out["step_metric"] = step_metric
        out["step_sync"] = True if step_sync is None else bool(step_sync)
    elif step_sync is not None:
        out["step_sync"] = bool(step_sync)
    if summary is not None:
        parts = [p.strip().lower() for p in str(summary).split(",") if p.strip()]
        bad = [p for p in parts if p not in SUMMARIES]
        if bad or not parts or ("none" in parts and len(parts) > 1):
            raise UsageError(f"define_metric({name!r}): summary={summary!r} is not a list of "
                             f"{', '.join(SUMMARIES)} ('none' alone), e.g. summary='min,last'.")
        out["summary"] = parts
    if goal is not None:
        if not isinstance(goal, str) or goal.lower() not in GOALS:
            raise UsageError(f"define_metric({name!r}): goal={goal!r}; give 'minimize' or "
                             "'maximize'.")
        out["goal"] = "minimize" if GOALS[goal.lower()] == "min" else "maximize"
    if "best" in out.get("summary", ()) and "goal" not in out:
        raise UsageError(f"define_metric({name!r}): summary='best' needs goal='minimize' or "
                         "goal='maximize'.")
    if hidden is not None:
        out["hidden"] = bool(hidden)
    return out


class Metric:
    """What define_metric() returns, as W&B's ``wandb_metric.Metric``: the definition made,
    read-only (``summary`` a tuple of aggregates, ``goal`` "minimize"/"maximize")."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = dict(fields)

    @property
    def name(self) -> str:
        return str(self._fields["name"])

    @property
    def step_metric(self) -> str | None:
        return self._fields.get("step_metric")

    @property
    def step_sync(self) -> bool | None:
        return self._fields.get("step_sync")

    @property
    def hidden(self) -> bool | None:
        return self._fields.get("hidden")

    @property
    def summary(self) -> tuple[str, ...] | None:
        parts = self._fields.get("summary")
        return None if parts is None else tuple(parts)

    @property
    def goal(self) -> str | None:
        return self._fields.get("goal")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Metric) and other._fields == self._fields

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._fields.items() if k != "overwrite")
        return f"Metric({args})"


def fold(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The definitions in force after these events, by name, in the order first defined. A
    later definition of a name adds to the earlier one, or replaces it when ``overwrite``."""
    defs: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.get("event") == "metric" and isinstance(e.get("name"), str):
            merge(defs, e)
    return defs


def merge(defs: dict[str, dict[str, Any]], event: dict[str, Any]) -> None:
    """Add one ``metric`` event's definition to ``defs``."""
    name = event["name"]
    fields = {k: event[k] for k in FIELDS if k in event}
    defs[name] = fields if event.get("overwrite") or name not in defs else {**defs[name], **fields}


def match(defs: dict[str, dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The definition that applies to ``key``: its own, else the latest glob that matches."""
    if key in defs:
        return defs[key]
    for name in reversed(list(defs)):
        if "*" in name and fnmatch.fnmatchcase(key, name):
            return defs[name]
    return None


def summarize(defs: dict[str, dict[str, Any]], last: dict[str, Any],
              columns: Callable[[list[str]], dict[str, list[Any]]]) -> dict[str, Any]:
    """The flat summary ``last`` (last value per key) under the definitions: a key with
    ``summary`` gets ``key/<aggregate>`` entries computed from its ``columns`` (read only for
    those keys), ``none`` drops it; other keys keep their last value."""
    if not defs:
        return last
    wanted = {k: d["summary"] for k in last if (d := match(defs, k)) and "summary" in d}
    if not wanted:
        return last
    need = [k for k, aggs in wanted.items() if set(aggs) - {"none", "last"}]
    values = columns(need) if need else {}
    out = {k: v for k, v in last.items() if k not in wanted}
    for key, aggs in wanted.items():
        if aggs == ["none"]:
            continue
        goal = (match(defs, key) or {}).get("goal", "minimize")
        numbers = [v for v in values.get(key, ()) if _number(v)]
        for agg in aggs:
            value = last[key] if agg == "last" else _aggregate(agg, goal, numbers)
            if value is not None:
                out[f"{key}/{agg}"] = value
    return out


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and not (isinstance(value, float) and math.isnan(value)))


def _aggregate(agg: str, goal: str, numbers: list[Any]) -> Any:
    if not numbers:
        return None
    if agg == "best":
        agg = "min" if goal == "minimize" else "max"
    if agg == "min":
        return min(numbers)
    if agg == "max":
        return max(numbers)
    if agg == "first":
        return numbers[0]
    return sum(numbers) / len(numbers)  # mean


class StepSync:
    """W&B's ``step_sync``: a row that logs a metric without its step metric gets the step
    metric's last logged value, so every point of the metric has an x."""

    def __init__(self, defs: dict[str, dict[str, Any]], last: dict[str, Any]) -> None:
        self.defs = defs
        self._axis: dict[str, str | None] = {}  # key -> its synced step metric (cache)
        self.axes: set[str] = set()
        self.reset()
        self.last = {k: v for k, v in last.items() if k in self.axes and _number(v)}

    def reset(self) -> None:
        """After a new definition: forget what was matched."""
        self._axis.clear()
        self.axes = {d["step_metric"] for d in self.defs.values() if "step_metric" in d}

    def fill(self, data: dict[str, Any]) -> dict[str, Any]:
        added: dict[str, Any] = {}
        for key in data:
            axis = self._axis.get(key, "")
            if axis == "":
                d = match(self.defs, key)
                axis = self._axis[key] = (d["step_metric"] if d and d.get("step_sync")
                                          and "step_metric" in d else None)
            if axis is not None and axis not in data and axis in self.last:
                added[axis] = self.last[axis]
        for key in self.axes.intersection(data):
            if _number(data[key]):
                self.last[key] = data[key]
        return {**data, **added} if added else data
