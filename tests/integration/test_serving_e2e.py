"""ModelDeployment end to end: the operator serves a TrainingRun's model and rolls new ones.

Predictions are requested from the predictor pods themselves (the dev cluster runs
no kube-proxy, so Service IPs do not route; pod IPs do, as on any cluster network).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import kubernetes
import pytest

from mlkube_operator import constants as C

from .helpers import (
    apply_docs,
    condition,
    event_reasons,
    get_cr,
    iris_stack,
    kubectl,
    post_json,
    wait_condition,
    wait_for,
)

pytestmark = pytest.mark.cluster

SELECTOR = f"{C.LABEL_INSTANCE}=iris,{C.LABEL_COMPONENT}={C.COMPONENT_PREDICTOR}"


def pods(api: kubernetes.client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    core = kubernetes.client.CoreV1Api(api)
    data = json.loads(
        core.list_namespaced_pod(namespace, label_selector=SELECTOR, _preload_content=False).data
    )
    return [p for p in data["items"] if not p["metadata"].get("deletionTimestamp")]


def metrics(ip: str) -> str:
    with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=10) as resp:
        return resp.read().decode()


def served_shas(api: kubernetes.client.ApiClient, namespace: str) -> set[str]:
    return {p["metadata"]["annotations"][C.ANNOTATION_MODEL_SHA] for p in pods(api, namespace)}


def test_model_deployment_serves_and_rolls_new_models(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    docs = iris_stack("iris-rf", {"replicas": 2})
    apply_docs(kc, namespace, *docs)
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")
    md = get_cr(api, "modeldeployments", namespace, "iris")
    run = get_cr(api, "trainingruns", namespace, "iris-rf")
    assert md is not None and run is not None
    first_sha = run["status"]["model"]["sha256"]
    assert md["status"]["currentModel"]["sha256"] == first_sha
    assert md["status"]["readyReplicas"] == 2

    live = pods(api, namespace)
    assert len(live) == 2 and len({p["status"]["podIP"] for p in live}) == 2
    for pod in live:
        ip = pod["status"]["podIP"]
        out = post_json(
            f"http://{ip}:8080/v1/models/iris:predict",
            {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
        )
        assert out["predictions"] == [0, 2]
        v2 = post_json(
            f"http://{ip}:8080/v2/models/iris/infer",
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.9, 3.0, 5.1, 1.8]}
                ]
            },
        )
        assert v2["outputs"][0]["data"] == [2]
        assert f'sha256="{first_sha}"' in metrics(ip)

    service = kubectl(kc, "-n", namespace, "get", "service", "iris", "-o", "json")
    deployment = json.loads(kubectl(kc, "-n", namespace, "get", "deployment", "iris-predictor", "-o", "json"))
    assert (
        json.loads(service)["spec"]["selector"].items()
        < deployment["spec"]["selector"]["matchLabels"].items()
    )
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]

    # Hand edits of fields the operator manages are put back by the next reconcile
    # (server-side apply, docs/operator.md#children-server-side-apply); a label of its own stays.
    kubectl(
        kc,
        "-n",
        namespace,
        "label",
        "deployment",
        "iris-predictor",
        f"{C.LABEL_COMPONENT}=hacked",
        "team=a",
        "--overwrite",
    )
    kubectl(
        kc,
        "-n",
        namespace,
        "patch",
        "service",
        "iris",
        "--type=merge",
        "-p",
        '{"spec":{"ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":9}]}}',
    )

    def put_back() -> bool:
        dep = json.loads(kubectl(kc, "-n", namespace, "get", "deployment", "iris-predictor", "-o", "json"))
        svc = json.loads(kubectl(kc, "-n", namespace, "get", "service", "iris", "-o", "json"))
        return (
            dep["metadata"]["labels"][C.LABEL_COMPONENT] == C.COMPONENT_PREDICTOR
            and svc["spec"]["ports"][0]["targetPort"] == C.SERVING_PORT_NAME
        )

    wait_for(put_back, 75, "the operator to put the hand-edited fields back")
    restored = json.loads(kubectl(kc, "-n", namespace, "get", "deployment", "iris-predictor", "-o", "json"))
    assert restored["metadata"]["labels"]["team"] == "a"
    assert restored["metadata"]["generation"] == deployment["metadata"]["generation"], "no rollout"

    # A new generation of the TrainingRun gives a new model; the deployment rolls to it.
    kubectl(
        kc,
        "-n",
        namespace,
        "patch",
        "trainingrun",
        "iris-rf",
        "--type=merge",
        "-p",
        '{"spec":{"estimator":{"params":{"max_iter":300,"C":0.3}}}}',
    )
    run2 = wait_condition(api, "trainingruns", namespace, "iris-rf", "Succeeded", timeout=240)
    second_sha = run2["status"]["model"]["sha256"]
    assert second_sha != first_sha

    def rolled() -> dict[str, Any] | None:
        obj = get_cr(api, "modeldeployments", namespace, "iris")
        current = ((obj or {}).get("status") or {}).get("currentModel") or {}
        ready = condition(obj, "Ready") or {}
        if (
            current.get("sha256") == second_sha
            and ready.get("status") == "True"
            and served_shas(api, namespace) == {second_sha}
        ):
            return obj
        return None

    md2 = wait_for(rolled, 180, "the new model to roll out to every replica")
    assert md2["status"]["previousModel"]["sha256"] == first_sha
    assert md2["status"].get("candidateModel") is None
    assert {"RollingOut", "Serving"} <= event_reasons(kc, namespace, "ModelDeployment")

    # Losing the TrainingRun does not take the model down.
    kubectl(kc, "-n", namespace, "delete", "trainingrun", "iris-rf", "--wait=true")
    wait_for(
        lambda: (
            (c := condition(get_cr(api, "modeldeployments", namespace, "iris"), "Progressing"))
            and c["reason"] == "ModelNotReady"
        ),
        60,
        "the ModelDeployment to notice the missing TrainingRun",
    )
    assert condition(get_cr(api, "modeldeployments", namespace, "iris"), "Ready")["status"] == "True"  # type: ignore[index]
    ip = pods(api, namespace)[0]["status"]["podIP"]
    assert post_json(f"http://{ip}:8080/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})[
        "predictions"
    ] == [0]

    # Deleting the ModelDeployment garbage-collects the Deployment, its pods and the Service.
    kubectl(kc, "-n", namespace, "delete", "modeldeployment", "iris", "--wait=true")
    wait_for(lambda: not pods(api, namespace), 90, "the predictor pods to go away")
    assert "NotFound" in kubectl(kc, "-n", namespace, "get", "service", "iris", check=False)


def test_model_not_ready_creates_nothing(dev_cluster: Any, namespace: str, mlkube_operator: Any) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    md = {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "lonely"},
        "spec": {"model": {"trainingRunRef": {"name": "nothing-here"}}},
    }
    apply_docs(kc, namespace, md)
    obj = wait_condition(api, "modeldeployments", namespace, "lonely", "Ready", timeout=60)
    ready = condition(obj, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "ModelNotReady")
    assert "nothing-here does not exist" in ready["message"]
    assert "NotFound" in kubectl(kc, "-n", namespace, "get", "deployment", "lonely-predictor", check=False)
