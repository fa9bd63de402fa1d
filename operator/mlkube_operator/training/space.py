"""Search space -> the list of trials, deterministically (pure: no I/O, no clock).

Every pod of the search's Indexed Job computes the whole list from the spec and the
seed and takes the entry at its JOB_COMPLETION_INDEX, so the pods need no
coordination and a retried index runs exactly the same parameters.

The list is scikit-learn's own: a Grid is `ParameterGrid` order (parameters sorted
by name, the last one varying fastest) and a Random search is `ParameterSampler`
with the distributions below and `random_state=seed`. So the same space and seed give
the same candidates as GridSearchCV / RandomizedSearchCV would (benchmarks/search.py
relies on this to compare best scores):

- values: a list, drawn uniformly (or, when every parameter is a list, sampled
  without replacement from the grid);
- int range: `scipy.stats.randint(low, high + 1)`; with `log`, `floor` of a
  log-uniform draw on `[low, high + 1)`;
- float range: `scipy.stats.uniform(low, high - low)`; with `log`, `loguniform(low, high)`.
"""

from __future__ import annotations

import itertools
from typing import Any

from mlkube_operator.api.search import Parameter, RangeType, Scalar, Search, SearchType

Trial = dict[str, Scalar]


class LogUniformInt:
    """Integers in [low, high], log-uniformly: floor(exp(U(log low, log(high + 1))))."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def rvs(self, size: Any = None, random_state: Any = None) -> Any:
        import numpy as np
        from scipy.stats import loguniform

        draw = loguniform(self.low, self.high + 1).rvs(size=size, random_state=random_state)
        return np.clip(np.floor(draw), self.low, self.high).astype(np.int64)

    def __repr__(self) -> str:
        return f"LogUniformInt({self.low}, {self.high})"


def distributions(space: dict[str, Parameter]) -> dict[str, Any]:
    """The space as `param_distributions` for ParameterSampler / RandomizedSearchCV."""
    from scipy.stats import loguniform, randint, uniform

    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.values is not None:
            out[name] = list(p.values)
            continue
        low, high = float(p.low or 0.0), float(p.high or 0.0)
        if p.type is RangeType.INT:
            out[name] = LogUniformInt(int(low), int(high)) if p.log else randint(int(low), int(high) + 1)
        elif p.log:
            out[name] = loguniform(low, high)
        else:
            out[name] = uniform(low, high - low)
    return out


def grid(space: dict[str, Parameter]) -> list[Trial]:
    """Every combination, in ParameterGrid order (stdlib only)."""
    names = sorted(space)
    axes = [space[n].grid_values() for n in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


def random_trials(space: dict[str, Parameter], n: int, seed: int) -> list[Trial]:
    """`n` draws of ParameterSampler(distributions(space), n, random_state=seed), as plain Python values."""
    from sklearn.model_selection import ParameterSampler

    sampler = ParameterSampler(distributions(space), n_iter=n, random_state=seed)
    return [{k: plain(v) for k, v in draw.items()} for draw in sampler]


def trials(search: Search) -> list[Trial]:
    """The search's trials; index i is what completion index i runs."""
    n = search.resolved_trials()
    if search.type is SearchType.GRID:
        return grid(search.space)[:n]
    return random_trials(search.space, n, search.seed)


def plain(value: Any) -> Scalar:
    """numpy scalars -> int/float/bool/str, so a trial is JSON and compares equal across runs."""
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
