"""W&B's ``wandb.plot`` namespace: ``localtrack.plot.pr_curve(...)`` and the rest (see _plots).

Not the ``localtrack plot`` command, which draws logged metrics to image files (_plot).
"""

from __future__ import annotations

from ._plots import (
    CustomChart,
    bar,
    confusion_matrix,
    histogram,
    line,
    line_series,
    plot_table,
    pr_curve,
    roc_curve,
    scatter,
)

__all__ = ["CustomChart", "bar", "confusion_matrix", "histogram", "line", "line_series",
           "plot_table", "pr_curve", "roc_curve", "scatter"]
