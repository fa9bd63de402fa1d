"""Plan a TrainingRun: wait for its Dataset, train once per generation, record the receipt.

The Job pins the Dataset's content hash at creation, so a Dataset re-profiled later
cannot change what an existing run trained on; a new generation of the run trains
again under a new Job name while status keeps the previous model until the new one
lands.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .. import artifacts
from .. import constants as C
from ..api.common import ConditionStatus
from ..api.dataset import DatasetStatus
from ..api.search import Search
from ..api.trainingrun import DatasetPolicy, ModelArtifact, TrainingRunSpec, TrainingRunStatus
from ..api.validation import InvalidSpecError, parse_model
from ..settings import Settings
from .conditions import get_condition, set_condition, settled
from .dataset import is_settled as _dataset_settled
from .jobs import JobPhase, JobView, build_job
from .naming import child_name, labels, owner_reference
from .plan import Event, Plan, finish
from .search import (
    SearchView,
    build_search_job,
    describe,
    ranked,
    refit_spec,
    search_job_name,
    summarize,
    trial_table_uris,
)

JSON = dict[str, Any]

# Failures that are the spec's fault even though only the Job could find out.
SPEC_REASONS = {"InvalidEstimator", "InvalidParameters", C.REASON_INVALID_SPEC}
KNOWN_FAILURES = {C.REASON_QUALITY_GATE_FAILED, "DatasetHashMismatch", "DatasetUnavailable"}


def training_job_name(name: str, generation: int, follow_round: int = 0) -> str:
    suffix = f"train-{generation}" if follow_round == 0 else f"train-{generation}-f{follow_round}"
    return child_name(name, suffix)


def current_round(obj: JSON) -> int:
    """The Follow retrain the run's status is about (0 for a new generation)."""
    status = TrainingRunStatus.model_validate(obj.get("status") or {})
    generation = int(obj["metadata"].get("generation") or 0)
    return status.follow_round if status.observed_generation == generation else 0


def is_settled(status: TrainingRunStatus, generation: int) -> bool:
    waiting = frozenset({C.REASON_DATASET_NOT_READY})
    return settled(status.conditions, status.observed_generation, generation, C.SUCCEEDED, waiting)


def dataset_readiness(dataset: JSON | None, name: str) -> tuple[DatasetStatus | None, str]:
    """The Dataset's status when it is Ready for training, else why not."""
    if dataset is None:
        return None, f"Dataset {name} does not exist"
    status = DatasetStatus.model_validate(dataset.get("status") or {})
    generation = int(dataset["metadata"].get("generation") or 0)
    cond = get_condition(status.conditions, C.READY)
    if cond is None:
        return None, f"Dataset {name} has not been reconciled yet"
    if cond.status is ConditionStatus.TRUE and _dataset_settled(status, generation) and status.content_hash:
        return status, ""
    return None, f"Dataset {name} is not Ready ({cond.reason}: {cond.message})"


def check_estimator(spec: TrainingRunSpec, settings: Settings) -> None:
    path = spec.estimator.class_name
    if not any(path.startswith(prefix) for prefix in settings.allowed_estimator_prefixes):
        allowed = ", ".join(settings.allowed_estimator_prefixes)
        raise InvalidSpecError(
            f"spec.estimator.className: {path!r} is not allowed; the operator allows classes under {allowed}",
            ["spec.estimator.className"],
        )


