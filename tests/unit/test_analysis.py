"""Degradation statistics and verdicts, on metrics text produced by the real model server code."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from prometheus_client import generate_latest

from mlkube_operator.analysis import (
    Counts,
    accuracy,
    analyse,
    delta,
    error_rate,
    histogram_quantile,
    parse_metrics,
    psi,
    total,
)
from mlkube_operator.api.modeldeployment import Thresholds, Verdict
from mlkube_serving.artifacts import ReferenceProfile
from mlkube_serving.metrics import ServingMetrics
from mlkube_serving.schema import InputSchema

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PREDICT = "/v1/models/{name}:predict"
INFER = "/v2/models/{name}/infer"
PROFILE = ReferenceProfile.model_validate(
    {
        "features": [
            {"name": "x", "kind": "numeric", "binEdges": [0, 1, 2], "fractions": [0.5, 0.5]},
            {"name": "colour", "kind": "categorical", "levels": {"red": 0.5, "blue": 0.5}},
        ],
        "targetProfile": {"kind": "categorical", "levels": {"0": 0.5, "1": 0.5}},
    }
)


def _server() -> ServingMetrics:
    m = ServingMetrics("iris", with_process=False)
    m.bind_model(
        sha256="ab" * 32,
        version="1",
        task="classification",
        class_labels=["0", "1"],
        schema=InputSchema(("x", "colour"), (False, True), allow_nan=True),
        profile=PROFILE,
    )
    m.ready = True
    return m


def _scrape(m: ServingMetrics) -> Counts:
    return parse_metrics(generate_latest(m.registry).decode())


def test_parse_real_server_metrics() -> None:
    m = _server()
    x = np.array([[0.5, "red"], [1.5, "blue"], [3.0, "green"], [np.nan, None]], dtype=object)
    m.observe_batch(x, 2, np.array([0, 1, 1, 1]), None)
    m.observe_request(PREDICT, 200, 0.0012)
    m.observe_request(INFER, 500, 0.2)
    m.observe_request("/v2/models/{name}/feedback", 200, 0.001)  # not a model route
    m.observe_request("/v2/health/ready", 200, 0.0001)
    m.observe_feedback("correct", 3)
    m.observe_feedback("incorrect")
    c = _scrape(m)
    assert c.requests == {"200": 1.0, "500": 1.0}
    assert c.latency[0.0015] == 1 and c.latency[0.2] == 2 and c.latency[math.inf] == 2
    assert c.latency[0.001] == 0  # the feedback and health requests are not counted
    assert c.feature_bins["x"] == {"0": 0, "1": 1, "2": 1, "3": 1, "missing": 1}
    assert c.feature_bins["colour"] == {"red": 1, "blue": 1, "__other__": 1, "__missing__": 1}
    assert c.predictions == {"0": 1, "1": 3}
    assert c.feedback == {"correct": 3, "incorrect": 1}
    assert c.feature_reference["x"] == {"0": 0, "1": 0.5, "2": 0.5, "3": 0, "missing": 0}
    assert c.feature_reference["colour"] == {"red": 0.5, "blue": 0.5, "__other__": 0, "__missing__": 0}
    assert c.prediction_reference == {"0": 0.5, "1": 0.5}
    assert c.model_sha256 == "ab" * 32
    assert c.ready is True
    assert c.start_time is None


def test_parse_regression_and_process_start() -> None:
    m = ServingMetrics("reg", with_process=True)
    profile = ReferenceProfile.model_validate(
        {"targetProfile": {"kind": "numeric", "binEdges": [0, 1, 2], "fractions": [0.2, 0.8]}}
    )
    m.bind_model(
        sha256="0" * 64,
        version="v",
        task="regression",
        class_labels=[],
        schema=InputSchema(("x",), (False,), allow_nan=False),
        profile=profile,
    )
    m.observe_batch(np.zeros((3, 1)), 1, None, np.array([0.5, 1.5, 5.0]))
    c = _scrape(m)
    assert c.predictions == {"0": 0, "1": 1, "2": 1, "3": 1, "missing": 0}
    assert c.prediction_reference == {"0": 0, "1": 0.2, "2": 0.8, "3": 0, "missing": 0}
    assert c.ready is False
    assert c.start_time is not None and c.start_time > 0


def test_delta_and_counter_reset() -> None:
    m = _server()
    m.observe_request(PREDICT, 200, 0.002)
    m.observe_batch(np.array([[0.5, "red"]], dtype=object), 1, np.array([0]), None)
    first = _scrape(m)
    for _ in range(3):
        m.observe_request(PREDICT, 200, 0.002)
    m.observe_request(PREDICT, 503, 0.002)
    m.observe_batch(np.array([[1.5, "blue"]] * 4, dtype=object), 4, np.array([1] * 4), None)
    second = _scrape(m)
    d = delta(second, first)
    assert d.requests == {"200": 3, "503": 1}
    assert d.latency[math.inf] == 4 and d.latency[0.0015] == 0
    assert d.feature_bins["x"]["2"] == 4 and d.feature_bins["x"]["1"] == 0
    assert d.feature_bins["colour"]["blue"] == 4
    assert d.predictions == {"0": 0, "1": 4}
    assert d.prediction_reference == second.prediction_reference

    # The pod restarted: its counts are lower than before, so the new ones are the window.
    restarted = _server()
    restarted.observe_request(PREDICT, 200, 0.002)
    restarted.observe_request(PREDICT, 200, 0.002)
    after = _scrape(restarted)
    assert delta(after, second) == after
    # A restart is also seen from the process start time even when counts happen to exceed.
    a, b = Counts(requests={"200": 5}, start_time=1.0), Counts(requests={"200": 7}, start_time=2.0)
    assert delta(b, a).requests == {"200": 7}
    assert delta(Counts(requests={"200": 7}, start_time=1.0), a).requests == {"200": 2}


def test_total_sums_pods() -> None:
    a = Counts(
        requests={"200": 2},
        latency={0.1: 1, math.inf: 2},
        feature_bins={"x": {"1": 1}},
        predictions={"0": 2},
        feedback={"correct": 1},
        ready=True,
    )
    b = Counts(
        requests={"200": 1, "500": 1},
        latency={0.1: 2, math.inf: 2},
        feature_bins={"x": {"1": 2, "2": 1}},
        prediction_reference={"0": 1.0},
        model_sha256="s",
        ready=False,
    )
    t = total([a, b])
    assert t.requests == {"200": 3, "500": 1}
    assert t.latency == {0.1: 3, math.inf: 4}
    assert t.feature_bins == {"x": {"1": 3, "2": 1}}
    assert t.predictions == {"0": 2} and t.feedback == {"correct": 1}
    assert t.prediction_reference == {"0": 1.0} and t.model_sha256 == "s"
    assert t.ready is False
    assert total([]) == Counts()


def test_psi() -> None:
    assert psi({"a": 0.5, "b": 0.5}, {"a": 50, "b": 50}) == pytest.approx(0.0, abs=1e-12)
    # e = (0.5, 0.5), o = (0.8, 0.2): 0.3 ln(1.6) + (-0.3) ln(0.4) = 0.41589...
    expected = 0.3 * math.log(0.8 / 0.5) - 0.3 * math.log(0.2 / 0.5)
    assert psi({"a": 0.5, "b": 0.5}, {"a": 8, "b": 2}) == pytest.approx(expected)
    assert expected == pytest.approx(0.4159, abs=1e-4)
    # A key on one side only is floored at epsilon: (1 - 1e-4) ln(1 / 1e-4) + ... for "b".
    one_sided = psi({"a": 1.0}, {"b": 3})
    assert one_sided == pytest.approx(2 * (1 - 1e-4) * math.log(1e4))
    with pytest.raises(ValueError):
        psi({"a": 1.0}, {"a": 0})


def test_error_rate_and_accuracy() -> None:
    assert error_rate({}) is None
    assert error_rate({"200": 0}) is None
    assert error_rate({"200": 6, "400": 2, "499": 1, "500": 1}) == pytest.approx(0.1)
    assert accuracy({"unknown_id": 3}) is None
    assert accuracy({"correct": 3, "incorrect": 1, "unknown_id": 9}) == 0.75


def test_histogram_quantile() -> None:
    buckets = {0.1: 50.0, 0.2: 90.0, 0.5: 100.0, math.inf: 100.0}
    # rank 50 -> first bucket's bound exactly; rank 70 -> 0.1 + 0.1 * 20/40 = 0.15.
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)
    # rank 25 in the first bucket interpolates from 0.
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)
    # rank 99 -> 0.2 + 0.3 * 9/10 = 0.47.
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.47)
    # Observations above the last finite bound: the highest finite bound.
    assert histogram_quantile(0.99, {0.1: 1.0, 1.0: 2.0, math.inf: 10.0}) == 1.0
    assert histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    assert histogram_quantile(0.5, {0.1: 3.0, 0.2: 4.0}) is None  # no +Inf bucket
    assert histogram_quantile(0.5, {}) is None
    # Non-monotonic counts (differenced scrapes) are made monotonic like Prometheus does.
    assert histogram_quantile(0.5, {0.1: 10.0, 0.2: 8.0, math.inf: 10.0}) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        histogram_quantile(1.5, buckets)


def _window(
    n: int = 200,
    errors: int = 0,
    slow: int = 0,
    x: dict[str, float] | None = None,
    predictions: dict[str, float] | None = None,
    feedback: dict[str, float] | None = None,
) -> Counts:
    """n requests, `errors` of them 5xx, `slow` of them taking more than a second."""
    return Counts(
        requests={"200": n - errors, "500": errors} if errors else {"200": n},
        latency={0.005: n - slow, 1.0: n - slow, math.inf: n},
        feature_bins={
            "x": x or {"0": 0, "1": n / 2, "2": n / 2, "3": 0, "missing": 7},
            "colour": {"red": n / 2, "blue": n / 2, "__other__": 0, "__missing__": 3},
            "unreferenced": {"1": n},
        },
        predictions=predictions or {"0": n / 2, "1": n / 2},
        feedback=feedback or {},
        feature_reference={
            "x": {"0": 0, "1": 0.5, "2": 0.5, "3": 0, "missing": 0},
            "colour": {"red": 0.5, "blue": 0.5, "__other__": 0, "__missing__": 0},
            "silent": {"1": 1.0},
        },
        prediction_reference={"0": 0.5, "1": 0.5},
    )


def test_verdict_healthy() -> None:
    a = analyse(_window(), Thresholds(min_accuracy=0.8), 100, NOW)
    assert a.verdict is Verdict.HEALTHY and a.reasons == [] and a.time == NOW
    v = a.values
    assert v.samples == 200 and v.error_rate == 0.0
    assert v.latency_p99_ms == pytest.approx(4.95)  # rank 198 of 200 in (0, 5 ms]: 5 * 198/200
    # Missing values are not drift: the reference fractions are over non-missing values.
    assert v.input_drift_psi == 0.0 and v.input_drift_feature in ("colour", "x")
    assert v.prediction_drift_psi == 0.0 and v.accuracy is None


def test_verdict_degraded_reasons() -> None:
    w = _window(
        errors=24,
        slow=10,
        x={"1": 180, "2": 10, "3": 10},
        predictions={"0": 190, "1": 10},
        feedback={"correct": 61, "incorrect": 39},
    )
    a = analyse(w, Thresholds(min_accuracy=0.8), 100, NOW)
    assert a.verdict is Verdict.DEGRADED
    x_psi = psi({"1": 0.5, "2": 0.5}, {"1": 180, "2": 10, "3": 10})
    p_psi = psi({"0": 0.5, "1": 0.5}, {"0": 190, "1": 10})
    assert a.values.input_drift_feature == "x"
    assert a.values.input_drift_psi == pytest.approx(x_psi, rel=1e-3)
    assert a.reasons == [
        "errorRate 0.12 > maxErrorRate 0.05",
        "latencyP99Ms 1000 > maxLatencyP99Ms 500",
        f"inputDriftPsi {x_psi:.3g} (feature 'x') > maxInputDriftPsi 0.25",
        f"predictionDriftPsi {p_psi:.3g} > maxPredictionDriftPsi 0.25",
        "accuracy 0.61 < minAccuracy 0.8",
    ]
    # Unset thresholds are not checked.
    off = Thresholds(
        max_error_rate=None,
        max_latency_p99_ms=None,
        max_input_drift_psi=None,
        max_prediction_drift_psi=None,
    )
    assert analyse(w, off, 100, NOW).verdict is Verdict.HEALTHY


def test_input_drift_picks_worst_feature_with_observations() -> None:
    w = _window()
    w.feature_bins["colour"] = {"red": 10, "blue": 90, "__other__": 100}
    a = analyse(w, Thresholds(), 100, NOW)
    assert a.values.input_drift_feature == "colour"
    assert a.reasons == [
        f"inputDriftPsi {a.values.input_drift_psi:.3g} (feature 'colour') > maxInputDriftPsi 0.25"
    ]
    # A feature seen only as missing in the window is skipped, not an error.
    w.feature_bins["colour"] = {"red": 0, "blue": 0, "__missing__": 5}
    assert analyse(w, Thresholds(), 100, NOW).values.input_drift_feature == "x"


def test_verdict_insufficient_data() -> None:
    w = _window(n=40, errors=20)
    a = analyse(w, Thresholds(), 100, NOW)
    assert a.verdict is Verdict.INSUFFICIENT_DATA
    assert a.values.samples == 40 and a.values.error_rate == 0.5  # still reported
    assert a.reasons == ["samples 40 < minSamples 100"]
    empty = analyse(Counts(), Thresholds(), 1, NOW)
    assert empty.verdict is Verdict.INSUFFICIENT_DATA and empty.values.error_rate is None


def test_accuracy_needs_enough_feedback() -> None:
    t = Thresholds(min_accuracy=0.9)
    few = analyse(_window(feedback={"correct": 10, "incorrect": 39}), t, 100, NOW)
    assert few.verdict is Verdict.HEALTHY and few.values.accuracy == pytest.approx(10 / 49, rel=1e-3)
    enough = analyse(_window(feedback={"correct": 10, "incorrect": 40}), t, 100, NOW)
    assert enough.reasons == ["accuracy 0.2 < minAccuracy 0.9"]
    # With min_samples below 50, that many labelled rows suffice.
    small = analyse(_window(n=20, feedback={"correct": 1, "incorrect": 9}), t, 10, NOW)
    assert small.reasons == ["accuracy 0.1 < minAccuracy 0.9"]
