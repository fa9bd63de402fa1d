"""ModelDeployments: read what exists, call the one planner, apply its plan.

Every trigger (the resource, its Deployments, a TrainingRun's new model, the resync
timer, and the monitoring timer with a verdict, see handlers.monitoring) ends in
`reconcile_model_deployment`, so one pure planner decides the next state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from .. import constants as C
from .. import observability as obs
from ..reconcile.modeldeployment import (
    TEMPLATE_HASH,
    Judgement,
    Observed,
    ServingPlan,
    canary_name,
    plan_model_deployment,
    predictor_name,
)
from .lifecycle import post_event, runtime
from .training import guard

JSON = dict[str, Any]
MODEL_DEPLOYMENTS, TRAINING_RUNS, DATASETS = "modeldeployments", "trainingruns", "datasets"


def observe(obj: JSON) -> Observed:
    """The children and referenced objects the planner needs."""
    kube = runtime().kube
    meta, spec = obj["metadata"], obj.get("spec") or {}
    namespace = meta["namespace"]
    run_name = ((spec.get("model") or {}).get("trainingRunRef") or {}).get("name")
    run = (
        kube.get_custom(TRAINING_RUNS, namespace, run_name)
        if isinstance(run_name, str) and run_name
        else None
    )
    retrain = (obj.get("status") or {}).get("retrainRun") or None
    retrained = kube.get_custom(TRAINING_RUNS, namespace, retrain) if isinstance(retrain, str) else None
    on_degradation = spec.get("onDegradation") or {}
    dataset = None
    if on_degradation.get("action") == "Retrain":
        ds = ((on_degradation.get("retrainTemplate") or {}).get("datasetRef") or {}).get("name")
        dataset = kube.get_custom(DATASETS, namespace, ds) if isinstance(ds, str) and ds else None
    return Observed(
        run=run,
        retrained=retrained,
        stable=kube.get_deployment(namespace, predictor_name(meta["name"])),
        canary=kube.get_deployment(namespace, canary_name(meta["name"])),
        dataset=dataset,
    )


def apply_plan(obj: JSON, seen: Observed, plan: ServingPlan, logger: kopf.Logger) -> None:
    rt = runtime()
    meta = obj["metadata"]
    namespace = meta["namespace"]
    if plan.create_run is not None and rt.kube.create_custom(TRAINING_RUNS, plan.create_run):
        logger.info("Created TrainingRun %s", plan.create_run["metadata"]["name"])
    if plan.deployment is not None or plan.canary is not None:
        rt.kube.ensure_artifact_pvc(namespace, rt.settings)
    for desired, current in ((plan.deployment, seen.stable), (plan.canary, seen.canary)):
        if desired is None:
            continue
        if current is None:
            rt.kube.create_deployment(desired)
        elif (current["metadata"].get("annotations") or {}).get(TEMPLATE_HASH) != desired["metadata"][
            "annotations"
        ][TEMPLATE_HASH]:
            rt.kube.update_deployment(desired)
    if plan.delete_canary:
        rt.kube.delete_deployment(namespace, canary_name(meta["name"]))
    if plan.service is not None:
        rt.kube.ensure_service(plan.service)
    if plan.changed:
        rt.kube.patch_status(MODEL_DEPLOYMENTS, obj, plan.status)
    for event in plan.events:
        post_event(obj, event)
        if event.type == "Warning":
            logger.info("%s: %s", event.reason, event.message)


@obs.reconciliation(obs.KIND_MODEL_DEPLOYMENT)
def reconcile_model_deployment(
    obj: JSON, logger: kopf.Logger, judgement: Judgement | None = None
) -> ServingPlan:
    seen = observe(obj)
    plan = plan_model_deployment(obj, seen, datetime.now(UTC), runtime().settings, judgement)
    apply_plan(obj, seen, plan, logger)
    return plan


def _reconcile(obj: JSON, logger: kopf.Logger) -> None:
    reconcile_model_deployment(obj, logger)


def _deployments_of_run(namespace: str, run: str) -> list[JSON]:
    """ModelDeployments that serve `run`: by spec, or because their Retrain action created it."""

    def uses(md: JSON) -> bool:
        ref = (((md.get("spec") or {}).get("model") or {}).get("trainingRunRef") or {}).get("name")
        return run in (ref, (md.get("status") or {}).get("retrainRun"))

    return [md for md in runtime().kube.list_custom(MODEL_DEPLOYMENTS, namespace) if uses(md)]


@kopf.on.event(C.GROUP, C.VERSION, MODEL_DEPLOYMENTS)
def model_deployment_event(type: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    if type == "DELETED":
        return
    obj = dict(body)
    guard(lambda: _reconcile(obj, logger), logger)


@kopf.timer(C.GROUP, C.VERSION, MODEL_DEPLOYMENTS, interval=30, initial_delay=5)
def model_deployment_resync(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    obj = dict(body)
    guard(lambda: _reconcile(obj, logger), logger)


@kopf.on.event(C.GROUP, C.VERSION, TRAINING_RUNS)
def training_run_model_changed(type: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """A TrainingRun's model may have changed (or it failed): reconcile the ModelDeployments serving it."""
    if type == "DELETED":
        return
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""

    def work() -> None:
        for md in _deployments_of_run(namespace, name):
            reconcile_model_deployment(md, logger)

    guard(work, logger)


@kopf.on.event("apps", "v1", "deployments", labels={C.LABEL_MANAGED_BY: C.MANAGED_BY})
def predictor_event(type: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """The predictor Deployment moved (pods ready, rollout progressed): update its owner's status."""
    owner = next((o for o in body.metadata.get("ownerReferences") or [] if o.get("controller")), None)
    if owner is None or owner.get("kind") != "ModelDeployment":
        return
    namespace = body.metadata.namespace or ""

    def work() -> None:
        parent = runtime().kube.get_custom(MODEL_DEPLOYMENTS, namespace, owner["name"])
        if parent is not None and parent["metadata"].get("uid") == owner.get("uid"):
            reconcile_model_deployment(parent, logger)

    guard(work, logger)
