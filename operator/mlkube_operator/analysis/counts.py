"""What one scrape of a model server says, reduced to the counts the analysis needs.

The server's counters are cumulative since the pod started, while a verdict is about a
window (the last few minutes).  Scrapes are therefore kept per pod and differenced; a
pod that restarted starts again from zero, which shows as a counter going down (or a
new ``process_start_time_seconds``), and then its new counts *are* the window's counts.
Series are keyed by the label values the analysis compares (bin, level, class), with the
``model`` label dropped: one server serves one model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

_MODEL_ROUTE_PREFIXES = ("/v1/models/", "/v2/models/")
_MODEL_ROUTE_SUFFIXES = (":predict", "/infer")


def is_model_route(route: str) -> bool:
    """Routes that carry predictions (not health, metadata or feedback)."""
    return route.startswith(_MODEL_ROUTE_PREFIXES) and route.endswith(_MODEL_ROUTE_SUFFIXES)


@dataclass
class Counts:
    """Cumulative (or, after :func:`delta`, windowed) counts from one or more model servers."""

    requests: dict[str, float] = field(default_factory=dict)
    """HTTP status code -> requests, over the model (predict/infer) routes only."""
    latency: dict[float, float] = field(default_factory=dict)
    """Bucket upper bound in seconds (``math.inf`` for +Inf) -> cumulative count, model routes."""
    feature_bins: dict[str, dict[str, float]] = field(default_factory=dict)
    """Feature -> numeric bin or categorical level -> count."""
    predictions: dict[str, float] = field(default_factory=dict)
    """Class label (classification) or prediction bin (regression) -> count."""
    feedback: dict[str, float] = field(default_factory=dict)
    """Feedback outcome (correct, incorrect, scored, unknown_id, other_model) -> count; for a
    regressor also ``squared_error`` and ``abs_error`` (sums over the scored rows) and
    ``error_rows`` (their count), from the ``mlkube_feedback_*_error`` summaries."""
    feedback_for: dict[str, float] = field(default_factory=dict)
    """``<sha256[:8]>/<outcome>`` -> labels of another model's predictions scored here for it
    (for a regressor ``<sha256[:8]>/squared_error``, ``/abs_error``, ``/error_rows``)."""
    feature_reference: dict[str, dict[str, float]] = field(default_factory=dict)
    """Feature -> bin or level -> reference fraction (a constant gauge)."""
    prediction_reference: dict[str, float] = field(default_factory=dict)
    """Class label or prediction bin -> the model's own predictions on its held-out rows (a gauge)."""
    prediction_scores: dict[str, float] = field(default_factory=dict)
    """Classifier score (predict_proba) bin -> count."""
    prediction_score_reference: dict[str, float] = field(default_factory=dict)
    """Score bin -> fraction of the held-out rows' scores (a constant gauge)."""
    feature_reference_rows: dict[str, float] = field(default_factory=dict)
    """Feature -> non-missing rows the reference fractions were measured on."""
    prediction_reference_rows: float | None = None
    """Held-out rows behind the prediction references and the reference accuracy."""
    reference_accuracy: float | None = None
    """The model's accuracy on its held-out rows."""
    model_sha256: str | None = None
    ready: bool | None = None
    start_time: float | None = None
    """``process_start_time_seconds`` when exported: a change means the pod restarted."""


def _add(target: dict[str, float], key: str, value: float) -> None:
    target[key] = target.get(key, 0.0) + value


# A regressor's feedback: summaries of its errors (sum of squares, sum of absolutes, rows),
# kept in `feedback` beside the outcomes so crediting and differencing treat them alike.
SQUARED_ERROR, ABS_ERROR, ERROR_ROWS = "squared_error", "abs_error", "error_rows"
ERROR_SUMMARIES = {
    "mlkube_feedback_squared_error_sum": SQUARED_ERROR,
    "mlkube_feedback_abs_error_sum": ABS_ERROR,
    "mlkube_feedback_squared_error_count": ERROR_ROWS,
}
ERROR_SUMMARIES_FOR = {
    "mlkube_feedback_for_model_squared_error_sum": SQUARED_ERROR,
    "mlkube_feedback_for_model_abs_error_sum": ABS_ERROR,
    "mlkube_feedback_for_model_squared_error_count": ERROR_ROWS,
}


