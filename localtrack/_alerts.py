"""run.alert(): W&B's alerts, kept as ``alert`` events of the run (nothing is sent anywhere:
`localtrack show` prints them)."""

from __future__ import annotations

import enum
from typing import Any

from .errors import UsageError


class AlertLevel(str, enum.Enum):
    """W&B's ``wandb.AlertLevel``: ``run.alert(..., level=AlertLevel.WARN)``."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


def fields(title: Any, text: Any, level: Any, wait_duration: Any) -> dict[str, Any]:
    """The event's fields, checked (a UsageError names the bad argument)."""
    for what, value in (("title", title), ("text", text)):
        if not isinstance(value, str):
            raise UsageError(f"run.alert() {what} must be a string, got {type(value).__name__} "
                             f"{value!r}.")
    name = level.value if isinstance(level, AlertLevel) else level
    if name not in AlertLevel.__members__:
        raise UsageError(f"run.alert() level={level!r}: give 'INFO', 'WARN' or 'ERROR' "
                         "(or localtrack.AlertLevel).")
    out: dict[str, Any] = {"title": title, "text": text, "level": name}
    if wait_duration is not None:
        seconds = getattr(wait_duration, "total_seconds", lambda: wait_duration)()
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise UsageError(f"run.alert() wait_duration={wait_duration!r}: give seconds or a "
                             "datetime.timedelta.")
        out["wait_duration"] = float(seconds)
    return out


def due(sent: dict[str, float], title: str, wait_duration: float | None, now: float) -> bool:
    """W&B's ``wait_duration``: an alert with the same title as one recorded less than that
    many seconds ago is dropped. Records ``now`` for ``title`` when the alert is due."""
    last = sent.get(title)
    if wait_duration is not None and last is not None and now - last < wait_duration:
        return False
    sent[title] = now
    return True
