"""The SDK inside the cluster: a pod with a ServiceAccount (a notebook server's pod) connects
with the in-cluster configuration, works in its own namespace, and an action its Role does
not allow is `mlkube.ApiError` (Forbidden), not an ApiException.

The SDK is not in any image (none of their processes imports it), so the pod runs the
operator image (which has the Kubernetes client and the API models) with this checkout's
sdk/mlkube mounted from a ConfigMap; the Dataset's data is the iris CSV.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_iris

from mlkube_devcluster import images
from mlkube_devcluster.testing import wait_for

from .helpers import kubectl

pytestmark = pytest.mark.cluster

SDK = Path(__file__).resolve().parents[2] / "sdk" / "mlkube"
MLKUBE = ["datasets", "trainingruns", "modeldeployments"]


def _apply(kubeconfig: str, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl(kubeconfig, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def test_a_pod_with_a_service_account_uses_the_sdk(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc = str(dev_cluster.kubeconfig)
    source = {p.name: p.read_text() for p in sorted(SDK.glob("*.py"))}
    csv = load_iris(as_frame=True).frame.to_csv(index=False)
    # What a notebook's ServiceAccount needs for Datasets (docs/sdk.md), and no delete.
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "notebook"},
        "rules": [
            {
                "apiGroups": ["mlkube.io"],
                "resources": MLKUBE,
                "verbs": ["get", "list", "watch", "create", "patch"],
            },
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]},
        ],
    }
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "notebook"}},
        role,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "notebook"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "notebook"},
            "subjects": [{"kind": "ServiceAccount", "name": "notebook", "namespace": namespace}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sdk-source"}, "data": source},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "iris-csv"},
            "data": {"data.csv": csv},
        },
    ]
    code = """
        import json, mlkube
        s = mlkube.connect()  # no kubeconfig in the pod: its ServiceAccount
        text = open("/data/data.csv").read()
        ds = mlkube.Dataset.from_csv_text(text, name="incluster", target="target").wait(timeout=240, progress=False)
        out = {"namespace": s.namespace, "host": s.api.configuration.host, "rows": ds.status.rows,
               "module": mlkube.__file__}
        try:
            ds.delete()
        except mlkube.ApiError as err:
            out["delete"] = [type(err).__name__, err.reason, err.status]
        print(json.dumps(out))
    """
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "notebook"},
        "spec": {
            "serviceAccountName": "notebook",
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": images.mlkube_image("operator"),
                    "command": ["python", "-c", textwrap.dedent(code)],
                    "env": [{"name": "PYTHONPATH", "value": "/sdk"}],
                    "volumeMounts": [
                        {"name": "sdk", "mountPath": "/sdk/mlkube", "readOnly": True},
                        {"name": "data", "mountPath": "/data", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "sdk", "configMap": {"name": "sdk-source"}},
                {"name": "data", "configMap": {"name": "iris-csv"}},
            ],
        },
    }
    _apply(kc, namespace, *docs)
    _apply(kc, namespace, pod)

    def done() -> str | None:
        phase = kubectl(kc, "-n", namespace, "get", "pod", "notebook", "-o", "jsonpath={.status.phase}")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(done, 300, "the notebook pod to finish", interval=1)
    logs = kubectl(kc, "-n", namespace, "logs", "notebook")
    assert phase == "Succeeded", logs
    out = json.loads(logs.strip().splitlines()[-1])
    assert out["module"] == "/sdk/mlkube/__init__.py"  # this checkout's SDK, not an installed one
    assert out["namespace"] == namespace  # from the ServiceAccount's namespace file
    assert out["host"].startswith("https://")  # the kubernetes Service, not a kubeconfig
    assert out["rows"] == 150
    assert out["delete"] == ["ApiError", "Forbidden", 403]

    # The Dataset was written by the SDK's field manager; its ConfigMap is owned by it.
    ds = json.loads(
        kubectl(kc, "-n", namespace, "get", "dataset", "incluster", "-o", "json", "--show-managed-fields")
    )
    assert "mlkube-sdk" in {m["manager"] for m in ds["metadata"]["managedFields"]}
    assert (
        json.loads(kubectl(kc, "-n", namespace, "get", "configmap", "incluster-data", "-o", "json"))[
            "metadata"
        ]["ownerReferences"][0]["uid"]
        == ds["metadata"]["uid"]
    )
