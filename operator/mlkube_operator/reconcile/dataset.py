"""Plan a Dataset: validate the spec, read the source in profile Jobs, record what was read.

States of one generation (status.read counts the reads of the source within it):

| state | Ready | next |
|---|---|---|
| first read running | Unknown (Profiling) | Read ok -> Ready; failure -> Failed |
| Ready (a version is recorded) | True | refresh due -> Refreshing |
| Refreshing (a re-read runs) | True, data unchanged | ok -> Ready (new version if the hash moved); failure -> Ready + lastRefreshError, retried with backoff |
| Failed | False (SourceUnavailable, ValidationFailed, ...) | SourceUnavailable: retried with backoff; any: refresh due -> first read again |

A refresh is due when the `mlkube.io/refresh` annotation holds a value not acted upon
yet, or `spec.refresh.intervalSeconds` passed since the last read; a failed read of an
unavailable source is retried after 30 s, 60 s, ... up to an hour. Each read has its own
Job (`<name>-profile-<generation>` then `-<generation>-<read>`), created once, so deleting
a finished Job or restarting the operator repeats nothing, and a verdict is never
reached twice for one read.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from .. import artifacts
from .. import constants as C
from ..api.common import ConditionStatus
from ..api.dataset import ColumnSchema, DatasetSpec, DatasetStatus, DataVersion, RefreshError
from ..api.validation import InvalidSpecError, parse_model
from ..settings import Settings
from .conditions import set_condition, settled
from .jobs import JobPhase, JobView, build_job, secret_env
from .naming import child_name, labels, owner_reference
from .plan import Event, Plan, finish

JSON = dict[str, Any]

PERMANENT_REASONS = {C.REASON_VALIDATION_FAILED, C.REASON_SOURCE_UNAVAILABLE, C.REASON_INVALID_SPEC}
# Failures worth reading the source again for without a spec change.
RETRIED_REASONS = {C.REASON_SOURCE_UNAVAILABLE, C.REASON_PROFILING_FAILED}
MAX_VERSIONS = 10
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 3600


def profile_job_name(name: str, generation: int, read: int = 0) -> str:
    return child_name(name, f"profile-{generation}" if read == 0 else f"profile-{generation}-{read}")


def current_read(obj: JSON) -> int:
    """The read of the source the Dataset's status is about (0 for a new generation)."""
    status = DatasetStatus.model_validate(obj.get("status") or {})
    generation = int(obj["metadata"].get("generation") or 0)
    return status.read if status.observed_generation == generation else 0


def retry_delay(failed_reads: int) -> timedelta:
    """Backoff before reading an unavailable source again: 30 s, 60 s, 120 s, ... at most 1 h."""
    exponent = max(0, min(failed_reads - 1, 16))
    return timedelta(seconds=min(RETRY_BASE_SECONDS * 2**exponent, RETRY_MAX_SECONDS))


def refresh_due(obj: JSON, spec: DatasetSpec, status: DatasetStatus, now: datetime) -> str | None:
    """Why the source must be read again now (pure), or None."""
    token = ((obj.get("metadata") or {}).get("annotations") or {}).get(C.ANNOTATION_REFRESH)
    if token and token != status.refresh_token:
        return f"refresh requested ({C.ANNOTATION_REFRESH}: {token})"
    if status.next_read_time is not None and now >= status.next_read_time:
        return "retrying the source" if status.failed_reads else "refresh interval passed"
    return None


def is_settled(status: DatasetStatus, generation: int) -> bool:
    return settled(status.conditions, status.observed_generation, generation, C.READY)


