"""Window counts from Prometheus (the Prometheus source of a ModelDeployment).

Prometheus already keeps the history, so the operator asks it for the window directly:
one instant query per quantity, ``increase(...[<window>s])`` for the counters and the
last value in the window for the constant reference gauges, all evaluated at the same
timestamp. The answer is the same :class:`~mlkube_operator.analysis.Counts` a direct
pod scrape yields after differencing and summing over pods, so one analysis serves both
sources.

Only pods that exposed ``mlkube_model_info{sha256=<digest>}`` at some point in the
window count: every series is joined ``on (namespace, pod)`` with that info series.
This needs the ``namespace`` and ``pod`` target labels, which the Prometheus Operator's
PodMonitor (``manifests/monitoring``) and the usual ``kubernetes_sd_configs`` relabelling
add; without a ``pod`` label the digest cannot be told apart per pod, which is reported
as an error rather than silently mixing models.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..analysis.counts import ERROR_SUMMARIES, ERROR_SUMMARIES_FOR, Counts
from ..errors import TemporaryFailure

JSON = dict[str, Any]

# `analysis.counts.is_model_route` as PromQL: a label may carry several matchers, and each
# regex is anchored at both ends, so "starts with a model prefix" and "ends with a predict
# suffix" are two independent matchers, exactly like the Python rule.
MODEL_ROUTE_MATCHERS = 'route=~"/v1/models/.*|/v2/models/.*",route=~".*:predict|.*/infer"'

PODS = "pods"
"""Key of the query that lists the pods serving the digest."""


@dataclass(frozen=True)
class Series:
    """One quantity of :class:`Counts` and the metric it comes from."""

    key: str
    metric: str
    labels: tuple[str, ...]
    counter: bool
    model_routes: bool = False


SERIES = (
    Series("requests", "mlkube_requests_total", ("code",), counter=True, model_routes=True),
    Series("latency", "mlkube_request_duration_seconds_bucket", ("le",), counter=True, model_routes=True),
    Series("feature_bins", "mlkube_feature_bin_total", ("feature", "bin"), counter=True),
    Series("feature_levels", "mlkube_feature_level_total", ("feature", "level"), counter=True),
    Series("predictions", "mlkube_predictions_total", ("class",), counter=True),
    Series("prediction_bins", "mlkube_prediction_bin_total", ("bin",), counter=True),
    Series("feedback", "mlkube_feedback_total", ("outcome",), counter=True),
    Series("feedback_for", "mlkube_feedback_for_model_total", ("predicted_by", "outcome"), counter=True),
    *(Series(f"feedback:{name}", name, (), counter=True) for name in ERROR_SUMMARIES),
    *(Series(f"feedback_for:{name}", name, ("predicted_by",), counter=True) for name in ERROR_SUMMARIES_FOR),
    Series("feature_reference", "mlkube_feature_reference_ratio", ("feature", "bin"), counter=False),
    Series("prediction_reference", "mlkube_prediction_reference_ratio", ("bin",), counter=False),
    Series("prediction_scores", "mlkube_prediction_score_bin_total", ("bin",), counter=True),
    Series("prediction_score_reference", "mlkube_prediction_score_reference_ratio", ("bin",), counter=False),
    Series("feature_reference_rows", "mlkube_feature_reference_rows", ("feature",), counter=False),
    Series("prediction_reference_rows", "mlkube_prediction_reference_rows", (), counter=False),
    Series("reference_accuracy", "mlkube_reference_accuracy", (), counter=False),
)


def string_literal(value: str) -> str:
    """A PromQL string literal (Go syntax; JSON's escapes are a subset of Go's)."""
    return json.dumps(value, ensure_ascii=True)


def build_queries(namespace: str, model: str, sha256: str, window_seconds: int) -> dict[str, str]:
    """PromQL per :data:`SERIES` key, plus :data:`PODS`, for one model digest and window."""
    selector = f"namespace={string_literal(namespace)},model={string_literal(model)}"
    window = f"[{int(window_seconds)}s]"
    pods = (
        "max by (namespace, pod) "
        f"(max_over_time(mlkube_model_info{{{selector},sha256={string_literal(sha256)}}}{window}))"
    )
    queries = {PODS: pods}
    for s in SERIES:
        matchers = f"{selector},{MODEL_ROUTE_MATCHERS}" if s.model_routes else selector
        by = ", ".join(s.labels)
        if s.counter:
            queries[s.key] = (
                f"sum by ({by}) (increase({s.metric}{{{matchers}}}{window}) and on (namespace, pod) {pods})"
            )
        else:
            queries[s.key] = (
                f"max by ({by}) (last_over_time({s.metric}{{{matchers}}}{window}) and on (namespace, pod) {pods})"
            )
    return queries


def _samples(result: Sequence[JSON], labels: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], float]]:
    for item in result:
        value = float(item["value"][1])
        if math.isfinite(value):
            metric: Mapping[str, str] = item.get("metric") or {}
            yield tuple(metric.get(label, "") for label in labels), value


def counts_from_results(results: Mapping[str, Sequence[JSON]], sha256: str) -> Counts:
    """Counts from the ``data.result`` vectors of :func:`build_queries`' queries (missing keys: empty)."""
    c = Counts(model_sha256=sha256)
    flat = {
        "requests": c.requests,
        "predictions": c.predictions,
        "prediction_bins": c.predictions,  # regressors count predictions on bins
        "feedback": c.feedback,
        "prediction_reference": c.prediction_reference,
        "prediction_scores": c.prediction_scores,
        "prediction_score_reference": c.prediction_score_reference,
        "feature_reference_rows": c.feature_reference_rows,
    }
    nested = {
        "feature_bins": c.feature_bins,
        "feature_levels": c.feature_bins,  # categorical levels, merged as parse_metrics does
        "feature_reference": c.feature_reference,
    }
    for s in SERIES:
        for key, value in _samples(results.get(s.key, ()), s.labels):
            if s.key == "prediction_reference_rows":
                c.prediction_reference_rows = value
            elif s.key == "reference_accuracy":
                c.reference_accuracy = value
            elif s.key == "feedback_for":
                joined = f"{key[0]}/{key[1]}"
                c.feedback_for[joined] = c.feedback_for.get(joined, 0.0) + value
            elif s.metric in ERROR_SUMMARIES:
                name = ERROR_SUMMARIES[s.metric]
                c.feedback[name] = c.feedback.get(name, 0.0) + value
            elif s.metric in ERROR_SUMMARIES_FOR:
                joined = f"{key[0]}/{ERROR_SUMMARIES_FOR[s.metric]}"
                c.feedback_for[joined] = c.feedback_for.get(joined, 0.0) + value
            elif s.key == "latency":
                le = float(key[0])  # "+Inf" -> math.inf, as in parse_metrics
                c.latency[le] = c.latency.get(le, 0.0) + value
            elif s.key in flat:
                target = flat[s.key]
                target[key[0]] = target.get(key[0], 0.0) + value
            else:
                bins = nested[s.key].setdefault(key[0], {})
                bins[key[1]] = bins.get(key[1], 0.0) + value
    return c


