"""The ModelDeployment planner: what it serves, when it is Ready, what a new model does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mlkube_operator import constants as C
from mlkube_operator.api.modeldeployment import Analysis, AnalysisValues, Verdict
from mlkube_operator.reconcile.modeldeployment import (
    TEMPLATE_HASH,
    Judgement,
    Observed,
    ServingPlan,
)
from mlkube_operator.reconcile.modeldeployment import plan_model_deployment as _plan
from mlkube_operator.settings import Settings

NOW = datetime(2026, 11, 28, tzinfo=UTC)
B = "b" * 64
S = Settings()


def plan_model_deployment(
    obj: dict[str, Any],
    run: dict[str, Any] | None,
    stable: dict[str, Any] | None,
    now: datetime,
    settings: Settings,
    retrained: dict[str, Any] | None = None,
    canary: dict[str, Any] | None = None,
    judgement: Judgement | None = None,
) -> ServingPlan:
    return _plan(obj, Observed(run, retrained, stable, canary), now, settings, judgement)


def healthy(sha: str, now: datetime) -> Judgement:
    return Judgement(sha, Analysis(time=now, verdict=Verdict.HEALTHY, values=AnalysisValues(samples=500)))


def md(strategy: str = "Rolling", status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ns", "uid": "uid-md", "generation": 1},
        "spec": {
            "model": {"trainingRunRef": {"name": "iris-rf"}},
            "replicas": 2,
            "strategy": {"type": strategy, "steps": [{"weight": 50}]},
        },
        "status": status or {},
    }


def run(sha: str = "a" * 64, succeeded: bool = True) -> dict[str, Any]:
    model = {
        "uri": f"file://{C.ARTIFACT_MOUNT}/models/ns/iris-rf/u/1/model.joblib",
        "sha256": sha,
        "datasetHash": "d" * 64,
    }
    return {
        "metadata": {"name": "iris-rf", "namespace": "ns", "generation": 1},
        "spec": {"datasetRef": {"name": "iris"}},
        "status": {
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "True" if succeeded else "Unknown",
                    "reason": "Trained",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
            "model": model,
        },
    }


def live(desired: dict[str, Any], ready: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1, "annotations": desired["metadata"]["annotations"]},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_without_a_model_nothing_is_created() -> None:
    plan = plan_model_deployment(md(), None, None, NOW, S)
    assert plan.deployment is None and plan.service is None
    ready = cond(plan.status, C.READY)
    assert (ready["status"], ready["reason"]) == ("False", "ModelNotReady")


def test_predictor_pins_the_model_digest_and_binds_the_pod_ip() -> None:
    plan = plan_model_deployment(md(), run(), None, NOW, S)
    dep = plan.deployment
    assert dep is not None and plan.service is not None
    pod = dep["spec"]["template"]
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--model-sha256") + 1] == "a" * 64
    assert args[args.index("--model-uri") + 1].startswith(C.ARTIFACT_MOUNT)
    assert (
        args[args.index("--reference-profile") + 1]
        == f"{C.ARTIFACT_MOUNT}/datasets/ns/iris/{'d' * 64}/profile.json"
    )
    env = pod["spec"]["containers"][0]["env"][0]
    assert env == {"name": "MLKUBE_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert pod["metadata"]["annotations"][C.ANNOTATION_MODEL_SHA] == "a" * 64
    # The Service selects both tracks (stable and canary); each Deployment only its own.
    assert plan.service["spec"]["selector"].items() < dep["spec"]["selector"]["matchLabels"].items()
    assert dep["spec"]["selector"]["matchLabels"][C.LABEL_TRACK] == "stable"
    assert C.LABEL_MODEL_SHA not in dep["spec"]["selector"]["matchLabels"]  # selectors use stable labels only
    assert cond(plan.status, C.READY)["reason"] == "RollingOut"


def test_ready_once_rolled_out_then_a_new_model_rolls_again() -> None:
    first = plan_model_deployment(md(), run(), None, NOW, S)
    assert first.deployment is not None
    done = plan_model_deployment(md(status=first.status), run(), live(first.deployment, 2), NOW, S)
    assert (
        cond(done.status, C.READY)["status"] == "True" and done.status["currentModel"]["sha256"] == "a" * 64
    )
    assert done.status["readyReplicas"] == 2
    newer = plan_model_deployment(md(status=done.status), run("b" * 64), live(first.deployment, 2), NOW, S)
    assert newer.deployment is not None
    assert (
        newer.deployment["metadata"]["annotations"][TEMPLATE_HASH]
        != first.deployment["metadata"]["annotations"][TEMPLATE_HASH]
    )
    assert newer.status["candidateModel"]["sha256"] == "b" * 64
    assert newer.status["currentModel"]["sha256"] == "a" * 64
    assert cond(newer.status, C.READY)["status"] == "True"  # still serving the old model meanwhile
    assert cond(newer.status, C.PROGRESSING)["status"] == "True"
    landed = plan_model_deployment(md(status=newer.status), run("b" * 64), live(newer.deployment, 2), NOW, S)
    assert landed.status["currentModel"]["sha256"] == "b" * 64
    assert landed.status["previousModel"]["sha256"] == "a" * 64
    assert landed.status["candidateModel"] is None


def test_canary_steps_then_promotes() -> None:
    # Serving model A on 2 replicas; the TrainingRun now offers B; steps 50 % then (implicitly) 100 %.
    obj = md(strategy="Canary")
    obj["spec"]["strategy"]["steps"] = [{"weight": 50, "pauseSeconds": 30}]
    first = plan_model_deployment(md(), run(), None, NOW, S)
    assert first.deployment is not None
    serving_a = plan_model_deployment(
        md(status=first.status), run(), live(first.deployment, 2), NOW, S
    ).status
    stable_a = live(first.deployment, 2)

    obj["status"] = serving_a
    start = plan_model_deployment(obj, run("b" * 64), stable_a, NOW, S)
    assert start.canary is not None and start.deployment is not None
    assert start.canary["metadata"]["name"] == "iris-canary" and start.canary["spec"]["replicas"] == 1
    assert start.deployment["spec"]["replicas"] == 1  # stable keeps serving A on the rest
    stable_args = start.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert stable_args[stable_args.index("--model-sha256") + 1] == "a" * 64
    assert start.status["canary"]["weight"] == 50 and start.status["candidateModel"]["sha256"] == "b" * 64
    assert start.status["currentModel"]["sha256"] == "a" * 64
    assert cond(start.status, C.PROGRESSING)["reason"] == "Canary"
    assert "Canary" in {e.reason for e in start.events}

    # Pods ready but the pause not over: stay. After the pause: promote (stable -> B on 2).
    obj["status"] = start.status
    canary_live = live(start.canary, 1) | {
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        }
    }
    stable_live = live(start.deployment, 1) | {
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        }
    }
    at10, at31 = NOW + timedelta(seconds=10), NOW + timedelta(seconds=31)
    waiting = plan_model_deployment(
        obj, run("b" * 64), stable_live, at10, S, None, canary_live, healthy(B, at10)
    )
    assert waiting.status["canary"]["step"] == 0
    # The pause is over but no verdict came with this reconcile: the step holds.
    holding = plan_model_deployment(obj, run("b" * 64), stable_live, at31, S, None, canary_live)
    assert holding.status["canary"]["step"] == 0 and holding.status["state"] == "Canary"
    promoting = plan_model_deployment(
        obj, run("b" * 64), stable_live, at31, S, None, canary_live, healthy(B, at31)
    )
    assert promoting.status["canary"]["step"] == 1  # past the last step: promoting
    assert promoting.status["state"] == "Promoting"
    obj["status"] = promoting.status
    promote = plan_model_deployment(
        obj, run("b" * 64), stable_live, NOW + timedelta(seconds=32), S, None, canary_live
    )
    assert promote.deployment is not None and promote.deployment["spec"]["replicas"] == 2
    args = promote.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model-sha256") + 1] == "b" * 64  # stable rolls to B, the canary stays meanwhile
    assert promote.canary is not None and not promote.delete_canary
    obj["status"] = promote.status
    done = plan_model_deployment(
        obj, run("b" * 64), live(promote.deployment, 2), NOW + timedelta(seconds=40), S, None, canary_live
    )
    assert done.delete_canary and done.canary is None
    assert (
        done.status["currentModel"]["sha256"] == "b" * 64
        and done.status["previousModel"]["sha256"] == "a" * 64
    )
    assert done.status["canary"] is None and "CanaryPromoted" in {e.reason for e in done.events}


def test_losing_the_training_run_keeps_serving() -> None:
    first = plan_model_deployment(md(), run(), None, NOW, S)
    assert first.deployment is not None
    done = plan_model_deployment(md(status=first.status), run(), live(first.deployment, 2), NOW, S)
    orphaned = plan_model_deployment(md(status=done.status), None, live(first.deployment, 2), NOW, S)
    assert orphaned.deployment is None  # the live Deployment is left as it is
    assert cond(orphaned.status, C.READY)["status"] == "True"
    progressing = cond(orphaned.status, C.PROGRESSING)
    assert progressing["reason"] == "ModelNotReady" and "still serving iris-rf" in progressing["message"]
