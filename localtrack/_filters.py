"""W&B's Mongo-style run filters and orders, as pure functions over a run's record.

A record is a plain dict (see ``FIELDS``): ``config`` and ``summary_metrics`` nested dicts,
``tags`` a list, ``created_at`` an ISO-8601 UTC string, the rest strings or None. Filters
are checked whole by ``check()`` before any run is read, so a typo is one UsageError naming
the operator or field, never an empty result; ``matches()`` then never raises. A later
listing index keeps records of this shape and reuses both.

The semantics are MongoDB's, which W&B's server follows: comparisons hold between values of
one kind only (numbers with numbers, strings with strings; a bool is no number), a missing
field equals None, ``$ne``/``$nin`` match a missing field, a list field matches a value it
contains (``{"tags": "a"}``). Like W&B, ``name`` is the run id and ``display_name`` the name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any, TypeVar

from .errors import UsageError

# The fields a filter or an order may name: W&B's spellings, and a few of its aliases.
FIELDS = ("config", "summary_metrics", "state", "tags", "name", "id", "display_name", "group",
          "job_type", "notes", "entity", "project", "created_at", "sweep")
_ALIASES = {"displayName": "display_name", "jobType": "job_type", "createdAt": "created_at",
            "summaryMetrics": "summary_metrics"}
_NESTED = ("config", "summary_metrics")
_LOGICAL = ("$and", "$or", "$nor", "$not")
_COMPARE = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
_OPERATORS = (*_COMPARE, "$in", "$nin", "$exists", "$regex", "$options", "$not")
_MAX_DEPTH = 64  # filters nest no deeper than this (a hostile filter cannot exhaust the stack)
_MISSING = object()

Record = dict[str, Any]
T = TypeVar("T")


def iso_time(seconds: float, *, exact: bool = False) -> str:
    """W&B's ISO-8601 UTC form of a time, to the second (``exact``: to the microsecond, as a
    record's ``created_at`` is, so that runs made within a second still sort; the strings
    compare as the times do, and a time to the second is before any time within it)."""
    when = datetime.fromtimestamp(seconds, timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f" if exact else "%Y-%m-%dT%H:%M:%S")


def _usage(text: str) -> UsageError:
    return UsageError(f"{text} Filters follow W&B's: e.g. {{'config.lr': {{'$lt': 0.01}}, "
                      "'state': 'finished'}; operators: " + ", ".join((*_LOGICAL, *_OPERATORS[:-2]))
                      + ".")


def root_of(field: str) -> str:
    """The record field a dotted name starts with, checked (``config.lr`` -> ``config``)."""
    if not isinstance(field, str) or not field:
        raise _usage(f"Filter field {field!r} is not a field name.")
    head = field.split(".", 1)[0]
    root = _ALIASES.get(head, head)
    if root not in FIELDS:
        raise _usage(f"Unknown field {field!r} in the filters: use config.KEY, "
                     f"summary_metrics.KEY or one of {', '.join(FIELDS[2:])}.")
    if root in _NESTED and "." not in field:
        raise _usage(f"Filter field {field!r} names no key: write {root}.KEY.")
    return root


def check(filters: Any, depth: int = 0) -> set[str]:
    """The record fields ``filters`` reads; a UsageError naming the first thing that is wrong."""
    if depth > _MAX_DEPTH:
        raise _usage(f"The filters nest deeper than {_MAX_DEPTH} levels.")
    if not isinstance(filters, dict):
        raise _usage(f"Filters must be a dict, not {type(filters).__name__} {filters!r}.")
    roots: set[str] = set()
    for key, value in filters.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, list) or not value:
                raise _usage(f"{key} takes a non-empty list of filters, not {value!r}.")
            for sub in value:
                roots |= check(sub, depth + 1)
        elif key == "$not":
            roots |= check(value, depth + 1)
        elif isinstance(key, str) and key.startswith("$"):
            raise _usage(f"Unknown operator {key!r} at the top of the filters.")
        else:
            roots.add(root_of(key))
            _check_condition(key, value, depth + 1)
    return roots


def _is_condition(value: Any) -> bool:
    """Whether a field's value is a dict of operators (else it is a value to equal)."""
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and k.startswith("$") for k in value)