def _error_detail(body: str) -> str:
    """Prometheus' own `error` from an error answer's JSON, else the body."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    return str(answer.get("error") or body) if isinstance(answer, dict) else body


def query(url: str, expr: str, at: float, timeout: float = 5.0) -> list[JSON]:
    """``data.result`` of an instant query (a vector); any failure is a TemporaryFailure naming ``url``."""
    endpoint = f"{url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expr, "time": f"{at:.3f}"}
    )
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout) as resp:
            body: bytes = resp.read()
    except urllib.error.HTTPError as err:
        detail = _error_detail(err.read().decode("utf-8", errors="replace"))
        raise TemporaryFailure(f"Prometheus at {url} answered HTTP {err.code}: {detail[:300]}") from err
    except (OSError, ValueError) as err:  # URLError, refused, timeout, malformed URL
        reason = getattr(err, "reason", err)
        raise TemporaryFailure(f"Cannot query Prometheus at {url}: {reason}") from err
    try:
        answer = json.loads(body)
    except ValueError as err:
        raise TemporaryFailure(
            f"Prometheus at {url} answered something that is not JSON: {body[:200]!r}"
        ) from err
    if not isinstance(answer, dict):
        raise TemporaryFailure(f"Prometheus at {url} answered JSON that is not an object: {body[:200]!r}")
    if answer.get("status") != "success":
        raise TemporaryFailure(
            f"Prometheus at {url} answered status {answer.get('status')!r}: {answer.get('error')}"
        )
    data = answer.get("data")
    if (
        not isinstance(data, dict)
        or data.get("resultType") != "vector"
        or not isinstance(data.get("result"), list)
    ):
        raise TemporaryFailure(
            f"Prometheus at {url} answered no instant vector for {expr!r}: {str(data)[:200]}"
        )
    result: list[JSON] = data["result"]
    return result


def window_counts(
    url: str,
    namespace: str,
    model: str,
    sha256: str,
    window_seconds: int,
    timeout: float = 5.0,
    *,
    at: float | None = None,
) -> Counts:
    """What the pods of ``namespace``/``model`` serving ``sha256`` counted in the window.

    The window is the ``window_seconds`` up to ``at`` (Unix time; default now), the same
    for every query. Empty :class:`Counts` (``model_sha256`` None) when no pod exposed
    that digest in the window. ``ready`` and ``start_time`` stay None: they describe a
    pod now, not a window.
    """
    at = time.time() if at is None else at
    queries = build_queries(namespace, model, sha256, window_seconds)
    pods = query(url, queries.pop(PODS), at, timeout)
    if not pods:
        return Counts()
    unlabelled = [item.get("metric") or {} for item in pods if not (item.get("metric") or {}).get("pod")]
    if unlabelled:
        raise TemporaryFailure(
            f"Prometheus at {url} has mlkube_model_info{{namespace={string_literal(namespace)},"
            f"model={string_literal(model)}}} "
            f"without a `pod` label ({unlabelled[0]}): scrape the predictors with the PodMonitor in "
            "manifests/monitoring or relabel __meta_kubernetes_pod_name to `pod`",
            delay=60.0,
        )
    return counts_from_results({key: query(url, expr, at, timeout) for key, expr in queries.items()}, sha256)


__all__ = ["SERIES", "build_queries", "counts_from_results", "query", "window_counts"]