def parse_metrics(text: str) -> Counts:
    """Counts from a model server's ``/metrics`` (Prometheus text format)."""
    return counts_from_families(text_string_to_metric_families(text))


def counts_from_families(families: Iterable[Metric]) -> Counts:
    """Counts from metric families (parsed text, or a registry's ``collect()`` in benchmarks)."""
    c = Counts()
    for family in families:
        for s in family.samples:
            name, labels, value = s.name, s.labels, float(s.value)
            if name == "mlkube_requests_total":
                if is_model_route(labels.get("route", "")):
                    _add(c.requests, labels.get("code", ""), value)
            elif name == "mlkube_request_duration_seconds_bucket":
                if is_model_route(labels.get("route", "")):
                    le = float(labels["le"])  # float("+Inf") == math.inf
                    c.latency[le] = c.latency.get(le, 0.0) + value
            elif name == "mlkube_feature_bin_total":
                _add(c.feature_bins.setdefault(labels["feature"], {}), labels["bin"], value)
            elif name == "mlkube_feature_level_total":
                _add(c.feature_bins.setdefault(labels["feature"], {}), labels["level"], value)
            elif name == "mlkube_predictions_total":
                _add(c.predictions, labels["class"], value)
            elif name == "mlkube_prediction_bin_total":
                _add(c.predictions, labels["bin"], value)
            elif name == "mlkube_feedback_total":
                _add(c.feedback, labels["outcome"], value)
            elif name == "mlkube_feedback_for_model_total":
                _add(c.feedback_for, f"{labels['predicted_by']}/{labels['outcome']}", value)
            elif name in ERROR_SUMMARIES:
                _add(c.feedback, ERROR_SUMMARIES[name], value)
            elif name in ERROR_SUMMARIES_FOR:
                _add(c.feedback_for, f"{labels['predicted_by']}/{ERROR_SUMMARIES_FOR[name]}", value)
            elif name == "mlkube_feature_reference_ratio":
                c.feature_reference.setdefault(labels["feature"], {})[labels["bin"]] = value
            elif name == "mlkube_prediction_reference_ratio":
                c.prediction_reference[labels["bin"]] = value
            elif name == "mlkube_prediction_score_bin_total":
                _add(c.prediction_scores, labels["bin"], value)
            elif name == "mlkube_prediction_score_reference_ratio":
                c.prediction_score_reference[labels["bin"]] = value
            elif name == "mlkube_feature_reference_rows":
                c.feature_reference_rows[labels["feature"]] = value
            elif name == "mlkube_prediction_reference_rows":
                c.prediction_reference_rows = value
            elif name == "mlkube_reference_accuracy":
                c.reference_accuracy = value
            elif name == "mlkube_model_info":
                c.model_sha256 = labels.get("sha256")
            elif name == "mlkube_model_ready":
                c.ready = value == 1.0
            elif name == "process_start_time_seconds":
                c.start_time = value
    return c


# The cumulative fields; references, identity and readiness are state, not counts.
_FLAT = ("requests", "predictions", "prediction_scores", "feedback", "feedback_for")


def _all_series(c: Counts) -> Iterable[tuple[tuple[str, ...], float]]:
    for name in _FLAT:
        series: dict[str, float] = getattr(c, name)
        for key, value in series.items():
            yield (name, key), value
    for le, value in c.latency.items():
        yield ("latency", repr(le)), value
    for feature, bins in c.feature_bins.items():
        for key, value in bins.items():
            yield ("feature_bins", feature, key), value


def _restarted(new: Counts, old: Counts) -> bool:
    if new.start_time is not None and old.start_time is not None and new.start_time != old.start_time:
        return True
    current = dict(_all_series(new))
    return any(current.get(key, 0.0) < value for key, value in _all_series(old))


def _minus(new: Mapping[str, float], old: Mapping[str, float]) -> dict[str, float]:
    return {k: v - old.get(k, 0.0) for k, v in new.items()}


