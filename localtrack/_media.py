"""Rich values logged beside scalars; for now ``Histogram`` (W&B's ``wandb.Histogram``).

A histogram is small (at most 512 bins), so it is stored inline in the history row as a
tagged value the codec writes (see _codec and docs/format.md), not in a media stream. It is
validated and binned when it is made, as W&B does, so ``log()`` only copies two lists.
numpy and torch are used when the data is theirs and never imported otherwise; a list is
binned in pure Python without numpy, with numpy's rule (the same counts and edges).
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator
from collections.abc import Iterable
from typing import Any

from .errors import InvalidValueError, UnsupportedTypeError

MAX_BINS = 512


class Histogram:
    """Counts of values in bins, logged as ``run.log({"weights": localtrack.Histogram(x)})``.

    ``sequence``: numbers (a list, a numpy array or a torch tensor of any shape), binned into
    ``num_bins`` equal bins between their minimum and maximum, as ``np.histogram`` does; or
    ``np_histogram=(counts, edges)``, a histogram already made (``np.histogram(x)``,
    ``torch.histogram(x)``). At most 512 bins. NaN and infinite values are refused, as W&B's
    ``np.histogram`` call refuses them: filter them first (``x[np.isfinite(x)]``). Counts must
    be whole numbers (``density=True`` or ``weights=`` histograms are not stored yet).
    """

    MAX_LENGTH = MAX_BINS  # W&B's name for the limit
    __slots__ = ("counts", "edges")

    counts: tuple[int, ...]
    edges: tuple[float, ...]

    def __init__(self, sequence: Any = None, *, np_histogram: Any = None, num_bins: int = 64) -> None:
        if (sequence is None) == (np_histogram is None):
            raise InvalidValueError(
                "localtrack.Histogram() takes either a sequence of values or "
                "np_histogram=(counts, edges), not " + ("both." if sequence is not None else "neither."))
        if np_histogram is not None:
            counts, edges = _pair(np_histogram)
        else:
            bins = _num_bins(num_bins)
            if _looks_like_np_histogram(sequence):
                raise InvalidValueError(
                    "localtrack.Histogram() was given a (counts, edges) pair as its values; "
                    "pass a histogram made by np.histogram() as np_histogram=(counts, edges).")
            counts, edges = _bin(sequence, bins)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "edges", edges)

    @classmethod
    def _stored(cls, counts: Any, edges: Any) -> Histogram:
        """A histogram read back from a store; ValueError when the stored lists are not one."""
        return cls(np_histogram=(counts, edges))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a localtrack.Histogram cannot be changed once made; make a new one")

    @property
    def histogram(self) -> list[int]:
        """The counts, under W&B's name."""
        return list(self.counts)

    @property
    def bins(self) -> list[float]:
        """The bin edges (one more than the counts), under W&B's name."""
        return list(self.edges)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.counts == other.counts and self.edges == other.edges

    def __hash__(self) -> int:
        return hash((self.counts, self.edges))

    def __repr__(self) -> str:
        return (f"Histogram({len(self.counts)} bins, {sum(self.counts)} values, "
                f"{self.edges[0]:g}..{self.edges[-1]:g})")


def _num_bins(value: Any) -> int:
    try:
        bins = operator.index(value)
    except TypeError:
        raise UnsupportedTypeError(f"localtrack.Histogram(num_bins={value!r}): num_bins must be "
                                   f"an int from 1 to {MAX_BINS}.") from None
    if isinstance(value, bool) or not 1 <= bins <= MAX_BINS:
        raise InvalidValueError(f"localtrack.Histogram(num_bins={value!r}): num_bins must be "
                                f"from 1 to {MAX_BINS}.")
    return bins


def _as_list(values: Any, what: str) -> list[Any]:
    """A flat list of the items of a list, tuple, numpy array or torch tensor (any shape)."""
    if hasattr(values, "detach"):  # a torch tensor: off the graph and the device first
        values = values.detach().cpu()
    if hasattr(values, "tolist") and hasattr(values, "shape"):
        flat = values.reshape(-1) if hasattr(values, "reshape") else values
        items = flat.tolist()
        return items if isinstance(items, list) else [items]
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise UnsupportedTypeError(f"localtrack.Histogram(): {what} must be a sequence of "
                                   f"numbers, got {type(values).__name__} {_short(values)}.")
    return list(values)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _numbers(items: list[Any], what: str) -> list[float]:
    """The items as floats; refuses what is not a real number, and NaN or infinity."""
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise UnsupportedTypeError(f"localtrack.Histogram(): {what} must be numbers, got "
                                       f"{type(item).__name__} {_short(item)}.")
        out.append(float(item))
    _check_finite(sum(1 for x in out if not math.isfinite(x)), len(out), what)
    return out


def _check_finite(bad: int, total: int, what: str) -> None:
    if bad:
        raise InvalidValueError(
            f"localtrack.Histogram(): {bad} of the {total} {what} are NaN or infinite, which "
            "have no bin. Filter them first, e.g. x[np.isfinite(x)] or x[torch.isfinite(x)].")


