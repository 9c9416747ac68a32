"""What the run page shows of a run's media and histograms: which keys, and each item.

Items are read through ApiRun.media and sent in a form a browser shows as it is: an image
as PNG (Pillow), audio as WAV (a file logged in another format: its bytes), a table as JSON
(its first rows; an image cell is fetched on its own), HTML as plain text (the page shows its
source; store HTML never runs), a video as its file. Each step's references have a
``version``, so the page can cache an item for good while the step keeps them.
Histograms come from ApiRun.histograms, put on one grid of bins so the page can draw
counts over steps as a heatmap. A shared run's history has a row per writer and step: its
keys name each row's writer (``labels``), and an item is asked for by step and label.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import orjson

from .._blobs import refs as blob_refs
from .._labels import LABEL, is_shared
from .._mediaread import Found, refs_rows
from .._query import ApiRun
from ..errors import RunNotFoundError, UsageError

#: Rows of a table sent to the page (the rest is counted, not sent).
TABLE_ROWS = 100
#: Rows of a chart's table sent to draw it (_plots.MAX_ROWS: what a computed curve holds).
CHART_ROWS = 10_000
#: Bins of the common grid the histograms of a key are put on.
HIST_BINS = 64
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "flac": "audio/flac",
                "m4a": "audio/mp4", "aac": "audio/aac", "opus": "audio/ogg"}
_VIDEO_TYPES = {"gif": "image/gif", "mp4": "video/mp4", "webm": "video/webm", "ogg": "video/ogg",
                "ogv": "video/ogg", "mov": "video/quicktime"}


def _is_histogram_column(table: Any, key: str) -> bool:
    import pyarrow as pa

    kind = table.schema.field(key).type
    return pa.types.is_struct(kind) and {f.name for f in kind} == {"counts", "edges"}


def media_keys(run: ApiRun) -> dict[str, Any]:
    """``media``: per key its type and format, steps, item counts, captions (of the first item
    of each step, and of every item) and versions (see ``version``), and a shared run's
    ``labels`` (the writer of each step's row); ``histograms``: the keys holding histograms."""
    table = run.history_table()
    media, hists = [], []
    for key in table.column_names:
        if key in ("_step", "_timestamp", LABEL):
            continue
        if _is_histogram_column(table, key):
            hists.append(key)
            continue
        rows = refs_rows(table, key)
        if not rows:
            continue
        refs = [next(blob_refs(value), {}) for _, value, _ in rows]
        entry = {"key": key, "type": refs[0].get("type") if refs else None,
                 "fmt": refs[0].get("fmt") if refs else None,
                 "steps": [step for step, _, _ in rows],
                 "counts": [len(v) if type(v) is list else 1 for _, v, _ in rows],
                 "captions": [r.get("caption") for r in refs],
                 "item_captions": [[r.get("caption") for r in blob_refs(v)] for _, v, _ in rows],
                 "versions": [version(v) for _, v, _ in rows],
                 "overlaid": [any(r.get("boxes") or r.get("masks") for r in blob_refs(v))
                              for _, v, _ in rows],
                 "chart": refs[-1].get("chart") if refs else None}
        if LABEL in table.column_names:
            entry["labels"] = [label for _, _, label in rows]
        media.append(entry)
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


def stored(run: ApiRun, key: str, step_text: str | None, label: str | None = None) -> Found:
    """The row of ``key`` at the step ``step_text`` names (its stored references: ``.value``);
    of a shared run, the writer ``label``'s (one is needed: several may have logged the step).
    One read of the history, which media_item's read of the items then uses."""
    step = _int(step_text, "step")
    if label is None and is_shared(run.meta):
        raise UsageError(f"Run {run.path!r} is a shared run: name the writer of the item with "
                         f"label= (one of {', '.join(run.labels)}).")
    rows = run._media_rows(key, [step], label) if key not in ("_step", "_timestamp") else []
    if not rows:
        raise _no_media(run, key, step, label)
    return rows[0]


def _no_media(run: ApiRun, key: str, step: int, label: str | None = None) -> RunNotFoundError:
    by = f" by writer {label!r}" if label is not None else ""
    return RunNotFoundError(f"Run {run.path!r} logged no media under {key!r} at step {step}{by}.",
                            path=key)


def version(value: Any) -> str:
    """A name for the bytes a row's references point at. A reference names its log, offset,
    length and CRC-32, and blob logs are append-only, so while a step keeps these references
    (a rewind or a cut torn tail gives it new ones) its items are what they were: an item URL
    carrying the version can be cached for good. Fields without a value are left out: a sealed
    segment's column has every field of a reference, the log's row only those it set, and the
    version must not change when the sealer moves a step."""
    refs = [{k: v for k, v in ref.items() if v is not None} for ref in blob_refs(value)]
    return hashlib.sha256(orjson.dumps(refs, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20]


def address(q: dict[str, str]) -> tuple[int, tuple[int, int] | None]:
    """Which item a request names: ``index`` (0 when absent) and, given ``row`` or ``col``,
    the cell (both needed)."""
    index = _int(q.get("index") or "0", "index")
    if "row" not in q and "col" not in q:
        return index, None
    return index, (_int(q.get("row"), "row"), _int(q.get("col"), "col"))


def part(q: dict[str, str]) -> str | None:
    """Which part of an image a request names: ``overlay=1``, its boxes and masks as JSON
    (see overlay); ``mask=<name>``, that mask drawn in its classes' colours (see mask_png)."""
    if q.get("overlay") and q.get("mask"):
        raise UsageError("Give overlay=1 or mask=<name>, not both.")
    if q.get("mask"):
        return "mask:" + q["mask"]
    return "overlay" if q.get("overlay") else None


def etag(tag: str, index: int, cell: tuple[int, int] | None, piece: str | None) -> str:
    """The ETag of one item (or one part of it) of a step whose version is ``tag``."""
    named = hashlib.sha256(piece.encode()).hexdigest()[:12] if piece else ""
    return f'"{tag}-{index}-{cell or ""}-{named}"'.replace(" ", "")


def media_item(run: ApiRun, key: str, row: Found, index: int, cell: tuple[int, int] | None,
               piece: str | None = None) -> tuple[bytes, str]:
    """(body, content type) of item ``index`` of ``key`` in ``row`` (see stored); with ``cell``
    (row, column), the image in that cell of a table; with ``piece`` (see part), the image's
    boxes and masks or one of its masks."""
    step = row.step
    refs = list(blob_refs(row.value))
    if index >= len(refs):
        raise RunNotFoundError(f"Run {run.path!r} logged {len(refs)} item(s) under {key!r} at "
                               f"step {step}; there is no item {index}.", path=key)
    logged = run._media_items([row])[0][1]
    item = (logged if isinstance(logged, list) else [logged])[index]
    if cell is not None:
        item = _table_image(run, key, step, item, *cell)
    if piece is not None:
        return _overlay_piece(run, key, step, item, piece)
    return _encode(item, None if cell else refs[index].get("fmt"))


def _table_image(run: ApiRun, key: str, step: int, item: Any, row: int, col: int) -> Any:
    from PIL import Image as PILImage

    from .._richmedia import Table

    where = f"the {key!r} of run {run.path!r} at step {step}"
    if not isinstance(item, Table):
        raise UsageError(f"row= and col= name a cell of a table; {where} is not a table.")
    if row >= len(item.data) or col >= len(item.columns):
        raise RunNotFoundError(f"The table {where} has {len(item.data)} rows and "
                               f"{len(item.columns)} columns; there is no cell ({row}, {col}).",
                               path=key)
    cell = item.data[row][col]
    if not isinstance(cell, PILImage.Image):
        raise RunNotFoundError(f"Cell ({row}, {col}) of the table {where} holds no image.", path=key)
    return cell


# Class colours of boxes and masks, by class id modulo their number (W&B's UI colours classes
# the same way: one fixed colour per id).
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
           "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#800000",
           "#aaffc3", "#808000", "#000075", "#808080")
#: Opacity of a mask drawn over its image (0..255).
MASK_ALPHA = 128


def colour(class_id: int | None) -> str:
    return PALETTE[(class_id or 0) % len(PALETTE)]


def _label(labels: dict[int, str], class_id: int | None) -> str:
    if class_id is None:
        return ""
    return labels.get(class_id, f"class_{class_id}")


def _overlay_piece(run: ApiRun, key: str, step: int, item: Any, piece: str) -> tuple[bytes, str]:
    from PIL import Image as PILImage

    where = f"the {key!r} of run {run.path!r} at step {step}"
    if not isinstance(item, PILImage.Image):
        raise UsageError(f"overlay= and mask= name parts of an image; {where} is not an image.")
    if piece == "overlay":
        return orjson.dumps(overlay(item)), "application/json"
    name = piece.removeprefix("mask:")
    masks = getattr(item, "masks", {})
    if name not in masks:
        raise RunNotFoundError(f"The image {where} has no mask {name!r} (it has "
                               f"{sorted(masks) or 'none'}).", path=key)
    return mask_png(masks[name]["mask_data"]), "image/png"


def overlay(image: Any) -> dict[str, Any]:
    """What the page draws over an image: its size; per box group its boxes as pixel
    rectangles (x, y, w, h) with their label (the box's caption, else its class's label), class
    colour and scores; per mask the classes it holds (id, label, colour). A box's position is
    in pixels with ``domain="pixel"``, else in fractions of the image (W&B's rule)."""
    import numpy as np

    width, height = image.size
    boxes = {}
    for group, spec in getattr(image, "boxes", {}).items():
        drawn = []
        for box in spec["box_data"]:
            pos = box["position"]
            if "middle" in pos:
                (mx, my), bw, bh = pos["middle"], pos["width"], pos["height"]
                x0, x1, y0, y1 = mx - bw / 2, mx + bw / 2, my - bh / 2, my + bh / 2
            else:
                x0, x1, y0, y1 = pos["minX"], pos["maxX"], pos["minY"], pos["maxY"]
            sx, sy = (1, 1) if box.get("domain") == "pixel" else (width, height)
            class_id = box.get("class_id")
            drawn.append({"x": x0 * sx, "y": y0 * sy, "w": (x1 - x0) * sx, "h": (y1 - y0) * sy,
                          "label": box.get("box_caption") or _label(spec["class_labels"], class_id),
                          "class_id": class_id, "colour": colour(class_id),
                          "scores": box.get("scores", {})})
        boxes[group] = drawn
    masks = {}
    for name, spec in getattr(image, "masks", {}).items():
        ids = np.flatnonzero(np.bincount(spec["mask_data"].reshape(-1), minlength=256)).tolist()
        masks[name] = [{"id": i, "label": _label(spec["class_labels"], i), "colour": colour(i)}
                       for i in ids]
    return {"w": width, "h": height, "boxes": boxes, "masks": masks}


def mask_png(mask: Any) -> bytes:
    """A mask as an RGBA PNG: each pixel its class's colour at MASK_ALPHA opacity."""
    import numpy as np
    from PIL import Image as PILImage

    table = np.zeros((256, 4), np.uint8)
    for i in range(256):
        hexa = colour(i)
        table[i] = (int(hexa[1:3], 16), int(hexa[3:5], 16), int(hexa[5:7], 16), MASK_ALPHA)
    buf = io.BytesIO()
    PILImage.fromarray(table[mask], "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _encode(item: Any, fmt: str | None) -> tuple[bytes, str]:
    from PIL import Image as PILImage

    from .._plots import CustomChart
    from .._richmedia import Table, encode_wav

    if isinstance(item, CustomChart):  # drawn by plots.js: its rows and its spec
        table = item.table
        rows = [[_cell(c, r, i) for i, c in enumerate(row)]
                for r, row in enumerate(table.data[:CHART_ROWS])]
        body = orjson.dumps({"columns": table.columns, "data": rows, "rows": len(table.data),
                             "chart": item.spec}, default=str)
        return body, "application/json"
    if isinstance(item, PILImage.Image):
        buf = io.BytesIO()
        item.save(buf, format="PNG")
        return buf.getvalue(), "image/png"
    if isinstance(item, Table):
        rows = [[_cell(c, r, i) for i, c in enumerate(row)] for r, row in enumerate(item.data[:TABLE_ROWS])]
        body = orjson.dumps({"columns": item.columns, "data": rows, "rows": len(item.data)},
                            default=str)
        return body, "application/json"
    if isinstance(item, str):  # HTML: its source, as text
        return item.encode(), "text/plain; charset=utf-8"
    if isinstance(item, tuple):  # audio
        samples, rate = item
        if rate is None:
            return bytes(samples), _AUDIO_TYPES.get(fmt or "", "application/octet-stream")
        return encode_wav(samples, rate), "audio/wav"
    return bytes(item), _VIDEO_TYPES.get(fmt or "", "application/octet-stream")  # video: its file


def _cell(value: Any, row: int, col: int) -> Any:
    """A table cell as JSON: an image as ``{"image": [row, col]}`` (the page asks for it with
    row= and col=), with ``"overlaid": true`` when it has boxes or masks (asked for with
    overlay=1 and mask=), other media by their type's name."""
    from PIL import Image as PILImage

    if isinstance(value, (type(None), bool, int, float, str)):
        return value
    if isinstance(value, PILImage.Image):
        if getattr(value, "boxes", None) or getattr(value, "masks", None):
            return {"image": [row, col], "overlaid": True}
        return {"image": [row, col]}
    return f"[{type(value).__name__}]"


def histograms(run: ApiRun, key: str, label: str | None = None) -> dict[str, Any]:
    """Every histogram of ``key`` (a shared run's: writer ``label``'s, or every writer's) on
    one grid of HIST_BINS bins from the smallest edge to the largest (a bin's count goes to the
    grid bin holding its centre): ``steps``, ``edges`` and ``counts`` (one list per histogram),
    and a shared run's ``labels``, the writer of each (the page draws each writer's apart)."""
    if key in ("_step", "_timestamp", LABEL):
        raise UsageError(f"{key!r} holds no histograms.")
    hists = run.histograms(key, label=label)
    if not hists:
        by = f" by writer {label!r}" if label is not None else ""
        raise RunNotFoundError(f"Run {run.path!r} logged no histogram under {key!r}{by}.",
                               path=key)
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
    out = {"path": run.path, "key": key, "steps": [s for s, _ in hists], "edges": edges,
           "counts": grid}
    if run.labels:
        out["labels"] = [pair.label for pair in hists]
    return out
