"""The closed loop on the dev cluster: predictors scraped, drift detected, model rolled back.

Traffic goes to the predictor pods' own IPs; the operator scrapes their /metrics,
compares inputs with the Dataset's reference profile and, on a Degraded verdict,
rolls back to the previous model by recording the rollback in status.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import kubernetes
import pytest
import yaml
from sklearn.datasets import load_iris

from mlkube_operator import constants as C

from .helpers import condition, event_reasons, get_cr, iris_stack, kubectl, wait_condition, wait_for

pytestmark = pytest.mark.cluster
MONITORING = {
    "intervalSeconds": 5,
    "windowRequests": 20,
    "windowSeconds": 60,
    "minSamples": 20,
    "thresholds": {"latency": {"maxP99Ms": 2000}},
}
# The reference profile is the iris data itself, so sending it is traffic without drift.
IRIS_ROWS: list[list[float]] = load_iris().data.tolist()


def predictor_pods(api: kubernetes.client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    core = kubernetes.client.CoreV1Api(api)
    selector = f"{C.LABEL_INSTANCE}=iris,{C.LABEL_COMPONENT}={C.COMPONENT_PREDICTOR}"
    data = json.loads(
        core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False).data
    )
    return [p for p in data["items"] if not p["metadata"].get("deletionTimestamp")]


def send(api: kubernetes.client.ApiClient, namespace: str, rows: list[list[float]], batch: int = 5) -> None:
    """All `rows`, `batch` rows per request, to every predictor pod."""
    for pod in predictor_pods(api, namespace):
        url = f"http://{pod['status']['podIP']}:8080/v1/models/iris:predict"
        for i in range(0, len(rows), batch):
            body = json.dumps({"instances": rows[i : i + batch]}).encode()
            req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200


def all_ready(api: kubernetes.client.ApiClient, namespace: str) -> bool:
    pods = predictor_pods(api, namespace)
    return bool(pods) and all(
        (statuses := p["status"].get("containerStatuses")) and all(c.get("ready") for c in statuses)
        for p in pods
    )


def status(api: kubernetes.client.ApiClient, namespace: str) -> dict[str, Any]:
    obj = get_cr(api, "modeldeployments", namespace, "iris")
    return dict((obj or {}).get("status") or {})


def explained(api: kubernetes.client.ApiClient, namespace: str, fn: Any, timeout: float, what: str) -> Any:
    """wait_for, and on a timeout say where the control loop stood."""
    try:
        return wait_for(fn, timeout, what)
    except AssertionError as err:
        s = status(api, namespace)
        keys = ("state", "canary", "lastAnalysis", "degradedStreak", "lastAction", "rejectedModels")
        raise AssertionError(f"{err}; status: {json.dumps({k: s.get(k) for k in keys})}") from None


def test_input_drift_rolls_back_to_the_previous_model(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    docs = iris_stack(
        "iris-lr",
        {
            "replicas": 1,
            "monitoring": {
                "intervalSeconds": 5,
                "windowRequests": 30,  # the 30 requests sent below, judged together
                "windowSeconds": 60,
                "minSamples": 20,
                "thresholds": {"errorRate": {"max": 0.05}, "latency": {"maxP99Ms": 2000}},
            },
            "onDegradation": {"action": "Rollback", "cooldownSeconds": 0, "failureLimit": 1},
        },
    )
    kubectl(kc, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")
    first = status(api, namespace)["currentModel"]["sha256"]

    # In-distribution traffic: a Healthy verdict with the measured values.
    send(api, namespace, IRIS_ROWS)  # 30 requests
    healthy = wait_for(
        lambda: (s := status(api, namespace)).get("lastAnalysis", {}).get("verdict") == "Healthy" and s,
        90,
        "a Healthy verdict",
    )
    values = healthy["lastAnalysis"]["values"]
    assert values["samples"] >= 30 and values["errorRate"] == 0
    assert values["inputDriftPsi"] < 0.5 and values["predictionDriftPsi"] is not None
    assert condition(get_cr(api, "modeldeployments", namespace, "iris"), "Degraded")["status"] == "False"  # type: ignore[index]

    # A second model rolls out; then its inputs drift far outside the reference profile.
    kubectl(
        kc,
        "-n",
        namespace,
        "patch",
        "trainingrun",
        "iris-lr",
        "--type=merge",
        "-p",
        '{"spec":{"estimator":{"params":{"max_iter":300,"C":0.2}}}}',
    )
    second = wait_condition(api, "trainingruns", namespace, "iris-lr", "Succeeded", timeout=240)["status"][
        "model"
    ]["sha256"]
    wait_for(
        lambda: (
            status(api, namespace).get("currentModel", {}).get("sha256") == second
            and {p["metadata"]["annotations"][C.ANNOTATION_MODEL_SHA] for p in predictor_pods(api, namespace)}
            == {second}
            and all_ready(api, namespace)
        ),
        120,
        "the second model to serve",
    )
    send(api, namespace, [[50.0, 50.0, 50.0, 50.0]] * 150)  # 30 requests far outside the profile

    rolled = wait_for(
        lambda: (s := status(api, namespace)).get("rolledBackFrom") == second and s, 90, "a rollback"
    )
    assert rolled["pinnedModel"]["sha256"] == first and rolled["rollbacks"] == 1
    assert "inputDrift '" in rolled["lastAction"] and rolled["lastAction"].startswith("Rolling back from")
    assert [r["sha256"] for r in rolled["rejectedModels"]] == [second]
    md = get_cr(api, "modeldeployments", namespace, "iris")
    assert md is not None and md["spec"]["model"] == {"trainingRunRef": {"name": "iris-lr"}}  # spec untouched
    wait_for(
        lambda: (
            status(api, namespace).get("currentModel", {}).get("sha256") == first
            and {p["metadata"]["annotations"][C.ANNOTATION_MODEL_SHA] for p in predictor_pods(api, namespace)}
            == {first}
        ),
        120,
        "the first model to serve again",
    )
    assert {"Degraded", "RolledBack"} <= event_reasons(kc, namespace, "ModelDeployment")
    wait_for(lambda: status(api, namespace).get("state") == "RolledBack", 60, "state RolledBack")


def test_drift_triggers_a_retrain_whose_model_is_then_served(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    template = {
        "datasetRef": {"name": "iris"},
        "estimator": {"className": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 3}},
    }
    docs = iris_stack(
        "iris-lr",
        {
            "replicas": 1,
            "monitoring": MONITORING,
            "onDegradation": {
                "action": "Retrain",
                "cooldownSeconds": 0,
                "failureLimit": 1,
                "retrainTemplate": template,
            },
        },
    )
    kubectl(kc, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")
    send(api, namespace, [[50.0, 50.0, 50.0, 50.0]] * 150)

    acted = wait_for(lambda: (s := status(api, namespace)).get("retrainRun") and s, 90, "the Retrain action")
    assert acted["retrainRun"] == "iris-retrain-1" and acted["retrains"] == 1
    run = wait_condition(api, "trainingruns", namespace, "iris-retrain-1", "Succeeded", timeout=240)
    assert run["spec"]["estimator"]["className"] == "sklearn.tree.DecisionTreeClassifier"
    assert run["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    new_sha = run["status"]["model"]["sha256"]
    wait_for(
        lambda: (
            status(api, namespace).get("currentModel", {}).get("trainingRun") == "iris-retrain-1"
            and {p["metadata"]["annotations"][C.ANNOTATION_MODEL_SHA] for p in predictor_pods(api, namespace)}
            == {new_sha}
        ),
        120,
        "the retrained model to serve",
    )
    md = get_cr(api, "modeldeployments", namespace, "iris")
    assert md is not None and md["spec"]["model"] == {"trainingRunRef": {"name": "iris-lr"}}  # spec untouched

    # Finding 13.2: the same drift again. The data has not changed and the served model
    # came from the template already: no second retrain, an alert that says why.
    wait_for(lambda: all_ready(api, namespace), 60, "the retrained predictor pods to be ready")
    send(api, namespace, [[50.0, 50.0, 50.0, 50.0]] * 150)
    skipped = wait_for(
        lambda: (
            "RetrainSkipped" in event_reasons(kc, namespace, "ModelDeployment") and status(api, namespace)
        ),
        90,
        "the retrain to be skipped",
    )
    assert "data has not changed" in skipped["lastAction"] and skipped["retrains"] == 1
    assert get_cr(api, "trainingruns", namespace, "iris-retrain-2") is None
    assert skipped["currentModel"]["sha256"] == new_sha


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
    kubectl(kc, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
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

    def send_to(track: str, rows: list[list[float]], times: int = 1) -> None:
        for pod in predictor_pods(api, namespace):
            if pod["metadata"]["labels"].get(C.LABEL_TRACK) != track:
                continue
            url = f"http://{pod['status']['podIP']}:8080/v1/models/iris:predict"
            for _ in range(times):
                for i in range(0, len(rows), 5):
                    body = json.dumps({"instances": rows[i : i + 5]}).encode()
                    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        assert resp.status == 200

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


def test_unreachable_prometheus_is_reported_in_status(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    url = f"http://127.0.0.1:{closed}"
    monitoring = {**MONITORING, "source": {"type": "Prometheus", "prometheusUrl": url}}
    docs = iris_stack("iris-lr", {"replicas": 1, "monitoring": monitoring})
    kubectl(kc, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")
    degraded = wait_for(
        lambda: (
            (c := condition(get_cr(api, "modeldeployments", namespace, "iris"), "Degraded"))
            and c["reason"] == "MetricsUnavailable"
            and c
        ),
        60,
        "Degraded=Unknown for the unreachable Prometheus",
    )
    assert degraded["status"] == "Unknown" and url in degraded["message"]
    assert condition(get_cr(api, "modeldeployments", namespace, "iris"), "Ready")["status"] == "True"  # type: ignore[index]


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
    kubectl(kc, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
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


@pytest.mark.exclusive
def test_after_an_operator_restart_the_open_window_continues_from_status(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    """Issues 9.4 and 9.6: the open window (each pod's counters at its start) lives in
    status, not in operator memory. Requests served while the operator was down count in
    the window they belong to, and nothing from before it: the restarted operator judges
    exactly them, never "everything since the pod started"."""
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    monitoring = {**MONITORING, "windowRequests": 30, "minSamples": 20}
    docs = iris_stack(
        "iris-lr",
        {
            "replicas": 1,
            "monitoring": monitoring,
            "onDegradation": {"action": "Alert", "cooldownSeconds": 0, "failureLimit": 1},
        },
    )
    kubectl(kc, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")
    wait_for(lambda: all_ready(api, namespace), 60, "the predictor pod to be ready")
    send(api, namespace, IRIS_ROWS)  # 30 requests without drift: the first window
    first = explained(
        api,
        namespace,
        lambda: (s := status(api, namespace)).get("lastAnalysis", {}).get("verdict") == "Healthy" and s,
        90,
        "a Healthy verdict on the first window",
    )
    assert first["lastAnalysis"]["values"]["samples"] == 30
    wait_for(
        lambda: (status(api, namespace).get("analysisWindow") or {}).get("judged") == 1,
        30,
        "the second window to be open",
    )
    mlkube_operator.kill()
    try:
        send(api, namespace, [[50.0, 50.0, 50.0, 50.0]] * 150)  # 30 drifted requests while nobody looks
    finally:
        mlkube_operator.start()
    judged = explained(
        api,
        namespace,
        lambda: (s := status(api, namespace)).get("lastAnalysis", {}).get("verdict") == "Degraded" and s,
        120,
        "a Degraded verdict on the window the restarted operator continued",
    )
    assert judged["lastAnalysis"]["values"]["samples"] == 30  # the second window's requests, not the pod's 60
    assert any("inputDrift" in r for r in judged["lastAnalysis"]["reasons"])
    assert judged["analysisWindow"]["judged"] >= 2
    wait_for(
        lambda: "ModelDegraded" in event_reasons(kc, namespace, "ModelDeployment"),
        30,
        "the ModelDegraded alert",
    )


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
    kubectl(kc, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
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
    for pod in predictor_pods(api, namespace):  # the same in-distribution rows to both tracks
        url = f"http://{pod['status']['podIP']}:8080/v1/models/iris:predict"
        for i in range(0, len(IRIS_ROWS), 5):
            body = json.dumps({"instances": IRIS_ROWS[i : i + 5]}).encode()
            req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200
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
