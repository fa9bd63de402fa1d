"""The object-store artifact store through the in-cluster operator, chosen per namespace.

The test's Namespace carries `mlkube.io/artifact-store`, `-endpoint` and
`-credentials-secret` annotations pointing at SeaweedFS (tests/servers.py) on the dev
cluster's node address, where pods reach the machine; the operator's own settings are
left alone (every other namespace keeps the PVC). The profile and training Jobs write
to the bucket, no PVC is made, the predictor downloads the model from it, verifies its
sha256 and serves it; a model replaced in the bucket behind the operator's back is
refused by a new predictor pod (DigestMismatch), never loaded.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from mlkube_operator import constants as C
from servers import S3Server, s3_server

from .helpers import get_cr, iris_stack, kubectl, post_json, wait_for
from .test_training_e2e import apply

pytestmark = pytest.mark.cluster
SELECTOR = f"{C.LABEL_INSTANCE}=iris,{C.LABEL_COMPONENT}={C.COMPONENT_PREDICTOR}"


@pytest.fixture(scope="module")
def node_s3(dev_cluster: Any) -> Iterator[S3Server]:
    with s3_server(dev_cluster.node_ip) as server:
        yield server


def pods(api: kubernetes.client.ApiClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    core = kubernetes.client.CoreV1Api(api)
    data = json.loads(
        core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False).data
    )
    return [p for p in data["items"] if not p["metadata"].get("deletionTimestamp")]


def get(url: str) -> tuple[int, str]:
    """Status and body; 0 and the error while nothing listens yet (a pod still starting)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except urllib.error.URLError as err:
        return 0, str(err.reason)


def key(uri: str) -> str:
    return uri.removeprefix("s3://")


def test_a_namespace_keeps_its_artifacts_in_its_bucket_and_serves_from_it(
    dev_cluster: Any, namespace: str, mlkube_operator: Any, node_s3: S3Server
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    bucket = node_s3.make_bucket("team-models")
    root = f"s3://{bucket}/mlkube"
    kubectl(
        kc,
        "annotate",
        "namespace",
        namespace,
        f"{C.ANNOTATION_ARTIFACT_STORE}={root}",
        f"{C.ANNOTATION_ARTIFACT_ENDPOINT}={node_s3.endpoint}",
        f"{C.ANNOTATION_ARTIFACT_CREDENTIALS_SECRET}=team-s3",
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "team-s3"},
        "stringData": {
            C.SECRET_KEY_ACCESS_KEY_ID: node_s3.access_key,
            C.SECRET_KEY_SECRET_ACCESS_KEY: node_s3.secret_key,
        },
    }
    apply(kc, namespace, secret, *iris_stack("iris-lr", {"replicas": 1}))
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s")

    ds, run, md = (get_cr(api, plural, namespace, name) for plural, name in (
        ("datasets", "iris"), ("trainingruns", "iris-lr"), ("modeldeployments", "iris"),
    ))  # fmt: skip
    assert ds is not None and run is not None and md is not None
    content_hash = ds["status"]["contentHash"]
    assert ds["status"]["dataUri"] == f"{root}/datasets/{namespace}/iris/{content_hash}/data.csv"
    assert ds["status"]["profileUri"] == f"{root}/datasets/{namespace}/iris/{content_hash}/profile.json"
    data = node_s3.get(key(ds["status"]["dataUri"]))
    assert hashlib.sha256(data).hexdigest() == content_hash
    model = run["status"]["model"]
    assert model["uri"].startswith(f"{root}/models/{namespace}/iris-lr/") and model["uri"].endswith(
        "/model.joblib"
    )
    stored = node_s3.get(key(model["uri"]))
    assert hashlib.sha256(stored).hexdigest() == model["sha256"] == md["status"]["currentModel"]["sha256"]

    # The namespace's settings, not the operator's: no PVC, Jobs without the volume and
    # with the bucket's endpoint, the credentials by Secret reference only.
    core = kubernetes.client.CoreV1Api(api)
    assert core.list_namespaced_persistent_volume_claim(namespace).items == []
    jobs = json.loads(kubectl(kc, "-n", namespace, "get", "jobs", "-o", "json"))["items"]
    assert len(jobs) == 2
    for job in jobs:
        spec = job["spec"]["template"]["spec"]
        assert not any("persistentVolumeClaim" in v for v in spec["volumes"])
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env[C.ENV_ARTIFACT_ENDPOINT]["value"] == node_s3.endpoint
        assert env[C.ENV_ARTIFACT_ACCESS_KEY_ID]["valueFrom"]["secretKeyRef"]["name"] == "team-s3"
    assert node_s3.secret_key not in json.dumps(jobs) + json.dumps([ds, run, md])

    (pod,) = pods(api, namespace, SELECTOR)
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--model-uri") + 1] == model["uri"]
    ip = pod["status"]["podIP"]
    out = post_json(
        f"http://{ip}:8080/v1/models/iris:predict",
        {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
    )
    assert out["predictions"] == [0, 2]

    # Replace the model in the bucket behind the operator's back; a new predictor pod
    # downloads it, finds another sha256 and refuses to load it.
    node_s3.put(key(model["uri"]), stored + b"tampered")
    core.delete_namespaced_pod(pod["metadata"]["name"], namespace, grace_period_seconds=0)

    def refused() -> str | None:
        for fresh in pods(api, namespace, SELECTOR):
            if fresh["metadata"]["name"] == pod["metadata"]["name"] or not fresh["status"].get("podIP"):
                continue
            status, body = get(f"http://{fresh['status']['podIP']}:8080/v2/health/ready")
            if status == 503 and "DigestMismatch" in body:
                return body
        return None

    body = wait_for(refused, 180, "a new predictor pod refusing the replaced model")
    assert model["sha256"] in body and node_s3.secret_key not in body
