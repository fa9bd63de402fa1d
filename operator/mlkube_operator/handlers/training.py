"""Datasets and TrainingRuns: triggers that all lead to one reconcile per object."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kopf

from .. import constants as C
from .. import observability as obs
from ..adapters.kube import Kube
from ..api.trainingrun import TrainingRunStatus
from ..errors import Conflict, PermanentFailure, TemporaryFailure
from ..reconcile.dataset import plan_dataset, profile_job_name
from ..reconcile.jobs import JobPhase, view_job
from ..reconcile.plan import Plan
from ..reconcile.search import SearchView, search_job_name, view_search
from ..reconcile.trainingrun import is_settled as run_settled
from ..reconcile.trainingrun import plan_training_run, training_job_name
from .lifecycle import post_event, runtime

JSON = dict[str, Any]
DATASETS, TRAINING_RUNS = "datasets", "trainingruns"


def guard(fn: Callable[[], None], logger: kopf.Logger) -> None:
    """Map adapter failures to kopf's retry semantics, in one place."""
    try:
        fn()
    except Conflict as err:
        logger.debug("%s", err)
    except TemporaryFailure as err:
        raise kopf.TemporaryError(str(err), delay=err.delay) from err
    except PermanentFailure as err:
        raise kopf.PermanentError(str(err)) from err


def _job_view(kube: Kube, namespace: str, job_name: str) -> Any:
    job = kube.get_job(namespace, job_name)
    finished = job is not None and any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )
    pods = kube.job_pods(namespace, job_name) if finished else []
    return view_job(job, pods)


def _apply(kube: Kube, plural: str, obj: JSON, plan: Plan, logger: kopf.Logger) -> None:
    meta = obj["metadata"]
    if plan.create is not None:
        kube.ensure_artifact_pvc(meta["namespace"], runtime().settings)
        if kube.create_job(plan.create):
            logger.info("Created Job %s", plan.create["metadata"]["name"])
    if plan.changed:
        kube.patch_status(plural, obj, plan.status)
    if plan.event is not None:
        post_event(obj, plan.event)


@obs.reconciliation(obs.KIND_DATASET)
def reconcile_dataset(obj: JSON, logger: kopf.Logger) -> None:
    rt = runtime()
    meta = obj["metadata"]
    job = _job_view(rt.kube, meta["namespace"], profile_job_name(meta["name"], int(meta["generation"])))
    plan = plan_dataset(obj, job, datetime.now(UTC), rt.settings)
    _apply(rt.kube, DATASETS, obj, plan, logger)


@obs.reconciliation(obs.KIND_TRAINING_RUN)
def reconcile_training_run(obj: JSON, logger: kopf.Logger) -> None:
    rt = runtime()
    meta = obj["metadata"]
    namespace, generation = meta["namespace"], int(meta["generation"])
    job = _job_view(rt.kube, namespace, training_job_name(meta["name"], generation))
    search: SearchView | None = None
    if (obj.get("spec") or {}).get("search"):
        # The trials' pods are read even while the search runs: status shows the best so far.
        search_job = search_job_name(meta["name"], generation)
        found = rt.kube.get_job(namespace, search_job)
        search = view_search(found, rt.kube.job_pods(namespace, search_job) if found else [])
    dataset = None
    if job.phase is JobPhase.MISSING:
        ref = ((obj.get("spec") or {}).get("datasetRef") or {}).get("name")
        dataset = rt.kube.get_custom(DATASETS, namespace, ref) if isinstance(ref, str) and ref else None
    plan = plan_training_run(obj, dataset, job, datetime.now(UTC), rt.settings, search)
    _apply(rt.kube, TRAINING_RUNS, obj, plan, logger)


def _waiting_runs(kube: Kube, namespace: str, dataset: str) -> list[JSON]:
    out = []
    for run in kube.list_custom(TRAINING_RUNS, namespace):
        ref = ((run.get("spec") or {}).get("datasetRef") or {}).get("name")
        status = TrainingRunStatus.model_validate(run.get("status") or {})
        if ref == dataset and not run_settled(status, int(run["metadata"].get("generation") or 0)):
            out.append(run)
    return out


@kopf.on.event(C.GROUP, C.VERSION, DATASETS)
def dataset_event(type: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    if type == "DELETED":
        return
    obj = dict(body)

    def work() -> None:
        reconcile_dataset(obj, logger)
        meta = obj["metadata"]
        for run in _waiting_runs(runtime().kube, meta["namespace"], meta["name"]):
            reconcile_training_run(run, logger)

    guard(work, logger)


@kopf.on.event(C.GROUP, C.VERSION, TRAINING_RUNS)
def training_run_event(type: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    if type == "DELETED":
        return
    obj = dict(body)
    guard(lambda: reconcile_training_run(obj, logger), logger)


@kopf.timer(C.GROUP, C.VERSION, DATASETS, interval=30, initial_delay=5)
def dataset_resync(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    obj = dict(body)
    guard(lambda: reconcile_dataset(obj, logger), logger)


@kopf.timer(C.GROUP, C.VERSION, TRAINING_RUNS, interval=30, initial_delay=5)
def training_run_resync(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    obj = dict(body)
    guard(lambda: reconcile_training_run(obj, logger), logger)


@kopf.on.event("batch", "v1", "jobs", labels={C.LABEL_MANAGED_BY: C.MANAGED_BY})
def job_event(type: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """A Job moved: reconcile the Dataset or TrainingRun that owns it."""
    owner = next((o for o in body.metadata.get("ownerReferences") or [] if o.get("controller")), None)
    if owner is None or not str(owner.get("apiVersion", "")).startswith(C.GROUP + "/"):
        return
    plural = {"Dataset": DATASETS, "TrainingRun": TRAINING_RUNS}.get(owner.get("kind", ""))
    if plural is None:
        return
    namespace = body.metadata.namespace or ""

    def work() -> None:
        parent = runtime().kube.get_custom(plural, namespace, owner["name"])
        if parent is None or parent["metadata"].get("uid") != owner.get("uid"):
            return
        if plural == DATASETS:
            reconcile_dataset(parent, logger)
            for run in _waiting_runs(runtime().kube, namespace, owner["name"]):
                reconcile_training_run(run, logger)
        else:
            reconcile_training_run(parent, logger)

    guard(work, logger)
