"""The statistics behind verdicts: calibrated on noise, powerful on real shifts, explained in status.

Windows are counted by the real model server code (``ServingMetrics``) on a reference
profile made by the real profiler, except where a hand-made Counts states the case more
clearly.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from prometheus_client import generate_latest
from scipy import stats as sps

from mlkube_operator.analysis import Counts, analyse, parse_metrics
from mlkube_operator.analysis.significance import (
    accuracy_drop_p,
    compare_bins,
    exceed_p,
    fold_levels,
    fold_ordered,
    holm,
    rank_sum_p,
)
from mlkube_operator.api.modeldeployment import Thresholds, Verdict
from mlkube_operator.training.profiling import build_profile
from mlkube_serving.artifacts import ReferencePredictions, ReferenceProfile
from mlkube_serving.metrics import ServingMetrics
from mlkube_serving.schema import InputSchema

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PREDICT = "/v1/models/{name}:predict"
LEVELS = ["a", "b", "c", "d"]
SHARES = [0.4, 0.3, 0.2, 0.1]


def _reference_frame(rng: np.random.Generator, n: int = 3000) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "w": np.round(np.abs(rng.normal(1.2, 0.76, n)), 1),  # tied, like iris' petal width
            "c": rng.choice(LEVELS, size=n, p=SHARES).astype(object),
            "y": rng.integers(0, 2, n),
        }
    )


PROFILE = ReferenceProfile.model_validate(
    build_profile(_reference_frame(np.random.default_rng(0)), ["x", "w", "c"], "y", 10, "sha256:t")
)


def _serve(reference: ReferencePredictions | None = None) -> ServingMetrics:
    m = ServingMetrics("t", with_process=False)
    m.bind_model(
        sha256="ab" * 32,
        version="1",
        task="classification",
        class_labels=["0", "1"],
        schema=InputSchema(("x", "w", "c"), (False, False, True), allow_nan=True),
        profile=PROFILE,
        reference=reference,
        reference_accuracy=None if reference is None else reference.accuracy,
    )
    return m


def _window(
    rng: np.random.Generator,
    n: int,
    shift: float = 0.0,
    noise: float = 0.0,
    reference: ReferencePredictions | None = None,
) -> Counts:
    frame = _reference_frame(rng, n)
    m = _serve(reference)
    x = np.empty((n, 3), dtype=object)
    x[:, 0] = (frame["x"].to_numpy() + shift).tolist()
    x[:, 1] = (frame["w"].to_numpy() + rng.normal(0.0, noise, n) if noise else frame["w"].to_numpy()).tolist()
    x[:, 2] = frame["c"].to_numpy()
    cls = rng.integers(0, 2, n).astype(np.intp)
    m.observe_batch(x, n, cls, cls)
    for _ in range(n):
        m.observe_request(PREDICT, 200, 0.002)
    return parse_metrics(generate_latest(m.registry).decode())


def test_noise_does_not_alarm() -> None:
    rng = np.random.default_rng(1)
    verdicts = [analyse(_window(rng, 500), Thresholds(), 200, NOW).verdict for _ in range(150)]
    # alpha = 0.001 per analysis: 150 windows expect 0.15 false alarms.
    assert verdicts.count(Verdict.DEGRADED) <= 1
    assert verdicts.count(Verdict.HEALTHY) >= 149


def test_quarter_sd_shift_is_caught_within_a_few_hundred_rows() -> None:
    rng = np.random.default_rng(2)
    analyses = [analyse(_window(rng, 400, shift=0.25), Thresholds(), 200, NOW) for _ in range(20)]
    caught = [a for a in analyses if a.verdict is Verdict.DEGRADED]
    assert len(caught) >= 18
    a = caught[0]
    assert a.values.input_drift_feature == "x" and a.values.input_drift[0].name == "x"
    assert a.values.input_drift[0].significant and a.values.input_drift[0].p_value < 1e-4
    assert a.reasons[0].startswith("inputDrift 'x': effect ")
    # Without the shift the same sizes are Healthy, with the p-values and effects on record.
    calm = analyse(_window(rng, 400), Thresholds(), 200, NOW)
    assert calm.verdict is Verdict.HEALTHY
    assert {t.name for t in calm.values.input_drift} == {"x", "w", "c"}
    assert all(0 <= t.p_value <= 1 and t.effect >= 0 and t.bins >= 2 for t in calm.values.input_drift)
    assert calm.values.alpha == 0.001 and calm.values.tests is not None and calm.values.tests >= 4


def test_rounded_values_with_measurement_noise_do_not_alarm() -> None:
    # Edges between distinct values and folded outer bins: 0.05 of noise on a feature
    # rounded to 0.1 moves almost nothing between bins, even over many rows.
    rng = np.random.default_rng(3)
    a = analyse(_window(rng, 20_000, noise=0.05), Thresholds(), 200, NOW)
    assert a.verdict is Verdict.HEALTHY, a.reasons
    w = next(t for t in a.values.input_drift if t.name == "w")
    assert not w.significant and w.effect < Thresholds().input_drift.min_effect_size


def test_negligible_shift_on_huge_traffic_is_reported_not_acted_on() -> None:
    big = 2_000_000.0
    ref = {"0": 0.0, "1": 0.5, "2": 0.5, "3": 0.0, "missing": 0.0}
    window = Counts(
        requests={"200": big},
        feature_bins={"x": {"1": big * 0.51, "2": big * 0.49}},
        feature_reference={"x": ref},
    )
    a = analyse(window, Thresholds(), 200, NOW)
    assert a.verdict is Verdict.HEALTHY
    assert a.values.input_drift[0].significant and a.values.input_drift[0].effect == pytest.approx(0.01)
    assert any("significant" in s and "minEffectSize 0.05" in s for s in a.skipped)


def test_holm_is_step_down() -> None:
    p = {"a": 0.009, "b": 0.015, "c": 0.5}
    # Bonferroni at 0.03 (0.01 each) would keep only a; Holm's second threshold is 0.03 / 2.
    assert holm(p, 0.03) == {"a", "b"}
    assert holm(p, 0.029) == {"a"}
    assert holm({"a": 0.02}, 0.01) == set()
    assert holm({}, 0.05) == set()


def test_bin_folding() -> None:
    # Outer bins (no reference mass) and sparse ones join their neighbours; a short tail
    # joins the last group.
    assert fold_ordered([0, 0.02, 0.3, 0.3, 0.3, 0.05, 0.03, 0], 0.1) == [[0, 1, 2], [3], [4, 5, 6, 7]]
    assert fold_ordered([0.5, 0.5], 0.6) == [[0, 1]]
    # Rare levels and __other__ pool together; a pool still too small joins the smallest level.
    assert fold_levels([0.5, 0.3, 0.15, 0.04, 0.01, 0.0], 0.1) == [[0], [1], [2, 3, 4, 5]]
    assert fold_levels([0.45, 0.3, 0.15, 0.06, 0.04, 0.0], 0.1) == [[0], [1], [2], [3, 4, 5]]
    # Folding keeps the expected count per bin: 60 rows at 5 per bin is at most 12 bins.
    t = compare_bins([0.1] * 20, [3.0] * 20, ordered=True, min_expected=5)
    assert t is not None and t.bins == 10
    assert compare_bins([0.5, 0.5], [3.0, 4.0], ordered=True, min_expected=5) is None


def test_too_few_rows_per_bin_is_insufficient_data_with_the_reason() -> None:
    t = Thresholds(error_rate={"enabled": False}, latency={"enabled": False}, accuracy={"enabled": False})
    window = Counts(
        requests={"200": 6},
        feature_bins={"x": {"1": 3, "2": 3}},
        feature_reference={"x": {"1": 0.5, "2": 0.5}},
    )
    a = analyse(window, t, 1, NOW)
    assert a.verdict is Verdict.INSUFFICIENT_DATA
    assert a.reasons == ["no check could be decided on this window"]
    assert any("'x': 6 rows fill fewer than 2 bins of 5 expected rows" in s for s in a.skipped)
    few = analyse(window, t, 100, NOW)
    assert few.verdict is Verdict.INSUFFICIENT_DATA and few.reasons == ["samples 6 < minSamples 100"]


def test_rank_sum_matches_scipy_on_expanded_samples() -> None:
    ref, obs = [30.0, 50.0, 20.0, 10.0], [5.0, 20.0, 25.0, 12.0]
    a = np.repeat(np.arange(4), np.asarray(ref, dtype=int))
    b = np.repeat(np.arange(4), np.asarray(obs, dtype=int))
    expected = sps.mannwhitneyu(b, a, method="asymptotic", use_continuity=False).pvalue
    assert rank_sum_p(ref, obs) == pytest.approx(expected, rel=1e-9)


def test_reference_noise_is_part_of_the_test() -> None:
    # A reference measured on 150 rows (iris) is itself noisy: a large window that
    # differs from it by about that noise is not drift.
    reference = [0.36, 0.30, 0.34]
    observed = [3000.0, 3500.0, 3500.0]
    two_sample = compare_bins(reference, observed, ordered=False, min_expected=5, reference_rows=150)
    exact = compare_bins(reference, observed, ordered=False, min_expected=5)
    assert two_sample is not None and exact is not None
    assert two_sample.p_value > 0.05 > 1e-6 > exact.p_value


def test_error_rate_is_tested_against_its_bound() -> None:
    assert exceed_p(24, 200, 0.05) < 1e-4  # 12 % against 5 %
    assert exceed_p(12, 200, 0.05) > 0.1  # 6 %: within noise
    assert exceed_p(0, 200, 0.05) == 1.0
    a = analyse(Counts(requests={"200": 176, "500": 24}), Thresholds(), 100, NOW)
    assert a.verdict is Verdict.DEGRADED and a.reasons[0].startswith("errorRate 0.12 > max 0.05 (p=")


def test_latency_counts_requests_slower_than_the_bound() -> None:
    slow = {0.1: 180.0, 0.5: 180.0, 1.0: 200.0, math.inf: 200.0}  # 10 % between 0.5 and 1 s
    a = analyse(Counts(requests={"200": 200}, latency=slow), Thresholds(), 100, NOW)
    assert a.verdict is Verdict.DEGRADED and a.reasons[0].startswith("latency: 10.0% of requests slower")
    fast = {0.1: 199.0, 0.5: 200.0, 1.0: 200.0, math.inf: 200.0}
    assert analyse(Counts(requests={"200": 200}, latency=fast), Thresholds(), 100, NOW).verdict is (
        Verdict.HEALTHY
    )


def test_accuracy_against_the_models_own_held_out_accuracy() -> None:
    t = Thresholds()
    base = {"requests": {"200": 500.0}, "reference_accuracy": 0.76, "prediction_reference_rows": 900.0}
    # A model right 76 % of the time on its held-out rows and 75 % live is fine.
    ok = analyse(Counts(**base, feedback={"correct": 375.0, "incorrect": 125.0}), t, 100, NOW)
    assert ok.verdict is Verdict.HEALTHY and ok.values.reference_accuracy == 0.76
    bad = analyse(Counts(**base, feedback={"correct": 300.0, "incorrect": 200.0}), t, 100, NOW)
    assert bad.verdict is Verdict.DEGRADED
    assert bad.reasons == [
        f"accuracy 0.6 is more than maxDrop 0.05 below the held-out 0.76 (p={bad.values.accuracy_p_value:.2g})"
    ]
    few = analyse(Counts(**base, feedback={"correct": 10.0, "incorrect": 30.0}), t, 100, NOW)
    assert "accuracy: 40 labels < minLabels 50" in few.skipped
    assert accuracy_drop_p(60, 100, 0.9, None, 0.05) < 1e-6  # exact binomial without a row count
    assert accuracy_drop_p(88, 100, 0.9, 300, 0.05) > 0.5


def test_models_without_reference_predictions_are_judged_on_what_they_have() -> None:
    rng = np.random.default_rng(4)
    a = analyse(_window(rng, 500), Thresholds(), 200, NOW)
    assert a.verdict is Verdict.HEALTHY
    assert any(s.startswith("predictionDrift: the model has no reference predictions") for s in a.skipped)
    assert any(s.startswith("accuracy: the model has no held-out accuracy") for s in a.skipped)
    assert a.values.prediction_drift == []


def test_prediction_drift_against_reference_predictions() -> None:
    reference = ReferencePredictions.model_validate(
        {
            "rows": 900,
            "accuracy": 0.8,
            "classes": {"0": 0.5, "1": 0.5},
            "scoreKind": "positiveProbability",
            "scores": {"kind": "numeric", "binEdges": [0, 0.25, 0.5, 0.75, 1], "fractions": [0.25] * 4},
        }
    )
    m = _serve(reference)
    rng = np.random.default_rng(5)
    n = 500
    x = np.empty((n, 3), dtype=object)
    x[:, 0] = rng.normal(size=n).tolist()
    x[:, 1] = np.round(np.abs(rng.normal(1.2, 0.76, n)), 1).tolist()
    x[:, 2] = rng.choice(LEVELS, size=n, p=SHARES)
    score = rng.uniform(0.3, 1.0, n)  # the model now leans to class 1
    cls = (score >= 0.5).astype(np.intp)
    m.observe_batch(x, n, cls, cls, np.column_stack([1 - score, score]))
    for _ in range(n):
        m.observe_request(PREDICT, 200, 0.002)
    a = analyse(parse_metrics(generate_latest(m.registry).decode()), Thresholds(), 200, NOW)
    assert a.verdict is Verdict.DEGRADED
    names = {t.name: t for t in a.values.prediction_drift}
    assert names["predictions"].significant and names["predictionScores"].significant
    assert any(r.startswith("predictionDrift 'predictions'") for r in a.reasons)
    assert a.values.prediction_drift_psi is not None and a.values.prediction_drift_psi > 0.1


def test_disabled_checks_are_not_run() -> None:
    off = {"enabled": False}
    t = Thresholds(error_rate=off, latency=off, input_drift=off, prediction_drift=off, accuracy=off)
    a = analyse(Counts(requests={"200": 100.0, "500": 100.0}), t, 10, NOW)
    assert a.verdict is Verdict.INSUFFICIENT_DATA and a.values.tests == 0
    on = analyse(Counts(requests={"200": 100.0, "500": 100.0}), Thresholds(), 10, NOW)
    assert on.verdict is Verdict.DEGRADED


def test_unseen_levels_are_drift_even_when_the_reference_never_had_them() -> None:
    # __other__ has no reference mass: it is pooled with the rare levels, and a flood of
    # unseen levels shows in that pool.
    reference = {"a": 0.6, "b": 0.35, "c": 0.05, "__other__": 0.0, "__missing__": 0.0}
    calm = Counts(
        requests={"200": 500.0},
        feature_bins={"c": {"a": 300.0, "b": 175.0, "c": 25.0, "__other__": 0.0, "__missing__": 40.0}},
        feature_reference={"c": reference},
    )
    assert analyse(calm, Thresholds(), 200, NOW).verdict is Verdict.HEALTHY
    flood = Counts(
        requests={"200": 500.0},
        feature_bins={"c": {"a": 270.0, "b": 150.0, "c": 25.0, "__other__": 55.0}},
        feature_reference={"c": reference},
    )
    a = analyse(flood, Thresholds(), 200, NOW)
    assert a.verdict is Verdict.DEGRADED and a.values.input_drift[0].bins == 3  # a, b, c with __other__
    assert a.reasons[0].startswith("inputDrift 'c': effect ")
