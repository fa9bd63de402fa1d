"""ModelDeployments: read what exists, call the one planner, apply its plan.

Every trigger (the resource, its Deployments, a TrainingRun's new model, the resync
timer, and the monitoring timer with a verdict, see handlers.monitoring) ends in
`reconcile_model_deployment`, so one pure planner decides the next state.

The predictor Deployments, the Service and a retrain TrainingRun are server-side
applied on every reconcile (a no-op when nothing changed), so a hand edit of a field
the operator manages is put back within one resync. The ModelDeployments that serve a
TrainingRun are found in a kopf index, not by listing ModelDeployments per event.

A trainingRunRef may name another namespace where a ModelGrant there permits it
(reconcile/grants.py): the grants of that namespace are read with the TrainingRun, and
a grant's creation, change or deletion reconciles the ModelDeployments that refer into
its namespace (a second index), so a grant takes effect at once, not at the next resync.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from .. import constants as C
from .. import observability as obs
from ..reconcile.grants import plan_grant_status
from ..reconcile.modeldeployment import (
    Judgement,
    Observed,
    ServingPlan,
    canary_name,
    creates_pods,
    plan_model_deployment,
    predictor_name,
)
from ..reconcile.secrets import predictor_fields
from . import resync
from .lifecycle import post_event, runtime
from .outcome import FAILURES, SERVING, guard, guard_each, retry_later, write_status
from .secrets import require_secrets

JSON = dict[str, Any]
MODEL_DEPLOYMENTS, TRAINING_RUNS, DATASETS = "modeldeployments", "trainingruns", "datasets"
MODEL_GRANTS = "modelgrants"
DeploymentsByRun = kopf.Index[tuple[str, str], JSON]
DeploymentsBySource = kopf.Index[str, JSON]


def run_reference(obj: JSON) -> tuple[str, str | None]:
    """(namespace, name) of the spec's TrainingRun; the namespace defaults to the object's own."""
    ref = ((obj.get("spec") or {}).get("model") or {}).get("trainingRunRef") or {}
    name, namespace = ref.get("name"), ref.get("namespace")
    own = str(obj["metadata"]["namespace"])
    return (namespace if isinstance(namespace, str) and namespace else own), (
        name if isinstance(name, str) and name else None
    )


def observe(obj: JSON) -> Observed:
    """The children and referenced objects the planner needs."""
    kube = runtime().kube
    meta, spec = obj["metadata"], obj.get("spec") or {}
    namespace = meta["namespace"]
    run_namespace, run_name = run_reference(obj)
    run = kube.get_custom(TRAINING_RUNS, run_namespace, run_name) if run_name else None
    grants: tuple[JSON, ...] = ()
    labels: dict[str, str] | None = None
    if run_namespace != namespace:
        grants = tuple(kube.list_custom(MODEL_GRANTS, run_namespace))
        if any(
            "namespaceSelector" in peer for g in grants for peer in (g.get("spec") or {}).get("from") or []
        ):
            labels = kube.namespace_labels(namespace)
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
        grants=grants,
        namespace_labels=labels,
    )


def apply_plan(obj: JSON, seen: Observed, plan: ServingPlan, logger: kopf.Logger) -> None:
    rt = runtime()
    meta = obj["metadata"]
    namespace = meta["namespace"]
    # A Secret that new predictor pods would read is missing: apply nothing, say so, look
    # again later. An apply that makes no new pods (the serving ones keep their env) goes on.
    model = (obj.get("spec") or {}).get("model") or {}
    new_pods = [
        d for d, live in ((plan.deployment, seen.stable), (plan.canary, seen.canary)) if creates_pods(d, live)
    ]
    require_secrets(namespace, new_pods, predictor_fields(bool(model.get("credentialsSecret"))))
    if plan.create_run is not None:
        rt.kube.apply(plan.create_run)
        logger.info("Applied TrainingRun %s", plan.create_run["metadata"]["name"])
    if plan.deployment is not None or plan.canary is not None:
        rt.kube.ensure_artifact_pvc(namespace, rt.settings_for(namespace))
    for desired in (plan.deployment, plan.canary):
        if desired is not None:
            rt.kube.apply(desired)
    if plan.delete_canary:
        rt.kube.delete_deployment(namespace, canary_name(meta["name"]))
    if plan.service is not None:
        rt.kube.apply(plan.service)
    write_status(MODEL_DEPLOYMENTS, obj, plan.status, plan.changed, loop=SERVING)
    for event in plan.events:
        post_event(obj, event)
        if event.type == "Warning":
            logger.info("%s: %s", event.reason, event.message)


@obs.reconciliation(obs.KIND_MODEL_DEPLOYMENT)
def reconcile_model_deployment(
    obj: JSON, logger: kopf.Logger, judgement: Judgement | None = None
) -> ServingPlan:
    seen = observe(obj)
    settings = runtime().settings_for(obj["metadata"]["namespace"])
    plan = plan_model_deployment(obj, seen, datetime.now(UTC), settings, judgement)
    apply_plan(obj, seen, plan, logger)
    return plan


def _reconcile(obj: JSON, logger: kopf.Logger) -> None:
    reconcile_model_deployment(obj, logger)


@kopf.index(C.GROUP, C.VERSION, MODEL_DEPLOYMENTS)
def deployments_by_run(body: kopf.Body, **_: Any) -> dict[tuple[str, str], JSON] | None:
    """(namespace, TrainingRun) -> ModelDeployments serving it: by spec (in any namespace), or as their retrain."""
    obj = dict(body)
    namespace = obj["metadata"]["namespace"]
    run_namespace, ref = run_reference(obj)
    retrain = (obj.get("status") or {}).get("retrainRun")
    keys = {(run_namespace, ref)} if ref else set()
    if isinstance(retrain, str) and retrain:
        keys.add((namespace, retrain))
    return {k: obj for k in keys} or None


@kopf.index(C.GROUP, C.VERSION, MODEL_DEPLOYMENTS)
def deployments_by_source_namespace(body: kopf.Body, **_: Any) -> dict[str, JSON] | None:
    """Namespace -> ModelDeployments of other namespaces whose trainingRunRef points into it."""
    obj = dict(body)
    run_namespace, _name = run_reference(obj)
    return {run_namespace: obj} if run_namespace != obj["metadata"]["namespace"] else None


def _serve(obj: JSON, logger: kopf.Logger, retry: int = 0) -> None:
    guard(MODEL_DEPLOYMENTS, obj, lambda: _reconcile(obj, logger), logger, retry=retry, loop=SERVING)


@kopf.on.event(C.GROUP, C.VERSION, MODEL_DEPLOYMENTS)
def model_deployment_event(type: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    if type == "DELETED":
        FAILURES.forget(MODEL_DEPLOYMENTS, body.metadata.namespace or "", body.metadata.name or "")
        return
    _serve(dict(body), logger)


@resync.timer(MODEL_DEPLOYMENTS, interval=30, when=resync.deployment_active)
@resync.timer(MODEL_DEPLOYMENTS, interval=300, when=resync.deployment_waiting)
def model_deployment_resync(body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    _serve(dict(body), logger, int(kwargs.get("retry") or 0))


@kopf.on.event(C.GROUP, C.VERSION, TRAINING_RUNS)
def training_run_model_changed(type: str, body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    """A TrainingRun's model may have changed (or it failed): reconcile the ModelDeployments serving it."""
    if type == "DELETED":
        return
    index: DeploymentsByRun = kwargs["deployments_by_run"]
    serving = list(index.get((body.metadata.namespace or "", body.metadata.name or ""), []))
    guard_each(MODEL_DEPLOYMENTS, serving, lambda md: _reconcile(md, logger), logger, loop=SERVING)


