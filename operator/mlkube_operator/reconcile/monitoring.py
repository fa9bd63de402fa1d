"""What a verdict does to a ModelDeployment's status, and the Retrain action's TrainingRun (pure).

The verdict comes from `mlkube_operator.analysis`; `record_verdict` writes what it says
(lastAnalysis, the Degraded condition, Degraded/Recovered Events). Deciding what to do
about it is the state machine's job (`reconcile.modeldeployment`): an action needs
`onDegradation.failureLimit` consecutive failing analyses and is taken only in a steady
state, so there is exactly one place where the next state is chosen.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from .. import constants as C
from ..api.common import ConditionStatus
from ..api.modeldeployment import (
    Analysis,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RolloutState,
    Verdict,
)
from ..api.trainingrun import TrainingRunSpec
from .conditions import get_condition, set_condition
from .naming import child_name, labels, owner_reference
from .plan import Event

JSON = dict[str, Any]

# States in which the served model is judged (a canary judges its candidate); while pods
# change (RollingOut, Promoting, Aborting) nothing is judged: the window would mix models.
JUDGED_STATES = (
    RolloutState.STEADY,
    RolloutState.ROLLED_BACK,
    RolloutState.RETRAINING,
    RolloutState.CANARY,
)


def unsupported_source(spec: ModelDeploymentSpec) -> str | None:
    """Why `spec.monitoring.source` cannot be used (Degraded=Unknown, Unsupported), or None.

    Every source type of the API is supported (PodScrape and Prometheus); the hook stays
    so that a future type can be declared before it is implemented.
    """
    return None


def analysis_due(status: ModelDeploymentStatus, spec: ModelDeploymentSpec, now: datetime) -> bool:
    """Monitoring is on, a judged state, and the interval has passed since the last look.

    A look is an analysis, or a look at the open window that found it not full yet
    (`status.analysisWindow.checkedTime`)."""
    if not spec.monitoring.enabled or status.current_model is None:
        return False
    if status.state is not None and status.state not in JUDGED_STATES:
        return False
    looks = [status.last_analysis.time] if status.last_analysis is not None else []
    window = status.analysis_window
    if window is not None and window.checked_time is not None and window.model == status.current_model.sha256:
        looks.append(window.checked_time)
    return not looks or (now - max(looks)).total_seconds() >= spec.monitoring.interval_seconds


def judged_window_start(status: ModelDeploymentStatus, spec: ModelDeploymentSpec, now: datetime) -> datetime:
    """Where a canary step's window starts: the step's start, else `windowSeconds` ago.

    Steady states judge the open window of `status.analysisWindow` instead (`analysis.windows`)."""
    window = now - timedelta(seconds=spec.monitoring.window_seconds)
    if status.canary is not None and status.canary.step_started_time is not None:
        return status.canary.step_started_time
    return window


def record_verdict(
    new: ModelDeploymentStatus,
    spec: ModelDeploymentSpec,
    analysis: Analysis | None,
    now: datetime,
    generation: int,
    events: list[Event],
    unavailable: str | None = None,
) -> None:
    """Write the verdict into `new` (Degraded condition, lastAnalysis) and its Events into `events`.

    `analysis` is None when monitoring is disabled or unsupported, or when the metrics
    could not be read (`unavailable` says why: then Degraded is Unknown and lastAnalysis
    keeps the previous verdict).
    """
    old = get_condition(new.conditions, C.DEGRADED)

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
            degraded(
                ConditionStatus.UNKNOWN,
                C.REASON_INSUFFICIENT_DATA,
                "; ".join(analysis.reasons)
                or f"{analysis.values.samples or 0} requests in the window, {spec.monitoring.min_samples} needed",
            )
    cur = get_condition(new.conditions, C.DEGRADED)
    if cur is not None and (old is None or old.status != cur.status):
        if cur.status is ConditionStatus.TRUE:
            events.append(Event("Warning", C.DEGRADED, cur.message))
        elif old is not None and old.status is ConditionStatus.TRUE and cur.status is ConditionStatus.FALSE:
            events.append(Event("Normal", C.REASON_RECOVERED, cur.message))


def spec_digest(spec: Any) -> str | None:
    """sha256 of a TrainingRun spec with its defaults filled in (None when it does not parse)."""
    try:
        parsed = TrainingRunSpec.model_validate(spec or {}, by_alias=True)
    except ValueError:
        return None
    text = json.dumps(parsed.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


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
