"""``localtrack plot``: curves of one or more runs to an image, for people on a terminal.

matplotlib (the ``plot`` extra) draws through a bare ``Figure``, never pyplot, so no
display or global backend is touched. Long metrics go through the dashboard's
downsampler first (mean line, min/max band), so a 10^6-step run plots in about
the time it takes to read its Parquet column.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._query import Api
from ._ui._data import flatten
from ._ui._downsample import series
from .errors import UsageError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#c026d3", "#65a30d"]


def ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average (the dashboard's smoothing)."""
    out, last = [], 0.0
    for i, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight**i))
    return out


def plot(api: Api, paths: list[str], keys: list[str], out: str | Path, *, x: str = "step",
         smooth: float = 0.0, log: bool = False, points: int = 2000) -> Path:
    """Draw ``keys`` of the runs at ``paths`` (one panel per key) into ``out`` (png, svg, pdf...)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("localtrack plot draws with matplotlib: pip install 'localtrack[plot]'.") from None
    if not 0 <= smooth < 1:
        raise UsageError(f"Invalid smoothing {smooth!r}: give a weight in [0, 1), e.g. 0.6.")
    if x not in ("step", "time"):
        raise UsageError(f"Invalid x axis {x!r}: use 'step' or 'time'.")
    runs = [api.run(p) for p in paths]
    xcol = "_step" if x == "step" else "_timestamp"
    fig = Figure(figsize=(8, 2.6 * len(keys) + 0.6), layout="constrained")
    axes = fig.subplots(len(keys), 1, squeeze=False)[:, 0]
    for ax, key in zip(axes, keys, strict=True):
        drawn = 0
        for i, run in enumerate(runs):
            s = series(run.history_table([key]), key, x=xcol, points=points)
            if not s["x"]:
                continue
            drawn += 1
            _draw(ax, s, label=f"{run.name} ({run.path})" if run.name != run.id else run.path,
                  color=_COLORS[i % len(_COLORS)], x=x, smooth=smooth)
        if not drawn:
            known = sorted({k for r in runs for k, v in flatten(r.summary, "/").items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
            raise UsageError(f"No numeric values of {key!r} in {', '.join(paths)}; "
                             f"metrics there: {', '.join(known) or 'none'}.")
        ax.set_title(key, loc="left", fontsize=10)
        ax.set_xlabel("step" if x == "step" else "wall time")
        ax.grid(True, alpha=0.3)
        if log:
            ax.set_yscale("log")
        if len(runs) > 1:
            ax.legend(fontsize=8)
    target = Path(out)
    try:
        fig.savefig(target, dpi=120)
    except (OSError, ValueError) as exc:
        raise UsageError(f"Cannot write the plot to {str(target)!r}: {exc}") from exc
    return target


def _draw(ax: Axes, s: dict[str, Any], *, label: str, color: str, x: str, smooth: float) -> None:
    xs: list[Any] = list(s["x"])
    if x == "time":
        xs = [datetime.fromtimestamp(v) for v in xs]
    ys = [float(v) for v in s["y"]]
    if s["sampled"]:
        # An edge on the band keeps a one-bucket spike visible.
        ax.fill_between(xs, s["ymin"], s["ymax"], facecolor=color, edgecolor=color, alpha=0.2,
                        linewidth=0.6)
    if smooth > 0:
        ax.plot(xs, ys, color=color, alpha=0.3, linewidth=0.8)
        ys = ema(ys, smooth)
    ys = [v if math.isfinite(v) else math.nan for v in ys]
    ax.plot(xs, ys, color=color, linewidth=1.4, label=label,
            marker="o" if len(xs) <= 60 else None, markersize=3)
