"""The closed loop on the dev cluster: predictors scraped, drift detected, model rolled back.

Traffic goes to the predictor pods' own IPs; the operator scrapes their /metrics,
compares inputs with the Dataset's reference profile and, on a Degraded verdict,
rolls back to the previous model by recording the rollback in status.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any

import kubernetes
import pytest
from sklearn.datasets import load_iris

from mlkube_operator import constants as C

from .helpers import (
    apply_docs,
    condition,
    event_reasons,
    get_cr,
    iris_stack,
    kubectl,
    wait_condition,
    wait_for,
)

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


def send(
    api: kubernetes.client.ApiClient,
    namespace: str,
    rows: list[list[float]],
    batch: int = 5,
    track: str | None = None,
) -> None:
    """All `rows`, `batch` rows per request, to every predictor pod (of `track`: stable or
    canary) that has an address yet (callers that need every pod wait for `all_ready` first)."""
    for pod in predictor_pods(api, namespace):
        if track is not None and pod["metadata"]["labels"].get(C.LABEL_TRACK) != track:
            continue
        if not pod["status"].get("podIP"):
            continue  # just created: not started, nothing to send to
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
    apply_docs(kc, namespace, *docs)
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
    apply_docs(kc, namespace, *docs)
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
    apply_docs(kc, namespace, *docs)
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
    apply_docs(kc, namespace, *docs)
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
