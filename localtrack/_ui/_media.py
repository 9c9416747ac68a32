"""What the run page shows of a run's media and histograms: which keys, and each item.

Items are read through ApiRun.media and sent in a form a browser shows as it is: an image
as PNG (Pillow), audio as WAV (a file logged in another format: its bytes), a table as JSON
(its first rows), HTML as plain text (the page shows its source; store HTML never runs).
Histograms come from ApiRun.histograms, put on one grid of bins so the page can draw
counts over steps as a heatmap.
"""

from __future__ import annotations

import io
from typing import Any

from .._blobs import refs as blob_refs
from .._mediaread import refs_column
from .._query import ApiRun
from ..errors import RunNotFoundError, UsageError

#: Rows of a table sent to the page (the rest is counted, not sent).
TABLE_ROWS = 100
#: Rows of a chart's table sent to draw it (_plots.MAX_ROWS: what a computed curve holds).
CHART_ROWS = 10_000
#: Bins of the common grid the histograms of a key are put on.
HIST_BINS = 64
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "flac": "audio/flac"}


def _is_histogram_column(table: Any, key: str) -> bool:
    import pyarrow as pa

    kind = table.schema.field(key).type
    return pa.types.is_struct(kind) and {f.name for f in kind} == {"counts", "edges"}


def media_keys(run: ApiRun) -> dict[str, Any]:
    """``media``: per key its type, steps and captions (first item of each step);
    ``histograms``: the keys holding histograms."""
    table = run.history_table()
    media, hists = [], []
    for key in table.column_names:
        if key in ("_step", "_timestamp"):
            continue
        if _is_histogram_column(table, key):
            hists.append(key)
            continue
        rows = refs_column(table, key)
        if not rows:
            continue
        refs = [next(blob_refs(value), {}) for _, value in rows]
        media.append({"key": key, "type": refs[0].get("type") if refs else None,
                      "steps": [step for step, _ in rows],
                      "counts": [len(v) if type(v) is list else 1 for _, v in rows],
                      "captions": [r.get("caption") for r in refs],
                      "chart": refs[-1].get("chart") if refs else None})
    return {"path": run.path, "media": media, "histograms": hists}


def _int(value: str | None, name: str) -> int:
    if value is None:
        raise UsageError(f"Missing query parameter {name!r}.")
    try:
        number = int(value or "")
    except ValueError:
        raise UsageError(f"Expected a whole number for {name}, got {value!r}.") from None
    if number < 0:
        raise UsageError(f"Expected {name} >= 0, got {number}.")
    return number


def media_item(run: ApiRun, key: str, step_text: str | None,
               index_text: str | None) -> tuple[bytes, str]:
    """(body, content type) of item ``index`` of ``key`` at ``step``."""
    step, index = _int(step_text, "step"), _int(index_text or "0", "index")
    found = run.media(key, [step])
    if not found:
        raise RunNotFoundError(f"Run {run.path!r} logged no media under {key!r} at step {step}.",
                               path=key)
    value = found[0][1]
    items = value if isinstance(value, list) else [value]
    if index >= len(items):
        raise RunNotFoundError(f"Run {run.path!r} logged {len(items)} item(s) under {key!r} at "
                               f"step {step}; there is no item {index}.", path=key)
    return _encode(items[index])


def _encode(item: Any) -> tuple[bytes, str]:
    from PIL import Image as PILImage

    from .._plots import CustomChart
    from .._richmedia import Table, encode_wav

    if isinstance(item, CustomChart):  # drawn by plots.js: its rows and its spec
        import orjson

        table = item.table
        rows = [[_cell(c) for c in row] for row in table.data[:CHART_ROWS]]
        body = orjson.dumps({"columns": table.columns, "data": rows, "rows": len(table.data),
                             "chart": item.spec}, default=str)
        return body, "application/json"
    if isinstance(item, PILImage.Image):
        buf = io.BytesIO()
        item.save(buf, format="PNG")
        return buf.getvalue(), "image/png"
    if isinstance(item, Table):
        import orjson

        rows = [[_cell(c) for c in row] for row in item.data[:TABLE_ROWS]]
        body = orjson.dumps({"columns": item.columns, "data": rows, "rows": len(item.data)},
                            default=str)
        return body, "application/json"
    if isinstance(item, str):  # HTML: its source, as text
        return item.encode(), "text/plain; charset=utf-8"
    if isinstance(item, tuple):  # audio
        samples, rate = item
        if rate is None:
            return bytes(samples), "application/octet-stream"
        return encode_wav(samples, rate), "audio/wav"
    return bytes(item), "application/octet-stream"  # video: its file


def _cell(value: Any) -> Any:
    if isinstance(value, (type(None), bool, int, float, str)):
        return value
    return f"[{type(value).__name__}]"


def histograms(run: ApiRun, key: str) -> dict[str, Any]:
    """Every histogram of ``key`` on one grid of HIST_BINS bins from the smallest edge to the
    largest (a bin's count goes to the grid bin holding its centre): ``steps``, ``edges`` and
    ``counts`` (one list per step)."""
    if key in ("_step", "_timestamp"):
        raise UsageError(f"{key!r} holds no histograms.")
    hists = run.histograms(key)
    if not hists:
        raise RunNotFoundError(f"Run {run.path!r} logged no histogram under {key!r}.", path=key)
    low = min(h.edges[0] for _, h in hists)
    high = max(h.edges[-1] for _, h in hists)
    width = (high - low) / HIST_BINS or 1.0
    edges = [low + i * width for i in range(HIST_BINS + 1)]
    grid = []
    for _, hist in hists:
        row = [0] * HIST_BINS
        for count, a, b in zip(hist.counts, hist.edges, hist.edges[1:], strict=False):
            row[min(HIST_BINS - 1, max(0, int(((a + b) / 2 - low) / width)))] += count
        grid.append(row)
    return {"path": run.path, "key": key, "steps": [s for s, _ in hists], "edges": edges,
            "counts": grid}
