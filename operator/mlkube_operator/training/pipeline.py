"""The saved model is a whole pipeline, so it takes raw rows, not engineered matrices.

A server (or a user with joblib.load) should not have to re-implement one-hot
encoding or imputation to call predict, and must not get it subtly wrong. The model
is `Pipeline([("preprocess", ColumnTransformer), ("estimator", <the estimator>)])`
and expects a pandas DataFrame with the feature columns, in order, holding raw
values: numbers for numeric features (NaN where missing: median-imputed, then
standardised), strings for categorical ones (NaN where missing: its own category;
a level never seen in training encodes as all zeros instead of failing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from .canonical import column_kind
from .contract import CATEGORICAL, NUMERIC


def model_input(frame: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The feature columns as the model expects them: categorical ones as plain object columns."""
    out = frame.loc[:, list(features)].copy()
    for name in features:
        if column_kind(out[name]) == CATEGORICAL:
            column = out[name].astype(object)
            out[name] = column.where(column.notna(), float("nan"))
    return out


def build_pipeline(frame: pd.DataFrame, features: Sequence[str], estimator: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [f for f in features if column_kind(frame[f]) == NUMERIC]
    categorical = [f for f in features if column_kind(frame[f]) == CATEGORICAL]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        transformers.append((NUMERIC, steps, numeric))
    if categorical:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        transformers.append((CATEGORICAL, encoder, categorical))
    preprocess = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    return Pipeline([("preprocess", preprocess), ("estimator", estimator)])