def build_profile_job(obj: JSON, spec: DatasetSpec, settings: Settings, read: int = 0) -> JSON:
    meta = obj["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], int(meta["generation"])
    job_name = profile_job_name(name, generation, read)
    args = [
        "profile",
        "--spec-json",
        json.dumps(spec.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":")),
        "--namespace",
        namespace,
        "--name",
        name,
        "--artifact-root",
        settings.artifact_root,
        "--termination-log",
        C.TERMINATION_LOG,
    ]
    config_map = spec.source.config_map.name if spec.source.config_map else None
    if config_map:
        args += ["--configmap-dir", C.CONFIGMAP_MOUNT]
    env: list[JSON] = []
    if spec.source.s3 is not None and spec.source.s3.credentials_secret is not None:
        secret = spec.source.s3.credentials_secret.name
        env += [
            secret_env(C.ENV_SOURCE_ACCESS_KEY_ID, secret, C.SECRET_KEY_ACCESS_KEY_ID),
            secret_env(C.ENV_SOURCE_SECRET_ACCESS_KEY, secret, C.SECRET_KEY_SECRET_ACCESS_KEY),
        ]
    if spec.source.sql is not None:
        ref = spec.source.sql.connection_secret
        env.append(secret_env(C.ENV_SOURCE_SQL_URL, ref.name, ref.key))
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
        env=env,
    )


def _next_read(spec: DatasetSpec, status: DatasetStatus, now: datetime, failed: bool) -> datetime | None:
    if failed and status.failed_reads:
        return now + retry_delay(status.failed_reads)
    interval = spec.refresh.interval_seconds if spec.refresh is not None else None
    return now + timedelta(seconds=interval) if interval else None


def _record_version(status: DatasetStatus, content_hash: str, rows: int, now: datetime) -> bool:
    """Put the hash first in status.versions; True when it differs from the previous read's."""
    versions = list(status.versions)
    changed = not versions or versions[0].content_hash != content_hash
    found = next((v for v in versions if v.content_hash == content_hash), None)
    if found is None:
        found = DataVersion(content_hash=content_hash, rows=rows, first_seen_time=now)
    else:
        versions.remove(found)
    found.last_seen_time = now
    found.rows = rows
    status.versions = [found, *versions][:MAX_VERSIONS]
    return changed


