"""Install and remove the operator: serving outlives it, a reinstall adopts without restarting.

The operator runs as a host process here (as a Deployment would run it): it is
stopped while a model is served, the predictor keeps answering, nothing it made
carries a finalizer (so `kubectl delete` of the resources needs no operator), and a
fresh operator adopts the existing Deployment, Service and pods without a rollout.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from .helpers import apply_docs, condition, get_cr, iris_stack, kubectl, post_json, wait_for
from .test_leader_election import Replica
from .test_serving_e2e import pods

pytestmark = [pytest.mark.cluster, pytest.mark.host_operator]


def predictor(api: Any, namespace: str) -> dict[str, Any]:
    apps = kubernetes.client.AppsV1Api(api)
    data: dict[str, Any] = json.loads(
        apps.read_namespaced_deployment("iris-predictor", namespace, _preload_content=False).data
    )
    return data


def predict(api: Any, namespace: str) -> list[Any]:
    out = []
    for pod in pods(api, namespace):
        ip = pod["status"]["podIP"]
        answer = post_json(f"http://{ip}:8080/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
        out.append(answer["predictions"])
    return out


def test_stopping_the_operator_leaves_serving_and_a_reinstall_adopts(
    dev_cluster: Any, namespace: str, tmp_path: Path
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    first = Replica(dev_cluster, namespace, tmp_path, "first")
    first.proc.start()
    try:
        apply_docs(kc, namespace, *iris_stack("iris-lr", {"replicas": 1}))
        kubectl(
            kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s"
        )
    finally:
        first.proc.stop()  # SIGTERM: the operator is gone, as after `kubectl delete` of its Deployment
    assert first.proc.proc is not None and first.proc.proc.returncode == 0

    before = predictor(api, namespace)
    pod_uids = sorted(p["metadata"]["uid"] for p in pods(api, namespace))
    assert len(pod_uids) == 1
    for plural, name in (("datasets", "iris"), ("trainingruns", "iris-lr"), ("modeldeployments", "iris")):
        obj = get_cr(api, plural, namespace, name)
        assert obj is not None and not obj["metadata"].get("finalizers"), (plural, obj["metadata"])
    time.sleep(5)
    assert predict(api, namespace) == [[0]]  # still serving without an operator

    second = Replica(dev_cluster, namespace, tmp_path, "second")
    second.proc.start()
    try:
        wait_for(second.leads, 90, "the reinstalled operator to lead", interval=0.2)
        # It reconciles everything at start (kopf's initial listing) and again on resyncs.
        time.sleep(20)
        md = get_cr(api, "modeldeployments", namespace, "iris")
        assert condition(md, "Ready")["status"] == "True"  # type: ignore[index]
        after = predictor(api, namespace)
        assert after["metadata"]["generation"] == before["metadata"]["generation"]  # no rollout
        assert after["spec"]["template"] == before["spec"]["template"]
        assert sorted(p["metadata"]["uid"] for p in pods(api, namespace)) == pod_uids  # no restart
        assert predict(api, namespace) == [[0]]
        with urllib.request.urlopen(f"http://127.0.0.1:{second.metrics}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert 'mlkube_operator_reconciliations_total{kind="ModelDeployment",outcome="success"}' in text
        reconciled = [
            line
            for line in text.splitlines()
            if line.startswith(
                'mlkube_operator_reconciliations_total{kind="ModelDeployment",outcome="success"}'
            )
        ]
        assert float(reconciled[0].rsplit(" ", 1)[1]) >= 1  # it did reconcile the ModelDeployment
    finally:
        second.proc.stop()
