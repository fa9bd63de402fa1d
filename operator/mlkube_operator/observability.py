"""The operator's own Prometheus metrics: names, label sets and the hooks that move them.

One module so that the handlers that count, the dashboard that plots, the alerts that
fire and the tests that check all spell a series the same way (the serving pods'
series live in `mlkube_serving.metrics` for the same reason). Label sets are bounded:
`kind`, `outcome`, `verb`, `resource`, `code`, `component`, `verdict`, `value` and
`action` take a handful of values each; `namespace`/`modeldeployment` grow with the
number of ModelDeployments only, and a deleted ModelDeployment's series are removed
(`forget_model_deployment`).

The metrics live in their own registry (with the standard `process_*` and
`python_info` collectors), served on `MLKUBE_METRICS_PORT` by the operator entrypoint
(`mlkube_operator.main`). Nothing here talks to Kubernetes or kopf.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import wraps
from typing import Any, Final, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlsplit

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .errors import ApiError, Conflict, PermanentFailure, TemporaryFailure

# Exposition names (what PromQL, the dashboard and the alerts use).
RECONCILIATIONS: Final = "mlkube_operator_reconciliations_total"
RECONCILE_DURATION: Final = "mlkube_operator_reconcile_duration_seconds"
API_REQUESTS: Final = "mlkube_operator_api_requests_total"
API_ERRORS: Final = "mlkube_operator_api_errors_total"
JOBS_LAUNCHED: Final = "mlkube_operator_jobs_launched_total"
LEADER: Final = "mlkube_operator_leader"
LEADER_ACQUISITIONS: Final = "mlkube_operator_leader_acquisitions_total"
ANALYSIS_VERDICTS: Final = "mlkube_operator_analysis_verdicts_total"
ANALYSIS_VALUE: Final = "mlkube_operator_analysis_value"
DEGRADATION_ACTIONS: Final = "mlkube_operator_degradation_actions_total"
# kube-state-metrics-like, from the watch events of the mlkube resources (ObjectStates).
OBJECTS: Final = "mlkube_operator_objects"
OBJECT_CONDITIONS: Final = "mlkube_operator_object_conditions"
CANARY_WEIGHT: Final = "mlkube_operator_canary_weight"
# From prometheus_client's ProcessCollector (CPU seconds, resident memory, open fds...).
PROCESS_CPU: Final = "process_cpu_seconds_total"
PROCESS_RSS: Final = "process_resident_memory_bytes"

# Label values.
KIND_DATASET: Final = "Dataset"
KIND_TRAINING_RUN: Final = "TrainingRun"
KIND_MODEL_DEPLOYMENT: Final = "ModelDeployment"
OUTCOME_SUCCESS: Final = "success"
OUTCOME_CONFLICT: Final = "conflict"  # the object changed meanwhile; its change triggers a new reconcile
OUTCOME_RETRY: Final = "retry"  # a transient failure; kopf retries with backoff
OUTCOME_FAILED: Final = "failed"  # a permanent failure (e.g. a rejected request)
OUTCOME_ERROR: Final = "error"  # an unexpected exception (a bug)
OUTCOMES: Final = (OUTCOME_SUCCESS, OUTCOME_CONFLICT, OUTCOME_RETRY, OUTCOME_FAILED, OUTCOME_ERROR)
VERDICT_METRICS_UNAVAILABLE: Final = "MetricsUnavailable"  # besides Healthy/Degraded/InsufficientData
# status.lastAnalysis.values keys exported as `value`.
ANALYSIS_VALUES: Final = (
    "samples",
    "errorRate",
    "latencyP99Ms",
    "inputDriftPsi",
    "predictionDriftPsi",
    "accuracy",
)
# Event reason of an action taken on a Degraded verdict -> `action` label.
ACTION_OF_REASON: Final = {
    "ModelDegraded": "Alert",
    "RolledBack": "Rollback",
    "RollbackImpossible": "RollbackImpossible",
    "Retraining": "Retrain",
    "CanaryAborted": "CanaryAbort",
    "CanaryInconclusive": "CanaryAbort",
}

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

reconciliations = Counter(
    RECONCILIATIONS,
    "Reconciliations of mlkube resources by kind and outcome.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
reconcile_duration = Histogram(
    RECONCILE_DURATION,
    "Time one reconciliation took (API calls included).",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
api_requests = Counter(
    API_REQUESTS,
    "Requests the operator's Kubernetes client sent, by verb, resource and HTTP status ('none' when no answer came).",
    ["verb", "resource", "code"],
    registry=REGISTRY,
)
api_errors = Counter(
    API_ERRORS,
    "Requests that failed: HTTP status >= 400 other than 404 and 409 (which the operator expects), or no answer.",
    ["verb", "resource", "code"],
    registry=REGISTRY,
)
jobs_launched = Counter(
    JOBS_LAUNCHED,
    "batch/v1 Jobs the operator created, by component (dataset-profile, training).",
    ["component"],
    registry=REGISTRY,
)
leader = Gauge(
    LEADER, "1 while this replica holds the leader Lease and reconciles, else 0.", registry=REGISTRY
)
leader_acquisitions = Counter(
    LEADER_ACQUISITIONS, "Times this replica acquired the leader Lease.", registry=REGISTRY
)
analysis_verdicts = Counter(
    ANALYSIS_VERDICTS,
    "Degradation analyses of ModelDeployments by verdict (Healthy, Degraded, InsufficientData, MetricsUnavailable).",
    ["namespace", "modeldeployment", "verdict"],
    registry=REGISTRY,
)
analysis_value = Gauge(
    ANALYSIS_VALUE,
    "Values measured by the last analysis (status.lastAnalysis.values): samples, errorRate, latencyP99Ms, "
    "inputDriftPsi, predictionDriftPsi, accuracy. A value the analysis could not measure is absent.",
    ["namespace", "modeldeployment", "value"],
    registry=REGISTRY,
)
degradation_actions = Counter(
    DEGRADATION_ACTIONS,
    "Actions taken on Degraded verdicts (Alert, Rollback, RollbackImpossible, Retrain, CanaryAbort).",
    ["namespace", "modeldeployment", "action"],
    registry=REGISTRY,
)

for _kind in (KIND_DATASET, KIND_TRAINING_RUN, KIND_MODEL_DEPLOYMENT):
    reconcile_duration.labels(_kind)
    for _outcome in OUTCOMES:
        reconciliations.labels(_kind, _outcome)  # every series exists from the start (rate() needs a zero)
leader.set(0)

P = ParamSpec("P")
R = TypeVar("R")


def outcome_of(err: BaseException | None) -> str:
    if err is None:
        return OUTCOME_SUCCESS
    if isinstance(err, Conflict):
        return OUTCOME_CONFLICT
    if isinstance(err, TemporaryFailure | ApiError):  # every API error is retried with backoff
        return OUTCOME_RETRY
    if isinstance(err, PermanentFailure):
        return OUTCOME_FAILED
    return OUTCOME_ERROR


def reconciliation(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a reconcile function: count it by outcome and time it."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            start = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as err:
                reconciliations.labels(kind, outcome_of(err)).inc()
                raise
            else:
                reconciliations.labels(kind, OUTCOME_SUCCESS).inc()
                return result
            finally:
                reconcile_duration.labels(kind).observe(time.perf_counter() - start)

        return wrapper

    return decorate


_VERBS: Final = {"POST": "create", "PUT": "update", "DELETE": "delete"}


def request_labels(method: str, url: str, content_type: str | None = None) -> tuple[str, str]:
    """(verb, resource) of a Kubernetes API request, named as the API server's audit log does.

    `/apis/batch/v1/namespaces/ns/jobs/x` -> `jobs`; `.../datasets/x/status` -> `datasets/status`;
    a GET of a collection is `list` (`watch` with `?watch=true`); a PATCH with an
    apply-patch body is `apply`.
    """
    split = urlsplit(url)
    parts = [p for p in split.path.split("/") if p]
    # /api/v1/... or /apis/<group>/<version>/...
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:] if parts[:1] == ["apis"] else []
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    resource = rest[0] if rest else "other"
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    method = method.upper()
    if method == "GET":
        watching = any(k == "watch" and v.lower() in ("true", "1") for k, v in parse_qsl(split.query))
        verb = "watch" if watching else "get" if named else "list"
    elif method == "PATCH":
        verb = "apply" if content_type and "apply-patch" in content_type else "patch"
    else:
        verb = _VERBS.get(method, method.lower())
    return verb, resource


def observe_api_request(verb: str, resource: str, code: int | None, body: object = None) -> None:
    """Count one API request; a 201 on `jobs` (create or apply) is a launched Job."""
    label = str(code) if code else "none"
    api_requests.labels(verb, resource, label).inc()
    if code is None or (code >= 400 and code not in (404, 409)):
        api_errors.labels(verb, resource, label).inc()
    if code == 201 and resource == "jobs":
        component = "unknown"
        if isinstance(body, dict):
            labels = (body.get("metadata") or {}).get("labels") or {}
            component = str(labels.get("app.kubernetes.io/component") or "unknown")
        jobs_launched.labels(component).inc()


def observe_analysis(
    namespace: str, name: str, verdict: str, values: dict[str, object] | None, actions: Iterable[str]
) -> None:
    """Record one analysis of a ModelDeployment: its verdict, measured values and the actions taken.

    `values` is `status.lastAnalysis.values` (camelCase keys); `actions` are the reasons
    of the Events the monitoring plan posted (only action reasons count).
    """
    analysis_verdicts.labels(namespace, name, verdict).inc()
    if values is not None:
        for key in ANALYSIS_VALUES:
            value = values.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                analysis_value.labels(namespace, name, key).set(float(value))
            else:
                _remove(analysis_value, (namespace, name, key))
    for reason in actions:
        action = ACTION_OF_REASON.get(reason)
        if action is not None:
            degradation_actions.labels(namespace, name, action).inc()


def forget_model_deployment(namespace: str, name: str) -> None:
    """Drop a deleted ModelDeployment's series so the label sets stay bounded."""
    for metric, extra in (
        (analysis_verdicts, ("Healthy", "Degraded", "InsufficientData", VERDICT_METRICS_UNAVAILABLE)),
        (analysis_value, ANALYSIS_VALUES),
        (degradation_actions, tuple(set(ACTION_OF_REASON.values()))),
    ):
        for label in extra:
            _remove(metric, (namespace, name, label))


