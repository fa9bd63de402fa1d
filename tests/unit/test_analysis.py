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
    delta,
    error_rate,
    histogram_quantile,
    parse_metrics,
    psi,
    total,
)
from mlkube_serving.artifacts import ReferencePredictions, ReferenceProfile
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
# What the model predicted on its held-out rows (metadata.json's referencePredictions).
REFERENCE = ReferencePredictions.model_validate(
    {
        "rows": 300,
        "accuracy": 0.9,
        "classes": {"0": 0.4, "1": 0.6},
        "scoreKind": "positiveProbability",
        "scores": {"kind": "numeric", "binEdges": [0.0, 0.5, 1.0], "fractions": [0.4, 0.6]},
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
        reference=REFERENCE,
        reference_accuracy=REFERENCE.accuracy,
    )
    m.ready = True
    return m


def _scrape(m: ServingMetrics) -> Counts:
    return parse_metrics(generate_latest(m.registry).decode())


def test_parse_real_server_metrics() -> None:
    m = _server()
    x = np.array([[0.5, "red"], [1.5, "blue"], [3.0, "green"], [np.nan, None]], dtype=object)
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    m.observe_batch(x, 2, np.array([0, 1, 1, 1]), None, proba)
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
    # Predictions are judged against the model's own held-out predictions, not the labels.
    assert c.prediction_reference == {"0": 0.4, "1": 0.6}
    assert c.prediction_scores == {"0": 0, "1": 1, "2": 3, "3": 0, "missing": 0}
    assert c.prediction_score_reference == {"0": 0, "1": 0.4, "2": 0.6, "3": 0, "missing": 0}
    assert c.prediction_reference_rows == 300 and c.reference_accuracy == 0.9
    assert c.feature_reference_rows == {}  # the profile does not say how many rows it had
    assert c.model_sha256 == "ab" * 32
    assert c.ready is True
    assert c.start_time is None


def test_parse_regression_and_process_start() -> None:
    m = ServingMetrics("reg", with_process=True)
    profile = ReferenceProfile.model_validate(
        {
            "rows": 40,
            "features": [
                {"name": "x", "kind": "numeric", "binEdges": [0, 1], "fractions": [1], "missing": 4}
            ],
            "targetProfile": {"kind": "numeric", "binEdges": [0, 1, 2], "fractions": [0.2, 0.8]},
        }
    )
    m.bind_model(
        sha256="0" * 64,
        version="v",
        task="regression",
        class_labels=[],
        schema=InputSchema(("x",), (False,), allow_nan=False),
        profile=profile,
        reference=ReferencePredictions.model_validate(
            {
                "rows": 12,
                "scoreKind": "prediction",
                "scores": {"kind": "numeric", "binEdges": [0, 1, 4], "fractions": [0.5, 0.5]},
            }
        ),
    )
    m.observe_batch(np.zeros((3, 1)), 1, None, np.array([0.5, 1.5, 5.0]))
    c = _scrape(m)
    assert c.predictions == {"0": 0, "1": 1, "2": 1, "3": 1, "missing": 0}  # on the target's edges
    assert c.prediction_reference == {}  # classes only
    assert c.prediction_scores == {"0": 0, "1": 1, "2": 1, "3": 1, "missing": 0}
    assert c.prediction_score_reference == {"0": 0, "1": 0.5, "2": 0.5, "3": 0, "missing": 0}
    assert c.feature_reference_rows == {"x": 36} and c.prediction_reference_rows == 12
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
