"""Closed loop for ModelDeployments: read the predictors' metrics, judge, hand the verdict to the planner.

A timer looks at every ModelDeployment every few seconds; the analysis itself runs once
per `spec.monitoring.intervalSeconds`, in a judged state (Steady, RolledBack, Retraining,
Canary). The verdict is not written here: it goes, with everything else the planner
reads, to the one ModelDeployment planner (handlers.serving), which records it and
decides the next state.

What is judged: in a canary step, the candidate's pods over the rows served since the
step started (and the stable pods over the same time, for the comparison); otherwise the
current model's pods over the open window (`analysis.windows`): it is judged once it
holds `windowRequests` requests (or is `windowSeconds` old with `minSamples`), and the
next one starts where it ended. The open window and the evidence carried across windows
live in `status.analysisWindow`, so a restarted operator or a new leader continues them.

Canary steps keep the PodScrape scrape history in memory, per model digest. A pod's rows
count from a snapshot taken at or before the step's start; a pod that started inside it
counts whole; a pod older than the step and absent from the history (the operator just
restarted) counts from its first scrape, which is inside the step. With `source.type:
Prometheus` Prometheus keeps the history (`adapters.prometheus`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kopf

from .. import constants as C
from .. import observability as obs
from ..adapters.metrics import scrape_pods
from ..adapters.prometheus import window_counts
from ..analysis import windows as W
from ..analysis.canary import compare
from ..analysis.counts import Counts, credit_feedback, delta, parse_metrics, total
from ..analysis.verdict import analyse
from ..api.modeldeployment import (
    Analysis,
    AnalysisValues,
    AnalysisWindow,
    MetricsSourceType,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Verdict,
)
from ..api.validation import InvalidSpecError, parse_model
from ..errors import PermanentFailure, TemporaryFailure
from ..reconcile.modeldeployment import Judgement
from ..reconcile.monitoring import analysis_due, judged_window_start, unsupported_source
from . import resync
from .lifecycle import runtime
from .outcome import FAILURES, MONITORING, guard
from .serving import reconcile_model_deployment

JSON = dict[str, Any]
MODEL_DEPLOYMENTS = "modeldeployments"
MAX_SNAPSHOTS = 2000  # per (deployment, model); older ones are dropped (the window shrinks)

Key = tuple[str, str, str]  # namespace, name, model sha256


class History:
    """Per (ModelDeployment, model digest): (wall time, {pod uid: cumulative Counts}) snapshots."""

    def __init__(self) -> None:
        self._snapshots: dict[Key, deque[tuple[float, dict[str, Counts]]]] = {}

    def oldest(self, key: Key) -> float | None:
        snaps = self._snapshots.get(key)
        return snaps[0][0] if snaps else None

    def window(
        self, key: Key, now: float, start: float, current: dict[str, Counts], late_baseline_ok: bool = False
    ) -> tuple[Counts, str | None]:
        """Counts of the rows served in [start, now], and None; or partial counts and why they are partial.

        `late_baseline_ok` (a canary step, whose start is fixed): a pod older than `start`
        with no scrape before it counts from its first scrape, which is inside the step.
        """
        snaps = self._snapshots.setdefault(key, deque(maxlen=MAX_SNAPSHOTS))
        baseline: dict[str, Counts] = {}
        for taken, counts in snaps:
            if taken <= start:
                baseline = counts
        parts: list[Counts] = []
        unseen = 0
        for uid, c in current.items():
            if uid in baseline:
                parts.append(delta(c, baseline[uid]))
            elif c.start_time is not None and c.start_time >= start - W.START_SLACK_SECONDS:
                parts.append(c)  # started inside the window: every row it served is in it
            elif late_baseline_ok and (first := _first_seen(snaps, uid)) is not None:
                parts.append(delta(c, first))  # rows since its first scrape, all inside the window
            else:
                unseen += 1
        snaps.append((now, current))
        while len(snaps) > 1 and snaps[1][0] <= start:
            snaps.popleft()
        why = None
        if unseen:
            covered = now - snaps[0][0]
            why = (
                f"operator history covers {covered:.0f}s of the {now - start:.0f}s window for {unseen} "
                "pod(s) that started before it (operator restart?)"
            )
        return total(parts), why

    def forget(self, namespace: str, name: str) -> None:
        for key in [k for k in self._snapshots if k[:2] == (namespace, name)]:
            del self._snapshots[key]


HISTORY = History()


def _first_seen(snaps: deque[tuple[float, dict[str, Counts]]], uid: str) -> Counts | None:
    """The pod's counts at the first scrape that saw it (a pod may appear after the first)."""
    return next((counts[uid] for _, counts in snaps if uid in counts), None)


