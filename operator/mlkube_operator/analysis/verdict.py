"""From a window of counts to the ModelDeployment's verdict.

A verdict must be explainable from the status alone, so every crossed threshold becomes
a reason that names the value, the bound and (for input drift) the feature.  Too little
traffic gives InsufficientData rather than a guess: a handful of requests can make any
PSI or error rate look alarming and would trigger rollbacks on noise.

Input drift compares the distribution of *non-missing* values, because the profile's
fractions are over non-missing values; a shift in how often values are missing is a
different question from a shift in the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from mlkube_operator.api.modeldeployment import Analysis, AnalysisValues, Thresholds, Verdict

from .counts import Counts
from .stats import accuracy, error_rate, histogram_quantile, psi

# Labels of the server's counters for null/NaN values (numeric bins, categorical levels).
MISSING_KEYS = frozenset({"missing", "__missing__"})
# Feedback rows needed before accuracy is judged (fewer when min_samples is smaller).
MIN_FEEDBACK = 50


def _present(counts: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in counts.items() if k not in MISSING_KEYS}


def _drift(reference: Mapping[str, float], observed: Mapping[str, float]) -> float | None:
    expected, seen = _present(reference), _present(observed)
    if sum(expected.values()) <= 0 or sum(seen.values()) <= 0:
        return None
    return psi(expected, seen)


def input_drift(window: Counts) -> tuple[float, str] | None:
    """The largest per-feature PSI and its feature, over features with a reference and observations."""
    worst: tuple[float, str] | None = None
    for feature in sorted(window.feature_bins):
        reference = window.feature_reference.get(feature)
        if not reference:
            continue
        value = _drift(reference, window.feature_bins[feature])
        if value is not None and (worst is None or value > worst[0]):
            worst = (value, feature)
    return worst


def _round(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.4g}")


def _show(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def analyse(window: Counts, thresholds: Thresholds, min_samples: int, now: datetime) -> Analysis:
    """The verdict on one window of counts (already differenced and summed over pods)."""
    samples = round(sum(window.requests.values()))
    err = error_rate(window.requests)
    p99 = histogram_quantile(0.99, window.latency)
    p99_ms = None if p99 is None else p99 * 1000.0
    drift = input_drift(window)
    pred_drift = _drift(window.prediction_reference, window.predictions)
    acc = accuracy(window.feedback)
    labelled = window.feedback.get("correct", 0.0) + window.feedback.get("incorrect", 0.0)
    values = AnalysisValues(
        samples=samples,
        error_rate=_round(err),
        latency_p99_ms=_round(p99_ms),
        input_drift_psi=_round(drift[0]) if drift else None,
        input_drift_feature=drift[1] if drift else None,
        prediction_drift_psi=_round(pred_drift),
        accuracy=_round(acc),
    )
    if samples < min_samples:
        return Analysis(
            time=now,
            verdict=Verdict.INSUFFICIENT_DATA,
            values=values,
            reasons=[f"samples {samples} < minSamples {min_samples}"],
        )
    t = thresholds
    reasons: list[str] = []
    if t.max_error_rate is not None and err is not None and err > t.max_error_rate:
        reasons.append(f"errorRate {_show(err)} > maxErrorRate {t.max_error_rate:g}")
    if t.max_latency_p99_ms is not None and p99_ms is not None and p99_ms > t.max_latency_p99_ms:
        reasons.append(f"latencyP99Ms {_show(p99_ms)} > maxLatencyP99Ms {t.max_latency_p99_ms:g}")
    if t.max_input_drift_psi is not None and drift is not None and drift[0] > t.max_input_drift_psi:
        reasons.append(
            f"inputDriftPsi {_show(drift[0])} (feature {drift[1]!r}) > maxInputDriftPsi {t.max_input_drift_psi:g}"
        )
    if (
        t.max_prediction_drift_psi is not None
        and pred_drift is not None
        and pred_drift > t.max_prediction_drift_psi
    ):
        reasons.append(
            f"predictionDriftPsi {_show(pred_drift)} > maxPredictionDriftPsi {t.max_prediction_drift_psi:g}"
        )
    if (
        t.min_accuracy is not None
        and acc is not None
        and labelled >= min(MIN_FEEDBACK, min_samples)
        and acc < t.min_accuracy
    ):
        reasons.append(f"accuracy {_show(acc)} < minAccuracy {t.min_accuracy:g}")
    return Analysis(
        time=now,
        verdict=Verdict.DEGRADED if reasons else Verdict.HEALTHY,
        values=values,
        reasons=reasons,
    )


__all__ = ["MIN_FEEDBACK", "MISSING_KEYS", "analyse", "input_drift"]
