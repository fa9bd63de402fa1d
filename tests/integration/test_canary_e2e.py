"""Canary rollouts on the dev cluster: a good model promoted, a drifting one aborted, a
canary without traffic held then aborted at its deadline, and one worse than the stable
pods never promoted. (Split from test_monitoring_e2e so that xdist runs them beside it.)"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from mlkube_operator import constants as C

from .helpers import apply_docs, condition, event_reasons, get_cr, iris_stack, kubectl, wait_for
from .test_monitoring_e2e import IRIS_ROWS, MONITORING, all_ready, explained, predictor_pods, send, status

pytestmark = pytest.mark.cluster


@pytest.mark.timeout(900)
def test_canary_promotes_a_good_model_and_aborts_a_drifting_one(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    docs = iris_stack(
        "iris-lr",
        {
            "replicas": 2,
            "strategy": {"type": "Canary", "steps": [{"weight": 50, "pauseSeconds": 5}]},
            "monitoring": MONITORING,
            "onDegradation": {"action": "Rollback", "cooldownSeconds": 0},
        },
    )
    apply_docs(kc, namespace, *docs)
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")
    first = status(api, namespace)["currentModel"]["sha256"]

    def shas(track: str) -> set[str]:
        return {
            p["metadata"]["annotations"][C.ANNOTATION_MODEL_SHA]
            for p in predictor_pods(api, namespace)
            if p["metadata"]["labels"].get(C.LABEL_TRACK) == track
        }

    def retrain(c: float) -> str:
        patch = json.dumps({"spec": {"estimator": {"params": {"max_iter": 300, "C": c}}}})
        kubectl(kc, "-n", namespace, "patch", "trainingrun", "iris-lr", "--type=merge", "-p", patch)
        gen = get_cr(api, "trainingruns", namespace, "iris-lr")["metadata"]["generation"]  # type: ignore[index]
        run = wait_for(
            lambda: (
                (r := get_cr(api, "trainingruns", namespace, "iris-lr"))
                and (cnd := condition(r, "Succeeded"))
                and cnd["status"] == "True"
                and cnd["observedGeneration"] == gen
                and r
            ),
            240,
            f"TrainingRun generation {gen}",
        )
        return str(run["status"]["model"]["sha256"])

    def send_to(track: str, rows: list[list[float]]) -> None:
        send(api, namespace, rows, track=track)

    # A good model: canary at 50 % (one pod of each). Without traffic it is not promoted,
    # however long its pause: a step needs a Healthy verdict on the canary's own requests.
    second = retrain(0.3)
    wait_for(
        lambda: shas("canary") == {second} and shas("stable") == {first},
        120,
        "a canary pod beside a stable pod",
    )
    wait_for(lambda: all_ready(api, namespace), 60, "every predictor pod to be ready")
    held = wait_for(
        lambda: (
            (s := status(api, namespace)).get("lastAnalysis", {}).get("verdict") == "InsufficientData"
            and s.get("canary")
            and s
        ),
        60,
        "an inconclusive canary verdict",
    )
    assert held["state"] == "Canary" and held["currentModel"]["sha256"] == first
    send_to("canary", IRIS_ROWS)  # 30 in-distribution requests on the canary
    send_to("stable", IRIS_ROWS)
    promoted = explained(
        api,
        namespace,
        lambda: (
            (s := status(api, namespace)).get("currentModel", {}).get("sha256") == second
            and not s.get("canary")
            and s
        ),
        120,
        "the canary to be promoted",
    )
    assert promoted["previousModel"]["sha256"] == first
    wait_for(
        lambda: shas("stable") == {second} and not shas("canary"), 120, "the canary Deployment to go away"
    )

    # A model whose canary sees drifted traffic is aborted; the stable model keeps serving.
    kubectl(
        kc,
        "-n",
        namespace,
        "patch",
        "modeldeployment",
        "iris",
        "--type=merge",
        "-p",
        '{"spec":{"strategy":{"steps":[{"weight":50,"pauseSeconds":600}]}}}',
    )
    third = retrain(0.1)
    wait_for(lambda: shas("canary") == {third}, 120, "the second canary")
    wait_for(lambda: all_ready(api, namespace), 60, "every predictor pod to be ready")
    for pod in predictor_pods(api, namespace):
        if pod["metadata"]["labels"].get(C.LABEL_TRACK) == "canary":
            url = f"http://{pod['status']['podIP']}:8080/v1/models/iris:predict"
            for _ in range(30):
                req = urllib.request.Request(
                    url,
                    json.dumps({"instances": [[50.0, 50.0, 50.0, 50.0]] * 5}).encode(),
                    {"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=10) as resp:
                    assert resp.status == 200
    aborted = wait_for(
        lambda: (s := status(api, namespace)).get("rolledBackFrom") == third and s,
        90,
        "the canary to be aborted",
    )
    assert aborted["pinnedModel"]["sha256"] == second and "Aborted the canary" in aborted["lastAction"]
    assert "3 failing analyses" in aborted["lastAction"]  # failureLimit's default
    wait_for(lambda: not shas("canary") and shas("stable") == {second}, 120, "the canary pods to go away")
    assert status(api, namespace)["currentModel"]["sha256"] == second
    assert {"Canary", "CanaryPromoted", "CanaryAborted"} <= event_reasons(kc, namespace, "ModelDeployment")

    # Finding 13.1: drift on the stable model now rolls it back to the first model; the
    # aborted third model must not come back as a canary (it did: promoted 60 s later).
    wait_for(lambda: all_ready(api, namespace), 60, "every predictor pod to be ready")
    sent = [0.0]

    def drifting_until_rolled_back() -> dict[str, Any] | bool:
        """Drifted traffic on the stable pods every 10 s while they serve the second model
        (traffic goes on, as in production: a restarted or new leader judges only what
        its own history covers)."""
        s = status(api, namespace)
        if s.get("state") == "RolledBack" and s.get("currentModel", {}).get("sha256") == first:
            return s
        if s.get("currentModel", {}).get("sha256") == second and time.monotonic() - sent[0] >= 10:
            sent[0] = time.monotonic()
            with contextlib.suppress(OSError):  # a pod going away during the rollback
                send_to("stable", [[50.0, 50.0, 50.0, 50.0]] * 150)
        return False

    rolled = explained(api, namespace, drifting_until_rolled_back, 240, "the rollback to the first model")
    assert {r["sha256"]: r["reason"] for r in rolled["rejectedModels"]} == {
        third: "CanaryAborted",
        second: "RolledBack",
    }
    assert rolled["lastAction"].startswith("Rolling back from")
    for _ in range(6):  # a minute of resyncs: nothing starts the rejected model again
        s = status(api, namespace)
        assert not shas("canary") and not s.get("canary") and s["currentModel"]["sha256"] == first
        time.sleep(10)


def test_canary_without_traffic_is_inconclusive_then_unpinned_and_promoted_by_hand(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    """Issue 9.5's gate (no traffic: held, then aborted at the deadline) and finding 13.9's
    manual control (`mlkube rollout unpin|promote`), recorded in status and Events."""
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    docs = iris_stack(
        "iris-lr",
        {
            "replicas": 2,
            "strategy": {
                "type": "Canary",
                "steps": [{"weight": 50, "pauseSeconds": 5}],
                "progressDeadlineSeconds": 40,
            },
            "monitoring": MONITORING,
        },
    )
    apply_docs(kc, namespace, *docs)
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")
    first = status(api, namespace)["currentModel"]["sha256"]
    kubectl(
        kc,
        "-n",
        namespace,
        "patch",
        "trainingrun",
        "iris-lr",
        "--type=merge",
        "-p",
        '{"spec":{"estimator":{"params":{"max_iter":300,"C":0.3}}}}',
    )
    canary = wait_for(
        lambda: (s := status(api, namespace)).get("state") == "Canary" and s, 240, "the canary to start"
    )
    second = canary["candidateModel"]["sha256"]
    aborted = wait_for(
        lambda: (s := status(api, namespace)).get("rejectedModels") and s,
        120,
        "the inconclusive canary to end",
    )
    assert [(r["sha256"], r["reason"]) for r in aborted["rejectedModels"]] == [(second, "CanaryInconclusive")]
    assert (
        "progressDeadlineSeconds 40" in aborted["lastAction"] and aborted["currentModel"]["sha256"] == first
    )
    assert "CanaryInconclusive" in event_reasons(kc, namespace, "ModelDeployment")

    def rollout(action: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "mlkube_operator.cli", "rollout", action, "iris", "-n", namespace],
            env={**os.environ, "KUBECONFIG": kc},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout

    wait_for(lambda: status(api, namespace).get("state") == "RolledBack", 120, "state RolledBack")
    assert "cleared the pin" in rollout("unpin")
    wait_for(lambda: status(api, namespace).get("state") == "Canary", 60, "the canary to start again")
    assert "promoting the canary" in rollout("promote")
    done = wait_for(
        lambda: (
            (s := status(api, namespace)).get("state") == "Steady"
            and s.get("currentModel", {}).get("sha256") == second
            and s
        ),
        180,
        "the promotion by hand",
    )
    assert done["manualAction"]["action"] == "promote" and done["rejectedModels"] == []
    assert "ManualAction" in event_reasons(kc, namespace, "ModelDeployment")


def test_a_canary_worse_than_the_stable_pods_never_promotes(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    """Issue 9.5: a model that passes every absolute check (a constant predictor matches its
    own held-out predictions, errors and latency are fine) but predicts very differently
    from the stable model on the same traffic is aborted, not promoted."""
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    docs = iris_stack(
        "iris-lr",
        {
            "replicas": 2,
            "strategy": {"type": "Canary", "steps": [{"weight": 50, "pauseSeconds": 5}]},
            "monitoring": MONITORING,
        },
    )
    apply_docs(kc, namespace, *docs)
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")
    first = status(api, namespace)["currentModel"]["sha256"]
    patch = {
        "spec": {
            "estimator": {
                "className": "sklearn.dummy.DummyClassifier",
                "params": {"max_iter": None, "strategy": "most_frequent"},
            }
        }
    }
    kubectl(kc, "-n", namespace, "patch", "trainingrun", "iris-lr", "--type=merge", "-p", json.dumps(patch))
    wait_for(lambda: status(api, namespace).get("state") == "Canary", 240, "the canary of the constant model")
    wait_for(lambda: all_ready(api, namespace), 60, "every predictor pod to be ready")
    worse = status(api, namespace)["candidateModel"]["sha256"]
    # The step's first look takes the stable pods' baseline (InsufficientData); traffic
    # before it would not count for them.
    wait_for(
        lambda: (status(api, namespace).get("canary") or {}).get("verdict") == "InsufficientData",
        60,
        "the canary step's first look",
    )
    send(api, namespace, IRIS_ROWS)  # the same in-distribution rows to both tracks
    aborted = explained(
        api,
        namespace,
        lambda: (s := status(api, namespace)).get("rejectedModels") and s,
        120,
        "the worse canary to be aborted",
    )
    assert [(r["sha256"], r["reason"]) for r in aborted["rejectedModels"]] == [(worse, "CanaryAborted")]
    assert "worse than stable: prediction share" in aborted["lastAction"]
    assert aborted["currentModel"]["sha256"] == first
    assert "CanaryPromoted" not in event_reasons(kc, namespace, "ModelDeployment")
