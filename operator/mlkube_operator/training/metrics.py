"""Evaluation on the held-out split and the quality gate.

Which metrics apply follows from the task, and asking for one that cannot apply
(rmse of a classifier) is a spec error found before fitting, not after minutes of
training. A metric that applies but cannot be computed for this model or this test
split (ROC AUC without predict_proba, or with one class in the test set) is left out
and the reason reported, rather than invented; a quality gate on such a metric fails.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from mlkube_operator.api.trainingrun import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    Metric,
    QualityGate,
)

from .contract import CLASSIFICATION, Reason
from .errors import JobFailure


def applicable(task: str) -> tuple[Metric, ...]:
    return CLASSIFICATION_METRICS if task == CLASSIFICATION else REGRESSION_METRICS


def plan_metrics(task: str, requested: Sequence[Metric], gate: QualityGate | None) -> list[Metric]:
    """The metrics to compute; InvalidSpec when one requested (or gated on) does not fit the task."""
    allowed = applicable(task)
    wrong = [m.value for m in requested if m not in allowed]
    if gate is not None and gate.metric not in allowed:
        wrong.append(f"{gate.metric.value} (qualityGate)")
    if wrong:
        raise JobFailure(
            Reason.INVALID_SPEC,
            f"spec.metrics: {', '.join(wrong)} do(es) not apply to a {task} task "
            f"(applicable: {', '.join(m.value for m in allowed)})",
        )
    wanted = list(dict.fromkeys(requested)) if requested else list(allowed)
    if gate is not None and gate.metric not in wanted:
        wanted.append(gate.metric)
    return wanted


def evaluate(
    model: Any, x_test: Any, y_test: Any, task: str, wanted: Sequence[Metric]
) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, skipped): each wanted metric's value, or why it could not be computed."""
    from sklearn import metrics as skm

    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictions = model.predict(x_test)
        for metric in wanted:
            try:
                if metric is Metric.ACCURACY:
                    value = skm.accuracy_score(y_test, predictions)
                elif metric is Metric.BALANCED_ACCURACY:
                    value = skm.balanced_accuracy_score(y_test, predictions)
                elif metric is Metric.F1_MACRO:
                    value = skm.f1_score(y_test, predictions, average="macro", zero_division=0)
                elif metric is Metric.ROC_AUC:
                    value = _roc_auc(model, x_test, y_test)
                elif metric is Metric.RMSE:
                    value = skm.root_mean_squared_error(y_test, predictions)
                elif metric is Metric.MAE:
                    value = skm.mean_absolute_error(y_test, predictions)
                else:
                    value = skm.r2_score(y_test, predictions)
            except _NotApplicable as err:
                skipped[metric.value] = str(err)
                continue
            except ValueError as err:
                skipped[metric.value] = f"cannot be computed on this test split: {err}"
                continue
            number = float(value)
            if math.isfinite(number):
                values[metric.value] = number
            else:
                skipped[metric.value] = f"undefined on this test split ({number})"
    return values, skipped


class _NotApplicable(Exception):
    pass


def _roc_auc(model: Any, x_test: Any, y_test: Any) -> float:
    from sklearn.metrics import roc_auc_score

    if not hasattr(model, "predict_proba"):
        raise _NotApplicable("the estimator has no predict_proba")
    classes = list(model.classes_)
    present = set(y_test.tolist()) if hasattr(y_test, "tolist") else set(y_test)
    if len(present) < 2:
        raise _NotApplicable("the test split holds a single class")
    proba = model.predict_proba(x_test)
    if len(classes) == 2:
        positive = [1 if label == classes[1] else 0 for label in y_test]
        return float(roc_auc_score(positive, proba[:, 1]))
    if present != set(classes):
        raise _NotApplicable("not every class occurs in the test split")
    return float(roc_auc_score(y_test, proba, multi_class="ovr", average="macro", labels=classes))


def gate_failure(gate: QualityGate | None, values: dict[str, float], skipped: dict[str, str]) -> str | None:
    """None when the gate passes (or there is none); otherwise the message for QualityGateFailed."""
    if gate is None:
        return None
    name = gate.metric.value
    if name not in values:
        why = skipped.get(name, "it was not computed")
        return f"quality gate on {name} cannot be checked: {why}"
    value = values[name]
    if gate.minimum is not None and value < gate.minimum:
        return f"quality gate not met: {name} {value:.6g} is below the minimum {gate.minimum:g}"
    if gate.maximum is not None and value > gate.maximum:
        return f"quality gate not met: {name} {value:.6g} is above the maximum {gate.maximum:g}"
    return None
