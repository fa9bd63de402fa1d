"""Plan a ModelDeployment: serve the model of a Succeeded TrainingRun behind a Service.

The serving Deployment is fully derived from (spec, the TrainingRun's model, settings),
so comparing the desired pod template with the live one is enough to know whether a
rollout is needed; the model's sha256 travels as an annotation and a flag so a pod can
only ever load the exact bytes the TrainingRun recorded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from .. import constants as C
from ..api.common import ConditionStatus
from ..api.modeldeployment import (
    CanaryStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ServedModel,
    StrategyType,
)
from ..api.trainingrun import TrainingRunStatus
from ..api.validation import InvalidSpecError, parse_model
from ..settings import Settings
from .conditions import get_condition, set_condition
from .naming import child_name, labels, owner_reference
from .plan import Event, transitioned

JSON = dict[str, Any]
TEMPLATE_HASH = "mlkube.io/template-hash"


@dataclass(frozen=True)
class ServingPlan:
    status: JSON
    deployment: JSON | None = None  # desired Deployment (create, or replace its spec when the hash differs)
    service: JSON | None = None
    event: Event | None = None
    changed: bool = True
    canary: JSON | None = None  # desired canary Deployment while a canary runs
    delete_canary: bool = False
    events: tuple[Event, ...] = ()  # canary steps, promotion


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
            training_run=run_name, uri=model.uri, sha256=model.sha256, dataset_hash=model.dataset_hash
        ),
        "",
    )


def _reference_profile(run: JSON, model: ServedModel) -> str | None:
    """profile.json of the dataset the model was trained on (beside its data.csv)."""
    ds = ((run.get("spec") or {}).get("datasetRef") or {}).get("name")
    if not ds or not model.dataset_hash:
        return None
    namespace = run["metadata"]["namespace"]
    return f"{C.ARTIFACT_MOUNT}/datasets/{namespace}/{ds}/{model.dataset_hash}/profile.json"


def build_predictor(
    obj: JSON,
    spec: ModelDeploymentSpec,
    model: ServedModel,
    profile: str | None,
    settings: Settings,
    *,
    track: str = STABLE,
    replicas: int | None = None,
) -> JSON:
    """A serving Deployment (pure): the stable one, or the canary while a canary runs.

    Both tracks carry the Service's labels, so traffic splits by ready replicas; each
    Deployment selects only its own track. Pods bind their own IP (downward API).
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
    if profile:
        args += ["--reference-profile", profile]
    container: JSON = {
        "name": "server",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "mlkube_serving"],
        "args": args,
        "env": [
            {"name": "MLKUBE_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOME", "value": "/tmp"},
        ],
        "ports": [{"name": C.SERVING_PORT_NAME, "containerPort": spec.serving.port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": C.SERVING_PORT_NAME},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": C.SERVING_PORT_NAME},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "artifacts", "mountPath": C.ARTIFACT_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.resources is not None:
        container["resources"] = spec.resources.model_dump(by_alias=True, exclude_none=True)
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
                {
                    "name": "artifacts",
                    "persistentVolumeClaim": {"claimName": settings.artifact_pvc, "readOnly": True},
                },
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


def plan_model_deployment(
    obj: JSON,
    run: JSON | None,
    deployment: JSON | None,
    now: datetime,
    settings: Settings,
    retrained: JSON | None = None,
    canary_live: JSON | None = None,
) -> ServingPlan:
    """`run` is the spec's TrainingRun; `retrained` the one status.retrainRun names, if any;
    `deployment` and `canary_live` the live stable and canary Deployments."""
    meta = obj["metadata"]
    generation = int(meta["generation"])
    old = ModelDeploymentStatus.model_validate(obj.get("status") or {})
    new = old.model_copy(deep=True)
    if old.observed_generation is not None and old.observed_generation != generation:
        new.retrain_run = None  # the user changed the spec: what they asked for wins over a retrain
    new.observed_generation = generation

    def cond(type_: str, status: ConditionStatus, reason: str, message: str) -> None:
        new.conditions = set_condition(new.conditions, type_, status, reason, message, now, generation)

    def finish(
        event: Event | None,
        deployment: JSON | None = None,
        service: JSON | None = None,
        canary: JSON | None = None,
        events: tuple[Event, ...] = (),
    ) -> ServingPlan:
        status = new.model_dump(mode="json", by_alias=True)
        changed = status != old.model_dump(mode="json", by_alias=True)
        moved = transitioned(old.conditions, new.conditions, C.READY)
        delete_canary = canary is None and canary_live is not None
        return ServingPlan(
            status, deployment, service, event if moved else None, changed, canary, delete_canary, events
        )

    try:
        spec = parse_model(ModelDeploymentSpec, obj.get("spec"))
    except InvalidSpecError as err:
        cond(C.READY, ConditionStatus.FALSE, C.REASON_INVALID_SPEC, err.message)
        return finish(Event("Warning", C.REASON_INVALID_SPEC, err.message))

    run_name = spec.model.training_run_ref.name
    model, why = served_model(run_name, run)
    if new.retrain_run is not None and retrained is not None:
        fresh, _ = served_model(new.retrain_run, retrained)
        if fresh is not None:  # the Retrain action's model, once it has one
            model, run, run_name = fresh, retrained, new.retrain_run
    if model is None or run is None:
        if new.current_model is not None and deployment is not None:
            # Losing the TrainingRun (or its status) must not take down what already serves.
            msg = f"{why}; still serving {new.current_model.training_run} (sha256 {new.current_model.sha256[:12]})"
            cond(C.PROGRESSING, ConditionStatus.FALSE, C.REASON_MODEL_NOT_READY, msg)
            return finish(Event("Warning", C.REASON_MODEL_NOT_READY, msg))
        cond(C.READY, ConditionStatus.FALSE, C.REASON_MODEL_NOT_READY, why)
        cond(C.PROGRESSING, ConditionStatus.FALSE, C.REASON_MODEL_NOT_READY, why)
        return finish(Event("Normal", C.REASON_MODEL_NOT_READY, why))

    if new.rolled_back_from is not None and new.pinned_model is not None:
        if model.sha256 == new.rolled_back_from:
            model = new.pinned_model  # the TrainingRun still offers the model we rolled back from
        else:
            new.rolled_back_from, new.pinned_model = None, None  # a new model supersedes the rollback
    service = build_service(obj, spec)
    current = new.current_model
    if spec.strategy.type is StrategyType.CANARY and current is not None and current.sha256 != model.sha256:
        return _plan_canary(
            obj, spec, run, model, current, deployment, canary_live, new, now, settings, cond, finish, service
        )
    new.canary = None
    desired = build_predictor(obj, spec, model, _reference_profile(run, model), settings)
    desired_hash = desired["metadata"]["annotations"][TEMPLATE_HASH]
    done, ready, progress = _deployment_state(deployment, desired_hash, spec.replicas)
    new.replicas = spec.replicas
    new.ready_replicas = ready
    is_new = new.current_model is None or new.current_model.sha256 != model.sha256
    if done:
        if is_new:
            new.previous_model, new.current_model = new.current_model, model
        new.candidate_model = None
        msg = f"Serving {run_name} (sha256 {model.sha256[:12]}) on {ready}/{spec.replicas} ready replicas"
        cond(C.PROGRESSING, ConditionStatus.FALSE, C.REASON_ROLLOUT_COMPLETE, progress)
        cond(C.READY, ConditionStatus.TRUE, C.REASON_SERVING, msg)
        return finish(Event("Normal", C.REASON_SERVING, msg), desired, service)
    new.candidate_model = model if is_new else None
    msg = f"Rolling out {run_name} (sha256 {model.sha256[:12]}): {progress}"
    cond(C.PROGRESSING, ConditionStatus.TRUE, C.REASON_ROLLING_OUT, msg)
    ready_cond = get_condition(new.conditions, C.READY)
    if ready_cond is None or ready_cond.status is not ConditionStatus.TRUE or ready == 0:
        cond(C.READY, ConditionStatus.FALSE, C.REASON_ROLLING_OUT, msg)
    return finish(Event("Normal", C.REASON_ROLLING_OUT, msg), desired, service)


def _plan_canary(
    obj: JSON,
    spec: ModelDeploymentSpec,
    run: JSON,
    model: ServedModel,
    current: ServedModel,
    stable_live: JSON | None,
    canary_live: JSON | None,
    new: ModelDeploymentStatus,
    now: datetime,
    settings: Settings,
    cond: Any,
    finish: Any,
    service: JSON,
) -> ServingPlan:
    """Step a canary: the candidate gets `weight` % of the replicas; each step waits for its
    pods and its pause; the analysis (handlers.monitoring) aborts it on a Degraded verdict by
    pinning the current model, which brings the planner back to the steady branch."""
    steps = spec.strategy.steps
    events: list[Event] = []
    if new.canary is None or new.candidate_model is None or new.candidate_model.sha256 != model.sha256:
        new.canary = CanaryStatus(step=0, weight=steps[0].weight, step_started_time=now)
        new.candidate_model = model
        events.append(
            Event(
                "Normal",
                C.REASON_CANARY,
                f"Canary of {model.training_run} (sha256 {model.sha256[:12]}) at {steps[0].weight}%",
            )
        )
    canary = new.canary
    total = spec.replicas
    promoting = canary.step >= len(steps)
    canary_n = (
        total
        if promoting or canary.weight >= 100
        else min(total, max(1, math.ceil(total * canary.weight / 100)))
    )
    stable_model = model if promoting else current
    stable_n = total if promoting else max(0, total - canary_n)
    stable = build_predictor(
        obj, spec, stable_model, _reference_profile(run, stable_model), settings, replicas=stable_n
    )
    canary_desired = build_predictor(
        obj, spec, model, _reference_profile(run, model), settings, track=CANARY, replicas=canary_n
    )
    stable_done, stable_ready, _ = _deployment_state(
        stable_live, stable["metadata"]["annotations"][TEMPLATE_HASH], stable_n
    )
    canary_done, canary_ready, _ = _deployment_state(
        canary_live, canary_desired["metadata"]["annotations"][TEMPLATE_HASH], canary_n
    )
    new.replicas, new.ready_replicas = total, stable_ready + canary_ready

    if promoting and stable_done:
        new.previous_model, new.current_model = current, model
        new.candidate_model, new.canary = None, None
        msg = f"Promoted {model.training_run} (sha256 {model.sha256[:12]}) after {len(steps)} canary step(s)"
        events.append(Event("Normal", C.REASON_CANARY_PROMOTED, msg))
        cond(C.PROGRESSING, ConditionStatus.FALSE, C.REASON_ROLLOUT_COMPLETE, msg)
        cond(
            C.READY,
            ConditionStatus.TRUE,
            C.REASON_SERVING,
            f"Serving {model.training_run} (sha256 {model.sha256[:12]})",
        )
        return cast(ServingPlan, finish(None, stable, service, None, tuple(events)))
    started = canary.step_started_time or now
    if not promoting and canary_done and (now - started).total_seconds() >= steps[canary.step].pause_seconds:
        nxt = canary.step + 1
        weight = steps[nxt].weight if nxt < len(steps) else 100
        new.canary = CanaryStatus(step=nxt, weight=weight, step_started_time=now)
        what = f"step {nxt + 1}/{len(steps)} at {weight}%" if nxt < len(steps) else "promoting"
        events.append(Event("Normal", C.REASON_CANARY, f"Canary of {model.training_run}: {what}"))
    step_text = (
        "promoting"
        if new.canary.step >= len(steps)
        else f"step {new.canary.step + 1}/{len(steps)} at {new.canary.weight}%"
    )
    msg = f"Canary of {model.training_run} (sha256 {model.sha256[:12]}): {step_text}, {canary_ready}/{canary_n} canary replicas ready"
    cond(C.PROGRESSING, ConditionStatus.TRUE, C.REASON_CANARY, msg)
    return cast(ServingPlan, finish(None, stable, service, canary_desired, tuple(events)))
