"""run.config and run.summary: dict-like views that persist on every change.

Both files are replaced atomically and fsynced (whatever the history's fsync
policy: a run must open after a power cut), so a kill or a power cut leaves the
previous or the new version, never a mix or an empty file. A change
reads, merges and writes under the run's mutex, so threads never lose one
another's keys.

A config is given as W&B takes it: a dict, an ``argparse.Namespace`` or any object with
``items()`` or ``__dict__``, or the path of a YAML/JSON file (``config_dict``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Collection, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

import orjson

from ._codec import MAX_DEPTH, unflatten
from .errors import InvalidValueError, UnsupportedTypeError, UsageError

logger = logging.getLogger("localtrack")


class Config(MutableMapping[str, Any]):
    """W&B-style config: ``config["lr"]``, ``config.lr``, ``config.update({...})``."""

    def __init__(self, data: dict[str, Any], persist: Callable[[dict[str, Any]], None],
                 lock: AbstractContextManager[Any] | None = None) -> None:
        object.__setattr__(self, "_data", dict(data))
        object.__setattr__(self, "_persist", persist)
        object.__setattr__(self, "_lock", lock or contextlib.nullcontext())
        object.__setattr__(self, "_locked", {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        with self._lock:
            data = dict(self._data)
            del data[key]
            self._commit(data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def update(self, other: Any = None, /, allow_val_change: bool | None = None, **kw: Any) -> None:
        """Set many keys with one write of config.json. ``other`` is anything init() takes as
        config. A value may always change (W&B's ``allow_val_change`` is accepted for that)."""
        new = storable({**config_dict(other), **kw})
        for key in [k for k in new if k in self._locked]:
            if new[key] != self._data.get(key):  # W&B's words, and as W&B the value stays
                logger.warning("Config item '%s' was locked by '%s' (ignored update).", key,
                               self._locked[key])
            del new[key]
        with self._lock:
            data = dict(self._data)
            data.update(new)
            self._commit(data)

    def _lock_keys(self, keys: Collection[str], by: str) -> None:
        """Keys an update leaves as they are (a sweep's parameters, as W&B locks them: a
        script's ``config.update(args)`` does not undo the agent's values)."""
        self._locked.update(dict.fromkeys(keys, by))

    def setdefaults(self, d: Any) -> None:
        """Set the keys of ``d`` not set yet (W&B's ``config.setdefaults``)."""
        with self._lock:
            data = {**storable(config_dict(d)), **self._data}
            self._commit(data)

    def _commit(self, data: dict[str, Any]) -> None:
        self._persist(data)  # validates and writes first: a bad value changes nothing
        object.__setattr__(self, "_data", data)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


class Summary(MutableMapping[str, Any]):
    """Last logged value of each key, overridden by values set here.

    Keys are flat (``"val/loss"``); ``summary["val"]`` is a live view of the subtree
    (``SummarySubDict``, as W&B's), so ``summary["val"]["best"] = 1`` and
    ``summary.val.best = 1`` persist. ``as_dict()`` is the whole summary nested on ``/``.
    ``update({"val": {...}})`` replaces the subtree that was set under "val", as W&B's does
    (a key logged under it stays: the history is not changed).
    """

    def __init__(self, last: Callable[[], dict[str, Any]], explicit: dict[str, Any],
                 persist: Callable[[dict[str, Any]], None],
                 lock: AbstractContextManager[Any] | None = None) -> None:
        self._last = last
        self._explicit = explicit
        self._persist = persist
        self._lock = lock or contextlib.nullcontext()

    def _merged(self) -> dict[str, Any]:
        return {**self._last(), **self._explicit}

    def __getitem__(self, key: str) -> Any:
        if key in self._explicit:
            return self._explicit[key]
        merged = self._merged()
        if key in merged:
            return merged[key]
        if _subtree(merged, key):
            return SummarySubDict(self, key)
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getattr__(self, name: str) -> Any:
        """``run.summary.best`` reads the key "best" (W&B's attribute access)."""
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"summary has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self.update({name: value})

    def __delitem__(self, key: str) -> None:
        with self._lock:
            explicit = _without(self._explicit, key)
            if len(explicit) == len(self._explicit):
                raise KeyError(key)
            self._persist(explicit)
            self._explicit = explicit

    def update(self, other: Any = None, /, **kw: Any) -> None:
        """Set keys with one write of summary.json; a dict value replaces what was set under
        its key (W&B's rule), ``summary[k1][k2] = v`` sets one key inside it."""
        self._set("", dict(other or {}, **kw))

    def _set(self, prefix: str, values: dict[str, Any]) -> None:
        with self._lock:
            explicit = dict(self._explicit)
            for key in values:
                explicit = _without(explicit, f"{prefix}{key}")
            explicit.update(_flat(values, prefix))
            self._persist(explicit)
            self._explicit = explicit

    def __iter__(self) -> Iterator[str]:
        return iter(self._merged())

    def __len__(self) -> int:
        return len(self._merged())

    def as_dict(self) -> dict[str, Any]:
        return unflatten(self._merged())

    def __repr__(self) -> str:
        return f"Summary({self.as_dict()!r})"


class SummarySubDict(MutableMapping[str, Any]):
    """A nested part of a run's summary, read through to it: setting or deleting a key here
    changes the run's summary (and summary.json) as W&B's nested summary dicts do."""

    def __init__(self, root: Summary, key: str) -> None:
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_key", key)

    def _items(self) -> dict[str, Any]:
        return _subtree(self._root._merged(), self._key)

    def __getitem__(self, key: str) -> Any:
        items = self._items()
        if key in items:
            return items[key]
        if _subtree(items, key):
            return SummarySubDict(self._root, f"{self._key}/{key}")
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        del self._root[f"{self._key}/{key}"]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"summary[{self._key!r}] has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def update(self, other: Any = None, /, **kw: Any) -> None:
        self._root._set(f"{self._key}/", dict(other or {}, **kw))

    def __iter__(self) -> Iterator[str]:
        return iter(unflatten(self._items()))

    def __len__(self) -> int:
        return len(unflatten(self._items()))

    def as_dict(self) -> dict[str, Any]:
        return unflatten(self._items())

    def __repr__(self) -> str:
        return repr(self.as_dict())  # prints as the dict it stands for


def _subtree(flat: dict[str, Any], key: str) -> dict[str, Any]:
    """The keys of ``flat`` under ``key/``, without that prefix."""
    prefix = key + "/"
    return {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}


def _without(flat: dict[str, Any], key: str) -> dict[str, Any]:
    """``flat`` without ``key`` and the keys under it."""
    prefix = key + "/"
    return {k: v for k, v in flat.items() if k != key and not k.startswith(prefix)}


def _flat(data: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Nested keys joined by "/"; past MAX_DEPTH the value stays nested, for the codec to
    refuse with a message that names it (a dict that holds itself never ends)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value and depth < MAX_DEPTH:
            out.update(_flat(value, f"{prefix}{key}/", depth + 1))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_dict(value: object, *, include: Collection[str] | None = None,
                exclude: Collection[str] | None = None) -> dict[str, Any]:
    """A config as W&B takes it, as a dict: a mapping or anything with ``items()``, a path to a
    YAML or JSON file, or an object's ``vars()`` (``argparse.Namespace``); then only the keys
    in ``include``, or all but those in ``exclude``."""
    if include and exclude:
        raise UsageError("Give config_include_keys or config_exclude_keys, not both.")
    if value is None:
        data: dict[str, Any] = {}
    elif isinstance(value, Mapping):
        data = dict(value)
    elif isinstance(value, (str, os.PathLike)):
        data = read_config_file(value)
    elif callable(getattr(value, "items", None)):
        data = dict(value.items())  # type: ignore[attr-defined]
    elif hasattr(value, "__dict__"):
        data = dict(vars(value))
    else:
        raise UsageError(f"config must be a dict, an object with items() or __dict__ (such as "
                         f"argparse.Namespace) or the path of a YAML/JSON file, got "
                         f"{type(value).__name__} {value!r}.")
    if include:
        data = {k: v for k, v in data.items() if k in include}
    if exclude:
        data = {k: v for k, v in data.items() if k not in exclude}
    return data


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML (or JSON) config file, plain (``lr: 0.1``) or in W&B's format (``wandb_version: 1``,
    ``lr: {value: 0.1, desc: ...}``). YAML is imported only here, when a file is given."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as exc:
        raise UsageError(f"Cannot read the config file {os.fspath(path)!r}: {exc.strerror or exc}; "
                         "give the path of a YAML or JSON file.") from None
    name = os.fspath(path)
    if name.endswith(".json"):
        try:
            loaded = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"The config file {name!r} is not valid JSON: {exc}") from None
    else:
        import yaml

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"The config file {name!r} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"The config file {name!r} holds a {type(loaded).__name__}, "
                         "not a mapping of keys to values.")
    loaded.pop("wandb_version", None)
    return {k: v["value"] if _is_wandb_entry(v) else v for k, v in loaded.items()}


