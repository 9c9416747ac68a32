"""W&B's hyperband early termination: which running runs to stop, from the metric's histories.

The iteration unit is W&B's: the number of values of the metric a run has logged (its
history rows that hold the metric as a finite number), not ``_step``. Bands are at
``min_iter * eta**k`` (or ``max_iter / eta**k`` for ``k`` in ``1..s``). At each band the
threshold is the value at index ``int(n / eta)`` of the sorted values that the ``n`` runs
which reached the band had there (any run of the sweep, running or ended). A running run is
stopped when its value at the last band it reached (``strict``, W&B's default; else its best
value so far) is worse than that band's threshold. Values are negated for ``maximize``, so
lower is better throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_MAX_BANDS = 100  # W&B's count for min_iter bands; a band past any history changes nothing


@dataclass(frozen=True)
class Hyperband:
    """A parsed ``early_terminate`` block."""

    bands: tuple[int, ...]
    eta: float
    strict: bool


def make(min_iter: int | None, max_iter: int | None, s: float | None, eta: float,
         strict: bool) -> Hyperband:
    """The bands as W&B computes them; ``max_iter`` (with ``s``) wins over ``min_iter``."""
    bands: list[int] = []
    if max_iter is not None and s is not None:
        band = float(max_iter)
        for _ in range(int(s)):
            band /= eta
            if band < 1:
                break
            bands.append(int(band))
    elif min_iter is not None:
        band = float(min_iter)
        for _ in range(_MAX_BANDS):
            bands.append(int(band))
            band *= eta
    return Hyperband(tuple(sorted(bands)), eta, strict)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def thresholds(hb: Hyperband, histories: list[list[float]]) -> list[float]:
    """Per band: the value a run must not be worse than (inf where no run reached it)."""
    out = []
    for band in hb.bands:
        values = sorted(h[band - 1] for h in histories if len(h) >= band)
        out.append(values[int(len(values) / hb.eta)] if values else math.inf)
    return out


def to_stop(hb: Hyperband, histories: dict[str, list[float]],
            running: set[str]) -> dict[str, dict[str, float]]:
    """The running runs to stop: run id -> the band, its value there and the threshold.

    ``histories`` holds every run's metric values in logged order, lower is better.
    """
    limits = thresholds(hb, [h for h in histories.values() if h])
    out: dict[str, dict[str, float]] = {}
    for run_id in sorted(running):
        history = histories.get(run_id) or []
        reached = [(band, limit) for band, limit in zip(hb.bands, limits, strict=True)
                   if band <= len(history)]
        if not reached:
            continue
        band, limit = reached[-1]
        value = history[band - 1] if hb.strict else min(history)
        if value > limit:
            out[run_id] = {"band": band, "value": value, "threshold": limit}
    return out