def delta(new: Counts, old: Counts) -> Counts:
    """What one pod counted between two scrapes.

    If any counter went down (or the process start time changed) the pod restarted
    in between and ``new`` is returned as is: differencing only the series that went
    down would mix two processes' counts and could leave a histogram non-monotonic.
    """
    if _restarted(new, old):
        return new
    return Counts(
        requests=_minus(new.requests, old.requests),
        latency={le: v - old.latency.get(le, 0.0) for le, v in new.latency.items()},
        feature_bins={f: _minus(bins, old.feature_bins.get(f, {})) for f, bins in new.feature_bins.items()},
        predictions=_minus(new.predictions, old.predictions),
        feedback=_minus(new.feedback, old.feedback),
        feedback_for=_minus(new.feedback_for, old.feedback_for),
        feature_reference=new.feature_reference,
        prediction_reference=new.prediction_reference,
        prediction_scores=_minus(new.prediction_scores, old.prediction_scores),
        prediction_score_reference=new.prediction_score_reference,
        feature_reference_rows=new.feature_reference_rows,
        prediction_reference_rows=new.prediction_reference_rows,
        reference_accuracy=new.reference_accuracy,
        model_sha256=new.model_sha256,
        ready=new.ready,
        start_time=new.start_time,
    )


def _sum_into(target: dict[str, float], source: Mapping[str, float]) -> None:
    for key, value in source.items():
        _add(target, key, value)


def total(counts: Iterable[Counts]) -> Counts:
    """Counts summed over pods.

    References are constant and the same for every pod of one model, so the first
    non-empty one is taken; so is the first known sha256.  ``ready`` is True only when
    every pod that says anything is ready.
    """
    out = Counts()
    readiness: list[bool] = []
    for c in counts:
        _sum_into(out.requests, c.requests)
        for le, value in c.latency.items():
            out.latency[le] = out.latency.get(le, 0.0) + value
        for feature, bins in c.feature_bins.items():
            _sum_into(out.feature_bins.setdefault(feature, {}), bins)
        _sum_into(out.predictions, c.predictions)
        _sum_into(out.prediction_scores, c.prediction_scores)
        _sum_into(out.feedback, c.feedback)
        _sum_into(out.feedback_for, c.feedback_for)
        if not out.feature_reference and c.feature_reference:
            out.feature_reference = {f: dict(r) for f, r in c.feature_reference.items()}
            out.feature_reference_rows = dict(c.feature_reference_rows)
        if not out.prediction_reference and c.prediction_reference:
            out.prediction_reference = dict(c.prediction_reference)
        if not out.prediction_score_reference and c.prediction_score_reference:
            out.prediction_score_reference = dict(c.prediction_score_reference)
        if out.prediction_reference_rows is None:
            out.prediction_reference_rows = c.prediction_reference_rows
        if out.reference_accuracy is None:
            out.reference_accuracy = c.reference_accuracy
        if out.model_sha256 is None:
            out.model_sha256 = c.model_sha256
        if c.ready is not None:
            readiness.append(c.ready)
    out.ready = all(readiness) if readiness else None
    return out


def credit_feedback(judged: Counts, other: Counts) -> Counts:
    """``judged`` with the labels of its predictions that ``other``'s pods scored for it.

    During a canary a Service sends most labels of one track's predictions to the other
    track's pods, which score them for the model that predicted (by its sha256 prefix,
    ``mlkube_feedback_for_model_total``, and for a regressor the error summaries
    ``mlkube_feedback_for_model_squared_error``/``_abs_error``); they belong to that
    model's accuracy (or errors).
    """
    if judged.model_sha256 is None:
        return judged
    prefix = f"{judged.model_sha256[:8]}/"
    credited = {
        key.removeprefix(prefix): value for key, value in other.feedback_for.items() if key.startswith(prefix)
    }
    if not credited:
        return judged
    feedback = dict(judged.feedback)
    _sum_into(feedback, credited)
    return replace(judged, feedback=feedback)


__all__ = [
    "Counts",
    "counts_from_families",
    "credit_feedback",
    "delta",
    "is_model_route",
    "parse_metrics",
    "total",
]
