"""The pure planners: same observations, same plan; each branch of the lifecycle."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlkube_operator import constants as C
from mlkube_operator.reconcile.dataset import plan_dataset, profile_job_name
from mlkube_operator.reconcile.jobs import JobPhase, JobView, parse_termination_message, view_job
from mlkube_operator.reconcile.naming import child_name
from mlkube_operator.reconcile.trainingrun import plan_training_run, training_job_name
from mlkube_operator.settings import Settings

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SETTINGS = Settings()
HASH = "a" * 64


def dataset(
    generation: int = 1, spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "iris", "namespace": "ns", "uid": "uid-ds", "generation": generation},
        "spec": spec if spec is not None else {"source": {"builtin": "iris"}, "target": "target"},
        "status": status or {},
    }


def run(
    generation: int = 1, spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "iris-rf", "namespace": "ns", "uid": "uid-tr", "generation": generation},
        "spec": spec
        if spec is not None
        else {
            "datasetRef": {"name": "iris"},
            "estimator": {"className": "sklearn.linear_model.LogisticRegression"},
        },
        "status": status or {},
    }


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


PROFILE_OK = {
    "ok": True,
    "rows": 150,
    "columns": 5,
    "contentHash": HASH,
    "target": "target",
    "features": ["a", "b", "c", "d"],
    "schema": [{"name": "a", "dtype": "numeric"}],
}


def ready_dataset() -> dict[str, Any]:
    plan = plan_dataset(dataset(), JobView(JobPhase.SUCCEEDED, PROFILE_OK), NOW, SETTINGS)
    return dataset(status=plan.status)


class TestDataset:
    def test_invalid_spec_creates_nothing_and_names_the_field(self) -> None:
        plan = plan_dataset(
            dataset(spec={"source": {}, "target": "t"}), JobView(JobPhase.MISSING), NOW, SETTINGS
        )
        assert plan.create is None
        ready = cond(plan.status, C.READY)
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert ready["message"].startswith("spec.source:")
        assert plan.status["observedGeneration"] == 1
        assert plan.event is not None and plan.event.type == "Warning"

    def test_missing_job_is_created_with_conventions(self) -> None:
        plan = plan_dataset(dataset(generation=3), JobView(JobPhase.MISSING), NOW, SETTINGS)
        assert plan.create is not None
        job = plan.create
        assert job["metadata"]["name"] == profile_job_name("iris", 3) == "iris-profile-3"
        owner = job["metadata"]["ownerReferences"][0]
        assert owner["uid"] == "uid-ds" and owner["controller"] is True and owner["kind"] == "Dataset"
        labels = job["metadata"]["labels"]
        for key in (C.LABEL_NAME, C.LABEL_INSTANCE, C.LABEL_COMPONENT, C.LABEL_PART_OF, C.LABEL_MANAGED_BY):
            assert key in labels
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
        container = pod["containers"][0]
        assert container["image"] == SETTINGS.trainer_image
        assert container["args"][0] == "profile"
        spec_json = json.loads(container["args"][container["args"].index("--spec-json") + 1])
        assert spec_json["source"] == {"builtin": "iris"} and spec_json["profile"] == {"bins": 10}
        rule = job["spec"]["podFailurePolicy"]["rules"][0]
        assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [C.EXIT_PERMANENT]
        assert cond(plan.status, C.READY)["reason"] == "Profiling"

    def test_configmap_source_mounts_the_configmap(self) -> None:
        spec = {"source": {"configMap": {"name": "csv", "key": "data.csv"}}, "target": "y"}
        plan = plan_dataset(dataset(spec=spec), JobView(JobPhase.MISSING), NOW, SETTINGS)
        assert plan.create is not None
        pod = plan.create["spec"]["template"]["spec"]
        assert {"name": "source", "configMap": {"name": "csv"}} in pod["volumes"]
        assert "--configmap-dir" in pod["containers"][0]["args"]

    def test_running_twice_is_a_no_op(self) -> None:
        first = plan_dataset(dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS)
        again = plan_dataset(
            dataset(status=first.status), JobView(JobPhase.RUNNING), NOW + timedelta(seconds=5), SETTINGS
        )
        assert again.create is None and not again.changed and again.event is None

    def test_success_fills_status_with_derived_uris(self) -> None:
        plan = plan_dataset(dataset(), JobView(JobPhase.SUCCEEDED, PROFILE_OK), NOW, SETTINGS)
        s = plan.status
        assert cond(s, C.READY)["status"] == "True" and cond(s, C.READY)["reason"] == "Profiled"
        assert (s["rows"], s["columns"], s["contentHash"]) == (150, 5, HASH)
        assert s["profileUri"] == f"file://{C.ARTIFACT_MOUNT}/datasets/ns/iris/{HASH}/profile.json"
        assert s["schema"] == [{"name": "a", "dtype": "numeric"}]

    def test_settled_generation_is_not_profiled_again(self) -> None:
        done = ready_dataset()
        plan = plan_dataset(done, JobView(JobPhase.MISSING), NOW, SETTINGS)
        assert plan.create is None and not plan.changed

    def test_new_generation_profiles_under_a_new_name(self) -> None:
        done = ready_dataset()
        done["metadata"]["generation"] = 2
        plan = plan_dataset(done, JobView(JobPhase.MISSING), NOW, SETTINGS)
        assert plan.create is not None and plan.create["metadata"]["name"] == "iris-profile-2"

    @pytest.mark.parametrize("reason", ["ValidationFailed", "SourceUnavailable"])
    def test_permanent_failure_reason_from_the_job(self, reason: str) -> None:
        result = {"ok": False, "reason": reason, "message": "column 'x': 3 of 10 missing"}
        plan = plan_dataset(
            dataset(), JobView(JobPhase.FAILED, result, "PodFailurePolicy", "failed"), NOW, SETTINGS
        )
        ready = cond(plan.status, C.READY)
        assert (ready["status"], ready["reason"]) == ("False", reason)
        # An unavailable source is read again with backoff; bad data waits for a change.
        retry = "; reading again at 2026-11-28T12:00:30+00:00" if reason == "SourceUnavailable" else ""
        assert ready["message"] == result["message"] + retry

    def test_crash_without_result_is_profiling_failed(self) -> None:
        view = JobView(
            JobPhase.FAILED, None, "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        )
        plan = plan_dataset(dataset(), view, NOW, SETTINGS)
        ready = cond(plan.status, C.READY)
        assert ready["reason"] == "ProfilingFailed" and "backoff limit" in ready["message"]

    def test_transition_time_moves_only_on_status_change(self) -> None:
        first = plan_dataset(dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS)
        later = NOW + timedelta(minutes=1)
        second = plan_dataset(
            dataset(status=first.status), JobView(JobPhase.RUNNING, failed_pods=1), later, SETTINGS
        )
        assert (
            cond(second.status, C.READY)["lastTransitionTime"]
            == cond(first.status, C.READY)["lastTransitionTime"]
        )
        assert "retrying" in cond(second.status, C.READY)["message"]
        third = plan_dataset(
            dataset(status=second.status), JobView(JobPhase.SUCCEEDED, PROFILE_OK), later, SETTINGS
        )
        assert (
            cond(third.status, C.READY)["lastTransitionTime"]
            != cond(first.status, C.READY)["lastTransitionTime"]
        )


class TestTrainingRun:
    def test_waits_for_a_missing_dataset(self) -> None:
        plan = plan_training_run(run(), None, JobView(JobPhase.MISSING), NOW, SETTINGS)
        c = cond(plan.status, C.SUCCEEDED)
        assert plan.create is None and (c["status"], c["reason"]) == ("Unknown", "DatasetNotReady")
        assert "iris does not exist" in c["message"]

    def test_waits_for_a_profiling_dataset(self) -> None:
        profiling = dataset(status=plan_dataset(dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS).status)
        plan = plan_training_run(run(), profiling, JobView(JobPhase.MISSING), NOW, SETTINGS)
        assert plan.create is None and "Profiling" in cond(plan.status, C.SUCCEEDED)["message"]

    def test_creates_the_job_pinned_to_the_dataset_hash(self) -> None:
        plan = plan_training_run(run(generation=2), ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS)
        assert plan.create is not None
        assert plan.create["metadata"]["name"] == training_job_name("iris-rf", 2) == "iris-rf-train-2"
        args = plan.create["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--dataset-hash") + 1] == HASH
        assert args[args.index("--data-uri") + 1] == f"{C.ARTIFACT_MOUNT}/datasets/ns/iris/{HASH}/data.csv"
        assert args[args.index("--generation") + 1] == "2"
        assert plan.status["datasetHash"] == HASH
        assert cond(plan.status, C.SUCCEEDED)["reason"] == "Training"

    def test_non_sklearn_estimator_is_refused_without_a_job(self) -> None:
        spec = {"datasetRef": {"name": "iris"}, "estimator": {"className": "os.system"}}
        plan = plan_training_run(run(spec=spec), ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS)
        c = cond(plan.status, C.SUCCEEDED)
        assert (
            plan.create is None
            and c["reason"] == "InvalidSpec"
            and "spec.estimator.className" in c["message"]
        )

    def test_success_records_the_model(self) -> None:
        result = {
            "ok": True,
            "task": "classification",
            "metrics": {"accuracy": 0.97},
            "model": {"sha256": "b" * 64, "sizeBytes": 1234, "datasetHash": HASH},
        }
        view = JobView(
            JobPhase.SUCCEEDED,
            result,
            start_time="2026-11-28T11:59:00Z",
            completion_time="2026-11-28T12:00:00Z",
        )
        plan = plan_training_run(run(), None, view, NOW, SETTINGS)
        s = plan.status
        assert cond(s, C.SUCCEEDED)["status"] == "True"
        assert s["metrics"] == {"accuracy": 0.97}
        assert s["model"]["sha256"] == "b" * 64 and s["model"]["datasetHash"] == HASH
        assert s["model"]["uri"] == f"file://{C.ARTIFACT_MOUNT}/models/ns/iris-rf/uid-tr/1/model.joblib"
        assert s["startTime"].startswith("2026-11-28T11:59") and s["completionTime"].startswith(
            "2026-11-28T12:00"
        )

    @pytest.mark.parametrize(
        ("job_reason", "expected"),
        [
            ("QualityGateFailed", "QualityGateFailed"),
            ("InvalidEstimator", "InvalidSpec"),
            ("InvalidParameters", "InvalidSpec"),
            ("TrainingFailed", "TrainingFailed"),
        ],
    )
    def test_failures_map_to_documented_reasons(self, job_reason: str, expected: str) -> None:
        result = {
            "ok": False,
            "reason": job_reason,
            "message": "accuracy 0.5 < 0.9",
            "metrics": {"accuracy": 0.5},
        }
        plan = plan_training_run(
            run(), None, JobView(JobPhase.FAILED, result, "PodFailurePolicy", "x"), NOW, SETTINGS
        )
        c = cond(plan.status, C.SUCCEEDED)
        assert (c["status"], c["reason"]) == ("False", expected)
        assert "accuracy 0.5 < 0.9" in c["message"]
        assert plan.status["metrics"] == {"accuracy": 0.5}

    def test_a_missed_quality_gate_never_becomes_status_model(self) -> None:
        """The Job's QualityGateFailed result carries the model it wrote (training.md); status
        must not point at it: absent on a first run, the last passing model afterwards."""
        rejected = {
            "ok": False,
            "reason": "QualityGateFailed",
            "message": "quality gate not met: accuracy 0.5 is below the minimum 0.9",
            "metrics": {"accuracy": 0.5},
            "model": {"uri": "file:///x/model.joblib", "sha256": "d" * 64, "sizeBytes": 10},
        }
        failed = JobView(JobPhase.FAILED, rejected, "PodFailurePolicy", "x")
        plan = plan_training_run(run(), None, failed, NOW, SETTINGS)
        assert cond(plan.status, C.SUCCEEDED)["reason"] == "QualityGateFailed"
        assert plan.status.get("model") is None
        passed = {"ok": True, "metrics": {"accuracy": 0.95}, "model": {"sha256": "c" * 64}}
        first = plan_training_run(run(), None, JobView(JobPhase.SUCCEEDED, passed), NOW, SETTINGS)
        plan = plan_training_run(
            run(generation=2, status=first.status), ready_dataset(), failed, NOW, SETTINGS
        )
        assert cond(plan.status, C.SUCCEEDED)["reason"] == "QualityGateFailed"
        assert plan.status["model"]["sha256"] == "c" * 64
        assert plan.status["metrics"] == {"accuracy": 0.5}

    def test_new_generation_keeps_the_previous_model_until_it_lands(self) -> None:
        result = {"ok": True, "metrics": {"accuracy": 0.9}, "model": {"sha256": "c" * 64}}
        first = plan_training_run(run(), None, JobView(JobPhase.SUCCEEDED, result), NOW, SETTINGS)
        second = run(generation=2, status=first.status)
        plan = plan_training_run(second, ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS)
        assert plan.create is not None
        assert plan.status["model"]["sha256"] == "c" * 64
        assert cond(plan.status, C.SUCCEEDED)["status"] == "Unknown"


def _pod(exit_code: int, message: str, finished: str) -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "message": message, "finishedAt": finished, "reason": "Error"}
    return {"status": {"containerStatuses": [{"state": {"terminated": terminated}}]}}


def test_view_job_reads_the_latest_failed_pod() -> None:
    job = {
        "status": {
            "failed": 2,
            "conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}
            ],
        }
    }
    pods = [
        _pod(1, '{"ok": false, "reason": "TrainingFailed", "message": "first"}', "2026-01-01T00:00:01Z"),
        _pod(
            1,
            'log line\n{"ok": false, "reason": "TrainingFailed", "message": "second"}',
            "2026-01-01T00:00:09Z",
        ),
    ]
    view = view_job(job, pods)
    assert view.phase is JobPhase.FAILED and view.result is not None and view.result["message"] == "second"
    assert view.failure_reason == "BackoffLimitExceeded" and view.failed_pods == 2


def test_view_job_without_json_keeps_the_log_tail() -> None:
    job = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}
    view = view_job(job, [_pod(137, "Killed: out of memory", "2026-01-01T00:00:01Z")])
    assert view.result is None and "out of memory" in view.failure_message and "137" in view.failure_message


def test_termination_message_parsing() -> None:
    assert parse_termination_message(None) is None
    assert parse_termination_message("not json") is None
    assert parse_termination_message('x\n{"ok": true}\n') == {"ok": True}


def test_child_names_are_bounded_and_deterministic() -> None:
    long = "a" * 80
    name = child_name(long, "train-12")
    assert len(name) <= 63 and name.endswith("-train-12") and name == child_name(long, "train-12")
    assert child_name(long, "train-12") != child_name("b" * 80, "train-12")


def test_dataset_hash_comes_from_the_job_even_with_a_stale_status() -> None:
    created = plan_training_run(run(), ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS)
    assert created.create is not None
    annotations = created.create["metadata"]["annotations"]
    assert annotations[C.ANNOTATION_DATASET_HASH] == HASH
    stale = plan_training_run(run(), None, JobView(JobPhase.RUNNING, annotations=annotations), NOW, SETTINGS)
    assert stale.status["datasetHash"] == HASH


def test_a_job_whose_pod_cannot_pull_its_image_says_so_in_the_condition() -> None:
    from mlkube_operator.reconcile.dataset import plan_dataset
    from mlkube_operator.reconcile.jobs import view_job

    obj = {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d", "namespace": "n", "uid": "u", "generation": 1},
        "spec": {"source": {"builtin": "iris"}, "target": "target"},
    }
    pod = {
        "metadata": {"name": "d-profile-1-abc"},
        "status": {
            "containerStatuses": [
                {
                    "image": "registry.example/mlkube-trainer:typo",
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
                }
            ]
        },
    }
    view = view_job({"metadata": {"name": "d-profile-1"}, "status": {"active": 1}}, [pod])
    plan = plan_dataset(obj, view, datetime.now(UTC), Settings())
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ImageUnavailable"
    assert (
        "registry.example/mlkube-trainer:typo" in ready["message"] and "ImagePullBackOff" in ready["message"]
    )
    assert plan.event is not None and (plan.event.type, plan.event.reason) == ("Warning", "ImageUnavailable")
