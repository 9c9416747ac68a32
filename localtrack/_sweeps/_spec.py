"""W&B's sweep config format, validated up front into a tree of parameter samplers.

Every error names the offending key (``parameters.lr.max``) before anything
starts. Grid needs a finite set of values for every parameter.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from ..errors import SweepConfigError
from . import _hyperband

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
DISTRIBUTIONS = ("constant", "categorical", "uniform", "int_uniform", "q_uniform",
                 "log_uniform_values", "q_log_uniform_values", "log_uniform", "normal",
                 "q_normal", "log_normal")
_TOP_KEYS = {"method", "metric", "parameters", "run_cap", "program", "command", "name",
             "description", "project", "entity", "max_requeues", "early_terminate",
             "controller"}  # controller: W&B's local/cloud choice; here every agent is one


def _fail(where: str, problem: str) -> SweepConfigError:
    return SweepConfigError(f"Invalid sweep config at {where!r}: {problem}")


def _number(spec: dict[str, Any], key: str, where: str) -> float:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(f"{where}.{key}", f"expected a number, got {value!r}")
    return value


@dataclass(frozen=True)
class Param:
    """One leaf parameter: a distribution and its arguments."""

    name: str
    distribution: str
    args: dict[str, Any]

    def sample(self, rng: random.Random) -> Any:
        a, d = self.args, self.distribution
        if d == "constant":
            return a["value"]
        if d == "categorical":
            return rng.choice(a["values"])
        if d == "uniform":
            return rng.uniform(a["min"], a["max"])
        if d == "int_uniform":
            return rng.randint(a["min"], a["max"])
        if d == "q_uniform":
            return _quantize(rng.uniform(a["min"], a["max"]), a["q"])
        if d == "log_uniform_values":
            return math.exp(rng.uniform(math.log(a["min"]), math.log(a["max"])))
        if d == "q_log_uniform_values":
            return _quantize(math.exp(rng.uniform(math.log(a["min"]), math.log(a["max"]))), a["q"])
        if d == "log_uniform":  # W&B: min/max are natural-log exponents
            return math.exp(rng.uniform(a["min"], a["max"]))
        if d == "normal":
            return rng.gauss(a["mu"], a["sigma"])
        if d == "q_normal":
            return _quantize(rng.gauss(a["mu"], a["sigma"]), a["q"])
        return math.exp(rng.gauss(a["mu"], a["sigma"]))  # log_normal

    def grid_values(self) -> list[Any]:
        if self.distribution == "constant":
            return [self.args["value"]]
        if self.distribution == "categorical":
            return list(self.args["values"])
        if self.distribution == "int_uniform":
            return list(range(self.args["min"], self.args["max"] + 1))
        raise _fail(f"parameters.{self.name}", f"grid search needs 'values', 'value' or "
                    f"int_uniform bounds, not a {self.distribution} distribution")


def _quantize(value: float, q: float) -> float:
    out = round(value / q) * q
    return int(out) if isinstance(q, int) else out


def _param(name: str, spec: Any) -> Param:
    where = f"parameters.{name}"
    if not isinstance(spec, dict):
        raise _fail(where, f"expected a mapping such as {{'values': [...]}}, got {spec!r}")
    dist = spec.get("distribution")
    if dist is None:
        if "value" in spec:
            dist = "constant"
        elif "values" in spec:
            dist = "categorical"
        elif "min" in spec and "max" in spec:
            both_int = all(isinstance(spec[k], int) and not isinstance(spec[k], bool)
                           for k in ("min", "max"))
            dist = "int_uniform" if both_int else "uniform"
        elif "mu" in spec or "sigma" in spec:
            dist = "normal"
        else:
            raise _fail(where, "give 'value', 'values', 'min'/'max' or a 'distribution'")
    if dist not in DISTRIBUTIONS:
        raise _fail(f"{where}.distribution", f"unknown distribution {dist!r}; use one of "
                    f"{', '.join(DISTRIBUTIONS)}")
    args: dict[str, Any] = {}
    if dist == "constant":
        if "value" not in spec:
            raise _fail(where, "a constant needs 'value'")
        args["value"] = spec["value"]
    elif dist == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise _fail(f"{where}.values", f"expected a non-empty list, got {values!r}")
        args["values"] = values
    elif dist in ("normal", "q_normal", "log_normal"):
        args["mu"] = _number({"mu": spec.get("mu", 0.0)}, "mu", where)
        args["sigma"] = _number({"sigma": spec.get("sigma", 1.0)}, "sigma", where)
        if args["sigma"] <= 0:
            raise _fail(f"{where}.sigma", "must be > 0")
    else:
        lo, hi = _number(spec, "min", where), _number(spec, "max", where)
        if lo >= hi:
            raise _fail(where, f"min ({lo}) must be below max ({hi})")
        if dist == "int_uniform" and not (isinstance(lo, int) and isinstance(hi, int)):
            raise _fail(where, "int_uniform needs integer min and max")
        if dist in ("log_uniform_values", "q_log_uniform_values") and lo <= 0:
            raise _fail(f"{where}.min", f"{dist} needs min > 0, got {lo}")
        args["min"], args["max"] = lo, hi
    if dist.startswith("q_"):
        args["q"] = _number({"q": spec.get("q", 1)}, "q", where)
        if args["q"] <= 0:
            raise _fail(f"{where}.q", "must be > 0")
    return Param(name, dist, args)


def _leaves(parameters: Any, prefix: str = "") -> list[Param]:
    if not isinstance(parameters, dict) or not parameters:
        raise _fail(f"parameters{prefix and '.' + prefix.rstrip('.')}",
                    "expected a non-empty mapping of parameter names")
    out = []
    for name, spec in parameters.items():
        if not isinstance(name, str) or not name or "." in name:
            raise _fail(f"parameters.{prefix}{name}", "parameter names are non-empty strings "
                        "without '.'")
        if isinstance(spec, dict) and "parameters" in spec:
            out.extend(_leaves(spec["parameters"], f"{prefix}{name}."))
        else:
            out.append(_param(prefix + name, spec))
    return out


@dataclass(frozen=True)
class SweepSpec:
    method: str
    params: list[Param]
    metric: dict[str, str] | None
    run_cap: int | None
    max_requeues: int
    program: str | None
    command: list[str] | None
    raw: dict[str, Any] = field(repr=False)
    early_terminate: _hyperband.Hyperband | None = None

    def nest(self, flat: dict[str, Any]) -> dict[str, Any]:
        """``{"opt.lr": 1}`` -> ``{"opt": {"lr": 1}}`` for nested parameters."""
        out: dict[str, Any] = {}
        for key, value in flat.items():
            node = out
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return out

    def grid(self) -> list[dict[str, Any]]:
        names = [p.name for p in self.params]
        combos = itertools.product(*(p.grid_values() for p in self.params))
        return [dict(zip(names, combo, strict=True)) for combo in combos]


def parse(config: Any) -> SweepSpec:
    """Validate a sweep config (a dict, as from W&B's YAML) or raise SweepConfigError."""
    if not isinstance(config, dict):
        raise SweepConfigError(f"A sweep config must be a mapping, got {type(config).__name__}.")
    unknown = set(config) - _TOP_KEYS
    if unknown:
        raise _fail(sorted(unknown)[0], f"unknown key; known keys are {', '.join(sorted(_TOP_KEYS))}")
    method = config.get("method")
    if method not in METHODS:
        raise _fail("method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    metric = config.get("metric")
    if metric is not None:
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
            raise _fail("metric", "expected {'name': ..., 'goal': 'minimize' | 'maximize'}")
        goal = metric.get("goal", "minimize")
        if goal not in GOALS:
            raise _fail("metric.goal", f"expected minimize or maximize, got {goal!r}")
        metric = {"name": metric["name"], "goal": goal}
    elif method == "bayes":
        raise _fail("metric", "bayes search needs a metric to optimise")
    params = _leaves(config.get("parameters"))
    run_cap = config.get("run_cap")
    if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int)
                                or run_cap < 1):
        raise _fail("run_cap", f"expected a positive integer, got {run_cap!r}")
    max_requeues = config.get("max_requeues", 3)
    if isinstance(max_requeues, bool) or not isinstance(max_requeues, int) or max_requeues < 0:
        raise _fail("max_requeues", f"expected an integer >= 0, got {max_requeues!r}")
    program = config.get("program")
    if program is not None and not isinstance(program, str):
        raise _fail("program", f"expected a path, got {program!r}")
    command = config.get("command")
    if command is not None and (not isinstance(command, list)
                                or not all(isinstance(c, str) for c in command)):
        raise _fail("command", "expected a list of strings")
    early = _early_terminate(config.get("early_terminate"), metric)
    spec = SweepSpec(method, params, metric, run_cap, max_requeues, program, command, config,
                     early)
    if method == "grid":
        spec.grid()  # raises naming the parameter that cannot be gridded
    return spec


