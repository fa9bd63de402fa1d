"""During a canary, every label counts for the model that made the prediction (issue 13).

One stable and one canary pod behind the ModelDeployment's Service; predictions and their
labels go through the Service, so about half of each model's labels reach the other
model's pod. Every label must be accepted, never counted as the receiving pod's own
accuracy, and credited to the model that predicted it (`mlkube_feedback_for_model_total`);
the canary's verdict counts all of the canary's labels.
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

import kubernetes
import pytest

from mlkube_devcluster.testing import wait_for
from mlkube_operator import constants as C

from .helpers import apply_docs, get_cr, iris_stack, kubectl, post_json, wait_ready_endpoints, wait_routed

pytestmark = pytest.mark.cluster

SELECTOR = f"{C.LABEL_INSTANCE}=iris,{C.LABEL_COMPONENT}={C.COMPONENT_PREDICTOR}"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 2.9, 5.6, 1.8]]


def _pod_feedback(api: kubernetes.client.ApiClient, namespace: str) -> dict[str, dict[str, float]]:
    """Per predictor pod's model sha256[:8]: {own/<outcome>: n, for/<sha8>/<outcome>: n}."""
    core = kubernetes.client.CoreV1Api(api)
    data = json.loads(
        core.list_namespaced_pod(namespace, label_selector=SELECTOR, _preload_content=False).data
    )
    out: dict[str, dict[str, float]] = {}
    for pod in data["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        sha = pod["metadata"]["annotations"][C.ANNOTATION_MODEL_SHA][:8]
        with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/metrics", timeout=10) as resp:
            text = resp.read().decode()
        counts = out.setdefault(sha, {})
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            labels = dict(
                part.split("=", 1) for part in series.partition("{")[2].rstrip("}").split(",") if "=" in part
            )
            labels = {k: v.strip('"') for k, v in labels.items()}
            if line.startswith("mlkube_feedback_total{"):
                key = f"own/{labels['outcome']}"
            elif line.startswith("mlkube_feedback_for_model_total{"):
                key = f"for/{labels['predicted_by']}/{labels['outcome']}"
            else:
                continue
            counts[key] = counts.get(key, 0.0) + float(value)
    return out


def test_canary_labels_count_for_the_model_that_predicted_them(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    spec = {
        "replicas": 2,
        "strategy": {
            "type": "Canary",
            "steps": [{"weight": 50, "pauseSeconds": 3600}],
            "progressDeadlineSeconds": 7200,
        },
        "monitoring": {
            "intervalSeconds": 10,
            "minSamples": 1,
            # A third of the labels are wrong on purpose: no verdict may abort the canary meanwhile.
            "thresholds": {"accuracy": {"maxDrop": 0.5}},
        },
        "onDegradation": {"failureLimit": 100},
    }
    docs = iris_stack("iris-lr", spec)
    apply_docs(kc, namespace, *docs)
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")
    first = get_cr(api, "modeldeployments", namespace, "iris")
    assert first is not None
    stable_sha = first["status"]["currentModel"]["sha256"]

    # A second model of the TrainingRun: a canary on one of the two pods.
    docs = iris_stack("iris-lr", spec, params={"max_iter": 300, "C": 0.02})
    apply_docs(kc, namespace, *docs[1:2])

    def canary_ready() -> dict[str, Any] | None:
        md = get_cr(api, "modeldeployments", namespace, "iris")
        status = (md or {}).get("status") or {}
        ready = status.get("readyReplicas") == 2 and status.get("state") == "Canary"
        return md if ready and status.get("candidateModel") else None

    md = wait_for(canary_ready, 300, "a canary of the second model on one ready pod")
    canary_sha = md["status"]["candidateModel"]["sha256"]
    assert canary_sha != stable_sha
    wait_ready_endpoints(api, namespace, "iris", 2)
    service = json.loads(kubectl(kc, "-n", namespace, "get", "service", "iris", "-o", "json"))
    base = f"http://{service['spec']['clusterIP']}"
    wait_routed(base)

    # Predictions through the Service until both models answered (kube-proxy may need a
    # second to route to both), then 80 more; the answer's version names the model.
    predictions: list[tuple[str, list[Any], str]] = []  # (feedback id, predicted, sha256[:12])
    both_from: int | None = None  # how many predictions there were when both models had answered
    for _ in range(1000):
        n = len(predictions)
        rows = ROWS[: 1 + n % 4]
        inputs = [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}]
        out = post_json(f"{base}/v2/models/iris/infer", {"inputs": inputs})
        predictions.append((out["id"], out["outputs"][0]["data"], out["model_version"].rsplit("-", 1)[1]))
        if both_from is None and {p[2] for p in predictions} == {stable_sha[:12], canary_sha[:12]}:
            both_from = len(predictions)
        if both_from is not None and len(predictions) >= both_from + 80:
            break
        time.sleep(0.02)
    by_model = {sha[:12]: [p for p in predictions if p[2] == sha[:12]] for sha in (stable_sha, canary_sha)}
    assert all(len(p) >= 10 for p in by_model.values()), {k: len(v) for k, v in by_model.items()}
    before = _pod_feedback(api, namespace)
    sent_at = datetime.now(UTC)

    # Every label back through the Service, one call each; every third one wrong in its first row.
    expected: dict[str, list[int]] = {stable_sha[:8]: [0, 0], canary_sha[:8]: [0, 0]}  # [correct, incorrect]
    for n, (rid, predicted, version) in enumerate(predictions):
        truth = list(predicted)
        if n % 3 == 0:
            truth[0] = (truth[0] + 1) % 3
        answer = post_json(f"{base}/v2/models/iris/feedback", {"feedback": [{"id": rid, "label": truth}]})
        assert answer["accepted"] == 1 and answer["unknownIds"] == [], (n, answer)
        wrong = int(n % 3 == 0)
        expected[version[:8]][0] += len(truth) - wrong
        expected[version[:8]][1] += wrong

    after = _pod_feedback(api, namespace)
    assert set(after) == {stable_sha[:8], canary_sha[:8]}

    def grew(sha: str, key: str) -> float:
        return after[sha].get(key, 0.0) - before.get(sha, {}).get(key, 0.0)

    for model, other in ((stable_sha[:8], canary_sha[:8]), (canary_sha[:8], stable_sha[:8])):
        own = [grew(model, "own/correct"), grew(model, "own/incorrect")]
        credited = [grew(other, f"for/{model}/correct"), grew(other, f"for/{model}/incorrect")]
        # Some of each model's labels landed on the other pod, and were credited, not counted as its own.
        assert sum(credited) > 0, (model, after)
        assert [own[0] + credited[0], own[1] + credited[1]] == expected[model], (model, own, credited)

    # The canary's verdict counts every one of its labels (its own pod's and the stable pod's).
    canary_labels = sum(expected[canary_sha[:8]])

    def judged() -> dict[str, Any] | None:
        md = get_cr(api, "modeldeployments", namespace, "iris")
        analysis = ((md or {}).get("status") or {}).get("lastAnalysis") or {}
        when = analysis.get("time")
        fresh = when is not None and datetime.fromisoformat(when.replace("Z", "+00:00")) > sent_at
        return md if fresh and (analysis.get("values") or {}).get("labels") == canary_labels else None

    md = wait_for(judged, 90, f"a canary analysis counting all {canary_labels} canary labels")
    assert md["status"]["state"] == "Canary"
    assert "accuracy canary" in (md["status"]["canary"].get("comparison") or "")
