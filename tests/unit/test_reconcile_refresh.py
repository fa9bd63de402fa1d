"""Dataset refresh and retry (finding 13.5): the planner's state table, step by step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mlkube_operator import constants as C
from mlkube_operator.reconcile.dataset import current_read, plan_dataset, retry_delay
from mlkube_operator.reconcile.jobs import JobPhase, JobView
from mlkube_operator.reconcile.plan import Plan
from mlkube_operator.reconcile.trainingrun import current_round, plan_training_run
from mlkube_operator.settings import Settings

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SETTINGS = Settings()
H1, H2 = "1" * 64, "2" * 64
URL_SPEC = {"source": {"url": "http://127.0.0.1:9/data.csv"}, "target": "y"}


def dataset(
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    generation: int = 1,
) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {
            "name": "churn",
            "namespace": "ns",
            "uid": "u",
            "generation": generation,
            "annotations": annotations or {},
        },
        "spec": spec or URL_SPEC,
        "status": status or {},
    }


def ok(content_hash: str, rows: int = 10) -> JobView:
    result = {
        "ok": True,
        "rows": rows,
        "columns": 2,
        "contentHash": content_hash,
        "target": "y",
        "features": ["x"],
    }
    return JobView(JobPhase.SUCCEEDED, result)


def failed(
    reason: str, message: str = "GET http://127.0.0.1:9/data.csv failed: connection refused"
) -> JobView:
    return JobView(JobPhase.FAILED, {"ok": False, "reason": reason, "message": message}, "Failed", "failed")


def ready_cond(plan: Plan) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == C.READY)


def step(obj: dict[str, Any], job: JobView, at: datetime) -> tuple[Plan, dict[str, Any]]:
    plan = plan_dataset(obj, job, at, SETTINGS)
    nxt = dict(obj, status=plan.status)
    return plan, nxt


def profiled(spec: dict[str, Any] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    _, obj = step(dataset(spec, annotations=annotations), JobView(JobPhase.MISSING), NOW)
    _, obj = step(obj, ok(H1), NOW)
    return obj


def test_a_ready_dataset_without_refresh_is_not_read_again() -> None:
    obj = profiled()
    plan = plan_dataset(obj, ok(H1), NOW + timedelta(days=30), SETTINGS)
    assert plan.create is None and not plan.changed
    assert obj["status"]["versions"][0]["contentHash"] == H1 and obj["status"]["nextReadTime"] is None


def test_annotation_refreshes_once_per_value_and_records_a_new_version() -> None:
    obj = profiled()
    obj["metadata"]["annotations"] = {C.ANNOTATION_REFRESH: "2026-11-28T13:00"}
    plan, obj = step(obj, ok(H1), NOW + timedelta(minutes=1))
    assert plan.create is not None and plan.create["metadata"]["name"] == "churn-profile-1-1"
    assert plan.event is not None and plan.event.reason == C.REASON_REFRESHING
    assert obj["status"]["refreshing"] is True and obj["status"]["refreshToken"] == "2026-11-28T13:00"
    # While the re-read runs the old data stays Ready and usable.
    assert ready_cond(plan)["status"] == "True" and obj["status"]["contentHash"] == H1
    assert current_read(obj) == 1
    plan, obj = step(obj, JobView(JobPhase.RUNNING), NOW + timedelta(minutes=2))
    assert plan.create is None and ready_cond(plan)["status"] == "True"
    plan, obj = step(obj, ok(H2, rows=12), NOW + timedelta(minutes=3))
    assert obj["status"]["contentHash"] == H2 and obj["status"]["rows"] == 12
    assert [v["contentHash"] for v in obj["status"]["versions"]] == [H2, H1]
    assert (
        plan.event is not None
        and plan.event.reason == C.REASON_DATA_CHANGED
        and H1[:12] in plan.event.message
    )
    assert obj["status"]["refreshing"] is False
    # The same annotation value again does nothing.
    plan = plan_dataset(obj, ok(H2), NOW + timedelta(hours=1), SETTINGS)
    assert plan.create is None and not plan.changed
    # A new value reads again, under the next read's Job name.
    obj["metadata"]["annotations"] = {C.ANNOTATION_REFRESH: "again"}
    plan, obj = step(obj, ok(H2), NOW + timedelta(hours=2))
    assert plan.create is not None and plan.create["metadata"]["name"] == "churn-profile-1-2"


def test_interval_refresh_and_an_unchanged_source() -> None:
    spec = {**URL_SPEC, "refresh": {"intervalSeconds": 600}}
    obj = profiled(spec)
    assert obj["status"]["nextReadTime"] == (NOW + timedelta(seconds=600)).isoformat().replace("+00:00", "Z")
    plan = plan_dataset(obj, ok(H1), NOW + timedelta(seconds=599), SETTINGS)
    assert plan.create is None
    plan, obj = step(obj, ok(H1), NOW + timedelta(seconds=600))
    assert plan.create is not None and plan.event is not None and "interval" in plan.event.message
    plan, obj = step(obj, ok(H1), NOW + timedelta(seconds=630))
    assert len(obj["status"]["versions"]) == 1 and obj["status"]["versions"][0]["lastSeenTime"].startswith(
        "2026-11-28T12:10:30"
    )
    assert plan.event is None or plan.event.reason != C.REASON_DATA_CHANGED


def test_versions_are_bounded() -> None:
    obj = profiled()
    for i in range(15):
        obj["metadata"]["annotations"] = {C.ANNOTATION_REFRESH: str(i)}
        _, obj = step(obj, ok(H1), NOW + timedelta(minutes=2 * i + 1))
        _, obj = step(obj, ok(f"{i:064d}"), NOW + timedelta(minutes=2 * i + 2))
    versions = obj["status"]["versions"]
    assert len(versions) == 10 and versions[0]["contentHash"] == f"{14:064d}"


def test_unavailable_source_is_retried_with_backoff_until_it_recovers() -> None:
    _, obj = step(dataset(), JobView(JobPhase.MISSING), NOW)
    plan, obj = step(obj, failed("SourceUnavailable"), NOW)
    cond = ready_cond(plan)
    assert (cond["status"], cond["reason"]) == ("False", "SourceUnavailable")
    assert (
        "connection refused" in cond["message"] and "reading again at 2026-11-28T12:00:30" in cond["message"]
    )
    assert obj["status"]["failedReads"] == 1
    # Not before the backoff has passed.
    assert (
        plan_dataset(obj, failed("SourceUnavailable"), NOW + timedelta(seconds=29), SETTINGS).create is None
    )
    plan, obj = step(obj, failed("SourceUnavailable"), NOW + timedelta(seconds=30))
    assert plan.create is not None and plan.create["metadata"]["name"] == "churn-profile-1-1"
    assert ready_cond(plan)["status"] == "Unknown"
    plan, obj = step(obj, failed("SourceUnavailable"), NOW + timedelta(seconds=40))
    assert obj["status"]["failedReads"] == 2 and "12:01:40" in ready_cond(plan)["message"]  # 60 s later
    # The source is fixed: the next retry makes the Dataset Ready, with no spec edit.
    plan, obj = step(obj, JobView(JobPhase.MISSING), NOW + timedelta(seconds=100))
    plan, obj = step(obj, JobView(JobPhase.MISSING), NOW + timedelta(seconds=101))
    assert plan.create is not None and plan.create["metadata"]["name"] == "churn-profile-1-2"
    plan, obj = step(obj, ok(H1), NOW + timedelta(seconds=110))
    assert ready_cond(plan)["status"] == "True" and obj["status"]["failedReads"] == 0
    assert obj["status"]["nextReadTime"] is None


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert retry_delay(50).total_seconds() == 3600


def test_validation_failure_is_final_until_asked_or_edited() -> None:
    _, obj = step(dataset(), JobView(JobPhase.MISSING), NOW)
    plan, obj = step(obj, failed("ValidationFailed", "column 'y' is missing"), NOW)
    assert ready_cond(plan)["message"] == "column 'y' is missing" and obj["status"]["nextReadTime"] is None
    assert plan_dataset(obj, failed("ValidationFailed"), NOW + timedelta(days=1), SETTINGS).create is None
    obj["metadata"]["annotations"] = {C.ANNOTATION_REFRESH: "fixed"}
    plan, obj = step(obj, failed("ValidationFailed"), NOW + timedelta(days=1))
    assert plan.create is not None and ready_cond(plan)["reason"] == C.REASON_PROFILING


def test_failed_refresh_keeps_the_data_and_is_retried() -> None:
    obj = profiled({**URL_SPEC, "refresh": {"intervalSeconds": 3600}})
    plan, obj = step(obj, ok(H1), NOW + timedelta(hours=1))
    assert plan.create is not None
    plan, obj = step(obj, failed("SourceUnavailable"), NOW + timedelta(hours=1, seconds=5))
    assert ready_cond(plan)["status"] == "True" and obj["status"]["contentHash"] == H1
    assert plan.event is not None and plan.event.reason == C.REASON_REFRESH_FAILED
    assert obj["status"]["lastRefreshError"]["reason"] == "SourceUnavailable"
    # Retried after 30 s, not after the hour-long interval.
    plan, obj = step(obj, ok(H1), NOW + timedelta(hours=1, seconds=35))
    assert plan.create is not None and plan.create["metadata"]["name"] == "churn-profile-1-2"
    plan, obj = step(obj, ok(H2), NOW + timedelta(hours=1, seconds=60))
    assert obj["status"]["lastRefreshError"] is None and obj["status"]["contentHash"] == H2


def test_a_new_generation_starts_with_its_first_read() -> None:
    obj = profiled()
    obj["metadata"]["annotations"] = {C.ANNOTATION_REFRESH: "x"}
    _, obj = step(obj, ok(H1), NOW)
    assert current_read(obj) == 1
    obj["metadata"]["generation"] = 2
    assert current_read(obj) == 0  # the handler looks up the new generation's first Job
    plan, obj = step(obj, JobView(JobPhase.MISSING), NOW)
    assert plan.create is not None and plan.create["metadata"]["name"] == "churn-profile-2"
    assert obj["status"]["read"] == 0 and obj["status"]["refreshing"] is False


def test_interval_is_refused_for_sources_that_cannot_change() -> None:
    plan = plan_dataset(
        dataset({"source": {"builtin": "iris"}, "target": "target", "refresh": {"intervalSeconds": 60}}),
        JobView(JobPhase.MISSING),
        NOW,
        SETTINGS,
    )
    cond = ready_cond(plan)
    assert cond["reason"] == "InvalidSpec" and "url, s3 and sql sources only" in cond["message"]
    assert plan.create is None


# --- TrainingRuns on a Dataset whose contents move -------------------------------------


def training_run(policy: str | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "datasetRef": {"name": "churn"},
        "estimator": {"className": "sklearn.linear_model.LogisticRegression"},
    }
    if policy:
        spec["datasetPolicy"] = policy
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "churn-lr", "namespace": "ns", "uid": "tr", "generation": 1},
        "spec": spec,
        "status": status or {},
    }


def trained(content_hash: str) -> JobView:
    result = {
        "ok": True,
        "task": "classification",
        "metrics": {"accuracy": 0.9},
        "model": {"sha256": "f" * 64, "sizeBytes": 10, "datasetHash": content_hash},
    }
    return JobView(JobPhase.SUCCEEDED, result, annotations={C.ANNOTATION_DATASET_HASH: content_hash})


def run_step(
    obj: dict[str, Any], ds: dict[str, Any], job: JobView, at: datetime
) -> tuple[Plan, dict[str, Any]]:
    plan = plan_training_run(obj, ds, job, at, SETTINGS)
    return plan, dict(obj, status=plan.status)


def stale(plan: Plan) -> dict[str, Any] | None:
    return next((c for c in plan.status["conditions"] if c["type"] == C.STALE), None)


def refreshed(ds: dict[str, Any], content_hash: str, token: str) -> dict[str, Any]:
    ds = dict(ds, metadata={**ds["metadata"], "annotations": {C.ANNOTATION_REFRESH: token}})
    _, ds = step(ds, ok(H1), NOW)
    _, ds = step(ds, ok(content_hash), NOW + timedelta(minutes=1))
    return ds


def test_pinned_run_shows_that_it_is_stale() -> None:
    ds = profiled()
    plan, tr = run_step(training_run(), ds, JobView(JobPhase.MISSING), NOW)
    plan, tr = run_step(tr, ds, trained(H1), NOW)
    cond = stale(plan)
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", C.REASON_DATASET_CURRENT)
    ds = refreshed(ds, H2, "a")
    plan, tr = run_step(tr, ds, trained(H1), NOW + timedelta(minutes=2))
    cond = stale(plan)
    assert cond is not None and (cond["status"], cond["reason"]) == ("True", C.REASON_DATASET_CHANGED)
    assert H1[:12] in cond["message"] and H2[:12] in cond["message"]
    assert plan.create is None and tr["status"]["datasetCurrentHash"] == H2
    assert plan.event is not None and plan.event.reason == C.REASON_DATASET_CHANGED
    succeeded = next(c for c in plan.status["conditions"] if c["type"] == C.SUCCEEDED)
    assert succeeded["status"] == "True"  # the model is still good, only stale
    # Nothing moves on the next reconcile: no repeated Event.
    again = plan_training_run(tr, ds, trained(H1), NOW + timedelta(minutes=3), SETTINGS)
    assert not again.changed and again.event is None


def test_following_run_trains_again_on_new_contents_and_keeps_its_model_meanwhile() -> None:
    ds = profiled()
    _, tr = run_step(training_run("Follow"), ds, JobView(JobPhase.MISSING), NOW)
    _, tr = run_step(tr, ds, trained(H1), NOW)
    first_model = tr["status"]["model"]
    assert first_model["uri"].endswith("/models/ns/churn-lr/tr/1/model.joblib")
    # Unchanged data: nothing to do.
    assert plan_training_run(tr, ds, trained(H1), NOW, SETTINGS).create is None
    ds = refreshed(ds, H2, "a")
    plan, tr = run_step(tr, ds, trained(H1), NOW + timedelta(minutes=2))
    assert plan.create is not None and plan.create["metadata"]["name"] == "churn-lr-train-1-f1"
    assert plan.create["metadata"]["annotations"][C.ANNOTATION_DATASET_HASH] == H2
    args = plan.create["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--follow-round") + 1] == "1" and H2 in args
    assert plan.event is not None and plan.event.reason == C.REASON_FOLLOWING_DATASET
    assert tr["status"]["model"] == first_model and current_round(tr) == 1
    plan, tr = run_step(tr, ds, JobView(JobPhase.RUNNING), NOW + timedelta(minutes=3))
    assert plan.create is None
    plan, tr = run_step(tr, ds, trained(H2), NOW + timedelta(minutes=4))
    assert tr["status"]["model"]["uri"].endswith("/models/ns/churn-lr/tr/1-f1/model.joblib")
    assert tr["status"]["model"]["datasetHash"] == H2
    cond = stale(plan)
    assert cond is not None and cond["status"] == "False"
    # Settled on H2: no further retrain until the contents move again.
    assert plan_training_run(tr, ds, trained(H2), NOW + timedelta(minutes=5), SETTINGS).create is None


def test_follow_does_not_loop_when_the_new_data_fails_the_gate() -> None:
    ds = profiled()
    _, tr = run_step(training_run("Follow"), ds, JobView(JobPhase.MISSING), NOW)
    _, tr = run_step(tr, ds, trained(H1), NOW)
    ds = refreshed(ds, H2, "a")
    _, tr = run_step(tr, ds, trained(H1), NOW)
    gate = JobView(
        JobPhase.FAILED,
        {"ok": False, "reason": "QualityGateFailed", "message": "accuracy 0.5 < 0.9"},
        "PodFailurePolicy",
        "failed",
        annotations={C.ANNOTATION_DATASET_HASH: H2},
    )
    plan, tr = run_step(tr, ds, gate, NOW)
    assert (
        next(c for c in plan.status["conditions"] if c["type"] == C.SUCCEEDED)["reason"]
        == "QualityGateFailed"
    )
    assert plan_training_run(tr, ds, gate, NOW + timedelta(hours=1), SETTINGS).create is None