_ET_KEYS = {"type", "min_iter", "max_iter", "s", "eta", "strict"}


def _early_terminate(et: Any, metric: dict[str, str] | None) -> _hyperband.Hyperband | None:
    """W&B's ``early_terminate: {type: hyperband, min_iter | max_iter + s, eta: 3, strict}``."""
    if et is None:
        return None
    if not isinstance(et, dict) or et.get("type") != "hyperband":
        raise _fail("early_terminate.type", f"expected 'hyperband', got "
                    f"{et.get('type') if isinstance(et, dict) else et!r}")
    unknown = set(et) - _ET_KEYS
    if unknown:
        raise _fail(f"early_terminate.{sorted(unknown)[0]}", "unknown key; known keys are "
                    f"{', '.join(sorted(_ET_KEYS))}")
    if metric is None:
        raise _fail("metric", "early_terminate needs the metric whose history it compares")
    iters: dict[str, int | None] = {}
    for key in ("min_iter", "max_iter"):
        value = et.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise _fail(f"early_terminate.{key}", f"expected an integer >= 1, got {value!r}")
        iters[key] = value
    s = et.get("s")
    if s is not None:
        s = _number(et, "s", "early_terminate")
    if iters["max_iter"] is not None and s is None:
        raise _fail("early_terminate.s", "max_iter needs s, the number of bands below it")
    if iters["max_iter"] is None and iters["min_iter"] is None:
        raise _fail("early_terminate", "give min_iter, or max_iter and s")
    eta = _number({"eta": et.get("eta", 3)}, "eta", "early_terminate")
    if eta <= 1:
        raise _fail("early_terminate.eta", f"must be > 1, got {eta}")
    strict = et.get("strict", True)
    if not isinstance(strict, bool):
        raise _fail("early_terminate.strict", f"expected true or false, got {strict!r}")
    hb = _hyperband.make(iters["min_iter"], iters["max_iter"], s, eta, strict)
    if not hb.bands:
        raise _fail("early_terminate", f"max_iter {iters['max_iter']} with eta {eta} leaves no "
                    "band of at least 1 iteration; raise max_iter or lower eta")
    return hb
