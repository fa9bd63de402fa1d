"""Datasets and TrainingRuns: triggers that all lead to one reconcile per object.

The TrainingRuns waiting for a Dataset are found in a kopf index (kept up to date from
the TrainingRun watch), not by listing TrainingRuns on every Dataset event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from .. import constants as C
from .. import observability as obs
from ..adapters.kube import Kube
from ..api.dataset import DatasetStatus
from ..api.trainingrun import TrainingRunStatus
from ..errors import ApiError, Conflict, immutable_field_changed
from ..reconcile.dataset import current_read, plan_dataset, profile_job_name
from ..reconcile.dataset import is_settled as dataset_settled
from ..reconcile.jobs import JobPhase, JobView, view_job
from ..reconcile.plan import Plan
from ..reconcile.search import SearchView, search_job_name, view_search
from ..reconcile.secrets import job_fields
from ..reconcile.trainingrun import current_round, plan_training_run, training_job_name
from ..reconcile.trainingrun import is_settled as run_settled
from . import resync
from .lifecycle import post_event, runtime
from .outcome import FAILURES, guard, guard_each, retry_later, write_status
from .secrets import require_secrets

JSON = dict[str, Any]
DATASETS, TRAINING_RUNS = "datasets", "trainingruns"
WaitingRuns = kopf.Index[tuple[str, str], JSON]


# The planners never look at the Job of a settled generation (its verdict is final), so
# a resync of a settled object reads nothing: a thousand finished TrainingRuns cost no
# GET of their Jobs and no LIST of their pods every 30 s.
UNREAD = JobView(JobPhase.MISSING)


def _job_view(kube: Kube, namespace: str, job_name: str) -> JobView:
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
        # A Secret the Job's pods read is missing: create nothing, say so, look again later.
        require_secrets(meta["namespace"], [plan.create], job_fields())
        # Only a missing Job is applied: a Job's pod template is immutable, and the Job of a
        # generation is the record of what ran. Applying the same Job twice changes nothing.
        kube.ensure_artifact_pvc(meta["namespace"], runtime().settings_for(meta["namespace"]))
        try:
            kube.apply(plan.create)
        except ApiError as err:
            if immutable_field_changed(err):
                # A concurrent reconcile created this generation's Job from another view (say a
                # newer dataset hash) a moment ago; the next reconcile reads that Job instead.
                raise Conflict(f"Job {plan.create['metadata']['name']} was created meanwhile") from err
            raise
        logger.info("Applied Job %s", plan.create["metadata"]["name"])
    write_status(plural, obj, plan.status, plan.changed)
    if plan.event is not None:
        post_event(obj, plan.event)


@obs.reconciliation(obs.KIND_DATASET)
def reconcile_dataset(obj: JSON, logger: kopf.Logger) -> None:
    rt = runtime()
    meta = obj["metadata"]
    generation = int(meta["generation"])
    status = DatasetStatus.model_validate(obj.get("status") or {})
    if dataset_settled(status, generation) and not status.refreshing:
        job = UNREAD  # the planner only decides whether a re-read is due
    else:
        name = profile_job_name(meta["name"], generation, current_read(obj))
        job = _job_view(rt.kube, meta["namespace"], name)
    plan = plan_dataset(obj, job, datetime.now(UTC), rt.settings_for(meta["namespace"]))
    _apply(rt.kube, DATASETS, obj, plan, logger)


@obs.reconciliation(obs.KIND_TRAINING_RUN)
def reconcile_training_run(obj: JSON, logger: kopf.Logger) -> None:
    rt = runtime()
    meta = obj["metadata"]
    namespace, generation = meta["namespace"], int(meta["generation"])
    # The Dataset is always read: its current contentHash decides Stale (and Follow's retrains).
    ref = ((obj.get("spec") or {}).get("datasetRef") or {}).get("name")
    dataset = rt.kube.get_custom(DATASETS, namespace, ref) if isinstance(ref, str) and ref else None
    if run_settled(TrainingRunStatus.model_validate(obj.get("status") or {}), generation):
        plan = plan_training_run(obj, dataset, UNREAD, datetime.now(UTC), rt.settings_for(namespace))
        _apply(rt.kube, TRAINING_RUNS, obj, plan, logger)
        return
    job = _job_view(rt.kube, namespace, training_job_name(meta["name"], generation, current_round(obj)))
    search: SearchView | None = None
    if (obj.get("spec") or {}).get("search"):
        # The trials' pods are read even while the search runs: status shows the best so far.
        search_job = search_job_name(meta["name"], generation, current_round(obj))
        found = rt.kube.get_job(namespace, search_job)
        search = view_search(found, rt.kube.job_pods(namespace, search_job) if found else [])
    plan = plan_training_run(obj, dataset, job, datetime.now(UTC), rt.settings_for(namespace), search)
    _apply(rt.kube, TRAINING_RUNS, obj, plan, logger)


@kopf.index(C.GROUP, C.VERSION, TRAINING_RUNS)
def waiting_runs(body: kopf.Body, **_: Any) -> dict[tuple[str, str], JSON] | None:
    """(namespace, dataset) -> TrainingRuns of that Dataset.

    All of them, not only those waiting for it: a finished run learns from a Dataset
    event that its model is stale, or (datasetPolicy Follow) trains again. A settled
    run costs one GET of its Dataset, never a read of its Jobs.
    """
    obj = dict(body)
    ref = ((obj.get("spec") or {}).get("datasetRef") or {}).get("name")
    if not isinstance(ref, str):
        return None
    return {(obj["metadata"]["namespace"], ref): obj}


def _reconcile_dataset_and_runs(obj: JSON, runs: WaitingRuns, logger: kopf.Logger, retry: int = 0) -> None:
    meta = obj["metadata"]
    guard(DATASETS, obj, lambda: reconcile_dataset(obj, logger), logger, retry=retry)
    waiting = list(runs.get((meta["namespace"], meta["name"]), []))
    guard_each(TRAINING_RUNS, waiting, lambda run: reconcile_training_run(run, logger), logger)


@kopf.on.event(C.GROUP, C.VERSION, DATASETS)
def dataset_event(type: str, body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    if type == "DELETED":
        FAILURES.forget(DATASETS, body.metadata.namespace or "", body.metadata.name or "")
        return
    _reconcile_dataset_and_runs(dict(body), kwargs["waiting_runs"], logger)


@kopf.on.event(C.GROUP, C.VERSION, TRAINING_RUNS)
def training_run_event(type: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    if type == "DELETED":
        FAILURES.forget(TRAINING_RUNS, body.metadata.namespace or "", body.metadata.name or "")
        return
    obj = dict(body)
    guard(TRAINING_RUNS, obj, lambda: reconcile_training_run(obj, logger), logger)


@resync.timer(DATASETS, interval=30, when=resync.dataset_in_flight)
def dataset_resync(body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    retry = int(kwargs.get("retry") or 0)
    obj = dict(body)
    guard(DATASETS, obj, lambda: reconcile_dataset(obj, logger), logger, retry=retry)


@resync.timer(TRAINING_RUNS, interval=30, when=resync.run_in_flight)
@resync.timer(TRAINING_RUNS, interval=300, when=resync.run_waiting)
def training_run_resync(body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    retry = int(kwargs.get("retry") or 0)
    obj = dict(body)
    guard(TRAINING_RUNS, obj, lambda: reconcile_training_run(obj, logger), logger, retry=retry)


@kopf.on.event("batch", "v1", "jobs", labels={C.LABEL_MANAGED_BY: C.MANAGED_BY})
def job_event(type: str, body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    """A Job moved: reconcile the Dataset or TrainingRun that owns it."""
    owner = next((o for o in body.metadata.get("ownerReferences") or [] if o.get("controller")), None)
    if owner is None or not str(owner.get("apiVersion", "")).startswith(C.GROUP + "/"):
        return
    plural = {"Dataset": DATASETS, "TrainingRun": TRAINING_RUNS}.get(owner.get("kind", ""))
    if plural is None:
        return
    namespace = body.metadata.namespace or ""
    parent: JSON | None = None

    def find() -> None:
        nonlocal parent
        parent = runtime().kube.get_custom(plural, namespace, owner["name"])

    retry_later(find)
    if parent is None or parent["metadata"].get("uid") != owner.get("uid"):
        return
    if plural == DATASETS:
        _reconcile_dataset_and_runs(parent, kwargs["waiting_runs"], logger)
    else:
        found = parent
        guard(TRAINING_RUNS, found, lambda: reconcile_training_run(found, logger), logger)
