"""Search methods: which parameters the next new job gets.

grid walks the product of values in order (job index k gets combination k);
random samples with a generator seeded by (sweep, index), so a retried
transaction suggests the same thing; bayes asks optuna (an optional extra)
with the finished jobs' metric values as history.
"""

from __future__ import annotations

import random
from typing import Any

from ..errors import UsageError
from ._spec import Param, SweepSpec


def suggest(spec: SweepSpec, state: dict[str, Any], results: list[tuple[dict[str, Any], float]],
            rng: random.Random) -> dict[str, Any] | None:
    index = state["created"]
    if spec.method == "grid":
        grid = spec.grid()
        return grid[index] if index < len(grid) else None
    if spec.method == "random":
        return {p.name: p.sample(rng) for p in spec.params}
    return _bayes(spec, results, rng)


def _bayes(spec: SweepSpec, results: list[tuple[dict[str, Any], float]],
           rng: random.Random) -> dict[str, Any]:
    try:
        import optuna
    except ImportError:
        raise UsageError("method 'bayes' needs optuna: pip install 'localtrack[bayes]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert spec.metric is not None
    dists = {p.name: _distribution(optuna, p) for p in spec.params}
    sampler = optuna.samplers.TPESampler(seed=rng.randrange(2**31), n_startup_trials=5)
    direction = optuna.study.StudyDirection
    study = optuna.create_study(sampler=sampler, direction=direction.MAXIMIZE
                                if spec.metric["goal"] == "maximize" else direction.MINIMIZE)
    for params, value in results:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    trial = study.ask(dists)
    return dict(trial.params)


def _distribution(optuna: Any, p: Param) -> Any:
    d, a = optuna.distributions, p.args
    if p.distribution == "constant":
        return d.CategoricalDistribution([a["value"]])
    if p.distribution == "categorical":
        return d.CategoricalDistribution(a["values"])
    if p.distribution == "int_uniform":
        return d.IntDistribution(a["min"], a["max"])
    if p.distribution in ("log_uniform_values", "q_log_uniform_values"):
        return d.FloatDistribution(a["min"], a["max"], log=True)
    if p.distribution in ("uniform", "q_uniform"):
        return d.FloatDistribution(a["min"], a["max"], step=a.get("q"))
    raise UsageError(f"bayes search does not support the {p.distribution} distribution of "
                     f"parameter {p.name!r}; use uniform, int_uniform, log_uniform_values or "
                     "values.")
