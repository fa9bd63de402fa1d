"""ModelDeployments: serve the model of a TrainingRun; roll out again when it changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from .. import constants as C
from .. import observability as obs
from ..reconcile.modeldeployment import TEMPLATE_HASH, canary_name, plan_model_deployment, predictor_name
from .lifecycle import post_event, runtime
from .training import guard

JSON = dict[str, Any]
MODEL_DEPLOYMENTS, TRAINING_RUNS = "modeldeployments", "trainingruns"


@obs.reconciliation(obs.KIND_MODEL_DEPLOYMENT)
def reconcile_model_deployment(obj: JSON, logger: kopf.Logger) -> None:
    rt = runtime()
    meta = obj["metadata"]
    namespace = meta["namespace"]
    run_name = (((obj.get("spec") or {}).get("model") or {}).get("trainingRunRef") or {}).get("name")
    run = (
        rt.kube.get_custom(TRAINING_RUNS, namespace, run_name)
        if isinstance(run_name, str) and run_name
        else None
    )
    retrain = ((obj.get("status") or {}).get("retrainRun")) or None
    retrained = rt.kube.get_custom(TRAINING_RUNS, namespace, retrain) if isinstance(retrain, str) else None
    live = rt.kube.get_deployment(namespace, predictor_name(meta["name"]))
    canary_live = rt.kube.get_deployment(namespace, canary_name(meta["name"]))
    plan = plan_model_deployment(obj, run, live, datetime.now(UTC), rt.settings, retrained, canary_live)
    if plan.deployment is not None or plan.canary is not None:
        rt.kube.ensure_artifact_pvc(namespace, rt.settings)
    for desired, current in ((plan.deployment, live), (plan.canary, canary_live)):
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
    if plan.event is not None:
        post_event(obj, plan.event)


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
    guard(lambda: reconcile_model_deployment(obj, logger), logger)


@kopf.timer(C.GROUP, C.VERSION, MODEL_DEPLOYMENTS, interval=30, initial_delay=5)
def model_deployment_resync(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    obj = dict(body)
    guard(lambda: reconcile_model_deployment(obj, logger), logger)


@kopf.on.event(C.GROUP, C.VERSION, TRAINING_RUNS)
def training_run_model_changed(type: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """A TrainingRun's model may have changed: reconcile the ModelDeployments serving it."""
    if type == "DELETED" or not (body.get("status") or {}).get("model"):
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
