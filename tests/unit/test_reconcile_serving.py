"""The ModelDeployment planner: what it serves, when it is Ready, what a new model does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlkube_operator import constants as C
from mlkube_operator.reconcile.modeldeployment import TEMPLATE_HASH, plan_model_deployment
from mlkube_operator.settings import Settings

NOW = datetime(2026, 11, 28, tzinfo=UTC)
S = Settings()


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
    assert dep["spec"]["selector"]["matchLabels"] == plan.service["spec"]["selector"]
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


def test_canary_is_reported_unsupported_not_ignored() -> None:
    plan = plan_model_deployment(md(strategy="Canary"), run(), None, NOW, S)
    assert plan.deployment is None
    ready = cond(plan.status, C.READY)
    assert ready["reason"] == "Unsupported" and "spec.strategy.type" in ready["message"]


def test_losing_the_training_run_keeps_serving() -> None:
    first = plan_model_deployment(md(), run(), None, NOW, S)
    assert first.deployment is not None
    done = plan_model_deployment(md(status=first.status), run(), live(first.deployment, 2), NOW, S)
    orphaned = plan_model_deployment(md(status=done.status), None, live(first.deployment, 2), NOW, S)
    assert orphaned.deployment is None  # the live Deployment is left as it is
    assert cond(orphaned.status, C.READY)["status"] == "True"
    progressing = cond(orphaned.status, C.PROGRESSING)
    assert progressing["reason"] == "ModelNotReady" and "still serving iris-rf" in progressing["message"]