def build_training_job(
    obj: JSON,
    spec: TrainingRunSpec,
    dataset_name: str,
    dataset: DatasetStatus,
    settings: Settings,
    follow_round: int = 0,
) -> JSON:
    meta = obj["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], int(meta["generation"])
    content_hash = dataset.content_hash or ""
    data = artifacts.dataset_dir(namespace, dataset_name, content_hash) / "data.csv"
    args = [
        "train",
        "--spec-json",
        json.dumps(spec.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":")),
        "--namespace",
        namespace,
        "--name",
        name,
        "--uid",
        meta["uid"],
        "--generation",
        str(generation),
        "--data-uri",
        artifacts.location(data, settings.artifact_root),
        "--dataset-hash",
        content_hash,
        "--target",
        dataset.target or "",
        "--artifact-root",
        settings.artifact_root,
        "--allowed-prefixes",
        ",".join(settings.allowed_estimator_prefixes),
        "--termination-log",
        C.TERMINATION_LOG,
    ]
    if follow_round:
        args += ["--follow-round", str(follow_round)]
    return build_job(
        name=training_job_name(name, generation, follow_round),
        namespace=namespace,
        labels=labels(
            name,
            C.COMPONENT_TRAINING,
            {C.LABEL_TRAINING_RUN: name, C.LABEL_DATASET: dataset_name, C.LABEL_GENERATION: str(generation)},
        ),
        owner=owner_reference(obj["apiVersion"], obj["kind"], name, meta["uid"]),
        args=args,
        settings=settings,
        backoff_limit=spec.backoff_limit,
        deadline_seconds=spec.active_deadline_seconds,
        resources=spec.resources,
        annotations={C.ANNOTATION_DATASET_HASH: content_hash},
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


def plan_training_run(
    obj: JSON,
    dataset: JSON | None,
    job: JobView,
    now: datetime,
    settings: Settings,
    search: SearchView | None = None,
) -> Plan:
    """Decide the TrainingRun's status and whether its Job must be created (pure).

    With `spec.search`, `job` is the refit (the ordinary training Job, created once
    the search has a best trial) and `search` the search's Indexed Job. `dataset` is
    the Dataset as it is now: its contentHash against the model's decides `Stale`.
    """
    plan = _plan_run(obj, dataset, job, now, settings, search)
    return with_staleness(plan, dataset, now)


def with_staleness(plan: Plan, dataset: JSON | None, now: datetime) -> Plan:
    """Add the Stale condition: is the model trained on the Dataset's current contents?"""
    status = TrainingRunStatus.model_validate(plan.status)
    ready, _ = dataset_readiness(dataset, "")
    current = ready.content_hash if ready is not None else None
    trained = status.model.dataset_hash if status.model is not None else None
    if current is None or trained is None:
        return plan
    before = get_condition(status.conditions, C.STALE)
    status.dataset_current_hash = current
    if current != trained:
        msg = f"The model was trained on contentHash {trained[:12]}; the Dataset now holds {current[:12]}"
        cond = (ConditionStatus.TRUE, C.REASON_DATASET_CHANGED, msg)
    else:
        cond = (
            ConditionStatus.FALSE,
            C.REASON_DATASET_CURRENT,
            f"Trained on the Dataset's current contents ({current[:12]})",
        )
    status.conditions = set_condition(status.conditions, C.STALE, *cond, now, status.observed_generation)
    out: JSON = status.model_dump(mode="json", by_alias=True)
    if out == plan.status:
        return plan
    event = plan.event
    if (
        event is None
        and cond[0] is ConditionStatus.TRUE
        and (before is None or before.status is not ConditionStatus.TRUE)
    ):
        event = Event("Normal", C.REASON_DATASET_CHANGED, cond[2])
    return Plan(status=out, create=plan.create, event=event, changed=True)


def _follow(spec: TrainingRunSpec, old: TrainingRunStatus, dataset: JSON | None) -> DatasetStatus | None:
    """With datasetPolicy Follow: the Dataset's new contents to train on, if they are new."""
    if spec.dataset_policy is not DatasetPolicy.FOLLOW:
        return None
    cond = get_condition(old.conditions, C.SUCCEEDED)
    if cond is None or cond.reason == C.REASON_INVALID_SPEC:
        return None
    ready, _ = dataset_readiness(dataset, spec.dataset_ref.name)
    if ready is None or not ready.content_hash or ready.content_hash == old.dataset_hash:
        return None
    return ready


def _plan_run(
    obj: JSON,
    dataset: JSON | None,
    job: JobView,
    now: datetime,
    settings: Settings,
    search: SearchView | None = None,
) -> Plan:
    meta = obj["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], int(meta["generation"])
    old = TrainingRunStatus.model_validate(obj.get("status") or {})
    new = old.model_copy(deep=True)

    def succeeded(status: ConditionStatus, reason: str, message: str) -> None:
        new.conditions = set_condition(new.conditions, C.SUCCEEDED, status, reason, message, now, generation)
        new.observed_generation = generation

    try:
        spec = parse_model(TrainingRunSpec, obj.get("spec"))
        check_estimator(spec, settings)
    except InvalidSpecError as err:
        succeeded(ConditionStatus.FALSE, C.REASON_INVALID_SPEC, err.message)
        return finish(old, new, C.SUCCEEDED, Event("Warning", C.REASON_INVALID_SPEC, err.message))

    follow_round = old.follow_round if old.observed_generation == generation else 0
    new.follow_round = follow_round
    if is_settled(old, generation):
        following = _follow(spec, old, dataset)
        if following is None:
            return Plan(status=old.model_dump(mode="json", by_alias=True), changed=False)
        new.follow_round = follow_round + 1
        new.job_name = training_job_name(name, generation, new.follow_round)
        was = (old.dataset_hash or "")[:12]
        new.dataset_hash = following.content_hash
        new.start_time, new.completion_time = None, None
        if spec.search is not None:
            # The best parameters on the old data need not be the best on the new: search
            # again (this round's own Job, trial table and refit), the model served until then.
            new.search = None
            new.job_name = search_job_name(name, generation, new.follow_round)
            msg = (
                f"Dataset {spec.dataset_ref.name} changed to {(following.content_hash or '')[:12]} (was {was}): "
                f"searching again in Job {new.job_name}"
            )
            succeeded(ConditionStatus.UNKNOWN, C.REASON_SEARCHING, msg)
            create = _search_job(obj, spec, spec.search, following, settings, new.follow_round)
            return finish(old, new, C.SUCCEEDED, Event("Normal", C.REASON_FOLLOWING_DATASET, msg), create)
        msg = (
            f"Dataset {spec.dataset_ref.name} changed to {(following.content_hash or '')[:12]} (was {was}): "
            f"training again in Job {new.job_name}"
        )
        succeeded(ConditionStatus.UNKNOWN, C.REASON_TRAINING, msg)
        create = build_training_job(obj, spec, spec.dataset_ref.name, following, settings, new.follow_round)
        return finish(old, new, C.SUCCEEDED, Event("Normal", C.REASON_FOLLOWING_DATASET, msg), create)

    job_name = training_job_name(name, generation, follow_round)
    if spec.search is not None:
        view = search or SearchView(JobPhase.MISSING)
        uris = None
        if job.phase is not JobPhase.MISSING:
            uris = trial_table_uris(
                namespace, name, meta["uid"], generation, settings.artifact_root, follow_round
            )
        if view.phase is not JobPhase.MISSING:
            new.search = summarize(view, spec.search, search_job_name(name, generation, follow_round), uris)
        if job.phase is JobPhase.MISSING:
            return _plan_search(obj, spec, dataset, view, settings, old, new, succeeded, follow_round)
    if job.phase is JobPhase.MISSING:
        ds_status, why = dataset_readiness(dataset, spec.dataset_ref.name)
        if ds_status is None:
            succeeded(ConditionStatus.UNKNOWN, C.REASON_DATASET_NOT_READY, f"Waiting: {why}")
            return finish(old, new, C.SUCCEEDED, Event("Normal", C.REASON_DATASET_NOT_READY, why))
        new.job_name = job_name
        new.dataset_hash = ds_status.content_hash
        new.start_time = None
        msg = f"Training generation {generation} in Job {job_name} on dataset {spec.dataset_ref.name}@{(ds_status.content_hash or '')[:12]}"
        succeeded(ConditionStatus.UNKNOWN, C.REASON_TRAINING, msg)
        create = build_training_job(obj, spec, spec.dataset_ref.name, ds_status, settings, follow_round)
        return finish(old, new, C.SUCCEEDED, Event("Normal", C.REASON_TRAINING, msg), create)

    new.job_name = job_name
    # The Job, not a possibly stale status, says which dataset bytes it trains on.
    new.dataset_hash = job.annotations.get(C.ANNOTATION_DATASET_HASH) or new.dataset_hash
    if job.start_time:
        new.start_time = datetime.fromisoformat(job.start_time.replace("Z", "+00:00"))
    if job.phase is JobPhase.RUNNING:
        reason = C.REASON_REFITTING if spec.search is not None else C.REASON_TRAINING
        what = "Refitting the best trial" if spec.search is not None else "Training"
        msg = f"{what} generation {generation} in Job {job_name}"
        if job.failed_pods:
            msg += f" (retrying after {job.failed_pods} failed pod(s))"
        if job.image_problem:
            msg = f"{msg}: {job.image_problem}"
            succeeded(ConditionStatus.UNKNOWN, C.REASON_IMAGE_UNAVAILABLE, msg)
            return finish(old, new, C.SUCCEEDED, Event("Warning", C.REASON_IMAGE_UNAVAILABLE, msg))
        succeeded(ConditionStatus.UNKNOWN, reason, msg)
        return finish(old, new, C.SUCCEEDED, Event("Normal", reason, msg))

    result = job.result or {}
    if job.completion_time:
        new.completion_time = datetime.fromisoformat(job.completion_time.replace("Z", "+00:00"))
    metrics = result.get("metrics")
    if isinstance(metrics, dict) and metrics:
        new.metrics = {str(k): float(v) for k, v in metrics.items()}
        # Rounded copies for kubectl's columns (the full values stay in metrics).
        new.accuracy = _rounded(new.metrics.get("accuracy"))
        new.r2 = _rounded(new.metrics.get("r2"))
    if result.get("task"):
        new.task = str(result["task"])
    model = result.get("model")
    if (
        job.phase is JobPhase.SUCCEEDED
        and result.get("ok")
        and isinstance(model, dict)
        and model.get("sha256")
    ):
        where = artifacts.model_dir(namespace, name, meta["uid"], generation, follow_round)
        new.model = ModelArtifact(
            uri=artifacts.uri(where / "model.joblib", settings.artifact_root),
            sha256=str(model["sha256"]),
            size_bytes=model.get("sizeBytes"),
            dataset_hash=model.get("datasetHash") or new.dataset_hash,
            metadata_uri=artifacts.uri(where / "metadata.json", settings.artifact_root),
        )
        msg = f"Trained in Job {job_name}: {_metrics_text(new.metrics or {})}"
        if new.search is not None and new.search.best_index is not None:
            msg += f" (best of {new.search.trials} trials: trial {new.search.best_index})"
        succeeded(ConditionStatus.TRUE, C.REASON_TRAINED, msg)
        return finish(old, new, C.SUCCEEDED, Event("Normal", C.REASON_TRAINED, msg))

    if job.phase is JobPhase.SUCCEEDED:
        reason, msg = C.REASON_TRAINING_FAILED, f"Job {job_name} succeeded but reported no model"
    elif result.get("reason") in SPEC_REASONS:
        reason, msg = C.REASON_INVALID_SPEC, str(result.get("message") or job.failure_message)
    elif result.get("reason") in KNOWN_FAILURES:
        reason, msg = str(result["reason"]), str(result.get("message") or job.failure_message)
    else:
        reason = C.REASON_TRAINING_FAILED
        detail = str(result.get("message") or "")
        msg = f"Job {job_name} failed ({job.failure_reason}): {detail or job.failure_message}"
    succeeded(ConditionStatus.FALSE, reason, msg)
    return finish(old, new, C.SUCCEEDED, Event("Warning", reason, msg))


def _search_job(
    obj: JSON,
    spec: TrainingRunSpec,
    search: Search,
    ds_status: DatasetStatus,
    settings: Settings,
    follow_round: int,
) -> JSON:
    """The Indexed Job of a search (of a Follow round) on the Dataset contents `ds_status`."""
    training = build_training_job(obj, spec, spec.dataset_ref.name, ds_status, settings, follow_round)
    training["metadata"]["annotations"][C.ANNOTATION_DATASET_TARGET] = ds_status.target or ""
    meta = obj["metadata"]
    return build_search_job(
        training,
        search_job_name(meta["name"], int(meta["generation"]), follow_round),
        search,
        spec.backoff_limit,
    )


def _plan_search(
    obj: JSON,
    spec: TrainingRunSpec,
    dataset: JSON | None,
    view: SearchView,
    settings: Settings,
    old: TrainingRunStatus,
    new: TrainingRunStatus,
    succeeded: Callable[[ConditionStatus, str, str], None],
    follow_round: int = 0,
) -> Plan:
    """Searching: create the Indexed Job, follow it, and once it is done start the refit."""
    search = spec.search
    assert search is not None
    meta = obj["metadata"]
    name, generation = meta["name"], int(meta["generation"])
    job_name = search_job_name(name, generation, follow_round)
    trials = search.resolved_trials()
    new.job_name = job_name
    if view.phase is JobPhase.MISSING:
        ds_status, why = dataset_readiness(dataset, spec.dataset_ref.name)
        if ds_status is None:
            succeeded(ConditionStatus.UNKNOWN, C.REASON_DATASET_NOT_READY, f"Waiting: {why}")
            return finish(old, new, C.SUCCEEDED, Event("Normal", C.REASON_DATASET_NOT_READY, why))
        new.dataset_hash = ds_status.content_hash
        new.start_time = None
        create = _search_job(obj, spec, search, ds_status, settings, follow_round)
        msg = (
            f"Searching {trials} {search.type.value.lower()} trial(s), {min(search.parallelism, trials)} at a time,"
            f" in Job {job_name} on dataset {spec.dataset_ref.name}@{(ds_status.content_hash or '')[:12]}"
        )
        succeeded(ConditionStatus.UNKNOWN, C.REASON_SEARCHING, msg)
        return finish(old, new, C.SUCCEEDED, Event("Normal", C.REASON_SEARCHING, msg), create)

    new.dataset_hash = view.annotations.get(C.ANNOTATION_DATASET_HASH) or new.dataset_hash
    progress = f"{view.completed} of {trials} trial(s) done, {view.failed} failed"
    best = ranked(view, search.resolved_direction())
    if view.phase is JobPhase.RUNNING:
        msg = f"Searching in Job {job_name}: {progress}"
        if best:
            msg += f"; best so far {search.metric.value}={best[0].score:.4g} (trial {best[0].index})"
        succeeded(ConditionStatus.UNKNOWN, C.REASON_SEARCHING, msg)
        return finish(old, new, C.SUCCEEDED, Event("Normal", C.REASON_SEARCHING, msg))

    shared = view.shared_failure()
    if shared is not None:
        reason = str(shared.reason or "")
        if reason in SPEC_REASONS:
            reason = C.REASON_INVALID_SPEC
        elif reason not in KNOWN_FAILURES:
            reason = C.REASON_SEARCH_FAILED
        msg = f"Search Job {job_name} stopped: trial {shared.index}: {shared.message or shared.reason}"
        succeeded(ConditionStatus.FALSE, reason, msg)
        return finish(old, new, C.SUCCEEDED, Event("Warning", reason, msg))
    if not best:
        first = new.search.failures[0] if new.search and new.search.failures else None
        detail = f"; trial {first.index}: {first.reason}: {first.message}" if first else ""
        why = f" ({view.failure_reason}: {view.failure_message})" if view.failure_reason else ""
        msg = f"No trial of {trials} in Job {job_name} reported a score{why}{detail}"
        succeeded(ConditionStatus.FALSE, C.REASON_SEARCH_FAILED, msg)
        return finish(old, new, C.SUCCEEDED, Event("Warning", C.REASON_SEARCH_FAILED, msg))

    # Refit the best trial's parameters on the dataset bytes the trials saw.
    top = best[0]
    pinned = DatasetStatus.model_validate((dataset or {}).get("status") or {}).model_copy(
        update={
            "content_hash": view.annotations.get(C.ANNOTATION_DATASET_HASH),
            "target": view.annotations.get(C.ANNOTATION_DATASET_TARGET),
        }
    )
    create = build_training_job(
        obj, refit_spec(spec, top), spec.dataset_ref.name, pinned, settings, follow_round
    )
    new.job_name = training_job_name(name, generation, follow_round)
    new.search = summarize(
        view,
        search,
        job_name,
        trial_table_uris(
            meta["namespace"], name, meta["uid"], generation, settings.artifact_root, follow_round
        ),
    )
    msg = (
        f"Best of {trials} trial(s) ({progress}): trial {top.index}, {search.metric.value}={top.score:.4g}"
        f" with {describe(top.params)}; refitting in Job {new.job_name}"
    )
    succeeded(ConditionStatus.UNKNOWN, C.REASON_REFITTING, msg)
    return finish(old, new, C.SUCCEEDED, Event("Normal", C.REASON_REFITTING, msg), create)
