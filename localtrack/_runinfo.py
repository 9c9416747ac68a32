"""W&B's run attributes (``run.name``, ``tags``, ``group``, ``notes``, ``job_type``,
``entity``, ``sweep_id``, ``url``, ``project_name()``): views of run.json that a writer may set.

Setting one (``run.name = "x"``) rewrites run.json atomically, so readers and a resumed run see
it. The Run supplies ``_meta`` (run.json as read) and ``_persist_meta()``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .errors import UsageError

UI_URL = "http://127.0.0.1:8080"  # `localtrack ui`'s default address


def _text(key: str, value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise UsageError(f"run.{key} must be a string or None, got {type(value).__name__} {value!r}.")
    return value or None


def _tags(key: str, value: Any) -> Any:
    if isinstance(value, str):
        value = [value]
    if value is not None and not (isinstance(value, (list, tuple))
                                  and all(isinstance(t, str) for t in value)):
        raise UsageError(f"run.tags must be a list of strings, got {value!r}.")
    return list(value) if value else None


def _field(key: str, check: Any = _text) -> property:
    def get(self: RunInfo) -> Any:
        value = self._meta.get(key)
        return tuple(value or ()) if key == "tags" else value

    def set_(self: RunInfo, value: Any) -> None:
        self._set_meta(key, check(key, value))

    return property(get, set_, doc=f"run.json's {key!r} (setting it rewrites run.json)")


class RunInfo:
    """The attributes; mixed into Run."""

    _meta: dict[str, Any]
    id: str
    project: str

    tags = _field("tags", _tags)
    group = _field("group")
    notes = _field("notes")
    job_type = _field("job_type")
    entity = _field("entity")

    @property
    def name(self) -> str:
        return str(self._meta.get("name") or self.id)

    @name.setter
    def name(self, value: str) -> None:
        self._set_meta("name", _text("name", value))

    @property
    def sweep_id(self) -> str | None:
        sweep = self._meta.get("sweep")
        return sweep if isinstance(sweep, str) else None

    @property
    def url(self) -> str:
        """The run in the dashboard of `localtrack ui` (its default address)."""
        return f"{UI_URL}/#/p/{quote(self.project)}/r/{quote(self.id)}"

    def project_name(self) -> str:
        return self.project

    def _set_meta(self, key: str, value: Any) -> None:
        meta = {k: v for k, v in self._meta.items() if k != key}
        if value is not None:
            meta[key] = value
        self._persist_meta(meta)
        self._meta = meta

    def _persist_meta(self, meta: dict[str, Any]) -> None:
        raise NotImplementedError
