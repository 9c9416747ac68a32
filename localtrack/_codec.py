"""Values -> storable JSON and back, exactly.

History rows are flat: nested dicts become ``a/b`` keys. Values are None,
bool, int64, float, str; numpy/torch scalars and 0-d arrays/tensors become
Python scalars. Plain JSON has no NaN/Inf, so non-finite floats are written
as the tag ``{"$f": "NaN" | "Infinity" | "-Infinity"}`` and decoded back. A
``Histogram`` (_media) is the tag ``{"$h": {"counts": [...], "edges": [...]}}``:
the one value of a history row that is an object, so it never takes the fast path.
A media value (_richmedia: Image, Table...) or a list of them is left in the row for the
writer, which stores its bytes in a blob log and puts its reference tag ``{"$m": {...}}``
there (see _blobs); no other value is a list.
Errors name the key and the run; nothing is written before a row is valid.
Nesting is bounded (MAX_DEPTH): a deep or self-containing dict is a UsageError
naming its key, never a RecursionError, and stored JSON stays within what
orjson writes and reads back.
"""

from __future__ import annotations

import enum
import math
import uuid
from typing import Any

import orjson

from ._media import Histogram
from ._richmedia import Media
from .errors import InvalidValueError, UnsupportedTypeError

RESERVED_KEYS = frozenset({"_step", "_timestamp", "_crc"})
_TAG = "$f"
HIST_TAG = "$h"  # no key of a config or summary (a nested dict holding it would read as one)
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_NONE = type(None)
_PLAIN = frozenset({int, str, bool, _NONE})
_FROM_TAG = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# Levels of nested dicts/lists a value may have. orjson refuses to write more than 254 and
# Python recurses ~1,000 deep; a config deeper than 100 is a dict that holds itself, or data.
MAX_DEPTH = 100

dumps = orjson.dumps
loads = orjson.loads


def _tag(value: float) -> dict[str, str]:
    if value != value:
        return {_TAG: "NaN"}
    return {_TAG: "Infinity" if value > 0 else "-Infinity"}


def tag_histogram(value: Histogram) -> dict[str, dict[str, list[Any]]]:
    return {HIST_TAG: {"counts": list(value.counts), "edges": list(value.edges)}}


def histogram_of(fields: Any) -> Histogram:
    """The histogram of stored ``{"counts": [...], "edges": [...]}``; ValueError if it is not one."""
    if type(fields) is not dict or fields.keys() != {"counts", "edges"}:
        raise ValueError(f"not a stored histogram: {str(fields)[:80]}")
    try:
        return Histogram._stored(fields["counts"], fields["edges"])
    except (InvalidValueError, UnsupportedTypeError) as exc:
        raise ValueError(f"not a stored histogram: {exc}") from None


def untag(value: Any) -> Any:
    """Decode a stored scalar: the non-finite tag becomes a float again, the histogram tag a
    Histogram.

    ValueError for a tag no writer makes (the stored file is damaged): callers name the file.
    """
    if type(value) is dict and len(value) == 1:
        if _TAG in value:
            tag = value[_TAG]
            if type(tag) is not str or tag not in _FROM_TAG:
                raise ValueError(f"unknown value tag {value!r}")
            return _FROM_TAG[tag]
        if HIST_TAG in value:
            return histogram_of(value[HIST_TAG])
    return value


def _short(key: str) -> str:
    """A key path short enough for a message (a path 100 levels deep is not)."""
    return key if len(key) <= 60 else f"{key[:30]}...{key[-25:]}"


def _too_deep(key: str, where: str) -> InvalidValueError:
    return InvalidValueError(
        f"Cannot store key {_short(key)!r} in {where}: it is nested more than {MAX_DEPTH} levels "
        "deep (does a dict hold itself?). Flatten it, or store it as a string."
    )


