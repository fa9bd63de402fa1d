"""The reference profile: what the training data looked like, for drift detection later.

The model server bins live traffic on exactly these edges and compares fractions
(chi-square and rank tests, PSI for humans), so the profile is computed from the
canonical data (what the model is trained on), not from the raw source, and is
deterministic: the same bytes give the same profile.json. Quantile bins (not
equal-width) keep every bin populated on skewed features. The inner edges lie
halfway between two distinct observed values (the empirical quantile and the
largest value below it), never on a value: a rounded or discrete feature (iris'
petal width in steps of 0.1 cm, counts) would otherwise have a bin edge exactly on a
tied value, and measurement noise of a few hundredths would move half of that value's
rows across the edge and look like drift. The outer edges are the observed minimum
and maximum. When quantiles coincide (few distinct values) duplicate edges are
removed, so a feature may have fewer bins than asked for, and a constant feature has
the single bin [v, v].

Task inference lives here too because the training Job must reach the same answer
from the same bytes: a target that is not numeric, or whose values are all integral
with at most 20 distinct ones (iris' 0/1/2), is a classification target.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from .canonical import column_kind
from .contract import CATEGORICAL, CLASSIFICATION, NUMERIC, REGRESSION

MAX_CLASSES_FOR_INTEGRAL_TARGET = 20


def infer_task(target: pd.Series) -> str:
    if column_kind(target) == CATEGORICAL:
        return CLASSIFICATION
    values = target.dropna().to_numpy(dtype="float64")
    if not np.isfinite(values).all():
        return REGRESSION
    integral = bool(np.all(values == np.floor(values)))
    distinct = len(np.unique(values))
    return CLASSIFICATION if integral and distinct <= MAX_CLASSES_FOR_INTEGRAL_TARGET else REGRESSION


def class_labels(target: pd.Series) -> pd.Series:
    """Labels of a classification target: integral floats (`1.0`, from a column with gaps) become ints."""
    if column_kind(target) == NUMERIC:
        present = target.dropna()
        return present.astype("int64") if len(present) else present
    return target.dropna().astype(object)


def numeric_profile(series: pd.Series, bins: int) -> dict[str, Any]:
    values = series.dropna().to_numpy(dtype="float64")
    missing = int(len(series) - len(values))
    if len(values) == 0:  # nothing to bin: null edges (readers reject fewer than two edges)
        return {
            "kind": NUMERIC,
            "binEdges": None,
            "fractions": None,
            "mean": None,
            "std": None,
            "missing": missing,
        }
    ordered = np.sort(values)  # one sort serves the quantiles, the inner edges and the bin counts
    edges = _sorted_quantile_edges(ordered, bins)
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    fractions = _sorted_bin_fractions(ordered, edges)
    return {
        "kind": NUMERIC,
        "binEdges": [float(e) for e in edges],
        "fractions": fractions,
        "mean": float(values.mean()),  # in row order: the same float as before sorting was added
        "std": float(values.std(ddof=0)),
        "missing": missing,
    }


def quantile_edges(values: np.ndarray[Any, Any], bins: int) -> np.ndarray[Any, Any]:
    """Quantile bin edges whose inner edges sit between distinct values (see the module docstring)."""
    return _sorted_quantile_edges(np.sort(values), bins)


def _sorted_quantile_edges(ordered: np.ndarray[Any, Any], bins: int) -> np.ndarray[Any, Any]:
    quantiles = np.unique(np.quantile(ordered, np.linspace(0.0, 1.0, bins + 1), method="inverted_cdf"))
    if len(quantiles) <= 2:
        return quantiles
    inner = quantiles[1:-1]
    # the largest observed value below each inner quantile
    below = ordered[np.searchsorted(ordered, inner, side="left") - 1]
    return np.concatenate([quantiles[:1], (below + inner) / 2.0, quantiles[-1:]])


def bin_fractions(values: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]) -> list[float]:
    """Fraction of `values` per bin [e_i, e_i+1), the last bin closed [e_B-1, e_B]; clipped to the ends."""
    return _sorted_bin_fractions(np.sort(values), edges)


def _sorted_bin_fractions(ordered: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]) -> list[float]:
    # Values below e_1 count in the first bin and values from e_B-1 up in the last, so
    # the counts are the differences of how many values lie below each inner edge.
    below = np.searchsorted(ordered, edges[1:-1], side="left")
    counts = np.diff(np.concatenate([[0], below, [len(ordered)]]))
    return [float(c) / len(ordered) for c in counts]


def categorical_profile(series: pd.Series) -> dict[str, Any]:
    present = series.dropna()
    missing = int(len(series) - len(present))
    counts: dict[str, int] = {}
    for value, count in _level_counts(present):
        if count:
            counts[str(value)] = counts.get(str(value), 0) + int(count)
    total = len(present)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"kind": CATEGORICAL, "levels": {k: c / total for k, c in ordered}, "missing": missing}


def _level_counts(present: pd.Series) -> Iterable[tuple[Any, int]]:
    """(level, count) pairs; a level may appear more than once (the caller adds them up).

    Counting the distinct values first and naming each once is what makes a million
    rows cheap; it gives the same counts as naming every row whenever values that
    compare equal share a name, which holds for one-typed columns (numbers, booleans,
    strings). An object column of mixed types (where `True == 1` but the names
    differ) is named row by row.
    """
    if present.dtype == object and ptypes.infer_dtype(present, skipna=True) not in ("string", "empty"):
        return (
            (key, int(count)) for key, count in present.astype(object).map(_level_key).value_counts().items()
        )
    return ((_level_key(value), count) for value, count in present.value_counts().items())


def _level_key(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def feature_profile(name: str, series: pd.Series, bins: int) -> dict[str, Any]:
    body = numeric_profile(series, bins) if column_kind(series) == NUMERIC else categorical_profile(series)
    return {"name": name, **body}


def target_profile(name: str, series: pd.Series, task: str, bins: int) -> dict[str, Any]:
    if task == CLASSIFICATION:
        labels = class_labels(series)
        body = categorical_profile(labels)
        body["missing"] = int(series.isna().sum())
    else:
        body = numeric_profile(series, bins)
    return {"name": name, **body}


def schema(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, str]]:
    return [{"name": c, "dtype": column_kind(frame[c])} for c in columns]


def build_profile(
    frame: pd.DataFrame,
    features: Sequence[str],
    target: str,
    bins: int,
    content_hash: str,
    pool: Executor | None = None,
) -> dict[str, Any]:
    """profile.json, in the format the model server reads (see docs/training.md).

    With `pool`, features are profiled on its threads (numpy's sorts release the GIL);
    the result does not depend on it.
    """
    task = infer_task(frame[target])
    profiles = (pool.map if pool is not None else map)(lambda f: feature_profile(f, frame[f], bins), features)
    return {
        "contentHash": content_hash,
        "rows": len(frame),
        "columns": len(features) + 1,
        "target": target,
        "task": task,
        "features": list(profiles),
        "targetProfile": target_profile(target, frame[target], task, bins),
    }
