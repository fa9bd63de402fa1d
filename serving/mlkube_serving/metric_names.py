"""The names of the model server's metrics, in one place.

The server exports them (``metrics``), the operator's analysis and its Prometheus source
read them (``mlkube_operator.analysis.counts``, ``mlkube_operator.adapters.prometheus``),
and the PrometheusRule and the Grafana dashboard query them; tests/unit/test_metric_names.py
checks that every name those use is one of these. Counters are named without their
``_total`` suffix, as prometheus_client's metric families take them; :func:`total` gives
the exported sample name. This module imports nothing, so the operator can use it without
loading the server.
"""

from __future__ import annotations

from typing import Final

# Traffic
REQUESTS: Final = "mlkube_requests"  # counter: model, route, code
REQUEST_DURATION: Final = "mlkube_request_duration_seconds"  # histogram: model, route
BATCH_SIZE: Final = "mlkube_batch_size"  # histogram: model
BATCH_REQUESTS: Final = "mlkube_batch_requests"  # histogram: model
# The model
MODEL_READY: Final = "mlkube_model_ready"  # gauge: model
MODEL_INFO: Final = "mlkube_model_info"  # gauge = 1: model, sha256, version
# Predictions
PREDICTIONS: Final = "mlkube_predictions"  # counter: model, class
PREDICTION_VALUE: Final = "mlkube_prediction_value"  # histogram: model (regression)
PREDICTION_BIN: Final = "mlkube_prediction_bin"  # counter: model, bin (regression, target edges)
PREDICTION_SCORE_BIN: Final = "mlkube_prediction_score_bin"  # counter: model, bin
# Inputs
FEATURE_BIN: Final = "mlkube_feature_bin"  # counter: model, feature, bin
FEATURE_LEVEL: Final = "mlkube_feature_level"  # counter: model, feature, level
# References (constant gauges)
FEATURE_REFERENCE_RATIO: Final = "mlkube_feature_reference_ratio"  # model, feature, bin
FEATURE_REFERENCE_ROWS: Final = "mlkube_feature_reference_rows"  # model, feature
PREDICTION_REFERENCE_RATIO: Final = "mlkube_prediction_reference_ratio"  # model, bin (class)
PREDICTION_SCORE_REFERENCE_RATIO: Final = "mlkube_prediction_score_reference_ratio"  # model, bin
PREDICTION_REFERENCE_ROWS: Final = "mlkube_prediction_reference_rows"  # model
REFERENCE_ACCURACY: Final = "mlkube_reference_accuracy"  # model
# Feedback
FEEDBACK: Final = "mlkube_feedback"  # counter: model, outcome
FEEDBACK_SQUARED_ERROR: Final = "mlkube_feedback_squared_error"  # summary: model
FEEDBACK_ABS_ERROR: Final = "mlkube_feedback_abs_error"  # summary: model

ALL: Final = (
    REQUESTS,
    REQUEST_DURATION,
    BATCH_SIZE,
    BATCH_REQUESTS,
    MODEL_READY,
    MODEL_INFO,
    PREDICTIONS,
    PREDICTION_VALUE,
    PREDICTION_BIN,
    PREDICTION_SCORE_BIN,
    FEATURE_BIN,
    FEATURE_LEVEL,
    FEATURE_REFERENCE_RATIO,
    FEATURE_REFERENCE_ROWS,
    PREDICTION_REFERENCE_RATIO,
    PREDICTION_SCORE_REFERENCE_RATIO,
    PREDICTION_REFERENCE_ROWS,
    REFERENCE_ACCURACY,
    FEEDBACK,
    FEEDBACK_SQUARED_ERROR,
    FEEDBACK_ABS_ERROR,
)


def total(counter: str) -> str:
    """The exported sample name of a counter (``mlkube_requests`` -> ``mlkube_requests_total``)."""
    return f"{counter}_total"


def bucket(histogram: str) -> str:
    return f"{histogram}_bucket"
