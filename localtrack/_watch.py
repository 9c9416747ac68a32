"""run.watch(): histograms of a torch model's parameters and gradients, as W&B logs them.

Every ``log_freq`` forward passes the parameters are logged as ``parameters/<name>``; every
``log_freq`` backward passes through a parameter its gradient as ``gradients/<name>``. Each is a
``localtrack.Histogram`` logged with ``commit=False``: it joins the row the script logs next.
Non-finite values are left out of a histogram (a Histogram refuses them). torch is never
imported here: the hooks are the model's own methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ._media import Histogram
from .errors import UsageError

log = logging.getLogger("localtrack")

LOGS = ("gradients", "parameters", "all", None)


def _histogram(tensor: Any) -> Histogram | None:
    values = tensor.detach().float().cpu().reshape(-1)
    values = values[values.isfinite()]
    return Histogram(values) if values.numel() else None


class Watch:
    """The hooks put on one model; ``remove()`` takes them all off."""

    def __init__(self, model: Any, log_to: Callable[[dict[str, Any]], None], what: str | None,
                 log_freq: int, prefix: str) -> None:
        self.model = model
        self._log_to = log_to
        self._freq = log_freq
        self._prefix = prefix
        self._handles: list[Any] = []
        self._forwards = 0
        self._backwards: dict[str, int] = {}
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if what in ("parameters", "all"):
            self._handles.append(model.register_forward_hook(self._on_forward))
        if what in ("gradients", "all"):
            for name, param in params:
                self._handles.append(param.register_hook(self._gradient_hook(name)))

    def _on_forward(self, module: Any, inputs: Any, output: Any) -> None:
        self._forwards += 1
        if (self._forwards - 1) % self._freq:
            return
        row = {}
        for name, param in self.model.named_parameters():
            hist = _histogram(param)
            if hist is not None:
                row[f"parameters/{self._prefix}{name}"] = hist
        if row:
            self._log_to(row)

    def _gradient_hook(self, name: str) -> Callable[[Any], None]:
        def hook(grad: Any) -> None:
            count = self._backwards.get(name, 0) + 1
            self._backwards[name] = count
            if (count - 1) % self._freq == 0:
                hist = _histogram(grad)
                if hist is not None:
                    self._log_to({f"gradients/{self._prefix}{name}": hist})
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def check(model: Any, what: Any, log_freq: Any) -> None:
    """A UsageError for arguments watch() cannot use (naming the argument)."""
    if not callable(getattr(model, "named_parameters", None)) or not callable(
            getattr(model, "register_forward_hook", None)):
        raise UsageError(f"run.watch() needs a torch.nn.Module (or a list of them), got "
                         f"{type(model).__name__}.")
    if what not in LOGS:
        raise UsageError(f"run.watch() log={what!r}: give 'gradients', 'parameters', 'all' or None.")
    if isinstance(log_freq, bool) or not isinstance(log_freq, int) or log_freq < 1:
        raise UsageError(f"run.watch() log_freq={log_freq!r}: give a whole number >= 1.")
