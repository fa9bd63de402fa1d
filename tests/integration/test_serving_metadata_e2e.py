"""A model with text features, trained and served by the operator, describes itself truthfully
(issue 13, findings 6 and 9).

A churn-like table with two string columns and 5 % missing values in a numeric one
profiles with the default ``maxMissingFraction``, trains, and is served; its V2 metadata
lists each feature with its datatype (BYTES for the text ones), a number sent for a text
feature is a 400 naming it, and the version is the TrainingRun generation plus the
model digest, in the metadata and in ``mlkube_model_info``.
Requests go to the predictor pod's IP, as the other serving e2e tests do.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import kubernetes
import pytest

from mlkube_operator import constants as C

from .helpers import apply_docs, get_cr, kubectl

pytestmark = pytest.mark.cluster


def _churn_csv(rows: int = 200) -> str:
    lines = ["contract,plan,tenure,charges,churned"]
    for i in range(rows):
        contract = ("monthly", "yearly", "two-year")[i % 3]
        plan = ("basic", "plus", "premium", "family")[(i * 7) % 4]
        tenure = "" if i % 20 == 7 else str((i * 13) % 72)  # 5 % missing
        charges = 20 + (i * 37) % 90
        churned = "yes" if contract == "monthly" and charges > 60 else "no"
        lines.append(f"{contract},{plan},{tenure},{charges},{churned}")
    return "\n".join(lines) + "\n"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read()) if "metrics" not in url else resp.read().decode()


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_text_features_are_advertised_and_checked_and_the_version_names_the_model(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "churn"},
            "data": {"data.csv": _churn_csv()},
        },
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "churn"},
            # No validation block: the default maxMissingFraction lets 5 % gaps through.
            "spec": {"source": {"configMap": {"name": "churn", "key": "data.csv"}}, "target": "churned"},
        },
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": "churn-lr"},
            "spec": {
                "datasetRef": {"name": "churn"},
                "estimator": {
                    "className": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 500},
                },
            },
        },
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "churn"},
            "spec": {"model": {"trainingRunRef": {"name": "churn-lr"}}, "replicas": 1},
        },
    ]
    apply_docs(kc, namespace, *docs)
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/churn", "--timeout=300s")
    run = get_cr(api, "trainingruns", namespace, "churn-lr")
    assert run is not None
    sha = run["status"]["model"]["sha256"]
    version = f"g{run['metadata']['generation']}-{sha[:12]}"

    core = kubernetes.client.CoreV1Api(api)
    selector = f"{C.LABEL_INSTANCE}=churn,{C.LABEL_COMPONENT}={C.COMPONENT_PREDICTOR}"
    pods = json.loads(
        core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False).data
    )
    ip = next(p["status"]["podIP"] for p in pods["items"] if not p["metadata"].get("deletionTimestamp"))
    base = f"http://{ip}:8080"

    meta = _get(f"{base}/v2/models/churn")
    assert meta["inputs"] == [
        {"name": "contract", "datatype": "BYTES", "shape": [-1]},
        {"name": "plan", "datatype": "BYTES", "shape": [-1]},
        {"name": "tenure", "datatype": "FP64", "shape": [-1]},
        {"name": "charges", "datatype": "FP64", "shape": [-1]},
    ]
    assert meta["versions"] == [version]
    assert f'version="{version}"' in _get(f"{base}/metrics")

    # What the issue sent: one FP64 tensor for a model whose first two features are text.
    status, body = _post(
        f"{base}/v2/models/churn/infer",
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [1, 3, 12, 70]}]},
    )
    assert status == 400 and "'contract'" in body["error"], body
    status, body = _post(f"{base}/v1/models/churn:predict", {"instances": [["monthly", 3, 12, 70]]})
    assert status == 400 and "'plan'" in body["error"], body
    # Following the metadata works, and answers with the same version.
    inputs = [
        {"name": i["name"], "datatype": i["datatype"], "shape": [1], "data": [v]}
        for i, v in zip(meta["inputs"], ["monthly", "plus", None, 80.0], strict=True)
    ]
    status, body = _post(f"{base}/v2/models/churn/infer", {"inputs": inputs})
    assert status == 200 and body["model_version"] == version, body
    assert body["outputs"][0]["data"][0] in ("yes", "no")
