"""run.config and run.summary: dict-like views that persist on every change.

Both files are replaced atomically and fsynced (whatever the history's fsync
policy: a run must open after a power cut), so a kill or a power cut leaves the
previous or the new version, never a mix or an empty file. A change
reads, merges and writes under the run's mutex, so threads never lose one
another's keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

from ._codec import MAX_DEPTH, unflatten


class Config(MutableMapping[str, Any]):
    """W&B-style config: ``config["lr"]``, ``config.lr``, ``config.update({...})``."""

    def __init__(self, data: dict[str, Any], persist: Callable[[dict[str, Any]], None],
                 lock: AbstractContextManager[Any] | None = None) -> None:
        object.__setattr__(self, "_data", dict(data))
        object.__setattr__(self, "_persist", persist)
        object.__setattr__(self, "_lock", lock or contextlib.nullcontext())

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

    def update(self, other: Any = (), /, **kw: Any) -> None:
        """Set many keys with one write of config.json."""
        with self._lock:
            data = dict(self._data)
            data.update(dict(other), **kw)
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

    Keys are flat (``"val/loss"``); ``summary["val"]`` returns the nested
    subtree and ``as_dict()`` the whole summary nested on ``/``.
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
        prefix = key + "/"
        sub = {k[len(prefix):]: v for k, v in merged.items() if k.startswith(prefix)}
        if sub:
            return unflatten(sub)
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        with self._lock:
            explicit = dict(self._explicit)
            del explicit[key]
            self._persist(explicit)
            self._explicit = explicit

    def update(self, other: Any = (), /, **kw: Any) -> None:
        with self._lock:
            explicit = dict(self._explicit)
            explicit.update(_flat(dict(other, **kw)))
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