def _check_condition(field: str, value: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _usage(f"The filters nest deeper than {_MAX_DEPTH} levels.")
    if not _is_condition(value):
        return
    for op, arg in value.items():
        if op not in _OPERATORS:
            raise _usage(f"Unknown operator {op!r} on field {field!r}.")
        if op in ("$in", "$nin") and not isinstance(arg, list | tuple):
            raise _usage(f"{op} on field {field!r} takes a list, not {arg!r}.")
        if op == "$exists" and not isinstance(arg, bool):
            raise _usage(f"$exists on field {field!r} takes True or False, not {arg!r}.")
        if op == "$options" and ("$regex" not in value or not isinstance(arg, str)
                                 or set(arg) - set("imsx")):
            raise _usage(f"$options on field {field!r} goes with $regex and takes letters of "
                         f"'imsx', not {arg!r}.")
        if op == "$regex":
            _regex(field, arg, value.get("$options", ""))
        if op == "$not":
            if not _is_condition(arg):
                raise _usage(f"$not on field {field!r} takes a dict of operators, not {arg!r}.")
            _check_condition(field, arg, depth + 1)


def _regex(field: str, pattern: Any, options: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise _usage(f"$regex on field {field!r} takes a string, not {pattern!r}.")
    flags = 0
    for letter in options if isinstance(options, str) else "":
        flags |= {"i": re.I, "m": re.M, "s": re.S, "x": re.X}.get(letter, 0)
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise _usage(f"$regex {pattern!r} on field {field!r} is not a regular expression "
                     f"({exc}).") from None


def lookup(record: Record, field: str) -> Any:
    """The value a dotted field names in ``record``, or _MISSING.

    Below ``config``/``summary_metrics`` a key may itself hold dots or slashes: the longest
    key present wins, so ``summary_metrics.val/acc`` finds a summary nested on '/' and
    ``config.a.b`` a config key ``"a.b"``. W&B's ``config.KEY.value`` finds a plain value.
    """
    head, _, rest = field.partition(".")
    value = record.get(_ALIASES.get(head, head), _MISSING)
    if not rest or value is _MISSING:
        return value
    found = _find(value, rest)
    if found is _MISSING and head == "config" and rest.endswith(".value"):
        found = _find(value, rest[:-len(".value")])
    return found


def _find(value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        return _MISSING
    if path in value:
        return value[path]
    for i in range(len(path) - 1, 0, -1):  # the longest prefix that is a key holding a dict
        if path[i] in "./" and isinstance(value.get(path[:i]), dict):
            found = _find(value[path[:i]], path[i + 1:])
            if found is not _MISSING:
                return found
    return _MISSING


def matches(filters: dict[str, Any], record: Record) -> bool:
    """Whether ``record`` passes ``filters`` (checked by ``check()`` first)."""
    for key, value in filters.items():
        if key == "$and":
            ok = all(matches(f, record) for f in value)
        elif key == "$or":
            ok = any(matches(f, record) for f in value)
        elif key == "$nor":
            ok = not any(matches(f, record) for f in value)
        elif key == "$not":
            ok = not matches(value, record)
        else:
            ok = _holds(key, lookup(record, key), value)
        if not ok:
            return False
    return True


def _holds(field: str, found: Any, condition: Any) -> bool:
    if not _is_condition(condition):
        return _equal(found, condition)
    for op, arg in condition.items():
        if op == "$options":
            continue
        if not _OPS[op](field, found, arg, condition):
            return False
    return True


def _kind(value: Any) -> str | None:
    """The kind a value compares within (Mongo's type brackets); None for no comparable kind."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return None if isinstance(value, float) and math.isnan(value) else "number"
    if isinstance(value, str):
        return "str"
    return None


def _scalar_equal(a: Any, b: Any) -> bool:
    if a is _MISSING or a is None:
        return b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b) if _kind(a) == _kind(b) or type(a) is type(b) else False


def _equal(found: Any, value: Any) -> bool:
    """Mongo's equality: a list field equals the same list or holds the value."""
    if isinstance(found, list) and not isinstance(value, list):
        return any(_scalar_equal(item, value) for item in found)
    return _scalar_equal(found, value)


def _compare(found: Any, arg: Any, test: Callable[[Any, Any], bool]) -> bool:
    items = found if isinstance(found, list) else [found]
    return any(_kind(v) is not None and _kind(v) == _kind(arg) and test(v, arg) for v in items)


def _in(found: Any, options: Iterable[Any]) -> bool:
    return any(_equal(found, option) for option in options)


_OPS: dict[str, Callable[[str, Any, Any, dict[str, Any]], bool]] = {
    "$eq": lambda f, v, a, c: _equal(v, a),
    "$ne": lambda f, v, a, c: not _equal(v, a),
    "$gt": lambda f, v, a, c: _compare(v, a, lambda x, y: x > y),
    "$gte": lambda f, v, a, c: _compare(v, a, lambda x, y: x >= y),
    "$lt": lambda f, v, a, c: _compare(v, a, lambda x, y: x < y),
    "$lte": lambda f, v, a, c: _compare(v, a, lambda x, y: x <= y),
    "$in": lambda f, v, a, c: _in(v, a),
    "$nin": lambda f, v, a, c: not _in(v, a),
    "$exists": lambda f, v, a, c: (v is not _MISSING) == a,
    "$regex": lambda f, v, a, c: any(
        isinstance(s, str) and _regex(f, a, c.get("$options", "")).search(s) is not None
        for s in (v if isinstance(v, list) else [v])),
    "$not": lambda f, v, a, c: not _holds(f, v, a),
}


def parse_order(order: Any) -> tuple[str, bool]:
    """W&B's ``"+created_at"`` / ``"-summary_metrics.val/acc"``: (field, descending)."""
    if not isinstance(order, str) or order.strip("+-") == "":
        raise UsageError(f"order={order!r} is not a field: write e.g. '+created_at' or "
                         "'-summary_metrics.val/acc' ('-' for descending).")
    field = order[1:] if order[0] in "+-" else order
    root_of(field)
    return field, order[0] == "-"


def ordered(items: list[tuple[Record, T]], field: str, descending: bool) -> list[T]:
    """The items sorted by ``field`` of their records, within each kind (numbers, then strings,
    then bools); items without a comparable value last, whichever the direction. Stable."""
    keyed, missing = [], []
    for record, item in items:
        value = lookup(record, field)
        kind = _kind(value)
        if kind is None:
            missing.append(item)
        else:
            keyed.append(((("number", "str", "bool").index(kind), value), item))
    keyed.sort(key=lambda pair: pair[0], reverse=descending)
    return [item for _, item in keyed] + missing
