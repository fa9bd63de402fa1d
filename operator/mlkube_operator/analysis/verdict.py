"""From a window of counts to the ModelDeployment's verdict.

Every enabled check is a hypothesis test on the window's counts (``significance``):
the 5xx share and the share of slow requests against their bounds, each input feature
and the predictions against their references, the fed-back accuracy against the
model's held-out accuracy.  The p-values of one analysis are corrected together
(Holm), so ``thresholds.alpha`` bounds the chance that a window without any change is
judged Degraded, whatever the traffic.  A drift must also be large enough
(``minEffectSize``) to count: on heavy traffic a negligible shift is significant.

A verdict must be explainable from the status alone: each failed check becomes a reason
naming the value, its p-value and the bound, the most drifted features are kept with
their p-values and effect sizes, and each check that could not be decided is listed in
``skipped`` with the reason (too few rows, no reference predictions for models trained
before they were recorded, no held-out accuracy).  With fewer than ``minSamples``
requests, or when no check at all could be decided, the verdict is InsufficientData.

Input drift compares the distribution of *non-missing* values, because the profile's
fractions are over non-missing values; a shift in how often values are missing is a
different question from a shift in the values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from mlkube_operator.api.modeldeployment import (
    Analysis,
    AnalysisValues,
    DriftTest,
    Evidence,
    Thresholds,
    Verdict,
)

from . import sequential
from .counts import Counts
from .significance import BinTest, accuracy_drop_p, compare_bins, exceed_p, holm
from .stats import accuracy, error_rate, histogram_quantile, psi

# Labels of the server's counters for null/NaN values (numeric bins, categorical levels).
MISSING_KEYS = frozenset({"missing", "__missing__"})
# Drifted features kept in status (plus the worst by effect, if not among them).
TOP_FEATURES = 5
# The latency check: "p99 <= bound" is "at most 1 % of requests slower than the bound".
SLOW_SHARE = 0.01
PREDICTIONS, SCORES = "predictions", "predictionScores"


def _present(counts: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in counts.items() if k not in MISSING_KEYS}


def _bin_order(key: str) -> tuple[int, float | str]:
    try:
        return (0, float(key))
    except ValueError:
        return (1, key)


def _numeric_bins(reference: Mapping[str, float]) -> bool:
    """A feature's bins labelled "0".."N+1" by the server (numeric) rather than by level.

    A categorical feature's reference always holds ``__other__``, so digits-only levels
    are not mistaken for bins."""
    return bool(reference) and all(k.isdigit() for k in reference)


def compare(
    reference: Mapping[str, float],
    observed: Mapping[str, float],
    min_expected: float,
    reference_rows: float | None,
    ordered: bool | None = None,
) -> BinTest | None:
    """One binned distribution against its reference, on the union of their keys."""
    ref, obs = _present(reference), _present(observed)
    keys = sorted(ref.keys() | obs.keys(), key=_bin_order)
    is_ordered = _numeric_bins(ref) if ordered is None else ordered
    return compare_bins(
        [ref.get(k, 0.0) for k in keys],
        [obs.get(k, 0.0) for k in keys],
        ordered=is_ordered,
        min_expected=min_expected,
        reference_rows=reference_rows if reference_rows and reference_rows > 0 else None,
    )


def input_drift(window: Counts) -> tuple[float, str] | None:
    """The largest raw per-feature PSI (on the server's bins, unfolded) and its feature.

    Not a decision: the dashboard's "Input drift per feature (PSI)" panel draws this
    number, and this keeps the two comparable (tests/serving/test_grafana_dashboard.py).
    """
    worst: tuple[float, str] | None = None
    for feature in sorted(window.feature_bins):
        reference = _present(window.feature_reference.get(feature, {}))
        seen = _present(window.feature_bins[feature])
        if sum(reference.values()) <= 0 or sum(seen.values()) <= 0:
            continue
        value = psi(reference, seen)
        if worst is None or value > worst[0]:
            worst = (value, feature)
    return worst


def _round(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.4g}")


def _show(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _p(p: float) -> str:
    return f"p={p:.2g}"


def slow_share(buckets: Mapping[float, float], bound_s: float) -> tuple[float, float] | None:
    """(requests slower than ``bound_s``, requests) from cumulative latency buckets.

    Inside the bucket holding the bound the count is interpolated linearly, as
    ``histogram_quantile`` does.
    """
    bounds = sorted(buckets)
    if len(bounds) < 2 or not math.isinf(bounds[-1]):
        return None
    n = buckets[bounds[-1]]
    if n <= 0:
        return None
    below, lower, prev = 0.0, 0.0, 0.0
    for b in bounds:
        cum = max(buckets[b], prev)
        if b >= bound_s:
            if math.isinf(b):
                below = prev
            else:
                width = b - lower
                frac = (bound_s - lower) / width if width > 0 else 1.0
                below = prev + (cum - prev) * frac
            break
        lower, prev = b, cum
    return max(n - below, 0.0), n


@dataclass
class _Check:
    """A decided test: its p-value and what to say if Holm rejects it."""

    p: float
    reason: str
    acts: bool = True  # False: significant but below the minimum effect size (reported only)


def _drift_entry(name: str, t: BinTest, significant: bool) -> DriftTest:
    return DriftTest(
        name=name,
        rows=round(t.rows),
        bins=t.bins,
        p_value=float(f"{t.p_value:.3g}"),
        effect=float(f"{t.tvd:.3g}"),
        psi=float(f"{t.psi:.3g}"),
        cramers_v=float(f"{t.cramers_v:.3g}"),
        significant=significant,
    )


def _state_key(name: str, statistic: str) -> str:
    return f"{name}#{statistic}"


def _split_key(key: str) -> tuple[str, str]:
    name, _, statistic = key.rpartition("#")
    return name, statistic


def to_states(evidence: Sequence[Evidence]) -> dict[str, sequential.State]:
    return {
        _state_key(e.name, e.statistic): sequential.State(e.cusum, e.z, e.allowance, e.windows)
        for e in evidence
    }


def to_evidence(states: Mapping[str, sequential.State]) -> list[Evidence]:
    """The statistics with evidence (S > 0), largest first: what status carries into the next window."""
    kept = sorted(((k, s) for k, s in states.items() if s.cusum > 0), key=lambda kv: (-kv[1].cusum, kv[0]))
    return [
        Evidence(
            name=_split_key(k)[0],
            statistic=_split_key(k)[1],
            cusum=float(f"{s.cusum:.4g}"),
            z=float(f"{s.z:.4g}"),
            allowance=float(f"{s.allowance:.4g}"),
            windows=s.windows,
        )
        for k, s in kept
    ]


def analyse(
    window: Counts,
    thresholds: Thresholds,
    min_samples: int,
    now: datetime,
    evidence: Sequence[Evidence] = (),
) -> Analysis:
    """The verdict on one window of counts (already differenced and summed over pods).

    ``evidence`` is the CUSUM state after the previous window of the same model
    (``status.analysisWindow.cusum``); the state after this window is returned in
    ``values.evidence``.  A window with too few requests leaves it as it was.
    """
    t = thresholds
    samples = round(sum(window.requests.values()))
    err = error_rate(window.requests)
    p99 = histogram_quantile(0.99, window.latency)
    acc = accuracy(window.feedback)
    labelled = window.feedback.get("correct", 0.0) + window.feedback.get("incorrect", 0.0)
    values = AnalysisValues(
        samples=samples,
        error_rate=_round(err),
        latency_p99_ms=_round(None if p99 is None else p99 * 1000.0),
        accuracy=_round(acc),
        labels=round(labelled),
        reference_accuracy=_round(window.reference_accuracy),
        alpha=t.alpha,
        evidence=list(evidence),
    )
    if samples < min_samples:
        return Analysis(
            time=now,
            verdict=Verdict.INSUFFICIENT_DATA,
            values=values,
            reasons=[f"samples {samples} < minSamples {min_samples}"],
        )

    checks: dict[str, _Check] = {}
    skipped: list[str] = []
    drift: dict[str, tuple[BinTest, float]] = {}  # key -> (test, min effect)

    if t.error_rate.enabled and err is not None:
        errors = err * samples
        p = exceed_p(errors, samples, t.error_rate.max)
        values.error_rate_p_value = float(f"{p:.3g}")
        checks["errorRate"] = _Check(p, f"errorRate {_show(err)} > max {t.error_rate.max:g} ({_p(p)})")
    if t.latency.enabled:
        slow = slow_share(window.latency, t.latency.max_p99_ms / 1000.0)
        if slow is None:
            skipped.append("latency: no latency histogram in the window")
        else:
            p = exceed_p(slow[0], slow[1], SLOW_SHARE)
            values.latency_p_value = float(f"{p:.3g}")
            share = slow[0] / slow[1]
            checks["latency"] = _Check(
                p,
                f"latency: {share:.1%} of requests slower than maxP99Ms {t.latency.max_p99_ms:g} "
                f"(p99 {_show(values.latency_p99_ms or 0)} ms, {_p(p)})",
            )
    if t.input_drift.enabled:
        if not window.feature_reference:
            skipped.append("inputDrift: the server exports no reference profile (no --reference-profile)")
        for feature in sorted(window.feature_reference):
            observed = window.feature_bins.get(feature, {})
            rows = window.feature_reference_rows.get(feature)
            test = compare(window.feature_reference[feature], observed, t.min_expected_count, rows)
            if test is None:
                seen = sum(_present(observed).values())
                skipped.append(
                    f"inputDrift {feature!r}: {seen:.0f} rows fill fewer than 2 bins of "
                    f"{t.min_expected_count:g} expected rows"
                )
                continue
            drift[f"input:{feature}"] = (test, t.input_drift.min_effect_size)
    if t.prediction_drift.enabled:
        rows = window.prediction_reference_rows
        if not window.prediction_reference and not window.prediction_score_reference:
            skipped.append(
                "predictionDrift: the model has no reference predictions "
                "(trained before they were recorded); retrain it to check predictions"
            )
        for key, reference, observed, ordered in (
            (PREDICTIONS, window.prediction_reference, window.predictions, False),
            (SCORES, window.prediction_score_reference, window.prediction_scores, True),
        ):
            if not reference:
                continue
            test = compare(reference, observed, t.min_expected_count, rows, ordered)
            if test is None:
                skipped.append(f"predictionDrift {key}: too few predictions in the window for 2 bins")
                continue
            drift[f"prediction:{key}"] = (test, t.prediction_drift.min_effect_size)
    for key, (test, min_effect) in drift.items():
        kind, name = key.split(":", 1)
        what = "inputDrift" if kind == "input" else "predictionDrift"
        checks[key] = _Check(
            test.p_value,
            f"{what} {name!r}: effect {test.tvd:.3g} >= minEffectSize {min_effect:g} "
            f"(PSI {test.psi:.3g}, {_p(test.p_value)})",
            acts=test.tvd >= min_effect,
        )
    if t.accuracy.enabled:
        ref_acc = window.reference_accuracy
        if ref_acc is None:
            skipped.append("accuracy: the model has no held-out accuracy (trained before it was exported)")
        elif labelled < t.accuracy.min_labels:
            skipped.append(f"accuracy: {labelled:.0f} labels < minLabels {t.accuracy.min_labels}")
        else:
            correct = window.feedback.get("correct", 0.0)
            p = accuracy_drop_p(
                correct, labelled, ref_acc, window.prediction_reference_rows, t.accuracy.max_drop
            )
            values.accuracy_p_value = float(f"{p:.3g}")
            checks["accuracy"] = _Check(
                p,
                f"accuracy {_show(acc or 0.0)} is more than maxDrop {t.accuracy.max_drop:g} below the "
                f"held-out {ref_acc:.3g} ({_p(p)})",
            )

    rejected = holm({k: c.p for k, c in checks.items()}, t.alpha)
    values.tests = len(checks)
    _record_drift(values, drift, rejected)
    reasons = [checks[k].reason for k in sorted(rejected, key=lambda k: checks[k].p) if checks[k].acts]
    if t.cusum.enabled:
        reasons += _accumulate(window, t, checks, drift, rejected, evidence, values, skipped)
    for key in sorted(rejected):
        if not checks[key].acts:
            test, min_effect = drift[key]
            skipped.append(
                f"{key.split(':', 1)[1]!r}: significant ({_p(test.p_value)}) but effect {test.tvd:.3g} "
                f"< minEffectSize {min_effect:g}"
            )
    if reasons:
        verdict = Verdict.DEGRADED
    elif checks:
        verdict = Verdict.HEALTHY
    else:
        verdict = Verdict.INSUFFICIENT_DATA
        reasons = ["no check could be decided on this window"]
    return Analysis(time=now, verdict=verdict, values=values, reasons=reasons, skipped=skipped)


def _accumulate(
    window: Counts,
    t: Thresholds,
    checks: Mapping[str, _Check],
    drift: Mapping[str, tuple[BinTest, float]],
    rejected: set[str],
    evidence: Sequence[Evidence],
    values: AnalysisValues,
    skipped: list[str],
) -> list[str]:
    """Add this window to each reference check's CUSUM(s); the reasons of the checks it fails.

    Every check carries one on its p-value (``p``: any change the window's tests see,
    a wider spread included).  Ordered bins (numeric features, scores) carry two more,
    their shift up and their shift down: the signed rank-sum z keeps the direction a
    two-sided p-value throws away, so a slow drift in one direction adds up sooner.
    """
    seen: dict[str, sequential.Observation] = {}
    for key, (test, _) in drift.items():
        kind, name = key.split(":", 1)
        ref_rows = (
            window.feature_reference_rows.get(name) if kind == "input" else window.prediction_reference_rows
        )
        seen[_state_key(key, "p")] = sequential.Observation(
            sequential.z_score(test.p_value), test.rows, ref_rows
        )
        if test.z_rank is not None:
            seen[_state_key(key, "up")] = sequential.Observation(test.z_rank, test.rows, ref_rows)
            seen[_state_key(key, "down")] = sequential.Observation(-test.z_rank, test.rows, ref_rows)
    if "accuracy" in checks:
        labelled = window.feedback.get("correct", 0.0) + window.feedback.get("incorrect", 0.0)
        seen[_state_key("accuracy", "p")] = sequential.Observation(
            sequential.z_score(checks["accuracy"].p), labelled, window.prediction_reference_rows
        )
    states = sequential.update(to_states(evidence), seen, t.cusum.allowance, t.cusum.limit)
    values.evidence = to_evidence(states)
    reasons: list[str] = []
    failed: set[str] = set()
    for state_key in sorted(sequential.alarms(states, t.cusum.limit), key=lambda k: -states[k].cusum):
        key, statistic = _split_key(state_key)
        if key in rejected or state_key not in seen or key in failed:
            continue  # already a reason of its own (or not tested in this window)
        failed.add(key)
        s = states[state_key]
        kind, _, name = key.partition(":")
        what = {"input": "inputDrift", "prediction": "predictionDrift"}.get(kind, "accuracy")
        label = f"{what} {name!r}" if name else what
        evidence_text = (
            f"accumulated evidence ({statistic}) {s.cusum:.3g} >= cusum.limit {t.cusum.limit:g} "
            f"over {s.windows} windows"
        )
        if key in drift:
            test, min_effect = drift[key]
            if test.tvd < min_effect:
                skipped.append(
                    f"{label}: {evidence_text}, but this window's effect {test.tvd:.3g} < minEffectSize {min_effect:g}"
                )
                continue
            reasons.append(
                f"{label}: {evidence_text} (this window: effect {test.tvd:.3g}, PSI {test.psi:.3g}, "
                f"{_p(test.p_value)})"
            )
        else:
            reasons.append(f"{label}: {evidence_text} (this window: {_p(checks[key].p)})")
    return reasons


def _record_drift(
    values: AnalysisValues, drift: Mapping[str, tuple[BinTest, float]], rejected: set[str]
) -> None:
    inputs = sorted(
        ((k.split(":", 1)[1], t) for k, (t, _) in drift.items() if k.startswith("input:")),
        key=lambda kv: (kv[1].p_value, -kv[1].tvd, kv[0]),
    )
    keep = inputs[:TOP_FEATURES]
    if inputs:
        worst = max(inputs, key=lambda kv: (kv[1].tvd, kv[0]))
        if worst not in keep:
            keep.append(worst)
        values.input_drift_feature = worst[0]
        values.input_drift_psi = _round(worst[1].psi)
    values.input_drift = [_drift_entry(n, t, f"input:{n}" in rejected) for n, t in keep]
    preds = [(k.split(":", 1)[1], t) for k, (t, _) in drift.items() if k.startswith("prediction:")]
    values.prediction_drift = [_drift_entry(n, t, f"prediction:{n}" in rejected) for n, t in preds]
    if preds:
        values.prediction_drift_psi = _round(max(t.psi for _, t in preds))


__all__ = ["MISSING_KEYS", "analyse", "compare", "input_drift", "slow_share", "to_evidence", "to_states"]