def set_leader(is_leader: bool) -> None:
    if is_leader:
        leader_acquisitions.inc()
    leader.set(1 if is_leader else 0)


def _remove(metric: Counter | Gauge, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


class ObjectStates(Collector):
    """The state of every mlkube object as its last watch event showed it, counted at scrape.

    Like kube-state-metrics, but aggregated so the label sets stay bounded:
    `mlkube_operator_objects{kind}` counts the objects, `mlkube_operator_object_conditions
    {kind, condition, status, reason}` counts them by each condition they carry (the
    reasons are the CamelCase constants), and `mlkube_operator_canary_weight{namespace,
    modeldeployment}` is a ModelDeployment's `status.canary.weight` (0 without a canary).
    Watch events update it (a DELETED event removes the object), so it is complete once
    the initial listing has been seen, on any replica that watches.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (kind, namespace, name) -> ((condition, status, reason), ...)
        self._conditions: dict[tuple[str, str, str], tuple[tuple[str, str, str], ...]] = {}
        self._canary: dict[tuple[str, str], float] = {}

    def observe(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        with self._lock:
            if event_type == "DELETED":
                self._conditions.pop(key, None)
                self._canary.pop(key[1:], None)
                return
            status = body.get("status") or {}
            self._conditions[key] = tuple(
                (str(c.get("type")), str(c.get("status")), str(c.get("reason") or ""))
                for c in status.get("conditions") or []
                if isinstance(c, Mapping)
            )
            if kind == KIND_MODEL_DEPLOYMENT:
                weight = (status.get("canary") or {}).get("weight")
                self._canary[key[1:]] = float(weight) if isinstance(weight, int | float) else 0.0

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            conditions = list(self._conditions.items())
            canary = list(self._canary.items())
        objects = GaugeMetricFamily(OBJECTS, "mlkube objects the operator watches, by kind.", labels=["kind"])
        by_kind = dict.fromkeys((KIND_DATASET, KIND_TRAINING_RUN, KIND_MODEL_DEPLOYMENT), 0)
        counts: dict[tuple[str, str, str, str], int] = {}
        for (kind, _, _), conds in conditions:
            by_kind[kind] = by_kind.get(kind, 0) + 1
            for cond in conds:
                counts[(kind, *cond)] = counts.get((kind, *cond), 0) + 1
        for kind, n in by_kind.items():
            objects.add_metric([kind], n)
        yield objects
        fam = GaugeMetricFamily(
            OBJECT_CONDITIONS,
            "mlkube objects by kind and by each condition's type, status and reason.",
            labels=["kind", "condition", "status", "reason"],
        )
        for labels, n in sorted(counts.items()):
            fam.add_metric(list(labels), n)
        yield fam
        weights = GaugeMetricFamily(
            CANARY_WEIGHT,
            "Percent of a ModelDeployment's replicas running its canary (status.canary.weight; 0 without a canary).",
            labels=["namespace", "modeldeployment"],
        )
        for (namespace, name), weight in sorted(canary):
            weights.add_metric([namespace, name], weight)
        yield weights


object_states = ObjectStates()
REGISTRY.register(object_states)
