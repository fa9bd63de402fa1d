"""Small helpers for tests that drive the dev cluster through kubectl and the API."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from mlkube_devcluster.testing import service_answers, wait_for


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        # Longer than any `kubectl wait --timeout=` the tests pass, so kubectl's own
        # timeout (with its message) is what fires.
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout + (result.stderr if not check else "")


def apply_docs(kubeconfig: str, namespace: str, *docs: dict[str, Any]) -> str:
    """`kubectl apply` of manifests in `namespace`, as a user applies YAML."""
    return kubectl(kubeconfig, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def event_reasons(kubeconfig: str, namespace: str, kind: str | None = None) -> set[str]:
    """Reasons of the Events in `namespace`, optionally only those about objects of `kind`."""
    selector = ["--field-selector", f"involvedObject.kind={kind}"] if kind else []
    out = kubectl(
        kubeconfig, "-n", namespace, "get", "events", *selector, "-o", "jsonpath={.items[*].reason}"
    )
    return set(out.split())


def get_cr(api: kubernetes.client.ApiClient, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    custom = kubernetes.client.CustomObjectsApi(api)
    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            "mlkube.io", "v1alpha1", namespace, plural, name
        )
    except kubernetes.client.exceptions.ApiException as err:
        if err.status == 404:
            return None
        raise
    return obj


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def wait_condition(
    api: kubernetes.client.ApiClient,
    plural: str,
    namespace: str,
    name: str,
    type_: str,
    statuses: tuple[str, ...] = ("True", "False"),
    timeout: float = 120,
) -> dict[str, Any]:
    """Wait until the condition reaches one of `statuses` for the current generation."""

    def settled() -> dict[str, Any] | None:
        obj = get_cr(api, plural, namespace, name)
        cond = condition(obj, type_)
        if (
            obj
            and cond
            and cond["status"] in statuses
            and cond.get("observedGeneration") == obj["metadata"]["generation"]
        ):
            return obj
        return None

    return wait_for(settled, timeout, f"{plural}/{name} condition {type_} in {statuses}")


def wait_ready_endpoints(
    api: kubernetes.client.ApiClient, namespace: str, service: str, count: int, timeout: float = 60
) -> list[str]:
    """Wait until the Service's EndpointSlices list `count` ready endpoints; their addresses.

    A ModelDeployment is Ready when its Deployment's pods are, which can come before the
    EndpointSlice controller and kube-proxy have caught up, so traffic tests wait for this.
    """
    discovery = kubernetes.client.DiscoveryV1Api(api)

    def ready() -> list[str] | None:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}"
        )
        addresses = [
            address
            for item in slices.items
            for endpoint in item.endpoints or []
            if (endpoint.conditions is None or endpoint.conditions.ready is not False)
            for address in endpoint.addresses
        ]
        return addresses if len(addresses) == count else None

    return wait_for(ready, timeout, f"{count} ready endpoints of Service {namespace}/{service}")


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` as JSON (one new connection) and return the JSON answer."""
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    return out


def wait_routed(base_url: str, timeout: float = 60) -> None:
    """Wait until a new Service answers through kube-proxy (`service_answers`)."""
    wait_for(lambda: service_answers(base_url), timeout, f"{base_url} to answer through kube-proxy")


def jobs_of(api: kubernetes.client.ApiClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    batch = kubernetes.client.BatchV1Api(api)
    data = json.loads(
        batch.list_namespaced_job(namespace, label_selector=selector, _preload_content=False).data
    )
    return list(data["items"])


def artifact_host_path(api: kubernetes.client.ApiClient, namespace: str, uri: str, mount: str) -> Path:
    """Where a file:// artifact URI lives on this machine: the PVC's bound PV directory."""
    core = kubernetes.client.CoreV1Api(api)
    pvc = core.read_namespaced_persistent_volume_claim("mlkube-artifacts", namespace)
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    relative = uri.removeprefix("file://").removeprefix(mount).lstrip("/")
    return Path(pv.spec.host_path.path) / relative


def iris_stack(
    run: str, deployment: dict[str, Any], params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Manifests of the usual test setup: the iris Dataset, a LogisticRegression TrainingRun
    named `run`, and the ModelDeployment `iris` serving it with `deployment` merged into its spec."""
    return [
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "iris"},
            "spec": {"source": {"builtin": "iris"}, "target": "target"},
        },
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": run},
            "spec": {
                "datasetRef": {"name": "iris"},
                "estimator": {
                    "className": "sklearn.linear_model.LogisticRegression",
                    "params": params or {"max_iter": 300},
                },
            },
        },
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "iris"},
            "spec": {"model": {"trainingRunRef": {"name": run}}, **deployment},
        },
    ]