def _bin(sequence: Any, bins: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``np.histogram(values, bins)``: with numpy when it is installed, else in pure Python."""
    try:
        import numpy as np
    except ImportError:
        return bin_python(_numbers(_as_list(sequence, "the values"), "values"), bins)
    if hasattr(sequence, "detach"):  # a torch tensor: off the graph and the device first
        sequence = sequence.detach().cpu()
        sequence = sequence.double() if sequence.is_floating_point() else sequence
    if isinstance(sequence, (str, bytes)) or not hasattr(sequence, "__len__") and not hasattr(
            sequence, "__array__"):
        sequence = _as_list(sequence, "the values")
    try:
        array = np.asarray(sequence).reshape(-1)
        if array.dtype.kind == "O":  # a list of numpy/torch scalars, or of anything
            array = np.asarray(_numbers(list(array), "values"))
    except ValueError:  # ragged nesting
        raise UnsupportedTypeError("localtrack.Histogram(): the values must be numbers in a "
                                   "sequence or array of one shape.") from None
    if array.dtype.kind not in "iuf":
        kind = array.dtype.name if array.size else "nothing"
        raise UnsupportedTypeError(f"localtrack.Histogram(): the values must be numbers, got "
                                   f"an array of {kind}.")
    if array.dtype.kind == "f":
        _check_finite(int(array.size - np.count_nonzero(np.isfinite(array))), array.size, "values")
    try:
        counts, edges = np.histogram(array, bins=bins)
    except ValueError as exc:  # a range wider than a float holds
        raise InvalidValueError(f"localtrack.Histogram(): cannot bin these values ({exc}); "
                                "scale them first.") from None
    return tuple(counts.tolist()), tuple(float(e) for e in edges.tolist())


def bin_python(values: list[float], bins: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """numpy's histogram of finite floats, in pure Python: ``bins`` equal bins from the
    minimum to the maximum (widened by 0.5 each way when they are equal, 0..1 for no values),
    each half-open but the last, with numpy's arithmetic so the counts and edges are its own."""
    if values:
        first, last = min(values), max(values)
    else:
        first, last = 0.0, 1.0
    if first == last:
        first, last = first - 0.5, last + 0.5
    if not math.isfinite(last - first):
        raise InvalidValueError(f"localtrack.Histogram(): the values span {first:g}..{last:g}, "
                                "wider than a float holds; scale them first.")
    step = (last - first) / bins
    edges = [i * step + first for i in range(bins)] + [last]
    norm = bins / (last - first)
    counts = [0] * bins
    for x in values:  # numpy's index, then its correction against the edges
        i = min(int((x - first) * norm), bins - 1)
        if x < edges[i]:
            i -= 1
        elif i != bins - 1 and x >= edges[i + 1]:
            i += 1
        counts[i] += 1
    return tuple(counts), tuple(edges)


def _looks_like_np_histogram(value: Any) -> bool:
    """Whether ``value`` is a (counts, edges) pair, as np.histogram returns (W&B's 2017 API
    took one as the values; now it is ``np_histogram=``)."""
    if not isinstance(value, tuple) or len(value) != 2:
        return False
    try:
        return len(value[1]) == len(value[0]) + 1
    except TypeError:
        return False


def _pair(np_histogram: Any) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Checked (counts, edges) of a histogram made elsewhere."""
    if isinstance(np_histogram, (str, bytes)) or not hasattr(np_histogram, "__len__") \
            or len(np_histogram) != 2:
        raise InvalidValueError("localtrack.Histogram(np_histogram=...) takes a (counts, edges) "
                                f"pair as np.histogram() returns, got {_short(np_histogram)}.")
    counts = _numbers(_as_list(np_histogram[0], "the counts"), "counts")
    edges = _numbers(_as_list(np_histogram[1], "the edges"), "edges")
    if not 1 <= len(counts) <= MAX_BINS:
        raise InvalidValueError(f"localtrack.Histogram(np_histogram=...): {len(counts)} counts; "
                                f"a histogram has from 1 to {MAX_BINS} bins.")
    if len(edges) != len(counts) + 1:
        raise InvalidValueError(f"localtrack.Histogram(np_histogram=...): {len(counts)} counts "
                                f"need {len(counts) + 1} edges, got {len(edges)}.")
    if any(c < 0 or c != int(c) for c in counts):
        raise InvalidValueError("localtrack.Histogram(np_histogram=...): counts must be whole "
                                "numbers >= 0 (histograms made with density=True or weights= "
                                "are not stored yet); pass the raw counts.")
    if any(b < a for a, b in itertools.pairwise(edges)):
        raise InvalidValueError("localtrack.Histogram(np_histogram=...): the edges must not "
                                "decrease.")
    return tuple(int(c) for c in counts), tuple(edges)
