"""Turn an analysis verdict into status, Events and the configured action (pure).

The verdict comes from `mlkube_operator.analysis`; this module decides what the
ModelDeployment records (lastAnalysis, the Degraded condition) and what it does about
it. A rollback is a status change only (`rolledBackFrom` + `pinnedModel`): the serving
planner then rolls the pinned model out, and `spec` stays exactly what the user (or
their GitOps tool) wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import constants as C
from ..api.common import ConditionStatus
from ..api.modeldeployment import (
    Analysis,
    DegradationAction,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Verdict,
)
from .conditions import get_condition, set_condition
from .naming import child_name, labels, owner_reference
from .plan import Event

JSON = dict[str, Any]


@dataclass(frozen=True)
class MonitoringPlan:
    status: JSON
    changed: bool
    events: list[Event] = field(default_factory=list)
    create_run: JSON | None = None  # a TrainingRun to create (Retrain action)


def unsupported_source(spec: ModelDeploymentSpec) -> str | None:
    """Why `spec.monitoring.source` cannot be used (Degraded=Unknown, Unsupported), or None.

    Every source type of the API is supported (PodScrape and Prometheus); the hook stays
    so that a future type can be declared before it is implemented.
    """
    return None


def analysis_due(status: ModelDeploymentStatus, spec: ModelDeploymentSpec, now: datetime) -> bool:
    """Monitoring is on, something is served, and the interval has passed since the last analysis."""
    if not spec.monitoring.enabled or status.current_model is None:
        return False
    last = status.last_analysis
    return last is None or (now - last.time).total_seconds() >= spec.monitoring.interval_seconds


def _cooled_down(status: ModelDeploymentStatus, spec: ModelDeploymentSpec, now: datetime) -> bool:
    last = status.last_action_time
    return last is None or (now - last).total_seconds() >= spec.on_degradation.cooldown_seconds


def plan_monitoring(
    obj: JSON,
    spec: ModelDeploymentSpec,
    analysis: Analysis | None,
    now: datetime,
    unavailable: str | None = None,
) -> MonitoringPlan:
    """Record `analysis` and act on a Degraded verdict.

    `analysis` is None when monitoring is disabled or unsupported, or when the metrics
    could not be read (`unavailable` says why: then Degraded is Unknown, nothing acts).
    """
    generation = int(obj["metadata"]["generation"])
    old = ModelDeploymentStatus.model_validate(obj.get("status") or {})
    new = old.model_copy(deep=True)
    events: list[Event] = []

    def degraded(status: ConditionStatus, reason: str, message: str) -> None:
        new.conditions = set_condition(new.conditions, C.DEGRADED, status, reason, message, now, generation)

    unsupported = unsupported_source(spec)
    if not spec.monitoring.enabled:
        degraded(ConditionStatus.FALSE, C.REASON_MONITORING_DISABLED, "spec.monitoring.enabled is false")
    elif unsupported is not None:
        degraded(ConditionStatus.UNKNOWN, C.REASON_UNSUPPORTED, unsupported)
    elif unavailable is not None:
        degraded(ConditionStatus.UNKNOWN, C.REASON_METRICS_UNAVAILABLE, unavailable)
    elif analysis is not None:
        new.last_analysis = analysis
        if analysis.verdict is Verdict.DEGRADED:
            degraded(ConditionStatus.TRUE, C.REASON_THRESHOLDS_EXCEEDED, "; ".join(analysis.reasons))
        elif analysis.verdict is Verdict.HEALTHY:
            degraded(
                ConditionStatus.FALSE,
                C.REASON_HEALTHY,
                f"{analysis.values.samples} requests within thresholds",
            )
        else:
            samples = analysis.values.samples or 0
            degraded(
                ConditionStatus.UNKNOWN,
                C.REASON_INSUFFICIENT_DATA,
                f"{samples} requests in the window, {spec.monitoring.min_samples} needed for a verdict",
            )

    prev, cur = get_condition(old.conditions, C.DEGRADED), get_condition(new.conditions, C.DEGRADED)
    if cur is not None and (prev is None or prev.status != cur.status):
        if cur.status is ConditionStatus.TRUE:
            events.append(Event("Warning", C.DEGRADED, cur.message))
        elif prev is not None and prev.status is ConditionStatus.TRUE and cur.status is ConditionStatus.FALSE:
            events.append(Event("Normal", C.REASON_RECOVERED, cur.message))

    create_run = None
    degraded_now = analysis is not None and analysis.verdict is Verdict.DEGRADED
    if degraded_now and analysis is not None and new.canary is not None and new.candidate_model is not None:
        events.append(_abort_canary(new, analysis, now))  # a failing canary is always aborted
    elif degraded_now and analysis is not None and _cooled_down(old, spec, now):
        acted, create_run = _act(obj, new, spec, analysis, now)
        events.extend(acted)

    status = new.model_dump(mode="json", by_alias=True)
    return MonitoringPlan(status, status != old.model_dump(mode="json", by_alias=True), events, create_run)


def _abort_canary(new: ModelDeploymentStatus, analysis: Analysis, now: datetime) -> Event:
    """Pin the current model; the serving planner then removes the canary."""
    candidate = new.candidate_model
    assert candidate is not None and new.current_model is not None
    new.rolled_back_from, new.pinned_model = candidate.sha256, new.current_model
    new.rollbacks += 1
    new.last_action_time = now
    msg = f"Aborted the canary of {candidate.training_run} (sha256 {candidate.sha256[:12]}): {'; '.join(analysis.reasons)}"
    new.last_action = msg
    return Event("Warning", C.REASON_CANARY_ABORTED, msg)


def retrain_run_name(name: str, attempt: int) -> str:
    return child_name(name, f"retrain-{attempt}")


def build_retrain_run(obj: JSON, spec: ModelDeploymentSpec, attempt: int) -> JSON:
    """The TrainingRun the Retrain action creates: the template, owned by the ModelDeployment (pure)."""
    meta = obj["metadata"]
    template = spec.on_degradation.retrain_template
    if template is None:  # the spec validator makes this impossible for action Retrain
        raise ValueError("spec.onDegradation.retrainTemplate is required for Retrain")
    return {
        "apiVersion": C.API_VERSION,
        "kind": "TrainingRun",
        "metadata": {
            "name": retrain_run_name(meta["name"], attempt),
            "namespace": meta["namespace"],
            "labels": labels(meta["name"], "retrain", {C.LABEL_MODEL_DEPLOYMENT: meta["name"]}),
            "ownerReferences": [owner_reference(obj["apiVersion"], obj["kind"], meta["name"], meta["uid"])],
        },
        "spec": template.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def _act(
    obj: JSON, new: ModelDeploymentStatus, spec: ModelDeploymentSpec, analysis: Analysis, now: datetime
) -> tuple[list[Event], JSON | None]:
    why = "; ".join(analysis.reasons)
    action = spec.on_degradation.action
    new.last_action_time = now
    if action is DegradationAction.ROLLBACK:
        current, previous = new.current_model, new.previous_model
        if current is not None and previous is not None and previous.sha256 != current.sha256:
            new.rolled_back_from = current.sha256
            new.pinned_model = previous
            new.rollbacks += 1
            msg = (
                f"Rolled back from {current.training_run} (sha256 {current.sha256[:12]}) to "
                f"{previous.training_run} (sha256 {previous.sha256[:12]}): {why}"
            )
            new.last_action = msg
            return [Event("Warning", C.REASON_ROLLED_BACK, msg)], None
        msg = f"Degraded but there is no previous model to roll back to: {why}"
        new.last_action = msg
        return [Event("Warning", C.REASON_ROLLBACK_IMPOSSIBLE, msg)], None
    if action is DegradationAction.RETRAIN:
        new.retrains += 1
        run = build_retrain_run(obj, spec, new.retrains)
        new.retrain_run = run["metadata"]["name"]
        msg = f"Retraining as TrainingRun {new.retrain_run}; its model is served once it succeeds: {why}"
        new.last_action = msg
        return [Event("Warning", C.REASON_RETRAINING, msg)], run
    msg = f"Alert: {why}"
    new.last_action = msg
    return [Event("Warning", "ModelDegraded", msg)], None
