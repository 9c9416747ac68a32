"""run.config and run.summary: dict-like views that persist on every change.

Both files are replaced atomically (fsynced only under fsync='always'), so a
kill leaves the previous or the new version, never a mix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from ._codec import unflatten


class Config(MutableMapping[str, Any]):
    """W&B-style config: ``config["lr"]``, ``config.lr``, ``config.update({...})``."""

    def __init__(self, data: dict[str, Any], persist: Callable[[dict[str, Any]], None]) -> None:
        object.__setattr__(self, "_data", dict(data))
        object.__setattr__(self, "_persist", persist)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
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
                 persist: Callable[[dict[str, Any]], None]) -> None:
        self._last = last
        self._explicit = explicit
        self._persist = persist

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
        explicit = dict(self._explicit)
        del explicit[key]
        self._persist(explicit)
        self._explicit = explicit

    def update(self, other: Any = (), /, **kw: Any) -> None:
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


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out
