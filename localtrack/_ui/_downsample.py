"""Shrinking a long metric to what a chart can show, on the server, with pyarrow.compute.

A browser chart is ~1,000 pixels wide, so sending it 10^6 points only makes the
page slow. The x range is cut into ``points`` equal-width buckets (equal width in
step or in seconds, i.e. in pixels); each bucket becomes its mean (the line) and its
min and max (a band), so a one-step spike survives any reduction. Buckets come
from x values rather than row numbers so that gaps in the steps stay gaps. The
work is done by pyarrow's C kernels; no Python loop touches a row.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

#: Below this many rows per requested point, raw rows are sent as they are.
RAW_FACTOR = 2
MAX_POINTS = 5000


def is_numeric(dtype: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype))


def series(table: pa.Table, key: str, *, x: str = "_step", points: int = 1000,
           xmin: float | None = None, xmax: float | None = None) -> dict[str, Any]:
    """One metric of ``table`` as ``{"x", "y"[, "ymin", "ymax"], "rows", "sampled"}``.

    ``x`` is the column for the x axis (``_step`` or ``_timestamp``); rows outside
    ``[xmin, xmax]`` and non-finite or missing values are left out (JSON cannot hold
    NaN, and a chart cannot draw it). ``rows`` counts the rows that remained.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    points = max(1, min(int(points), MAX_POINTS))
    column = table.column(key)
    if pa.types.is_null(column.type):
        return {"x": [], "y": [], "rows": 0, "sampled": False}
    if not is_numeric(column.type):
        return {"kind": "text", "x": [], "y": [], "rows": 0, "sampled": False}
    xs = table.column(x).cast(pa.float64())
    ys = column.cast(pa.float64())
    keep = pc.and_(pc.is_valid(ys), pc.is_finite(ys))
    keep = pc.and_(keep, pc.and_(pc.is_valid(xs), pc.is_finite(xs)))
    if xmin is not None:
        keep = pc.and_(keep, pc.greater_equal(xs, xmin))
    if xmax is not None:
        keep = pc.and_(keep, pc.less_equal(xs, xmax))
    keep = pc.fill_null(keep, False)
    xs, ys = xs.filter(keep), ys.filter(keep)
    rows = len(xs)
    if rows <= points * RAW_FACTOR:
        return {"x": xs.to_pylist(), "y": ys.to_pylist(), "rows": rows, "sampled": False}
    lo, hi = pc.min(xs).as_py(), pc.max(xs).as_py()
    width = (hi - lo) / points if hi > lo else 1.0
    # bucket = min(floor((x - lo) / width), points - 1): the last x lands in the last bucket.
    bucket = pc.cast(pc.floor(pc.divide(pc.subtract(xs, lo), width)), pa.int64())
    bucket = pc.min_element_wise(bucket, pa.scalar(points - 1, pa.int64()))
    # Table.from_arrays, not pa.table(dict): the latter imports pandas (~0.4 s) to check its argument.
    grouped = pa.Table.from_arrays([bucket, xs, ys], names=["b", "x", "y"]).group_by(
        "b", use_threads=False).aggregate(
        [("x", "mean"), ("y", "mean"), ("y", "min"), ("y", "max")]).sort_by("b")
    return {
        "x": _finite(grouped.column("x_mean").to_pylist()),
        "y": _finite(grouped.column("y_mean").to_pylist()),
        "ymin": grouped.column("y_min").to_pylist(),
        "ymax": grouped.column("y_max").to_pylist(),
        "rows": rows,
        "sampled": True,
    }


def _finite(values: list[float]) -> list[float]:
    # A mean of huge finite values can overflow to inf; clamp so JSON stays valid.
    return [v if math.isfinite(v) else math.copysign(1.7976931348623157e308, v) for v in values]