def plan_dataset(obj: JSON, job: JobView, now: datetime, settings: Settings) -> Plan:
    """Decide the Dataset's status and whether a profile Job must be created (pure).

    `job` is the Job of the read `current_read(obj)`.
    """
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
        new.next_read_time = None
        return finish(old, new, C.READY, Event("Warning", C.REASON_INVALID_SPEC, err.message))

    if old.observed_generation != generation:
        # A new generation starts over: its first read, no refresh bookkeeping carried over.
        new.read, new.refreshing, new.failed_reads = 0, False, 0
        new.next_read_time, new.last_refresh_error = None, None
    read = new.read
    job_name = profile_job_name(name, generation, read)

    if is_settled(old, generation) and not old.refreshing:
        why = refresh_due(obj, spec, old, now)
        if why is None:
            return Plan(status=old.model_dump(mode="json", by_alias=True), changed=False)
        token = ((meta.get("annotations") or {}).get(C.ANNOTATION_REFRESH)) or None
        if token:
            new.refresh_token = token
        new.read = read + 1
        new.job_name = profile_job_name(name, generation, new.read)
        new.next_read_time = None
        create = build_profile_job(obj, spec, settings, new.read)
        msg = f"Reading the source again ({why}) in Job {new.job_name}"
        if old.content_hash:
            new.refreshing = True
            return _plan(old, new, Event("Normal", C.REASON_REFRESHING, msg), create)
        ready(ConditionStatus.UNKNOWN, C.REASON_PROFILING, msg)
        return finish(old, new, C.READY, Event("Normal", C.REASON_PROFILING, msg), create)

    new.job_name = job_name
    if job.phase is JobPhase.MISSING:
        # The Job of this read was never created (a new generation), or was deleted
        # before its verdict was recorded: (re)create it under the same name.
        msg = f"Profiling generation {generation} in Job {job_name}"
        create = build_profile_job(obj, spec, settings, read)
        if new.refreshing:
            return _plan(old, new, None, create)
        ready(ConditionStatus.UNKNOWN, C.REASON_PROFILING, msg)
        return finish(old, new, C.READY, Event("Normal", C.REASON_PROFILING, msg), create)
    if job.phase is JobPhase.RUNNING:
        if new.refreshing:
            return _plan(old, new, None)
        msg = f"Profiling generation {generation} in Job {job_name}"
        if job.failed_pods:
            msg += f" (retrying after {job.failed_pods} failed pod(s))"
        if job.image_problem:
            msg = f"{msg}: {job.image_problem}"
            ready(ConditionStatus.UNKNOWN, C.REASON_IMAGE_UNAVAILABLE, msg)
            return finish(old, new, C.READY, Event("Warning", C.REASON_IMAGE_UNAVAILABLE, msg))
        ready(ConditionStatus.UNKNOWN, C.REASON_PROFILING, msg)
        return finish(old, new, C.READY, Event("Normal", C.REASON_PROFILING, msg))

    result = job.result or {}
    if job.phase is JobPhase.SUCCEEDED and result.get("ok") and result.get("contentHash"):
        content_hash = str(result["contentHash"])
        previous = old.content_hash
        where = artifacts.dataset_dir(namespace, name, content_hash)
        new.rows = int(result.get("rows", 0))
        new.columns = int(result.get("columns", 0))
        new.content_hash = content_hash
        new.profile_uri = str(
            result.get("profileUri") or artifacts.uri(where / "profile.json", settings.artifact_root)
        )
        new.data_uri = str(result.get("dataUri") or artifacts.uri(where / "data.csv", settings.artifact_root))
        new.target = result.get("target")
        new.features = result.get("features")
        schema = result.get("schema")
        new.schema_ = [ColumnSchema.model_validate(c) for c in schema] if isinstance(schema, list) else None
        new.profiled_time = now
        changed = _record_version(new, content_hash, new.rows, now)
        new.refreshing, new.failed_reads, new.last_refresh_error = False, 0, None
        new.next_read_time = _next_read(spec, new, now, failed=False)
        msg = f"{new.rows} rows, {new.columns} columns, contentHash {content_hash[:12]}"
        ready(ConditionStatus.TRUE, C.REASON_PROFILED, msg)
        if previous and changed and old.refreshing:
            event = Event("Normal", C.REASON_DATA_CHANGED, f"New data: {msg} (was {previous[:12]})")
            return _plan(old, new, event)
        return finish(old, new, C.READY, Event("Normal", C.REASON_PROFILED, msg))

    if job.phase is JobPhase.SUCCEEDED:
        reason, msg = C.REASON_PROFILING_FAILED, f"Job {job_name} succeeded but reported no result"
    elif result.get("reason") in PERMANENT_REASONS:
        reason, msg = str(result["reason"]), str(result.get("message") or job.failure_message)
    else:
        reason = C.REASON_PROFILING_FAILED
        msg = str(result.get("message") or "") or f"Job {job_name} failed: {job.failure_message}"
    new.failed_reads = old.failed_reads + 1 if reason in RETRIED_REASONS else 0
    new.next_read_time = _next_read(spec, new, now, failed=reason in RETRIED_REASONS)
    retry = ""
    if new.next_read_time is not None:
        retry = f"; reading again at {new.next_read_time.isoformat(timespec='seconds')}"
    if old.refreshing:
        # The data recorded above is still what the source had when last read: keep it
        # (and Ready), say that the re-read failed, and retry.
        new.refreshing = False
        new.last_refresh_error = RefreshError(reason=reason, message=msg, time=now)
        return _plan(old, new, Event("Warning", C.REASON_REFRESH_FAILED, f"{reason}: {msg}{retry}"))
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
    ready(ConditionStatus.FALSE, reason, msg + retry)
    return finish(old, new, C.READY, Event("Warning", reason, msg + retry))


def _plan(old: DatasetStatus, new: DatasetStatus, event: Event | None, create: JSON | None = None) -> Plan:
    """A plan whose Event is posted even though Ready does not move (a refresh's news)."""
    status: JSON = new.model_dump(mode="json", by_alias=True)
    changed = status != old.model_dump(mode="json", by_alias=True)
    return Plan(status=status, create=create, event=event, changed=changed)