def _is_wandb_entry(value: object) -> bool:
    """W&B's file format wraps each value: ``{value: 0.1, desc: "learning rate"}``."""
    return isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}


DEFAULTS_FILE = "config-defaults.yaml"


def config_defaults() -> dict[str, Any]:
    """W&B's config-defaults.yaml in the working directory (plain or ``{value: ...}`` entries):
    the config a run starts from, under init()'s own."""
    return read_config_file(DEFAULTS_FILE) if os.path.isfile(DEFAULTS_FILE) else {}


def storable(value: Any, depth: int = 0) -> Any:
    """A config with the values W&B takes but JSON has no type for stored as strings, as W&B
    stores them: paths (``pathlib.Path``), ``torch.device``, ``torch.dtype``."""
    if depth > MAX_DEPTH:  # left as it is, for the codec to refuse with a message naming it
        return value
    if isinstance(value, dict):
        return {k: storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v, depth + 1) for v in value]
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        return path if isinstance(path, str) else os.fsdecode(path)
    kind = type(value)
    if kind.__module__ == "torch" and kind.__name__ in ("device", "dtype"):
        return str(value)
    return value


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    """The codec's errors about a config value, worded for a config (not "log")."""
    try:
        yield
    except (UnsupportedTypeError, InvalidValueError) as exc:
        text = str(exc).replace("Cannot log key", "Cannot store config key").replace(
            "Log int, float, bool, str, None, a localtrack.Histogram or a nested dict of them",
            "Config values may be int, float, bool, str, None, a path, a list or a nested dict "
            "of them")
        raise type(exc)(text, project=exc.project, run_id=exc.run_id, path=exc.path) from None
