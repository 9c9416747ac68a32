"""W&B's magic argparse capture: ``init(magic=True)`` puts the script's parsed arguments in
``run.config``.

W&B's magic replaces ``argparse.ArgumentParser`` while a run lives and copies what
``parse_args()`` returns into the config. Here: the ``argparse.Namespace`` values already
parsed when ``init()`` is called (in the frame that called it) are taken at once, and
``ArgumentParser.parse_known_args`` (which ``parse_args`` calls) is patched until the last
magic run finishes, so a later parse is taken too. A key the config already holds (given to
init(), set by the script, a sweep's locked value) is never overridden; a key magic set itself
follows the newest parse. init()'s ``config_include_keys``/``config_exclude_keys`` apply. A
forked child drops the captures of the runs it inherits (they are not its to write).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Collection
from typing import Any

from . import _run
from .errors import LocaltrackError

log = logging.getLogger("localtrack")

ParseKnown = Callable[..., tuple[argparse.Namespace, list[str]]]


class _Capture:
    """One magic run: which keys magic may set in its config."""

    def __init__(self, run: _run.Run, include: Collection[str] | None,
                 exclude: Collection[str] | None) -> None:
        self.run = run
        self.include = set(include) if include else None
        self.exclude = set(exclude or ())
        self.mine: dict[str, Any] = {}  # what magic set: a newer parse may change it, unless
        # the script set the key since (then it is the script's)

    def take(self, parsed: argparse.Namespace) -> None:
        config = self.run.config
        new = {k: v for k, v in vars(parsed).items()
               if (self.include is None or k in self.include) and k not in self.exclude
               and (k not in config or self._set_by_magic(k))}
        if not new:
            return
        try:
            config.update(new)
        except LocaltrackError:  # one bad value (a file object from FileType): keep the others
            for key, value in new.items():
                try:
                    config.update({key: value})
                except LocaltrackError as exc:
                    log.warning("magic: argument %r not put in the config of %s: %s", key,
                                self.run.path, exc)
        self.mine.update({k: config[k] for k in new if k in config})

    def _set_by_magic(self, key: str) -> bool:
        return key in self.mine and self.run.config.get(key) == self.mine[key]


_captures: list[_Capture] = []
_original: ParseKnown | None = None


def _patched(self: argparse.ArgumentParser, args: Any = None,
             namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
    assert _original is not None  # installed only with it
    parsed, rest = _original(self, args, namespace)
    for capture in list(_captures):
        try:
            capture.take(parsed)
        except Exception:  # the script's parse_args() must never fail because of us
            log.warning("magic: could not capture arguments for %s", capture.run.path,
                        exc_info=True)
    return parsed, rest


def install(run: _run.Run, include: Collection[str] | None,
            exclude: Collection[str] | None) -> None:
    """Capture ``run``'s arguments: those parsed already, and each later parse until
    ``release(run)``."""
    global _original
    if any(c.run is run for c in _captures):
        return
    capture = _Capture(run, include, exclude)
    for parsed in _namespaces_of_caller():
        capture.take(parsed)
    _captures.append(capture)
    if _original is None:
        _original = argparse.ArgumentParser.parse_known_args
        argparse.ArgumentParser.parse_known_args = _patched  # type: ignore[method-assign,assignment]


def release(run: _run.Run) -> None:
    """Stop capturing for ``run`` (it finished); the last one puts argparse back as it was,
    unless something patched it after us (then its patch stays, and ours passes through)."""
    global _original
    _captures[:] = [c for c in _captures if c.run is not run]
    if _captures or _original is None:
        return
    if argparse.ArgumentParser.__dict__.get("parse_known_args") is _patched:
        argparse.ArgumentParser.parse_known_args = _original  # type: ignore[method-assign,assignment]
        _original = None


def _namespaces_of_caller() -> list[argparse.Namespace]:
    """The Namespaces the code that called init() holds (its module's globals, then its
    locals, which win): a script that parsed its arguments before init()."""
    frame = sys._getframe(1)
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("localtrack"):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return []
    found = [v for v in frame.f_globals.values() if isinstance(v, argparse.Namespace)]
    if frame.f_locals is not frame.f_globals:
        found += [v for v in frame.f_locals.values() if isinstance(v, argparse.Namespace)]
    return found
