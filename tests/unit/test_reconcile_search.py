"""A TrainingRun with spec.search: the Indexed Job, the per-index view, and the planner's
states Searching -> Refitting -> Trained (or SearchFailed / InvalidSpec)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mlkube_operator import constants as C
from mlkube_operator.reconcile.dataset import plan_dataset
from mlkube_operator.reconcile.jobs import JobPhase, JobView
from mlkube_operator.reconcile.search import COMPLETION_INDEX, search_job_name, view_search
from mlkube_operator.reconcile.trainingrun import plan_training_run, training_job_name
from mlkube_operator.settings import Settings
from mlkube_operator.training.search_contract import EXIT_TRIAL_FAILED, TrialResult

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SETTINGS = Settings()
HASH = "a" * 64

SEARCH = {
    "type": "Grid",
    "metric": "accuracy",
    "parallelism": 2,
    "cv": 3,
    "space": {"max_depth": {"values": [2, 4, -1]}, "n_estimators": {"values": [10, 20]}},
}
SPEC = {
    "datasetRef": {"name": "iris"},
    "estimator": {"className": "sklearn.ensemble.RandomForestClassifier", "params": {"random_state": 0}},
    "search": SEARCH,
}


def ready_dataset(content_hash: str = HASH) -> dict[str, Any]:
    obj = {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "iris", "namespace": "ns", "uid": "uid-ds", "generation": 1},
        "spec": {"source": {"builtin": "iris"}, "target": "target"},
    }
    profiled = {"ok": True, "rows": 150, "columns": 5, "contentHash": content_hash, "target": "target"}
    return {**obj, "status": plan_dataset(obj, JobView(JobPhase.SUCCEEDED, profiled), NOW, SETTINGS).status}


def run(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "iris-rf", "namespace": "ns", "uid": "uid-tr", "generation": 1},
        "spec": spec,
        "status": status or {},
    }


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def search_run(status: dict[str, Any] | None = None, **search: Any) -> dict[str, Any]:
    return run(spec={**SPEC, "search": {**SEARCH, **search}}, status=status)


def created_search_job() -> dict[str, Any]:
    plan = plan_training_run(search_run(), ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS)
    assert plan.create is not None
    return plan.create


def pod(index: int, code: int, result: TrialResult | dict[str, Any] | None, finished: str) -> dict[str, Any]:
    message = result.encode() if isinstance(result, TrialResult) else json.dumps(result) if result else ""
    return {
        "metadata": {"annotations": {COMPLETION_INDEX: str(index)}},
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": code, "message": message, "finishedAt": finished}}}
            ]
        },
    }


def ok(index: int, score: float, **params: Any) -> TrialResult:
    return TrialResult(ok=True, index=index, params=params, metric="accuracy", score=score)


def job(conditions: list[str], completed: str = "", failed: str = "", reason: str = "") -> dict[str, Any]:
    created = created_search_job()
    created["status"] = {
        "conditions": [{"type": t, "status": "True", "reason": reason, "message": "m"} for t in conditions],
        "completedIndexes": completed,
        "failedIndexes": failed,
    }
    return created


def finished_search_pods() -> list[dict[str, Any]]:
    bad = TrialResult(ok=False, index=4, params={"max_depth": -1, "n_estimators": 10}, reason="InvalidParameters",
                      message="The 'max_depth' parameter must be >= 1")  # fmt: skip
    return [
        pod(0, 0, ok(0, 0.90, max_depth=2, n_estimators=10), "2026-11-28T12:00:01Z"),
        pod(1, 0, ok(1, 0.95, max_depth=2, n_estimators=20), "2026-11-28T12:00:02Z"),
        pod(2, 1, {"ok": False, "reason": "TrialFailed", "message": "MemoryError: "}, "2026-11-28T12:00:03Z"),
        pod(2, 0, ok(2, 0.95, max_depth=4, n_estimators=10), "2026-11-28T12:00:04Z"),  # the retry won
        pod(3, 0, ok(3, 0.93, max_depth=4, n_estimators=20), "2026-11-28T12:00:05Z"),
        pod(4, EXIT_TRIAL_FAILED, bad, "2026-11-28T12:00:06Z"),
        pod(5, EXIT_TRIAL_FAILED, bad.model_copy(update={"index": 5}), "2026-11-28T12:00:07Z"),
    ]


class TestIndexedJob:
    def test_one_indexed_job_with_per_index_failure_handling(self) -> None:
        created = created_search_job()
        assert created["metadata"]["name"] == search_job_name("iris-rf", 1) == "iris-rf-search-1"
        spec = created["spec"]
        assert spec["completionMode"] == "Indexed"
        assert (spec["completions"], spec["parallelism"]) == (6, 2)
        assert spec["backoffLimitPerIndex"] == 1 and "backoffLimit" not in spec
        rules = {
            r["action"]: r["onExitCodes"]["values"]
            for r in spec["podFailurePolicy"]["rules"]
            if "onExitCodes" in r
        }
        assert rules == {"FailJob": [C.EXIT_PERMANENT], "FailIndex": [EXIT_TRIAL_FAILED]}
        container = spec["template"]["spec"]["containers"][0]
        assert container["args"][0] == "trial" and "--index" not in container["args"]
        args = dict(zip(container["args"][1::2], container["args"][2::2], strict=False))
        assert args["--dataset-hash"] == HASH and json.loads(args["--spec-json"])["search"]["cv"] == 3
        assert spec["template"]["spec"]["restartPolicy"] == "Never"
        assert created["metadata"]["annotations"][C.ANNOTATION_DATASET_HASH] == HASH
        assert created["metadata"]["labels"][C.LABEL_COMPONENT] == "search-trial"
        assert created["metadata"]["ownerReferences"][0]["uid"] == "uid-tr"

    def test_parallelism_never_exceeds_trials(self) -> None:
        plan = plan_training_run(
            search_run(trials=1, parallelism=8), ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS
        )
        assert plan.create is not None and plan.create["spec"]["parallelism"] == 1


class TestView:
    def test_results_per_index_success_wins_over_an_earlier_crash(self) -> None:
        view = view_search(job(["Failed"], "0-3", "4-5", "FailedIndexes"), finished_search_pods())
        assert view.phase is JobPhase.FAILED and (view.completed, view.failed) == (4, 2)
        assert sorted(view.results) == [0, 1, 2, 3, 4, 5]
        assert view.results[2].ok and view.results[2].score == 0.95
        assert not view.results[4].ok and view.results[4].reason == "InvalidParameters"
        assert view.shared_failure() is None

    def test_a_message_that_is_not_a_trial_result(self) -> None:
        view = view_search(
            job(["Failed"]), [pod(0, 1, {"ok": False, "reason": "TrialFailed", "message": "boom"}, "t")]
        )
        assert view.results[0].reason == "TrialFailed" and view.results[0].message == "boom"
        view = view_search(job(["Failed"]), [pod(1, 137, None, "t")])
        assert not view.results[1].ok and "exited 137" in (view.results[1].message or "")

    def test_missing_and_running(self) -> None:
        assert view_search(None, []).phase is JobPhase.MISSING
        assert view_search(job([], "0"), []).phase is JobPhase.RUNNING


class TestPlanner:
    def test_waits_for_the_dataset_without_a_job(self) -> None:
        plan = plan_training_run(search_run(), None, JobView(JobPhase.MISSING), NOW, SETTINGS)
        assert plan.create is None
        assert cond(plan.status, C.SUCCEEDED)["reason"] == C.REASON_DATASET_NOT_READY

    def test_searching_then_progress_with_the_best_so_far(self) -> None:
        plan = plan_training_run(search_run(), ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS)
        c = cond(plan.status, C.SUCCEEDED)
        assert (c["status"], c["reason"]) == ("Unknown", C.REASON_SEARCHING)
        assert "6 grid trial(s), 2 at a time" in c["message"]
        running = view_search(job([], "0-1"), finished_search_pods()[:2])
        plan = plan_training_run(
            search_run(status=plan.status), ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS, running
        )
        assert plan.create is None
        c = cond(plan.status, C.SUCCEEDED)
        assert c["reason"] == C.REASON_SEARCHING and "2 of 6 trial(s) done" in c["message"]
        assert "best so far accuracy=0.95 (trial 1)" in c["message"]
        assert plan.status["search"]["bestIndex"] == 1 and plan.status["search"]["succeeded"] == 2

    def test_failed_trials_fail_alone_and_the_best_is_refitted(self) -> None:
        view = view_search(job(["Failed"], "0-3", "4-5", "FailedIndexes"), finished_search_pods())
        plan = plan_training_run(
            search_run(), ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS, view
        )
        c = cond(plan.status, C.SUCCEEDED)
        assert (c["status"], c["reason"]) == ("Unknown", C.REASON_REFITTING)
        assert "trial 1, accuracy=0.95" in c["message"]  # ties go to the lower index, as in scikit-learn
        refit = plan.create
        assert refit is not None and refit["metadata"]["name"] == training_job_name("iris-rf", 1)
        args = refit["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[0] == "train" and "completionMode" not in refit["spec"]
        spec = json.loads(args[args.index("--spec-json") + 1])
        assert spec["estimator"]["params"] == {"random_state": 0, "max_depth": 2, "n_estimators": 20}
        assert args[args.index("--dataset-hash") + 1] == HASH and args[args.index("--target") + 1] == "target"
        summary = plan.status["search"]
        assert (summary["trials"], summary["succeeded"], summary["failed"]) == (6, 4, 2)
        assert json.loads(summary["bestParams"]) == {"max_depth": 2, "n_estimators": 20}
        assert summary["bestScore"] == 0.95
        assert [t["index"] for t in summary["top"]] == [1, 2, 3, 0]
        assert [f["index"] for f in summary["failures"]] == [4, 5]
        assert summary["trialsUri"].endswith("/models/ns/iris-rf/uid-tr/1/search/trials.json")

    def test_refit_running_then_trained_keeps_the_summary(self) -> None:
        view = view_search(job(["Failed"], "0-3", "4-5", "FailedIndexes"), finished_search_pods())
        plan = plan_training_run(
            search_run(), ready_dataset(), JobView(JobPhase.RUNNING), NOW, SETTINGS, view
        )
        assert cond(plan.status, C.SUCCEEDED)["reason"] == C.REASON_REFITTING and plan.create is None
        result = {
            "ok": True, "task": "classification", "metrics": {"accuracy": 0.97},
            "model": {"sha256": "b" * 64, "sizeBytes": 10, "datasetHash": HASH},
        }  # fmt: skip
        done = JobView(JobPhase.SUCCEEDED, result, annotations={C.ANNOTATION_DATASET_HASH: HASH})
        plan = plan_training_run(search_run(status=plan.status), None, done, NOW, SETTINGS, view)
        c = cond(plan.status, C.SUCCEEDED)
        assert (c["status"], c["reason"]) == ("True", C.REASON_TRAINED)
        assert "best of 6 trials: trial 1" in c["message"]
        assert plan.status["model"]["sha256"] == "b" * 64 and plan.status["metrics"] == {"accuracy": 0.97}
        assert plan.status["search"]["bestIndex"] == 1 and plan.status["search"]["trialsCsvUri"].endswith(
            ".csv"
        )

    def test_no_trial_scored_is_search_failed(self) -> None:
        pods = finished_search_pods()[5:]
        view = view_search(job(["Failed"], "", "0-5", "FailedIndexes"), pods)
        plan = plan_training_run(
            search_run(), ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS, view
        )
        c = cond(plan.status, C.SUCCEEDED)
        assert (c["status"], c["reason"]) == ("False", C.REASON_SEARCH_FAILED) and plan.create is None
        assert "trial 4: InvalidParameters" in c["message"]

    def test_a_shared_failure_stops_the_search_as_invalid_spec(self) -> None:
        bad = {
            "ok": False, "index": 0, "reason": "InvalidSpec",
            "message": "spec.search.space.max_dept: RandomForestClassifier has no parameter 'max_dept'",
        }  # fmt: skip
        view = view_search(job(["Failed"], reason="PodFailurePolicy"), [pod(0, C.EXIT_PERMANENT, bad, "t")])
        plan = plan_training_run(
            search_run(), ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS, view
        )
        c = cond(plan.status, C.SUCCEEDED)
        assert (c["status"], c["reason"]) == ("False", C.REASON_INVALID_SPEC) and plan.create is None
        assert "spec.search.space.max_dept" in c["message"]

    def test_invalid_search_spec_creates_nothing(self) -> None:
        plan = plan_training_run(
            search_run(trials=7), ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS
        )
        c = cond(plan.status, C.SUCCEEDED)
        assert (c["status"], c["reason"]) == ("False", C.REASON_INVALID_SPEC) and plan.create is None
        assert c["message"].startswith("spec.search.trials:") and "6 combination" in c["message"]


class TestFollow:
    """datasetPolicy Follow with a search: new Dataset contents start a new search round."""

    def trained_run(self) -> dict[str, Any]:
        obj = run({**SPEC, "datasetPolicy": "Follow"})
        view = view_search(job(["Failed"], "0-3", "4-5", "FailedIndexes"), finished_search_pods())
        plan = plan_training_run(obj, ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS, view)
        result = {
            "ok": True, "task": "classification", "metrics": {"accuracy": 0.97},
            "model": {"sha256": "b" * 64, "sizeBytes": 10, "datasetHash": HASH},
        }  # fmt: skip
        done = JobView(JobPhase.SUCCEEDED, result, annotations={C.ANNOTATION_DATASET_HASH: HASH})
        plan = plan_training_run({**obj, "status": plan.status}, ready_dataset(), done, NOW, SETTINGS, view)
        assert cond(plan.status, C.SUCCEEDED)["status"] == "True"
        return {**obj, "status": plan.status}

    def test_new_contents_search_again_then_refit_into_the_rounds_model(self) -> None:
        trained = self.trained_run()
        first_model = trained["status"]["model"]
        new_hash = "c" * 64
        # Unchanged contents: nothing happens.
        assert (
            plan_training_run(trained, ready_dataset(), JobView(JobPhase.MISSING), NOW, SETTINGS).create
            is None
        )

        plan = plan_training_run(trained, ready_dataset(new_hash), JobView(JobPhase.MISSING), NOW, SETTINGS)
        search_job = plan.create
        assert search_job is not None and search_job["metadata"]["name"] == "iris-rf-search-1-f1"
        assert search_job["spec"]["completionMode"] == "Indexed"
        args = search_job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[0] == "trial" and args[args.index("--follow-round") + 1] == "1"
        assert args[args.index("--dataset-hash") + 1] == new_hash
        c = cond(plan.status, C.SUCCEEDED)
        assert (c["status"], c["reason"]) == ("Unknown", C.REASON_SEARCHING) and "searching again" in c[
            "message"
        ]
        assert plan.event is not None and plan.event.reason == C.REASON_FOLLOWING_DATASET
        assert plan.status["followRound"] == 1 and plan.status.get("search") is None
        assert plan.status["model"] == first_model  # served until the new one is trained
        searching = {**trained, "status": plan.status}

        # The round's search finishes: the best is refitted into the round's own Job and directory.
        done = search_job | {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedIndexes"}],
                                        "completedIndexes": "0-3", "failedIndexes": "4-5"}}  # fmt: skip
        view = view_search(done, finished_search_pods())
        plan = plan_training_run(
            searching, ready_dataset(new_hash), JobView(JobPhase.MISSING), NOW, SETTINGS, view
        )
        refit = plan.create
        assert refit is not None and refit["metadata"]["name"] == training_job_name("iris-rf", 1, 1)
        args = refit["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[0] == "train" and args[args.index("--follow-round") + 1] == "1"
        assert args[args.index("--dataset-hash") + 1] == new_hash
        assert plan.status["search"]["trialsUri"].endswith(
            "/models/ns/iris-rf/uid-tr/1-f1/search/trials.json"
        )

        result = {
            "ok": True, "task": "classification", "metrics": {"accuracy": 0.99},
            "model": {"sha256": "d" * 64, "sizeBytes": 10, "datasetHash": new_hash},
        }  # fmt: skip
        refitted = JobView(JobPhase.SUCCEEDED, result, annotations={C.ANNOTATION_DATASET_HASH: new_hash})
        plan = plan_training_run(
            {**searching, "status": plan.status}, ready_dataset(new_hash), refitted, NOW, SETTINGS, view
        )
        assert cond(plan.status, C.SUCCEEDED)["reason"] == C.REASON_TRAINED
        assert plan.status["model"]["uri"].endswith("/models/ns/iris-rf/uid-tr/1-f1/model.joblib")
        assert plan.status["model"]["datasetHash"] == new_hash