def window_of(
    meta: JSON,
    spec: ModelDeploymentSpec,
    served: str,
    start: datetime,
    now: datetime,
    late_baseline_ok: bool = False,
) -> tuple[Counts, str | None]:
    """Rows served by the predictor pods of the digest `served` from `start` until `now`."""
    namespace, name = meta["namespace"], meta["name"]
    source = spec.monitoring.source
    if source.type is MetricsSourceType.PROMETHEUS:
        if not source.prometheus_url:  # the CRD schema and pydantic already reject this
            raise PermanentFailure("spec.monitoring.source.prometheusUrl is required when type is Prometheus")
        HISTORY.forget(namespace, name)  # nothing to keep: Prometheus does the windowing
        seconds = max(10, round((now - start).total_seconds()))
        counts = window_counts(source.prometheus_url, namespace, name, served, seconds, at=now.timestamp())
        return counts, None
    current = scrape(meta, spec, served)
    key = (namespace, name, served)
    return HISTORY.window(key, now.timestamp(), start.timestamp(), current, late_baseline_ok)


def scrape(meta: JSON, spec: ModelDeploymentSpec, served: str) -> dict[str, Counts]:
    """Cumulative counts of the predictor pods serving the digest `served`, by pod uid."""
    selector = f"{C.LABEL_INSTANCE}={meta['name']},{C.LABEL_COMPONENT}={C.COMPONENT_PREDICTOR}"
    texts = scrape_pods(runtime().kube, meta["namespace"], selector, spec.serving.port)
    return W.pods_serving(((uid, parse_metrics(text)) for uid, text in texts.items()), served)


# Prometheus' increase() over less than this is mostly extrapolation: wait instead.
MIN_PROMETHEUS_WINDOW_SECONDS = 10.0


def judge_window(
    meta: JSON, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, served: str, now: datetime
) -> Judgement:
    """The open window of a steady model: keep filling it, or judge it and open the next one."""
    monitoring = spec.monitoring
    source = monitoring.source
    window: AnalysisWindow | None = status.analysis_window
    if window is not None and window.model != served:
        window = None
    prometheus = source.type is MetricsSourceType.PROMETHEUS
    pods = None if prometheus else scrape(meta, spec, served)
    if window is None:  # the first look at this model: its first window starts now
        return Judgement(served, window=W.open_window(served, now, pods, monitoring.window_seconds))
    age = (now - window.start_time).total_seconds()
    baseline = None
    if prometheus:
        if not source.prometheus_url:  # the CRD schema and pydantic already reject this
            raise PermanentFailure("spec.monitoring.source.prometheusUrl is required when type is Prometheus")
        HISTORY.forget(meta["namespace"], meta["name"])
        if age < MIN_PROMETHEUS_WINDOW_SECONDS:
            return Judgement(served, window=W.progressed(window, now, window.requests, None))
        counts = window_counts(
            source.prometheus_url, meta["namespace"], meta["name"], served, round(age), at=now.timestamp()
        )
    else:
        counts, baseline = W.since_start(window, pods or {})
    requests = W.requests_in(counts)
    decision, why = W.due(requests, age, monitoring)
    if decision is W.Due.WAIT:
        return Judgement(served, window=W.progressed(window, now, requests, baseline))
    if decision is W.Due.TOO_FEW:
        analysis = Analysis(
            time=now,
            verdict=Verdict.INSUFFICIENT_DATA,
            values=AnalysisValues(samples=round(requests), evidence=list(window.cusum)),
            reasons=[f"window since {window.start_time.isoformat()}: {why}"],
        )
        return Judgement(served, analysis, window=W.progressed(window, now, requests, baseline))
    analysis = analyse(counts, monitoring.thresholds, monitoring.min_samples, now, window.cusum)
    return Judgement(served, analysis, window=W.next_window(window, now, analysis, pods))