def _scalar(key: str, value: Any, where: str) -> Any:
    """Coerce one non-plain value to a plain scalar, or explain why not."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        value = int(value)
    elif isinstance(value, float):
        value = float(value)
    elif isinstance(value, str):
        return str(value)
    elif isinstance(value, enum.Enum):
        return _scalar(key, value.value, where)
    elif isinstance(value, uuid.UUID):
        return str(value)
    elif getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return _scalar(key, value.item(), where)  # numpy scalars, 0-d arrays and tensors
    else:
        shape = getattr(value, "shape", None)
        extra = f" with shape {tuple(shape)}" if shape is not None else ""
        raise UnsupportedTypeError(
            f"Cannot log key {key!r} in {where}: a value of type {type(value).__name__}{extra} "
            "cannot be stored. Log int, float, bool, str, None, a localtrack.Histogram or a "
            "nested dict of them (use .item() for one-element arrays and tensors)."
            + _hint(value)
        )
    if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
        raise InvalidValueError(
            f"Cannot log key {key!r} in {where}: the integer {value} does not fit in 64 bits; "
            "log it as a float or a string."
        )
    return value


def _hint(value: Any) -> str:
    """What to do instead, for values W&B scripts log that are not stored as they are."""
    if isinstance(value, (list, tuple)) and any(isinstance(v, Histogram) for v in value):
        return " Log each histogram under a key of its own (e.g. 'h/0', 'h/1')."
    if isinstance(value, tuple) and len(value) == 2:
        return (" If it is what np.histogram() returns, log "
                "localtrack.Histogram(np_histogram=(counts, edges)).")
    return ""


def _check_key(key: Any, where: str) -> str:
    if type(key) is not str:
        raise InvalidValueError(f"Cannot log key {key!r} in {where}: keys must be strings.")
    if not key or key in RESERVED_KEYS or key == _TAG:
        raise InvalidValueError(
            f"Cannot log key {key!r} in {where}: keys must be non-empty and not one of "
            f"{sorted(RESERVED_KEYS | {_TAG})}."
        )
    return key


def _flatten(data: dict[Any, Any], prefix: str, where: str,
             enc: dict[str, Any], raw: dict[str, Any], depth: int = 1,
             media: list[str] | None = None) -> None:
    for key, value in data.items():
        name = prefix + _check_key(key, where)
        if isinstance(value, dict):
            if not value:
                continue
            if depth >= MAX_DEPTH:
                raise _too_deep(name, where)
            _flatten(value, name + "/", where, enc, raw, depth + 1, media)
            continue
        if name in raw:
            raise InvalidValueError(
                f"Cannot log key {name!r} in {where}: it is given twice once nested dicts are "
                "flattened to 'a/b' keys; log it once."
            )
        t = type(value)
        if t is not float and t is not str and t is not bool and value is not None:
            if t is Histogram:
                raw[name] = value
                enc[name] = tag_histogram(value)
                continue
            if isinstance(value, Media) or (t is list and value and all(
                    isinstance(v, Media) for v in value)):
                if media is None:
                    raise UnsupportedTypeError(f"Cannot store key {name!r} in {where}: media "
                                               "values are stored by run.log() only.")
                raw[name] = enc[name] = value  # stored by the writer (see the docstring)
                media.append(name)
                continue
            value = _scalar(name, value, where)  # also range-checks ints
        raw[name] = value
        enc[name] = _tag(value) if type(value) is float and not math.isfinite(value) else value


FAST_OPTS = (orjson.OPT_STRICT_INTEGER | orjson.OPT_PASSTHROUGH_DATETIME
              | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS)
LINE_OPTS = FAST_OPTS | orjson.OPT_APPEND_NEWLINE  # a row as a whole plain log line


def encode_fast(data: Any) -> bytes | None:
    """JSON of a row that needs no conversion, or None when encode_row must look at it.

    One orjson call does the type checking in C: anything orjson would not
    write as a plain scalar raises (numpy, subclasses, datetimes, ints past
    2**53). What it writes silently but we must not accept shows in the bytes:
    ``null`` (None, or NaN/Inf turned into null), ``{`` and ``[`` (nested dicts,
    lists). Strings that merely contain those take the slow path, which is
    correct, only slower. Reserved keys are checked by dict lookups.
    """
    if (type(data) is not dict or not data or "_step" in data or "_timestamp" in data
            or "_crc" in data or _TAG in data or "" in data):
        return None
    try:
        out = dumps(data, option=FAST_OPTS)
    except TypeError:
        return None
    return out if plain_json(out) else None


def plain_json(out: bytes) -> bool:
    """Whether orjson's bytes of a flat row hold only plain scalars: no ``null`` (None, or
    NaN/Inf turned into null), no nested object, no list. A string that merely contains
    one of those reads as not plain, which only costs the slow path."""
    return not (b"null" in out or out.find(b"{", 1) >= 0 or b"[" in out)


def encode_row(data: dict[Any, Any], where: str, media: list[str] | None = None,
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON-ready flat row, flat row of Python values), or an error naming the key.

    ``media``: a list that gets the keys of media values, left in the row for the writer to
    store; without it a media value is refused as a value that cannot be stored here.
    """
    enc: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    _flatten(data, "", where, enc, raw, media=media)
    return enc, raw


def encode_tree(value: Any, where: str, path: str = "", depth: int = 0) -> Any:
    """Encode a config/summary value, keeping nesting; lists and tuples become lists. A number
    key becomes the string JSON writes for it, as W&B stores it (Transformers' ``id2label``)."""
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_DEPTH:
        raise _too_deep(path.rstrip("/") or "value", where)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, (int, float)):  # bool too: "true"
                key = orjson.dumps(key).decode()
            if type(key) is not str or key in (_TAG, HIST_TAG):
                raise InvalidValueError(f"Cannot store key {path + repr(key)} in {where}: "
                                        "keys must be strings other than '$f' and '$h'.")
            out[key] = encode_tree(item, where, f"{path}{key}/", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [encode_tree(item, where, path, depth + 1) for item in value]
    if isinstance(value, Histogram):
        return tag_histogram(value)
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) != 0:
        return encode_tree(value.tolist(), where, path, depth)
    value = _scalar(path.rstrip("/") or "value", value, where) if type(value) not in _PLAIN else value
    if type(value) is float and not math.isfinite(value):
        return _tag(value)
    return value


def decode_tree(value: Any, depth: int = 0) -> Any:
    """Inverse of encode_tree; ValueError for what encode_tree never writes (a damaged file)."""
    if type(value) is dict:
        if len(value) == 1 and (_TAG in value or HIST_TAG in value):
            return untag(value)
        if depth >= MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
        # A scalar is itself: no call for it (a listing decodes 10,000 configs).
        return {key: item if type(item) not in _NESTED else decode_tree(item, depth + 1)
                for key, item in value.items()}
    if type(value) is list:
        if depth >= MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
        return [item if type(item) not in _NESTED else decode_tree(item, depth + 1) for item in value]
    return value


_NESTED = (dict, list)


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a/b": 1}`` -> ``{"a": {"b": 1}}`` (for the default summary)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return out
