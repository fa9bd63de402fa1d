"""Plan a ModelDeployment: one state machine for serving, canaries, verdicts and actions.

Every trigger (the resource's events, its Deployments' events, a TrainingRun's new model,
the resync timer, and the monitoring timer with a fresh verdict) calls the same pure
planner with (spec, status, observed children, verdict, now) and applies the one plan it
returns. Status is the planner's memory, never a message from one planner to another, so
two triggers cannot disagree about what serves (docs/operator.md has the state table).

The serving Deployments are fully derived from (spec, the model, settings), so comparing
the desired pod template's hash with the live one is enough to know whether a rollout is
needed; the model's sha256 travels as an annotation and a flag so a pod can only ever
load the exact bytes the TrainingRun recorded.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import artifacts
from .. import constants as C
from ..analysis.canary import Comparison
from ..api.common import ConditionStatus
from ..api.modeldeployment import (
    REJECTED_LIMIT,
    Analysis,
    AnalysisWindow,
    CanaryStatus,
    DegradationAction,
    ManualAction,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ReferenceStatus,
    RejectedModel,
    RetrainRecord,
    RolloutState,
    ServedModel,
    StrategyType,
    Verdict,
)
from ..api.trainingrun import TrainingRunStatus
from ..api.validation import InvalidSpecError, parse_model
from ..settings import Settings
from .conditions import get_condition, set_condition
from .grants import Access, check_permission, check_reachable
from .jobs import artifact_store_env, with_default_requests
from .monitoring import build_retrain_run, record_verdict, retrain_run_name, spec_digest
from .naming import child_name, labels, owner_reference
from .plan import Event, transitioned

JSON = dict[str, Any]
TEMPLATE_HASH = "mlkube.io/template-hash"


@dataclass(frozen=True)
class Observed:
    """What the handler read for one reconcile (pure data, any of it may be missing)."""

    run: JSON | None = None  # the spec's TrainingRun
    retrained: JSON | None = None  # the TrainingRun status.retrainRun names
    stable: JSON | None = None  # live stable Deployment
    canary: JSON | None = None  # live canary Deployment
    dataset: JSON | None = None  # the Dataset of onDegradation.retrainTemplate (Retrain action only)
    # Only for a trainingRunRef to another namespace: the ModelGrants of that namespace and
    # the labels of the ModelDeployment's own Namespace (None: not read or unreadable).
    grants: tuple[JSON, ...] = field(default_factory=tuple)
    namespace_labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Judgement:
    """One analysis of `model_sha256` (the candidate during a canary, else the current model)."""

    model_sha256: str
    analysis: Analysis | None = None
    comparison: Comparison | None = None  # canary against the stable pods' concurrent window
    unavailable: str | None = None  # the metrics could not be read: why
    window: AnalysisWindow | None = None  # the open window after this look (Steady states; None: unchanged)


@dataclass(frozen=True)
class ServingPlan:
    status: JSON
    deployment: JSON | None = None  # desired stable Deployment (create, or replace when the hash differs)
    service: JSON | None = None
    canary: JSON | None = None  # desired canary Deployment while a canary runs
    delete_canary: bool = False
    events: tuple[Event, ...] = ()
    create_run: JSON | None = None  # a TrainingRun to create (Retrain action)
    changed: bool = True


STABLE, CANARY = "stable", "canary"


def predictor_name(name: str) -> str:
    return child_name(name, "predictor")


def canary_name(name: str) -> str:
    return child_name(name, "canary")


def served_model(run_name: str, run: JSON | None) -> tuple[ServedModel | None, str]:
    """The model a TrainingRun offers, or why it offers none."""
    if run is None:
        return None, f"TrainingRun {run_name} does not exist"
    status = TrainingRunStatus.model_validate(run.get("status") or {})
    cond = get_condition(status.conditions, C.SUCCEEDED)
    if status.model is None:
        why = f"{cond.reason}: {cond.message}" if cond else "not reconciled yet"
        return None, f"TrainingRun {run_name} has no model ({why})"
    # When a newer generation is training or failed, status still holds the last good model.
    model = status.model
    return (
        ServedModel(
            training_run=run_name,
            uri=model.uri,
            sha256=model.sha256,
            dataset_hash=model.dataset_hash,
            reference_profile=_reference_profile(run, model.dataset_hash, model.uri),
        ),
        "",
    )


def _reference_profile(run: JSON, dataset_hash: str | None, model_uri: str) -> str | None:
    """profile.json of the dataset the model was trained on (beside its data.csv, in the model's store)."""
    ds = ((run.get("spec") or {}).get("datasetRef") or {}).get("name")
    if not ds or not dataset_hash:
        return None
    namespace = str((run.get("metadata") or {}).get("namespace"))
    where = artifacts.dataset_dir(namespace, ds, dataset_hash) / "profile.json"
    return artifacts.location(where, artifacts.root_of(model_uri))


def build_predictor(
    obj: JSON,
    spec: ModelDeploymentSpec,
    model: ServedModel,
    settings: Settings,
    *,
    track: str = STABLE,
    replicas: int | None = None,
) -> JSON:
    """A serving Deployment (pure): the stable one, or the canary while a canary runs.

    Both tracks carry the Service's labels, so traffic splits by ready replicas; each
    Deployment selects only its own track. Pods bind their own IP (downward API). The
    object-store credentials are the ModelDeployment's own namespace's Secret
    (`spec.model.credentialsSecret`, else the operator's default name), never another's.
    """
    meta = obj["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    count = spec.replicas if replicas is None else replicas
    selector = {
        C.LABEL_INSTANCE: name,
        C.LABEL_COMPONENT: C.COMPONENT_PREDICTOR,
        C.LABEL_MODEL_DEPLOYMENT: name,
        C.LABEL_TRACK: track,
    }
    pod_labels = labels(name, C.COMPONENT_PREDICTOR, {C.LABEL_MODEL_DEPLOYMENT: name, C.LABEL_TRACK: track})
    args = [
        "--model-uri",
        model.uri.removeprefix("file://"),
        "--model-sha256",
        model.sha256,
        "--name",
        name,
        "--port",
        str(spec.serving.port),
        "--max-batch-size",
        str(spec.serving.max_batch_size),
    ]
    if model.reference_profile:
        args += ["--reference-profile", model.reference_profile]
    container: JSON = {
        "name": "server",
        "image": settings.server_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "mlkube_serving"],
        "args": args,
        "env": [
            {"name": "MLKUBE_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOME", "value": "/tmp"},
            *artifact_store_env(
                settings,
                spec.model.credentials_secret.name if spec.model.credentials_secret is not None else None,
                reads=model.uri,
            ),
        ],
        "ports": [{"name": C.SERVING_PORT_NAME, "containerPort": spec.serving.port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": C.SERVING_PORT_NAME},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": C.PREDICTOR_DRAIN_SECONDS}}},
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": C.SERVING_PORT_NAME},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            *(
                []
                if settings.object_store
                else [{"name": "artifacts", "mountPath": C.ARTIFACT_MOUNT, "readOnly": True}]
            ),
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if wanted := with_default_requests(
        spec.resources, cpu=settings.predictor_cpu_request, memory=settings.predictor_memory_request
    ):
        container["resources"] = wanted
    template: JSON = {
        "metadata": {
            "labels": pod_labels,
            "annotations": {
                C.ANNOTATION_MODEL_SHA: model.sha256,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(spec.serving.port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                *(
                    []
                    if settings.object_store
                    else [
                        {
                            "name": "artifacts",
                            "persistentVolumeClaim": {"claimName": settings.artifact_pvc, "readOnly": True},
                        }
                    ]
                ),
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }
    digest = hashlib.sha256(json.dumps([count, template], sort_keys=True).encode()).hexdigest()[:16]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": predictor_name(name) if track == STABLE else canary_name(name),
            "namespace": namespace,
            "labels": dict(pod_labels),
            "annotations": {TEMPLATE_HASH: digest},
            "ownerReferences": [owner_reference(obj["apiVersion"], obj["kind"], name, meta["uid"])],
        },
        "spec": {
            "replicas": count,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": template,
        },
    }


def build_service(obj: JSON, spec: ModelDeploymentSpec) -> JSON:
    meta = obj["metadata"]
    name = meta["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels(name, C.COMPONENT_PREDICTOR, {C.LABEL_MODEL_DEPLOYMENT: name}),
            "ownerReferences": [owner_reference(obj["apiVersion"], obj["kind"], name, meta["uid"])],
        },
        "spec": {
            "selector": {
                C.LABEL_INSTANCE: name,
                C.LABEL_COMPONENT: C.COMPONENT_PREDICTOR,
                C.LABEL_MODEL_DEPLOYMENT: name,
            },
            "ports": [
                {
                    "name": C.SERVING_PORT_NAME,
                    "port": 80,
                    "targetPort": C.SERVING_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def creates_pods(desired: JSON | None, live: JSON | None) -> bool:
    """Applying `desired` makes new pods: no live Deployment yet, or another template or
    replica count (the template hash covers both). Such an apply is checked for the
    Secrets its pods read (handlers/secrets.require_secrets); one that changes nothing
    in the pods is not, so a serving Deployment keeps being reconciled meanwhile."""
    if desired is None:
        return False
    if live is None:
        return True
    want = ((desired.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_HASH)
    return ((live.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_HASH) != want


def _deployment_state(deployment: JSON | None, desired_hash: str, replicas: int) -> tuple[bool, int, str]:
    """(rolled out and available, ready replicas, progress message) of the live Deployment."""
    if deployment is None:
        return False, 0, "creating the predictor Deployment"
    meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    if (meta.get("annotations") or {}).get(TEMPLATE_HASH) != desired_hash:
        return False, ready, "updating the predictor Deployment"
    observed = status.get("observedGeneration") == meta.get("generation")
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    done = observed and updated == replicas and available == replicas and total == replicas
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return False, ready, f"rollout stalled: {cond.get('message', '')}"
    return done, ready, f"{updated}/{replicas} updated, {available}/{replicas} available"


def manual_request(obj: JSON) -> tuple[str, str] | None:
    """(action, request id) from the `mlkube.io/action` annotations, or None."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    action = str(annotations.get(C.ANNOTATION_ACTION) or "").strip().lower()
    if not action:
        return None
    return action, str(annotations.get(C.ANNOTATION_ACTION_ID) or "")


def state_summary(status: ModelDeploymentStatus, steps: int) -> str | None:
    """The STATE printer column: the state, the canary's step, or a pin."""
    state = status.state
    if state is None:
        return None
    if state is RolloutState.CANARY and status.canary is not None:
        return f"Canary {status.canary.step + 1}/{steps}"
    return state.value


def plan_model_deployment(
    obj: JSON,
    observed: Observed,
    now: datetime,
    settings: Settings,
    judgement: Judgement | None = None,
) -> ServingPlan:
    """The next state of a ModelDeployment and the children and Events that go with it."""
    return _Planner(obj, observed, now, settings).plan(judgement)


class _Planner:
    """One reconcile's working state (pure: nothing here does I/O)."""

    def __init__(self, obj: JSON, observed: Observed, now: datetime, settings: Settings) -> None:
        self.obj, self.seen, self.now, self.settings = obj, observed, now, settings
        self.generation = int(obj["metadata"]["generation"])
        self.old = ModelDeploymentStatus.model_validate(obj.get("status") or {})
        self.new = self.old.model_copy(deep=True)
        self.events: list[Event] = []
        self.create_run: JSON | None = None
        self.promote_requested = False
        self.fallback: str | None = None  # an action that fell back to an alert: said in Degraded too
        self.refusal: Access | None = None  # a refused cross-namespace reference while a model serves
        self.spec_run = ""  # the spec's TrainingRun as served models name it (namespace/name if another)

    # -- small helpers -------------------------------------------------------------------
    def cond(self, type_: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.new.conditions = set_condition(
            self.new.conditions, type_, status, reason, message, self.now, self.generation
        )

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def rejected(self, sha: str) -> RejectedModel | None:
        return next((r for r in self.new.rejected_models if r.sha256 == sha), None)

    def reject(self, model: ServedModel, reason: str, message: str) -> None:
        if self.rejected(model.sha256) is None:
            record = RejectedModel(
                sha256=model.sha256,
                training_run=model.training_run,
                reason=reason,
                message=message,
                time=self.now,
            )
            self.new.rejected_models = [*self.new.rejected_models, record][-REJECTED_LIMIT:]

    def action(self, message: str) -> None:
        self.new.last_action, self.new.last_action_time = message, self.now

    def finish(
        self,
        summary: Event | None,
        deployment: JSON | None = None,
        service: JSON | None = None,
        canary: JSON | None = None,
        steps: int = 0,
    ) -> ServingPlan:
        new, old = self.new, self.old
        if new.state != old.state:
            new.state_since = self.now
        # A new judged model, step or state starts the count of failing analyses again.
        before = (
            old.state,
            old.canary.step if old.canary else None,
            _sha(old.candidate_model),
            _sha(old.current_model),
        )
        after = (
            new.state,
            new.canary.step if new.canary else None,
            _sha(new.candidate_model),
            _sha(new.current_model),
        )
        if before != after:
            new.degraded_streak = 0
            new.analysis_window = None  # windows and their evidence belong to one judged model and state
        new.state_summary = state_summary(new, steps)
        if self.refusal is not None:
            self._keep_serving_refused(self.refusal)
        if self.fallback is not None:
            degraded = get_condition(new.conditions, C.DEGRADED)
            if degraded is not None and degraded.status is ConditionStatus.TRUE:
                self.cond(
                    C.DEGRADED, ConditionStatus.TRUE, degraded.reason, f"{degraded.message}; {self.fallback}"
                )
        status = new.model_dump(mode="json", by_alias=True)
        changed = status != old.model_dump(mode="json", by_alias=True)
        events = list(self.events)
        if summary is not None and transitioned(old.conditions, new.conditions, C.READY):
            events.append(summary)
        delete_canary = canary is None and self.seen.canary is not None and deployment is not None
        return ServingPlan(
            status, deployment, service, canary, delete_canary, tuple(events), self.create_run, changed
        )

    # -- the plan --------------------------------------------------------------------------
    def plan(self, judgement: Judgement | None) -> ServingPlan:
        new = self.new
        spec_changed = self.old.observed_generation not in (None, self.generation)
        if spec_changed and new.retrain_run is not None:  # what the user asked for wins over a retrain
            self._end_retrain("Superseded", "the ModelDeployment's spec changed", C.REASON_RETRAIN_SUPERSEDED)
            new.retrain_run = None
        new.observed_generation = self.generation
        try:
            spec = parse_model(ModelDeploymentSpec, self.obj.get("spec"))
        except InvalidSpecError as err:
            self.cond(C.READY, ConditionStatus.FALSE, C.REASON_INVALID_SPEC, err.message)
            return self.finish(Event("Warning", C.REASON_INVALID_SPEC, err.message))
        self.spec = spec
        judged = self._judged_sha()
        if judgement is not None and (judged is None or judgement.model_sha256 != judged):
            judgement = None  # the judged model changed since the metrics were read: not this model's verdict
        failing = self._record(judgement)

        refused = self._reference()
        if refused is not None:
            return self._refused(refused)
        spec_model, why = served_model(self.spec_run, self.seen.run)
        offered = self._offered(spec_model)
        current = new.current_model
        if offered is None:
            if current is not None and self.seen.stable is not None:
                # Losing the TrainingRun (or its status) must not take down what already serves.
                msg = f"{why}; still serving {current.training_run} (sha256 {current.sha256[:12]})"
                self.cond(C.PROGRESSING, ConditionStatus.FALSE, C.REASON_MODEL_NOT_READY, msg)
                return self.finish(
                    Event("Warning", C.REASON_MODEL_NOT_READY, msg), steps=len(spec.strategy.steps)
                )
            new.state = RolloutState.PENDING
            self.cond(C.READY, ConditionStatus.FALSE, C.REASON_MODEL_NOT_READY, why)
            self.cond(C.PROGRESSING, ConditionStatus.FALSE, C.REASON_MODEL_NOT_READY, why)
            return self.finish(Event("Normal", C.REASON_MODEL_NOT_READY, why))

        self._manual(spec_model, offered)
        target = self._target(offered)
        if target is None:
            msg = f"every model on offer was rejected ({offered.training_run} sha256 {offered.sha256[:12]}); nothing to serve"
            new.state = RolloutState.PENDING
            self.cond(C.READY, ConditionStatus.FALSE, C.REASON_MODEL_NOT_READY, msg)
            self.cond(C.PROGRESSING, ConditionStatus.FALSE, C.REASON_MODEL_NOT_READY, msg)
            return self.finish(Event("Warning", C.REASON_MODEL_NOT_READY, msg))
        if judgement is not None and failing is not None:
            target = self._act_if_due(target, failing, judgement)

        service = build_service(self.obj, spec)
        pinned = new.pinned_model
        use_canary = (
            spec.strategy.type is StrategyType.CANARY
            and current is not None
            and target.sha256 != current.sha256
            and (pinned is None or pinned.sha256 != target.sha256)  # a rollback goes straight back
        )
        if use_canary and current is not None:
            plan = self._canary(target, current, judgement, failing, service)
            if plan is not None:
                return plan
            target = current  # the canary was aborted in this reconcile
        return self._direct(target, service)

    # -- a TrainingRun of another namespace: permitted (ModelGrant) and reachable (s3://)? ------
    def _reference(self) -> Access | None:
        """Check a cross-namespace trainingRunRef and record it in status; the refusal, or None."""
        ref, own = self.spec.model.training_run_ref, str(self.obj["metadata"]["namespace"])
        owner = ref.namespace or own
        self.spec_run = ref.name if owner == own else f"{owner}/{ref.name}"
        if owner == own:
            self.new.reference = None
            return None
        access = check_permission(own, self.seen.namespace_labels, owner, ref.name, self.seen.grants)
        if access.permitted and self.seen.run is not None:
            model = TrainingRunStatus.model_validate(self.seen.run.get("status") or {}).model
            unreachable = check_reachable(own, owner, ref.name, model.uri) if model is not None else None
            if unreachable is not None:
                access = Access(False, unreachable.reason, unreachable.message, access.grant)
        old = self.old.reference
        same = old is not None and (old.training_run, old.permitted, old.reason, old.grant) == (
            self.spec_run,
            access.permitted,
            access.reason,
            access.grant,
        )
        self.new.reference = ReferenceStatus(
            training_run=self.spec_run,
            permitted=access.permitted,
            reason=access.reason,
            message=access.message,
            grant=access.grant,
            since=old.since if same and old is not None else self.now,
        )
        if not same:
            self.event("Normal" if access.permitted else "Warning", access.reason, access.message)
        return None if access.permitted else access

    def _refused(self, access: Access) -> ServingPlan:
        """Keep what serves (rolling back a canary of it), roll out nothing new, take no action.

        Revoking a grant stops the operator from acting on the other namespace's models
        on this namespace's behalf; it does not take down a model this namespace already
        serves (its pods read it with this namespace's own credentials; the object
        store's policy decides whether they still can).
        """
        current, new = self.new.current_model, self.new
        if current is not None and self.seen.stable is not None:
            self.refusal = access
            return self._direct(current, build_service(self.obj, self.spec))
        new.state = RolloutState.PENDING
        self.cond(C.READY, ConditionStatus.FALSE, access.reason, access.message)
        self.cond(C.PROGRESSING, ConditionStatus.FALSE, access.reason, access.message)
        return self.finish(None, steps=len(self.spec.strategy.steps))

    def _keep_serving_refused(self, access: Access) -> None:
        """While a refused reference's last model still serves: say so in Progressing and STATE."""
        new, current = self.new, self.new.current_model
        progressing = get_condition(new.conditions, C.PROGRESSING)
        if current is not None and (progressing is None or progressing.status is not ConditionStatus.TRUE):
            self.cond(
                C.PROGRESSING,
                ConditionStatus.FALSE,
                access.reason,
                f"{access.message}; still serving {current.training_run} (sha256 {current.sha256[:12]}), "
                "no new model is rolled out",
            )
        new.state_summary = f"{new.state_summary or ''} ({access.reason})".strip()

    def _judged_sha(self) -> str | None:
        s = self.old
        if s.canary is not None and s.candidate_model is not None:
            return s.candidate_model.sha256
        return s.current_model.sha256 if s.current_model is not None else None

    def _record(self, judgement: Judgement | None) -> list[str] | None:
        """Record a verdict (Degraded condition, lastAnalysis, streak); the failing reasons or None."""
        spec, new = self.spec, self.new
        if not spec.monitoring.enabled:
            record_verdict(new, spec, None, self.now, self.generation, self.events)
            new.analysis_window = None
            return None
        if judgement is None:
            return None
        if judgement.window is not None and judgement.unavailable is None:
            new.analysis_window = judgement.window
        record_verdict(
            new, spec, judgement.analysis, self.now, self.generation, self.events, judgement.unavailable
        )
        analysis = judgement.analysis
        if analysis is None or judgement.unavailable is not None:
            return None
        reasons = list(analysis.reasons) if analysis.verdict is Verdict.DEGRADED else []
        if judgement.comparison is not None:
            reasons += judgement.comparison.reasons
        new.degraded_streak = new.degraded_streak + 1 if reasons else 0
        return reasons

    # -- which model: retrain, rejection, pin, manual requests ------------------------------
    def _end_retrain(self, result: str, message: str, reason: str | None) -> None:
        record = self.new.last_retrain
        if record is not None and record.result == "Training":
            self.new.last_retrain = record.model_copy(update={"result": result, "message": message})
        if reason is not None:
            run = self.new.retrain_run or (record.run if record else "?")
            text = f"Retrain {run}: {message}"
            if reason in (C.REASON_RETRAIN_FAILED, C.REASON_RETRAIN_INEFFECTIVE):
                text += "; alerting instead"
                self.fallback = text
            self.action(text)
            self.event("Warning", reason, text)

    def _offered(self, spec_model: ServedModel | None) -> ServedModel | None:
        """The model on offer: the Retrain action's once it has a usable one, else the spec's TrainingRun's."""
        new, record = self.new, self.new.last_retrain
        if new.retrain_run is None:
            return spec_model
        training = record is not None and record.result == "Training" and record.run == new.retrain_run
        if (
            training
            and record is not None
            and spec_model is not None
            and record.offered_sha256 not in (None, spec_model.sha256)
        ):
            self._end_retrain(
                "Superseded",
                f"the spec's TrainingRun {spec_model.training_run} has a new model (sha256 {spec_model.sha256[:12]}); it wins",
                C.REASON_RETRAIN_SUPERSEDED,
            )
            new.retrain_run = None
            return spec_model
        current = new.current_model
        serving_retrain = current is not None and current.training_run == new.retrain_run
        fresh, _ = served_model(new.retrain_run, self.seen.retrained)
        if fresh is None:
            run = self.seen.retrained
            if run is None and serving_retrain:
                return current  # the retrain run is gone but its model serves: keep it
            succeeded = (
                None
                if run is None
                else get_condition(
                    TrainingRunStatus.model_validate(run.get("status") or {}).conditions, C.SUCCEEDED
                )
            )
            if run is None or (succeeded is not None and succeeded.status is ConditionStatus.FALSE):
                why = (
                    f"{succeeded.reason}: {succeeded.message}"
                    if succeeded is not None
                    else "its TrainingRun is gone"
                )
                self._end_retrain("Failed", f"failed ({why})", C.REASON_RETRAIN_FAILED)
                new.retrain_run = None
            return current if serving_retrain else spec_model
        if training:
            served = current is not None and current.sha256 == fresh.sha256
            rejected = self.rejected(fresh.sha256)
            if served or rejected is not None:
                what = (
                    "is already served" if served else f"was rejected ({rejected.reason if rejected else ''})"
                )
                self._end_retrain(
                    "Ineffective",
                    f"produced sha256 {fresh.sha256[:12]}, which {what}; not rolled out, not repeated",
                    C.REASON_RETRAIN_INEFFECTIVE,
                )
                # Serve on what served before the retrain.
                keep = (
                    current.training_run
                    if current is not None and current.training_run != self.spec_run
                    else None
                )
                new.retrain_run = keep
                return current if keep is not None else spec_model
            if record is not None:
                new.last_retrain = record.model_copy(
                    update={"result": "Served", "message": f"model sha256 {fresh.sha256[:12]}"}
                )
        return fresh

    def _manual(self, spec_model: ServedModel | None, offered: ServedModel) -> None:
        request = manual_request(self.obj)
        new = self.new
        if request is None:
            return
        action, request_id = request
        last = new.manual_action
        if last is not None and (last.action, last.request_id) == (action, request_id):
            return  # done already
        result, ok = self._manual_result(action, offered)
        new.manual_action = ManualAction(action=action, request_id=request_id, time=self.now, result=result)
        if ok:
            new.last_action = f"By request ({action}): {result}"
        self.event(
            "Normal" if ok else "Warning",
            C.REASON_MANUAL_ACTION if ok else C.REASON_MANUAL_ACTION_IGNORED,
            f"{action}: {result}",
        )

    def _manual_result(self, action: str, offered: ServedModel) -> tuple[str, bool]:
        new = self.new
        candidate = new.candidate_model
        if action == "unpin":
            if not new.rejected_models and new.pinned_model is None:
                return "nothing is pinned or rejected", False
            n = len(new.rejected_models)
            new.rejected_models, new.pinned_model, new.rolled_back_from = [], None, None
            return (
                f"cleared the pin and {n} rejected model(s); serving what is on offer ({offered.training_run} sha256 {offered.sha256[:12]})",
                True,
            )
        if action == "promote":
            steps = len(self.spec.strategy.steps)
            if new.canary is not None and new.canary.step < steps and candidate is not None:
                self.promote_requested = True
                return (
                    f"promoting the canary of {candidate.training_run} (sha256 {candidate.sha256[:12]})",
                    True,
                )
            return "no canary to promote", False
        if action == "abort":
            rolling_new = candidate is not None and (
                new.pinned_model is None or new.pinned_model.sha256 != candidate.sha256
            )
            if candidate is not None and rolling_new and new.current_model is not None:
                msg = f"aborted the rollout of {candidate.training_run} (sha256 {candidate.sha256[:12]}) by request"
                self.reject(candidate, C.REASON_ABORTED_BY_USER, msg)
                new.rolled_back_from, new.pinned_model = candidate.sha256, new.current_model
                return msg, True
            return "no rollout or canary to abort", False
        return f"unknown action {action!r} (use one of {', '.join(C.MANUAL_ACTIONS)})", False

    def _target(self, offered: ServedModel) -> ServedModel | None:
        """What should serve: the offered model unless it was rejected (then the pin, or what serves)."""
        new = self.new
        if self.rejected(offered.sha256) is not None:
            return new.pinned_model or new.current_model
        if new.pinned_model is not None and new.pinned_model.sha256 != offered.sha256:
            new.pinned_model, new.rolled_back_from = None, None  # a new model supersedes the rollback
        return offered

    # -- acting on a verdict in a steady state ----------------------------------------------
    def _act_if_due(self, target: ServedModel, failing: list[str], judgement: Judgement) -> ServedModel:
        new, spec, old = self.new, self.spec, self.old
        current = new.current_model
        steady = old.state in (RolloutState.STEADY, RolloutState.ROLLED_BACK, None)
        if (
            not failing
            or not steady
            or current is None
            or target.sha256 != current.sha256
            or new.canary is not None
        ):
            return target  # nothing failing, or not a steady state (see the state table)
        if new.degraded_streak < spec.on_degradation.failure_limit:
            return target
        last = old.last_action_time
        if last is not None and (self.now - last).total_seconds() < spec.on_degradation.cooldown_seconds:
            return target
        why = "; ".join(failing)
        new.degraded_streak = 0
        action = spec.on_degradation.action
        if action is DegradationAction.ROLLBACK:
            previous = new.previous_model
            blocked = None if previous is None else self.rejected(previous.sha256)
            if previous is not None and previous.sha256 != current.sha256 and blocked is None:
                msg = (
                    f"Rolling back from {current.training_run} (sha256 {current.sha256[:12]}) to "
                    f"{previous.training_run} (sha256 {previous.sha256[:12]}): {why}"
                )
                self.reject(current, C.REASON_ROLLED_BACK, why)
                new.rolled_back_from, new.pinned_model = current.sha256, previous
                new.rollbacks += 1
                self.action(msg)
                self.event("Warning", C.REASON_ROLLED_BACK, msg)
                return previous
            reason = (
                "there is no previous model"
                if previous is None
                else f"the previous model sha256 {previous.sha256[:12]} was rejected"
            )
            msg = f"Degraded but {reason} to roll back to; alerting instead: {why}"
            self.fallback = msg
            self.action(msg)
            self.event("Warning", C.REASON_ROLLBACK_IMPOSSIBLE, msg)
            return target
        if action is DegradationAction.RETRAIN:
            self._retrain(current, why)
            return target
        msg = f"Alert: {why}"
        self.action(msg)
        self.event("Warning", C.REASON_MODEL_DEGRADED, msg)
        return target

    def _retrain(self, current: ServedModel, why: str) -> None:
        new, spec = self.new, self.spec
        template = spec.on_degradation.retrain_template
        assert template is not None  # the spec validator requires it for Retrain
        digest = spec_digest(template.model_dump(mode="json", by_alias=True, exclude_none=True)) or ""
        ds_name = template.dataset_ref.name
        dataset_hash = ((self.seen.dataset or {}).get("status") or {}).get("contentHash")
        served_run = (
            self.seen.run
            if current.training_run == self.spec_run
            else self.seen.retrained
            if current.training_run == new.retrain_run
            else None
        )
        served_digest = spec_digest((served_run or {}).get("spec")) if served_run is not None else None
        skip = None
        if not dataset_hash:
            skip = f"Dataset {ds_name} has no profiled data"
        elif dataset_hash == current.dataset_hash and digest == served_digest:
            skip = (
                f"the data has not changed (Dataset {ds_name} contentHash {dataset_hash[:12]}) and the template "
                f"equals the spec of {current.training_run}, which trained the served model"
            )
        elif new.last_retrain is not None and (
            new.last_retrain.dataset_hash,
            new.last_retrain.spec_digest,
        ) == (dataset_hash, digest):
            skip = (
                f"{new.last_retrain.run} already retrained on the same data (contentHash {dataset_hash[:12]}) "
                f"and template ({new.last_retrain.result})"
            )
        if skip is not None:
            msg = f"Retrain not started: {skip}; alerting instead: {why}"
            self.fallback = msg
            self.action(msg)
            self.event("Warning", C.REASON_RETRAIN_SKIPPED, msg)
            return
        new.retrains += 1
        run = build_retrain_run(self.obj, spec, new.retrains)
        name = retrain_run_name(self.obj["metadata"]["name"], new.retrains)
        offered, _ = served_model(self.spec_run, self.seen.run)
        new.retrain_run = name
        new.last_retrain = RetrainRecord(
            run=name,
            dataset_hash=dataset_hash,
            spec_digest=digest,
            offered_sha256=offered.sha256 if offered else None,
            time=self.now,
            result="Training",
        )
        self.create_run = run
        msg = f"Retraining as TrainingRun {name}; its model is served once it succeeds: {why}"
        self.action(msg)
        self.event("Warning", C.REASON_RETRAINING, msg)

    # -- rolling the stable Deployment straight to the target --------------------------------
    def _direct(self, target: ServedModel, service: JSON) -> ServingPlan:
        new, spec, old = self.new, self.spec, self.old
        new.canary = None
        desired = build_predictor(self.obj, spec, target, self.settings)
        desired_hash = desired["metadata"]["annotations"][TEMPLATE_HASH]
        done, ready, progress = _deployment_state(self.seen.stable, desired_hash, spec.replicas)
        new.replicas, new.ready_replicas = spec.replicas, ready
        is_new = new.current_model is None or new.current_model.sha256 != target.sha256
        steps = len(spec.strategy.steps)
        if done and self.seen.canary is None:
            if is_new:
                new.previous_model, new.current_model = new.current_model, target
            new.candidate_model = None
            pinned = new.pinned_model is not None and new.pinned_model.sha256 == target.sha256
            retraining = (
                new.last_retrain is not None
                and new.last_retrain.result == "Training"
                and new.retrain_run is not None
            )
            new.state = (
                RolloutState.RETRAINING
                if retraining
                else RolloutState.ROLLED_BACK
                if pinned
                else RolloutState.STEADY
            )
            msg = f"Serving {target.training_run} (sha256 {target.sha256[:12]}) on {ready}/{spec.replicas} ready replicas"
            self.cond(C.PROGRESSING, ConditionStatus.FALSE, C.REASON_ROLLOUT_COMPLETE, progress)
            self.cond(C.READY, ConditionStatus.TRUE, C.REASON_SERVING, msg)
            return self.finish(Event("Normal", C.REASON_SERVING, msg), desired, service, None, steps)
        aborting = (
            old.state in (RolloutState.CANARY, RolloutState.PROMOTING, RolloutState.ABORTING) and not is_new
        )
        new.state = RolloutState.ABORTING if aborting else RolloutState.ROLLING_OUT
        new.candidate_model = target if is_new else None
        verb = "Returning to" if aborting else "Rolling out"
        msg = f"{verb} {target.training_run} (sha256 {target.sha256[:12]}): {progress}"
        self.cond(C.PROGRESSING, ConditionStatus.TRUE, C.REASON_ROLLING_OUT, msg)
        ready_cond = get_condition(new.conditions, C.READY)
        if ready_cond is None or ready_cond.status is not ConditionStatus.TRUE or ready == 0:
            self.cond(C.READY, ConditionStatus.FALSE, C.REASON_ROLLING_OUT, msg)
        return self.finish(Event("Normal", C.REASON_ROLLING_OUT, msg), desired, service, None, steps)

    # -- canary ------------------------------------------------------------------------------
    def _canary(
        self,
        model: ServedModel,
        current: ServedModel,
        judgement: Judgement | None,
        failing: list[str] | None,
        service: JSON,
    ) -> ServingPlan | None:
        """Step a canary; None when it was aborted in this reconcile (the caller returns to `current`)."""
        new, spec, now = self.new, self.spec, self.now
        steps = spec.strategy.steps
        if new.canary is None or new.candidate_model is None or new.candidate_model.sha256 != model.sha256:
            if new.canary is not None and new.candidate_model is not None:
                old_c = new.candidate_model
                self.event(
                    "Normal",
                    C.REASON_CANARY_SUPERSEDED,
                    f"Canary of {old_c.training_run} (sha256 {old_c.sha256[:12]}) replaced by {model.training_run} (sha256 {model.sha256[:12]})",
                )
            new.canary = CanaryStatus(step=0, weight=steps[0].weight, step_started_time=now)
            new.candidate_model = model
            self.promote_requested = False
            self.event(
                "Normal",
                C.REASON_CANARY,
                f"Canary of {model.training_run} (sha256 {model.sha256[:12]}) at {steps[0].weight}%",
            )
        canary = new.canary
        if self.promote_requested and canary.step < len(steps):
            canary = new.canary = CanaryStatus(
                step=len(steps), weight=100, step_started_time=now, verdict="PromotedByUser"
            )
            self.event("Normal", C.REASON_CANARY, f"Canary of {model.training_run}: promoting by request")
        total = spec.replicas

        def desired(c: CanaryStatus) -> tuple[JSON, JSON, bool, bool, int, int]:
            promoting = c.step >= len(steps)
            canary_n = (
                total
                if promoting or c.weight >= 100
                else min(total, max(1, math.ceil(total * c.weight / 100)))
            )
            stable_n = total if promoting else max(0, total - canary_n)
            stable = build_predictor(
                self.obj, spec, model if promoting else current, self.settings, replicas=stable_n
            )
            canary_desired = build_predictor(
                self.obj, spec, model, self.settings, track=CANARY, replicas=canary_n
            )
            stable_done, stable_ready, _ = _deployment_state(
                self.seen.stable, stable["metadata"]["annotations"][TEMPLATE_HASH], stable_n
            )
            canary_done, canary_ready, _ = _deployment_state(
                self.seen.canary, canary_desired["metadata"]["annotations"][TEMPLATE_HASH], canary_n
            )
            new.replicas, new.ready_replicas = total, stable_ready + canary_ready
            return stable, canary_desired, stable_done, canary_done, canary_ready, canary_n

        promoting = canary.step >= len(steps)
        stable, canary_desired, stable_done, canary_done, canary_ready, canary_n = desired(canary)

        if promoting and stable_done:
            new.previous_model, new.current_model = current, model
            new.candidate_model, new.canary = None, None
            new.state = RolloutState.STEADY
            msg = f"Promoted {model.training_run} (sha256 {model.sha256[:12]}) after {len(steps)} canary step(s)"
            self.event("Normal", C.REASON_CANARY_PROMOTED, msg)
            self.cond(C.PROGRESSING, ConditionStatus.FALSE, C.REASON_ROLLOUT_COMPLETE, msg)
            self.cond(
                C.READY,
                ConditionStatus.TRUE,
                C.REASON_SERVING,
                f"Serving {model.training_run} (sha256 {model.sha256[:12]})",
            )
            return self.finish(None, stable, service, None, len(steps))
        if not promoting:
            started = canary.step_started_time or now
            elapsed = (now - started).total_seconds()
            paused = elapsed >= steps[canary.step].pause_seconds
            advance, hold = False, None
            if not spec.monitoring.enabled:
                advance = paused and canary_done
                hold = None if advance else ("canary pods not ready" if not canary_done else "pausing")
            elif judgement is not None and judgement.analysis is not None and failing is not None:
                analysis = judgement.analysis
                comparison = judgement.comparison
                canary.verdict = (
                    "Worse" if comparison is not None and comparison.worse else analysis.verdict.value
                )
                canary.comparison = comparison.summary() if comparison is not None else None
                if new.degraded_streak >= spec.on_degradation.failure_limit:
                    msg = (
                        f"Aborted the canary of {model.training_run} (sha256 {model.sha256[:12]}) after "
                        f"{new.degraded_streak} failing analyses: {'; '.join(failing)}"
                    )
                    self._abort(model, C.REASON_CANARY_ABORTED, msg)
                    return None
                if failing:
                    hold = f"{new.degraded_streak}/{spec.on_degradation.failure_limit} failing analyses: {'; '.join(failing)}"
                elif analysis.verdict is not Verdict.HEALTHY:
                    hold = f"inconclusive: {'; '.join(analysis.reasons) or analysis.verdict.value}"
                elif comparison is not None and not comparison.enough:
                    hold = f"inconclusive: not yet compared with the stable pods ({comparison.summary()})"
                elif not canary_done:
                    hold = "canary pods not ready"
                elif not paused:
                    hold = f"Healthy; pausing {steps[canary.step].pause_seconds}s"
                else:
                    advance = True
            elif canary.hold_reason is None:
                hold = "waiting for an analysis of the canary"
            else:
                hold = canary.hold_reason
            if advance:
                nxt = canary.step + 1
                weight = steps[nxt].weight if nxt < len(steps) else 100
                new.canary = CanaryStatus(step=nxt, weight=weight, step_started_time=now)
                what = f"step {nxt + 1}/{len(steps)} at {weight}%" if nxt < len(steps) else "promoting"
                self.event("Normal", C.REASON_CANARY, f"Canary of {model.training_run}: {what}")
                stable, canary_desired, stable_done, canary_done, canary_ready, canary_n = desired(new.canary)
            else:
                canary.hold_reason = hold
                if elapsed >= spec.strategy.progress_deadline_seconds:
                    msg = (
                        f"Aborted the canary of {model.training_run} (sha256 {model.sha256[:12]}): no conclusive "
                        f"Healthy verdict on step {canary.step + 1} within progressDeadlineSeconds "
                        f"{spec.strategy.progress_deadline_seconds} ({hold})"
                    )
                    self._abort(model, C.REASON_CANARY_INCONCLUSIVE, msg)
                    return None
        new.state = RolloutState.PROMOTING if new.canary.step >= len(steps) else RolloutState.CANARY
        step_text = (
            "promoting"
            if new.canary.step >= len(steps)
            else f"step {new.canary.step + 1}/{len(steps)} at {new.canary.weight}%"
        )
        msg = (
            f"Canary of {model.training_run} (sha256 {model.sha256[:12]}): {step_text}, "
            f"{canary_ready}/{canary_n} canary replicas ready"
        )
        self.cond(C.PROGRESSING, ConditionStatus.TRUE, C.REASON_CANARY, msg)
        ready_cond = get_condition(new.conditions, C.READY)
        if ready_cond is not None and ready_cond.status is ConditionStatus.TRUE:
            self.cond(
                C.READY,
                ConditionStatus.TRUE,
                C.REASON_SERVING,
                f"Serving {current.training_run} (sha256 {current.sha256[:12]}) on the stable pods; "
                f"{model.training_run} (sha256 {model.sha256[:12]}) on the canary's",
            )
        return self.finish(None, stable, service, canary_desired, len(steps))

    def _abort(self, model: ServedModel, reason: str, msg: str) -> None:
        """Reject the candidate; the caller rolls the stable pods back to the current model."""
        self.reject(model, reason, msg)
        self.new.rolled_back_from, self.new.pinned_model = model.sha256, self.new.current_model
        self.new.rollbacks += 1
        self.new.candidate_model = None
        self.action(msg)
        self.event("Warning", reason, msg)


def _sha(model: ServedModel | None) -> str | None:
    return model.sha256 if model is not None else None
