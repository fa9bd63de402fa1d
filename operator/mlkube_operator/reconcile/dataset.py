"""Plan a Dataset: validate the spec, run one profile Job per generation, record it.

A generation that reached a verdict (Ready True or False) is never profiled again,
so deleting a finished Job or restarting the operator does not repeat work.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .. import artifacts
from .. import constants as C
from ..api.common import ConditionStatus
from ..api.dataset import ColumnSchema, DatasetSpec, DatasetStatus
from ..api.validation import InvalidSpecError, parse_model
from ..settings import Settings
from .conditions import set_condition, settled
from .jobs import JobPhase, JobView, build_job
from .naming import child_name, labels, owner_reference
from .plan import Event, Plan, finish

JSON = dict[str, Any]

PERMANENT_REASONS = {C.REASON_VALIDATION_FAILED, C.REASON_SOURCE_UNAVAILABLE, C.REASON_INVALID_SPEC}


def profile_job_name(name: str, generation: int) -> str:
    return child_name(name, f"profile-{generation}")


def is_settled(status: DatasetStatus, generation: int) -> bool:
    return settled(status.conditions, status.observed_generation, generation, C.READY)


def build_profile_job(obj: JSON, spec: DatasetSpec, settings: Settings) -> JSON:
    meta = obj["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], int(meta["generation"])
    job_name = profile_job_name(name, generation)
    args = [
        "profile",
        "--spec-json",
        json.dumps(spec.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":")),
        "--namespace",
        namespace,
        "--name",
        name,
        "--artifact-root",
        C.ARTIFACT_MOUNT,
        "--termination-log",
        C.TERMINATION_LOG,
    ]
    config_map = spec.source.config_map.name if spec.source.config_map else None
    if config_map:
        args += ["--configmap-dir", C.CONFIGMAP_MOUNT]
    return build_job(
        name=job_name,
        namespace=namespace,
        labels=labels(
            name, C.COMPONENT_PROFILE, {C.LABEL_DATASET: name, C.LABEL_GENERATION: str(generation)}
        ),
        owner=owner_reference(obj["apiVersion"], obj["kind"], name, meta["uid"]),
        args=args,
        settings=settings,
        backoff_limit=settings.profile_backoff_limit,
        deadline_seconds=settings.profile_deadline_seconds,
        config_map=config_map,
    )


def plan_dataset(obj: JSON, job: JobView, now: datetime, settings: Settings) -> Plan:
    """Decide the Dataset's status and whether its profile Job must be created (pure)."""
    meta = obj["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], int(meta["generation"])
    old = DatasetStatus.model_validate(obj.get("status") or {})
    new = old.model_copy(deep=True)

    def ready(status: ConditionStatus, reason: str, message: str) -> None:
        new.conditions = set_condition(new.conditions, C.READY, status, reason, message, now, generation)
        new.observed_generation = generation

    try:
        spec = parse_model(DatasetSpec, obj.get("spec"))
    except InvalidSpecError as err:
        ready(ConditionStatus.FALSE, C.REASON_INVALID_SPEC, err.message)
        new.job_name = None
        return finish(old, new, C.READY, Event("Warning", C.REASON_INVALID_SPEC, err.message))

    if is_settled(old, generation):
        return Plan(status=old.model_dump(mode="json", by_alias=True), changed=False)

    job_name = profile_job_name(name, generation)
    new.job_name = job_name
    if job.phase is JobPhase.MISSING:
        msg = f"Profiling generation {generation} in Job {job_name}"
        ready(ConditionStatus.UNKNOWN, C.REASON_PROFILING, msg)
        create = build_profile_job(obj, spec, settings)
        return finish(old, new, C.READY, Event("Normal", C.REASON_PROFILING, msg), create)
    if job.phase is JobPhase.RUNNING:
        msg = f"Profiling generation {generation} in Job {job_name}"
        if job.failed_pods:
            msg += f" (retrying after {job.failed_pods} failed pod(s))"
        ready(ConditionStatus.UNKNOWN, C.REASON_PROFILING, msg)
        return finish(old, new, C.READY, Event("Normal", C.REASON_PROFILING, msg))

    result = job.result or {}
    if job.phase is JobPhase.SUCCEEDED and result.get("ok") and result.get("contentHash"):
        content_hash = str(result["contentHash"])
        where = artifacts.dataset_dir(namespace, name, content_hash)
        new.rows = int(result.get("rows", 0))
        new.columns = int(result.get("columns", 0))
        new.content_hash = content_hash
        new.profile_uri = artifacts.uri(where / "profile.json")
        new.data_uri = artifacts.uri(where / "data.csv")
        new.target = result.get("target")
        new.features = result.get("features")
        schema = result.get("schema")
        new.schema_ = [ColumnSchema.model_validate(c) for c in schema] if isinstance(schema, list) else None
        new.profiled_time = now
        msg = f"{new.rows} rows, {new.columns} columns, contentHash {content_hash[:12]}"
        ready(ConditionStatus.TRUE, C.REASON_PROFILED, msg)
        return finish(old, new, C.READY, Event("Normal", C.REASON_PROFILED, msg))

    if job.phase is JobPhase.SUCCEEDED:
        reason, msg = C.REASON_PROFILING_FAILED, f"Job {job_name} succeeded but reported no result"
    elif result.get("reason") in PERMANENT_REASONS:
        reason, msg = str(result["reason"]), str(result.get("message") or job.failure_message)
    else:
        reason = C.REASON_PROFILING_FAILED
        msg = str(result.get("message") or "") or f"Job {job_name} failed: {job.failure_message}"
    for stale in (
        "rows",
        "columns",
        "content_hash",
        "profile_uri",
        "data_uri",
        "schema_",
        "features",
        "target",
    ):
        setattr(new, stale, None)
    ready(ConditionStatus.FALSE, reason, msg)
    return finish(old, new, C.READY, Event("Warning", reason, msg))
