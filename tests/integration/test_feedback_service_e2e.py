"""Feedback through the Service reaches whichever replica, and every label counts (issue 13, finding 3).

Three replicas of a ModelDeployment; predictions and all feedback go through the
Service's ClusterIP, so kube-proxy picks a replica for each connection and most labels
land on a replica that did not make the prediction. Every label must be scored and
show up in the replicas' ``mlkube_feedback_total``, summed over the pods.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import kubernetes
import pytest

from mlkube_operator import constants as C

from .helpers import apply_docs, get_cr, iris_stack, kubectl, post_json, wait_ready_endpoints, wait_routed

pytestmark = pytest.mark.cluster

SELECTOR = f"{C.LABEL_INSTANCE}=iris,{C.LABEL_COMPONENT}={C.COMPONENT_PREDICTOR}"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 2.9, 5.6, 1.8]]


def _feedback_counts(api: kubernetes.client.ApiClient, namespace: str, port: int) -> dict[str, float]:
    """mlkube_feedback_total by outcome, summed over the predictor pods (read from each pod)."""
    core = kubernetes.client.CoreV1Api(api)
    data = json.loads(
        core.list_namespaced_pod(namespace, label_selector=SELECTOR, _preload_content=False).data
    )
    totals: dict[str, float] = {}
    for pod in data["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        with urllib.request.urlopen(f"http://{pod['status']['podIP']}:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if line.startswith("mlkube_feedback_total{"):
                series, value = line.rsplit(" ", 1)
                outcome = series.split('outcome="', 1)[1].split('"', 1)[0]
                totals[outcome] = totals.get(outcome, 0.0) + float(value)
    return totals


def test_feedback_through_the_service_counts_every_label(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    docs = iris_stack("iris-lr", {"replicas": 3})
    apply_docs(kc, namespace, *docs)
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")
    md = get_cr(api, "modeldeployments", namespace, "iris")
    assert md is not None and md["status"]["readyReplicas"] == 3

    service = json.loads(kubectl(kc, "-n", namespace, "get", "service", "iris", "-o", "json"))
    base = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    pod_port = md["spec"].get("serving", {}).get("port", 8080)
    wait_ready_endpoints(api, namespace, "iris", 3)
    # kube-proxy programs new endpoints after the EndpointSlice lists them (at most once a
    # second, `minSyncPeriod`), and a burst of predictions takes less than that: probe, 10 a
    # second for at most 30 s, until two replicas have answered through the Service.
    wait_routed(base)
    seen: set[str] = set()
    for _ in range(300):
        probe = post_json(f"{base}/v1/models/iris:predict", {"instances": ROWS[:1]})
        seen.add(probe["id"].split("-", 1)[0])
        if len(seen) >= 2:
            break
        time.sleep(0.1)
    assert len(seen) >= 2, "the Service sent every probe of 30 s to one pod"
    before = _feedback_counts(api, namespace, pod_port)

    # 60 predictions (V1 and V2, 1 to 4 rows), each on a new connection through the Service.
    predictions: list[tuple[str, list[Any]]] = []
    for i in range(60):
        rows = ROWS[: 1 + i % 4]
        if i % 2:
            out = post_json(f"{base}/v1/models/iris:predict", {"instances": rows})
            predictions.append((out["id"], out["predictions"]))
        else:
            inputs = [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}]
            out = post_json(f"{base}/v2/models/iris/infer", {"inputs": inputs})
            predictions.append((out["id"], out["outputs"][0]["data"]))
    replicas_that_predicted = {rid.split("-", 1)[0] for rid, _ in predictions}
    assert len(replicas_that_predicted) >= 2, "the Service sent every prediction to one pod"

    # Every label goes back through the Service, one call each (so each picks a replica);
    # every third prediction is labelled wrong in its first row.
    wrong = 0
    for n, (rid, predicted) in enumerate(predictions):
        truth = list(predicted)
        if n % 3 == 0:
            truth[0] = (truth[0] + 1) % 3
            wrong += 1
        answer = post_json(f"{base}/v2/models/iris/feedback", {"feedback": [{"id": rid, "label": truth}]})
        assert answer == {"accepted": 1, "unknownIds": [], "scoredRows": len(truth)}, (n, answer)

    after = _feedback_counts(api, namespace, pod_port)
    rows = sum(len(p) for _, p in predictions)
    correct = after.get("correct", 0.0) - before.get("correct", 0.0)
    incorrect = after.get("incorrect", 0.0) - before.get("incorrect", 0.0)
    assert (correct, incorrect) == (rows - wrong, wrong)
    assert after.get("unknown_id", 0.0) == before.get("unknown_id", 0.0)
