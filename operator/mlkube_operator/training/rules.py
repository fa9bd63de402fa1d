"""The Dataset's validation rules, with messages that say exactly what failed.

A Dataset that fails here never becomes Ready, so no TrainingRun trains on it; the
message (which columns, how many rows, how many missing and what fraction) is all
the user gets, so every violation is listed at once rather than one per attempt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlkube_operator.api.dataset import DatasetSpec, ValidationRules

from .canonical import column_kind
from .contract import NUMERIC, Reason
from .errors import JobFailure

_MAX_LISTED = 10


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def select_columns(frame: pd.DataFrame, spec: DatasetSpec) -> tuple[list[str], str]:
    """(features, target): the spec's features in order, or every other column in file order."""
    present = [str(c) for c in frame.columns]
    have = set(present)
    problems: list[str] = []
    if spec.target not in have:
        problems.append(f"target column {spec.target!r} is missing")
    required = [c for c in spec.validation.required_columns if c not in have]
    if required:
        problems.append(f"required column(s) {_names(required)} missing")
    if spec.features is not None:
        absent = [c for c in spec.features if c not in have]
        if absent:
            problems.append(f"feature column(s) {_names(absent)} missing")
    if problems:
        raise JobFailure(
            Reason.VALIDATION_FAILED, "; ".join(problems) + f" (the data has columns {_names(present)})"
        )
    features = list(spec.features) if spec.features is not None else [c for c in present if c != spec.target]
    if not features:
        raise JobFailure(Reason.VALIDATION_FAILED, "no feature columns: the data has only the target column")
    return features, spec.target


def check_rules(frame: pd.DataFrame, columns: Sequence[str], rules: ValidationRules) -> None:
    """minRows, maxMissingFraction on every used column, and no infinities in numeric columns."""
    rows = len(frame)
    if rows < rules.min_rows:
        raise JobFailure(
            Reason.VALIDATION_FAILED,
            f"the data has {rows} rows, fewer than validation.minRows {rules.min_rows}",
        )
    too_many: list[str] = []
    infinite: list[str] = []
    for name in columns:
        series = frame[name]
        missing = int(series.isna().sum())
        fraction = missing / rows if rows else 0.0
        if fraction > rules.max_missing_fraction:
            too_many.append(f"column {name!r} has {missing} missing of {rows} rows (fraction {fraction:.4g})")
        if column_kind(series) == NUMERIC:
            count = int(np.isinf(series.to_numpy(dtype="float64", na_value=math.nan)).sum())
            if count:
                infinite.append(f"column {name!r} has {count} infinite value(s)")
    if too_many:
        shown = "; ".join(too_many[:_MAX_LISTED])
        more = f"; and {len(too_many) - _MAX_LISTED} more columns" if len(too_many) > _MAX_LISTED else ""
        raise JobFailure(
            Reason.VALIDATION_FAILED,
            f"{shown}{more}: more than validation.maxMissingFraction {rules.max_missing_fraction:g}",
        )
    if infinite:
        raise JobFailure(Reason.VALIDATION_FAILED, "; ".join(infinite[:_MAX_LISTED]))
