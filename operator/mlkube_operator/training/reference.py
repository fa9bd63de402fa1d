"""The model's own predictions on its held-out rows: the reference for prediction drift.

Comparing live predictions with the *training labels'* shares confuses two questions
(is the model right? has its input changed?) and needs a large move to notice anything.
What the model predicted on rows like its training data is the right reference: the
predicted classes' shares, and for classifiers with ``predict_proba`` the distribution
of the score (the positive class' probability for two classes, the largest probability
otherwise) on quantile bins; for regressors, the prediction on quantile bins.  The
held-out accuracy and row count come along, so the operator can test fed-back accuracy
against it with the uncertainty of both sides.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from .contract import CLASSIFICATION
from .profiling import categorical_profile, numeric_profile

SCORE_BINS = 10


def reference_predictions(model: Any, x_test: Any, y_test: Any, task: str) -> dict[str, Any] | None:
    """``referencePredictions`` for metadata.json, or None without held-out rows."""
    rows = len(x_test)
    if rows == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = model.predict(x_test)
        proba = None
        if task == CLASSIFICATION and hasattr(model, "predict_proba"):
            try:
                proba = np.asarray(model.predict_proba(x_test), dtype=np.float64)
            except (AttributeError, NotImplementedError, ValueError):
                proba = None
    out: dict[str, Any] = {"rows": rows}
    if task == CLASSIFICATION:
        labels = pd.Series(np.asarray(predicted, dtype=object))
        out["classes"] = categorical_profile(labels)["levels"]
        out["accuracy"] = float(np.mean(np.asarray(predicted) == np.asarray(y_test)))
        if proba is not None and proba.ndim == 2 and proba.shape[1] >= 2:
            binary = proba.shape[1] == 2
            score = proba[:, 1] if binary else proba.max(axis=1)
            out["scoreKind"] = "positiveProbability" if binary else "maxProbability"
            out["scores"] = numeric_profile(pd.Series(score), SCORE_BINS)
    else:
        values = np.asarray(predicted, dtype=np.float64).reshape(rows, -1)[:, 0]
        out["scoreKind"] = "prediction"
        out["scores"] = numeric_profile(pd.Series(values), SCORE_BINS)
    scores = out.get("scores")
    if scores is not None and scores.get("binEdges") is None:
        del out["scores"], out["scoreKind"]
    return out
