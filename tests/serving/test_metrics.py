"""Metric semantics the operator's drift analysis depends on: bins, levels, names, labels."""

from __future__ import annotations

import numpy as np
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlkube_serving.artifacts import ReferenceProfile
from mlkube_serving.metrics import FeatureBins, ServingMetrics
from mlkube_serving.schema import InputSchema


def test_bin_semantics() -> None:
    bins = FeatureBins([0, 1], ["a", "b"], [[0.0, 1.0, 2.0], [5.0, 5.0]])
    x = np.array(
        [
            [-1.0, 4.0],  # below the first edge -> "0"
            [0.0, 5.0],  # on the first edge -> "1" (left-closed); b on its only edge -> last bin "1"
            [0.5, 6.0],  # inside the first bin; b above -> "2"
            [1.0, np.nan],  # on an inner edge -> the bin it opens ("2"); b missing
            [2.0, 5.0],  # on the last edge -> last bin ("2", right-closed)
            [2.5, 5.0],  # above the last edge -> "3"
            [np.nan, 5.0],
        ]
    )
    bins.count(x)
    assert bins.bin_counts(0) == [("0", 1.0), ("1", 2.0), ("2", 2.0), ("3", 1.0), ("missing", 1.0)]
    assert bins.bin_counts(1) == [("0", 1.0), ("1", 4.0), ("2", 1.0), ("missing", 1.0)]


def _profile() -> ReferenceProfile:
    return ReferenceProfile.model_validate(
        {
            "features": [
                {"name": "x", "kind": "numeric", "binEdges": [0, 1, 2], "fractions": [0.5, 0.5]},
                {"name": "colour", "kind": "categorical", "levels": {"red": 0.5, "blue": 0.5}},
            ],
            "targetProfile": {"kind": "categorical", "levels": {"0": 0.5, "1": 0.5}},
        }
    )


def samples(m: ServingMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_series_names_and_labels() -> None:
    m = ServingMetrics("iris", with_process=False)
    schema = InputSchema(("x", "colour"), (False, True), allow_nan=True)
    m.bind_model(
        sha256="ab" * 32,
        version="1.2.3",
        task="classification",
        class_labels=["0", "1"],
        schema=schema,
        profile=_profile(),
    )
    x = np.array([[0.5, "red"], [3.0, "green"], [np.nan, np.nan]], dtype=object)
    m.observe_batch(x, 2, np.array([0, 1, 1]), np.array([0, 1, 1]))
    m.observe_request("/v1/models/{name}:predict", 200, 0.0012)
    m.observe_feedback("correct", 2)
    s = samples(m)
    model = ("model", "iris")
    assert s[("mlkube_requests_total", (("code", "200"), model, ("route", "/v1/models/{name}:predict")))] == 1
    assert (
        s[
            (
                "mlkube_request_duration_seconds_bucket",
                (("le", "0.0015"), model, ("route", "/v1/models/{name}:predict")),
            )
        ]
        == 1
    )
    assert (
        s[
            (
                "mlkube_request_duration_seconds_bucket",
                (("le", "0.001"), model, ("route", "/v1/models/{name}:predict")),
            )
        ]
        == 0
    )
    assert s[("mlkube_predictions_total", (("class", "1"), model))] == 2
    assert s[("mlkube_feature_bin_total", (("bin", "1"), ("feature", "x"), model))] == 1
    assert s[("mlkube_feature_bin_total", (("bin", "3"), ("feature", "x"), model))] == 1
    assert s[("mlkube_feature_bin_total", (("bin", "missing"), ("feature", "x"), model))] == 1
    assert s[("mlkube_feature_level_total", (("feature", "colour"), ("level", "red"), model))] == 1
    assert s[("mlkube_feature_level_total", (("feature", "colour"), ("level", "__other__"), model))] == 1
    assert s[("mlkube_feature_level_total", (("feature", "colour"), ("level", "__missing__"), model))] == 1
    assert s[("mlkube_feedback_total", (model, ("outcome", "correct")))] == 2
    assert s[("mlkube_model_info", (model, ("sha256", "ab" * 32), ("version", "1.2.3")))] == 1
    assert s[("mlkube_batch_size_sum", (model,))] == 3
    assert s[("mlkube_batch_requests_sum", (model,))] == 2


def test_regression_buckets_from_target_profile() -> None:
    m = ServingMetrics("reg", with_process=False)
    profile = ReferenceProfile.model_validate(
        {"features": [], "targetProfile": {"kind": "numeric", "binEdges": [-10.0, 0.0, 10.0]}}
    )
    schema = InputSchema(("x",), (False,), allow_nan=False)
    m.bind_model(
        sha256="0" * 64, version="v", task="regression", class_labels=[], schema=schema, profile=profile
    )
    m.observe_batch(np.zeros((3, 1)), 1, None, np.array([-20.0, 5.0, 10.0]))
    m.observe_errors(np.array([1.0, -2.0]))
    s = samples(m)
    model = ("model", "reg")
    assert s[("mlkube_prediction_value_bucket", (("le", "-10.0"), model))] == 1
    assert s[("mlkube_prediction_value_bucket", (("le", "10.0"), model))] == 3
    assert s[("mlkube_prediction_value_count", (model,))] == 3
    assert s[("mlkube_prediction_bin_total", (("bin", "0"), model))] == 1
    assert s[("mlkube_prediction_bin_total", (("bin", "2"), model))] == 2
    assert s[("mlkube_feedback_squared_error_sum", (model,))] == 5.0
    assert s[("mlkube_feedback_abs_error_sum", (model,))] == 3.0
    assert s[("mlkube_feedback_abs_error_count", (model,))] == 2


def test_flush_is_bulk_and_bounded() -> None:
    m = ServingMetrics("m", with_process=False)
    schema = InputSchema(("x",), (False,), allow_nan=False)
    profile = ReferenceProfile.model_validate(
        {"features": [{"name": "x", "kind": "numeric", "binEdges": [0, 1]}]}
    )
    m.bind_model(
        sha256="0" * 64,
        version="v",
        task="classification",
        class_labels=["a"],
        schema=schema,
        profile=profile,
    )
    m.flush_rows = 10
    for _ in range(9):
        m.observe_batch(np.full((1, 1), 0.5), 1, np.array([0]), np.array(["a"]))
    assert m.bins is not None and int(m.bins.counts.sum()) == 0  # deferred
    m.observe_batch(np.full((1, 1), 0.5), 1, np.array([0]), np.array(["a"]))
    assert int(m.bins.counts.sum()) == 10  # flushed at the bound
