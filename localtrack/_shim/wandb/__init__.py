"""localtrack's ``wandb`` shim: not the real wandb.

Code that imports ``wandb`` itself (Transformers' ``report_to="wandb"``, Lightning's own
``WandbLogger``, ``from wandb.integration.keras import ...``) runs on localtrack when this
folder's parent is on ``PYTHONPATH`` (``export PYTHONPATH=$(localtrack wandb-shim)``); nothing
else ever imports it. ``wandb.X`` is ``localtrack.X``, W&B's module paths re-export
``localtrack.integrations``, and the few W&B internals those frameworks call are here (each
says who needs it), never in localtrack's public surface. See docs/wandb.md, "The wandb shim".
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

import localtrack as _localtrack
from localtrack import _layout

# wandb.X is localtrack.X: the whole public surface, whatever localtrack.__all__ holds (init and
# the version are this module's own).
__all__ = [*_localtrack.__all__]
globals().update({name: getattr(_localtrack, name) for name in _localtrack.__all__
                  if name not in ("init", "__version__")})

# The version the dist-info beside this package declares (importlib.metadata reads that one):
# above the minimums frameworks check (Lightning: wandb>=0.12.10).
__version__ = "0.19.99"

_log = logging.getLogger("localtrack")
_SHIM_DIR = Path(__file__).resolve().parent.parent
# W&B's submodules named as attributes (``wandb.sdk.lib``, ``wandb.env.set_project``) without
# being imported first, as the real package's lazy loader allows.
_SUBMODULES = ("apis", "env", "errors", "integration", "keras", "lightgbm", "plot", "sdk", "sklearn",
               "util", "wandb_run", "xgboost")


def init(project: str | None = None, *, dir: str | os.PathLike[str] | None = None,
         id: str | None = None, resume: Any = None, **kwargs: Any) -> _localtrack.Run:
    """``localtrack.init`` with two of W&B's meanings that frameworks rely on:

    - ``dir`` is the folder that holds the store (``<dir>/localtrack-runs``, as W&B makes
      ``<dir>/wandb``): Lightning's WandbLogger passes its ``save_dir``, "." by default.
      LOCALTRACK_DIR, when set, names the store and wins over a framework's ``dir``.
    - ``resume="allow"`` with no run id (none given, no LOCALTRACK_RUN_ID / WANDB_RUN_ID)
      starts a new run, where localtrack refuses it: Lightning's WandbLogger always passes it.
    """
    if dir is not None:
        dir = None if os.environ.get("LOCALTRACK_DIR") else os.path.join(os.fspath(dir),
                                                                         _layout.DEFAULT_DIR)
    if resume == "allow" and id is None and not (os.environ.get("LOCALTRACK_RUN_ID")
                                                 or os.environ.get("WANDB_RUN_ID")):
        resume = None
    return _localtrack.init(project, dir=dir, id=id, resume=resume, **kwargs)


def termlog(string: str = "", newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    """W&B's console message (Transformers' WandbCallback calls ``termwarn``): logged."""
    _log.info("%s", string)


def termwarn(string: str, newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    """See ``termlog``: a warning."""
    _log.warning("%s", string)


def termerror(string: str, newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    """See ``termlog``: an error."""
    _log.error("%s", string)


def require(requirement: str | list[str] | None = None, experiment: str | list[str] | None = None
            ) -> None:
    """W&B's feature switches (Lightning's WandbLogger asks for "service" when pickled):
    localtrack has none to turn on."""


def _label(self: _localtrack.Run, code: str | None = None, repo: str | None = None,
           code_version: str | None = None, **kwargs: Any) -> None:
    """W&B's private ``Run._label`` (telemetry naming the caller): Transformers' WandbCallback
    calls ``run._label(code="transformers_trainer")``. Nothing is recorded."""


if not hasattr(_localtrack.Run, "_label"):
    setattr(_localtrack.Run, "_label", _label)  # noqa: B010  (mypy: Run declares no _label)


def _real_wandb() -> str | None:
    """Where the real wandb is installed on sys.path beside this shim, if it is."""
    others = [p for p in sys.path if p and Path(p).resolve() != _SHIM_DIR]
    spec = PathFinder.find_spec("wandb", others)
    return spec.origin if spec is not None else None


_other = _real_wandb()
if _other is not None:
    _log.warning("localtrack's wandb shim (%s) is imported, and the real wandb is installed too "
                 "(%s): the first on sys.path wins, here the shim. Take %s off PYTHONPATH to use "
                 "the real wandb.", _SHIM_DIR, _other, _SHIM_DIR)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    try:  # wandb.run, wandb.config, wandb.summary follow the active run
        return getattr(_localtrack, name)
    except AttributeError:
        raise AttributeError(f"module 'wandb' (localtrack's shim, not the real wandb) has no "
                             f"attribute {name!r}") from None
