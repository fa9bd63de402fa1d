"""Closed loop for ModelDeployments: read the predictors' metrics, judge, record, act.

A timer looks at every ModelDeployment every few seconds; the analysis itself runs
once per `spec.monitoring.intervalSeconds`. With `source.type: PodScrape` the operator
scrapes the pods and keeps the scrape history in memory: after an operator restart the
first window simply counts from each pod's start, which is what its cumulative counters
hold anyway. With `source.type: Prometheus` Prometheus keeps the history and answers
for the window itself (`adapters.prometheus`).
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import kopf

from .. import constants as C
from .. import observability as obs
from ..adapters.metrics import scrape_pods
from ..adapters.prometheus import window_counts
from ..analysis.counts import Counts, delta, parse_metrics, total
from ..analysis.verdict import analyse
from ..api.modeldeployment import MetricsSourceType, ModelDeploymentSpec, ModelDeploymentStatus
from ..api.validation import InvalidSpecError, parse_model
from ..errors import PermanentFailure, TemporaryFailure
from ..reconcile.monitoring import analysis_due, plan_monitoring, unsupported_source
from .lifecycle import post_event, runtime
from .training import guard

JSON = dict[str, Any]
MODEL_DEPLOYMENTS, TRAINING_RUNS = "modeldeployments", "trainingruns"


class History:
    """Per ModelDeployment: (monotonic time, {pod uid: cumulative Counts}) snapshots."""

    def __init__(self) -> None:
        self._snapshots: dict[tuple[str, str], deque[tuple[float, dict[str, Counts]]]] = {}

    def window(self, key: tuple[str, str], now: float, seconds: float, current: dict[str, Counts]) -> Counts:
        """Counts of the last `seconds`: current minus the newest snapshot at least that old.

        Without such a snapshot (operator just started, window longer than the history)
        the baseline is zero, i.e. everything since each pod started.
        """
        snaps = self._snapshots.setdefault(key, deque())
        baseline: dict[str, Counts] = {}
        for taken, counts in snaps:
            if now - taken >= seconds:
                baseline = counts
        snaps.append((now, current))
        while len(snaps) > 1 and now - snaps[1][0] >= seconds:
            snaps.popleft()
        return total(delta(c, baseline[uid]) if uid in baseline else c for uid, c in current.items())

    def forget(self, key: tuple[str, str]) -> None:
        self._snapshots.pop(key, None)


HISTORY = History()


def window_of(meta: JSON, spec: ModelDeploymentSpec, served: str, now: datetime) -> Counts:
    """The last `windowSeconds` of the predictor pods serving the digest `served`."""
    key = (meta["namespace"], meta["name"])
    source = spec.monitoring.source
    if source.type is MetricsSourceType.PROMETHEUS:
        if not source.prometheus_url:  # the CRD schema and pydantic already reject this
            raise PermanentFailure("spec.monitoring.source.prometheusUrl is required when type is Prometheus")
        HISTORY.forget(key)  # nothing to keep: Prometheus does the windowing
        return window_counts(
            source.prometheus_url,
            meta["namespace"],
            meta["name"],
            served,
            spec.monitoring.window_seconds,
            at=now.timestamp(),
        )
    selector = f"{C.LABEL_INSTANCE}={meta['name']},{C.LABEL_COMPONENT}={C.COMPONENT_PREDICTOR}"
    texts = scrape_pods(runtime().kube, meta["namespace"], selector, spec.serving.port)
    current = {uid: c for uid, text in texts.items() if (c := parse_metrics(text)).model_sha256 == served}
    return HISTORY.window(key, time.monotonic(), spec.monitoring.window_seconds, current)


def monitor_model_deployment(obj: JSON, logger: kopf.Logger) -> None:
    meta = obj["metadata"]
    try:
        spec = parse_model(ModelDeploymentSpec, obj.get("spec"))
    except InvalidSpecError:
        return  # the serving reconcile reports InvalidSpec
    status = ModelDeploymentStatus.model_validate(obj.get("status") or {})
    now = datetime.now(UTC)
    if not spec.monitoring.enabled or unsupported_source(spec):
        analysis = None
    elif not analysis_due(status, spec, now) or status.current_model is None:
        return
    else:
        # While a canary runs, it is the candidate's pods that are judged.
        judged = (
            status.candidate_model
            if status.canary is not None and status.candidate_model
            else status.current_model
        )
        try:
            window = window_of(meta, spec, judged.sha256, now)
        except TemporaryFailure as err:
            # Say so in status (Degraded=Unknown) and let kopf retry; no action on no data.
            unavailable = plan_monitoring(obj, spec, None, now, unavailable=str(err))
            if unavailable.changed:
                runtime().kube.patch_status(MODEL_DEPLOYMENTS, obj, unavailable.status)
            obs.observe_analysis(meta["namespace"], meta["name"], obs.VERDICT_METRICS_UNAVAILABLE, None, ())
            raise
        analysis = analyse(window, spec.monitoring.thresholds, spec.monitoring.min_samples, now)
    plan = plan_monitoring(obj, spec, analysis, now)
    if plan.create_run is not None and runtime().kube.create_custom(TRAINING_RUNS, plan.create_run):
        logger.info("Created TrainingRun %s", plan.create_run["metadata"]["name"])
    if plan.changed:
        runtime().kube.patch_status(MODEL_DEPLOYMENTS, obj, plan.status)
    for event in plan.events:
        post_event(obj, event)
        logger.info("%s: %s", event.reason, event.message)
    if analysis is not None:
        values = analysis.values.model_dump(mode="json", by_alias=True)
        obs.observe_analysis(
            meta["namespace"], meta["name"], analysis.verdict.value, values, [e.reason for e in plan.events]
        )


@kopf.timer(C.GROUP, C.VERSION, MODEL_DEPLOYMENTS, interval=5, initial_delay=5)
def model_deployment_monitor(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    obj = dict(body)
    guard(lambda: monitor_model_deployment(obj, logger), logger)


@kopf.on.event(C.GROUP, C.VERSION, MODEL_DEPLOYMENTS)
def model_deployment_gone(type: str, body: kopf.Body, **_: Any) -> None:
    if type == "DELETED":
        HISTORY.forget((body.metadata.namespace or "", body.metadata.name or ""))
        obs.forget_model_deployment(body.metadata.namespace or "", body.metadata.name or "")