@kopf.on.event(C.GROUP, C.VERSION, MODEL_GRANTS)
def model_grant_changed(type: str, body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    """A ModelGrant appeared, changed or went: record it (Accepted) and re-check who refers into its namespace."""
    obj = dict(body)
    if type != "DELETED":
        guard(MODEL_GRANTS, obj, lambda: _grant_status(obj), logger)
    index: DeploymentsBySource = kwargs["deployments_by_source_namespace"]
    referring = list(index.get(body.metadata.namespace or "", []))
    guard_each(MODEL_DEPLOYMENTS, referring, lambda md: _reconcile(md, logger), logger, loop=SERVING)


def _grant_status(obj: JSON) -> None:
    status, changed = plan_grant_status(obj, datetime.now(UTC))
    write_status(MODEL_GRANTS, obj, status, changed)


@kopf.on.event("apps", "v1", "deployments", labels={C.LABEL_MANAGED_BY: C.MANAGED_BY})
def predictor_event(type: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """The predictor Deployment moved (pods ready, rollout progressed): update its owner's status."""
    owner = next((o for o in body.metadata.get("ownerReferences") or [] if o.get("controller")), None)
    if owner is None or owner.get("kind") != "ModelDeployment":
        return
    namespace = body.metadata.namespace or ""
    parent: JSON | None = None

    def find() -> None:
        nonlocal parent
        parent = runtime().kube.get_custom(MODEL_DEPLOYMENTS, namespace, owner["name"])

    retry_later(find)
    if parent is not None and parent["metadata"].get("uid") == owner.get("uid"):
        _serve(parent, logger)
