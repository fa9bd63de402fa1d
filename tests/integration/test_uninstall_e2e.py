"""Without the operator, a namespace holding mlkube objects still deletes (issue 13, finding 7).

The operator cleans nothing outside the API (children go by ownerReferences and the
garbage collector), so it puts no finalizer on its objects: deleting a namespace after
uninstalling the operator must not hang. An object that still carries the finalizer an
earlier version added loses it the next time the operator sees it.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest

from .helpers import apply_docs, get_cr, iris_stack, kubectl, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.exclusive]

OLD_FINALIZER = "mlkube.io/finalizer"


def _finalizers(kc: str, namespace: str) -> dict[str, list[str]]:
    items = json.loads(kubectl(kc, "-n", namespace, "get", "mlkube", "-o", "json"))["items"]
    return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"].get("finalizers") or [] for o in items}


def test_namespace_with_mlkube_objects_deletes_while_the_operator_is_stopped(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    docs = iris_stack("iris-lr", {"replicas": 1})
    apply_docs(kc, namespace, *docs)
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")
    # Reconciled all the way (Jobs ran, predictor serving), and not one finalizer.
    found = _finalizers(kc, namespace)
    assert set(found) == {"Dataset/iris", "TrainingRun/iris-lr", "ModelDeployment/iris"}
    assert all(not f for f in found.values()), found

    # An object from an earlier version, still carrying kopf's finalizer, is released.
    kubectl(
        kc,
        "-n",
        namespace,
        "patch",
        "dataset",
        "iris",
        "--type=merge",
        "-p",
        json.dumps({"metadata": {"finalizers": [OLD_FINALIZER]}}),
    )
    wait_for(
        lambda: (
            OLD_FINALIZER
            not in ((get_cr(api, "datasets", namespace, "iris") or {}).get("metadata") or {}).get(
                "finalizers", []
            )
        ),
        60,
        "the operator to remove the old finalizer",
    )

    core = kubernetes.client.CoreV1Api(api)
    mlkube_operator.kill()
    try:
        core.delete_namespace(namespace)

        def gone() -> bool:
            try:
                core.read_namespace(namespace)
            except kubernetes.client.exceptions.ApiException as exc:
                if exc.status == 404:
                    return True
                raise
            return False

        wait_for(gone, 240, f"namespace {namespace} to be deleted with the operator stopped")
    finally:
        mlkube_operator.start()