def judge(meta: JSON, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> Judgement:
    """Analyse the judged model (and compare a canary with the stable pods). Raises TemporaryFailure."""
    thresholds, min_samples = spec.monitoring.thresholds, spec.monitoring.min_samples
    assert status.current_model is not None
    canary = status.canary is not None and status.candidate_model is not None
    if not canary:
        return judge_window(meta, spec, status, status.current_model.sha256, now)
    judged = status.candidate_model if canary and status.candidate_model else status.current_model
    start = judged_window_start(status, spec, now)
    # A canary step judges the rows since it started; after an operator restart mid-step,
    # the rows since the first scrape (still inside the step).
    window, partial = window_of(meta, spec, judged.sha256, start, now, late_baseline_ok=canary)
    stable: Counts | None = None
    stable_partial: str | None = None
    if canary and partial is None:
        stable, stable_partial = window_of(
            meta, spec, status.current_model.sha256, start, now, late_baseline_ok=True
        )
        if stable_partial is not None:
            stable = None
        else:
            # Labels of each track's predictions that reached the other track's pods count
            # for the model that predicted them (the canary's accuracy, and the stable's).
            window = replace(window, model_sha256=judged.sha256)  # even with no pod reporting yet
            stable = replace(stable, model_sha256=status.current_model.sha256)
            window, stable = credit_feedback(window, stable), credit_feedback(stable, window)
    if partial is not None:
        samples = round(sum(window.requests.values()))
        analysis = Analysis(
            time=now,
            verdict=Verdict.INSUFFICIENT_DATA,
            values=AnalysisValues(samples=samples),
            reasons=[partial],
        )
        return Judgement(judged.sha256, analysis)
    analysis = analyse(window, thresholds, min_samples, now)
    if canary and stable is None and analysis.verdict is Verdict.HEALTHY:
        # The stable pods cannot be compared over this step yet (the operator's history
        # of them starts now): Healthy on the canary's own requests is not enough to
        # advance, or the worse-than-stable checks would never run. A failing canary
        # still counts as failing.
        analysis = analysis.model_copy(
            update={
                "verdict": Verdict.INSUFFICIENT_DATA,
                "reasons": [f"Healthy, but not comparable with the stable pods yet: {stable_partial}"],
            }
        )
    comparison = compare(window, stable) if stable is not None else None
    return Judgement(judged.sha256, analysis, comparison)


def monitor_model_deployment(obj: JSON, logger: kopf.Logger) -> None:
    try:
        spec = parse_model(ModelDeploymentSpec, obj.get("spec"))
    except InvalidSpecError:
        return  # the serving reconcile reports InvalidSpec
    status = ModelDeploymentStatus.model_validate(obj.get("status") or {})
    now = datetime.now(UTC)
    if not spec.monitoring.enabled or unsupported_source(spec) or not analysis_due(status, spec, now):
        return
    assert status.current_model is not None  # analysis_due
    try:
        judgement = judge(obj["metadata"], spec, status, now)
    except TemporaryFailure as err:
        FAILURES.succeeded(MODEL_DEPLOYMENTS, obj, MONITORING)  # its API calls did (Prometheus did not)
        # Say so in status (Degraded=Unknown) and let kopf retry; no action on no data.
        judged = status.candidate_model if status.canary and status.candidate_model else status.current_model
        reconcile_model_deployment(obj, logger, Judgement(judged.sha256, unavailable=str(err)))
        meta = obj["metadata"]
        obs.observe_analysis(meta["namespace"], meta["name"], obs.VERDICT_METRICS_UNAVAILABLE, None, ())
        raise
    FAILURES.succeeded(MODEL_DEPLOYMENTS, obj, MONITORING)  # cleared by the status write that follows
    plan = reconcile_model_deployment(obj, logger, judgement)
    if judgement.analysis is not None:
        meta = obj["metadata"]
        values = judgement.analysis.values.model_dump(mode="json", by_alias=True)
        obs.observe_analysis(
            meta["namespace"],
            meta["name"],
            judgement.analysis.verdict.value,
            values,
            [e.reason for e in plan.events],
        )


@resync.timer(MODEL_DEPLOYMENTS, interval=5, when=resync.deployment_serving)
def model_deployment_monitor(body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    obj = dict(body)
    retry = int(kwargs.get("retry") or 0)
    guard(
        MODEL_DEPLOYMENTS,
        obj,
        lambda: monitor_model_deployment(obj, logger),
        logger,
        retry=retry,
        loop=MONITORING,
    )


@kopf.on.event(C.GROUP, C.VERSION, MODEL_DEPLOYMENTS)
def model_deployment_gone(type: str, body: kopf.Body, **_: Any) -> None:
    if type == "DELETED":
        HISTORY.forget(body.metadata.namespace or "", body.metadata.name or "")
        obs.forget_model_deployment(body.metadata.namespace or "", body.metadata.name or "")
