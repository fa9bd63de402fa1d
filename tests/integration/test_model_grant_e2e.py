"""Another team's model, end to end: a ModelGrant lets namespace B serve a TrainingRun of A.

Artifacts live in object storage (SeaweedFS on the node's address, tests/servers.py): the
operator runs as a host process configured with MLKUBE_ARTIFACT_STORE (the in-cluster
one is paused, `host_operator`), watching only this test's two namespaces. Each
namespace holds its own credentials Secret; nothing crosses namespaces but the grant.

The examples are applied: examples/iris/ in A, examples/model-grant/ with the test's
namespaces and credentials. Without a grant B's ModelDeployment is refused (ReferenceNotPermitted) and nothing is
created; with one it serves A's model through its Service; when the grant is revoked it
keeps serving that model but does not roll out A's next one, until the grant is back.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from mlkube_devcluster.testing import wait_for
from mlkube_operator import constants as C
from servers import S3Server, s3_server

from .helpers import condition, get_cr, kubectl, wait_condition, wait_ready_endpoints, wait_routed
from .operator_proc import OperatorProcess
from .test_argocd_health import Recorder
from .test_training_e2e import apply

pytestmark = [pytest.mark.cluster, pytest.mark.host_operator]

SECRET = "mlkube-s3"
ROOT = Path(__file__).resolve().parents[2]


def example(*parts: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "examples").joinpath(*parts).read_text()) if d]


@pytest.fixture(scope="module")
def node_s3(dev_cluster: Any) -> Iterator[S3Server]:
    with s3_server(dev_cluster.node_ip) as server:
        yield server


@pytest.fixture
def consumer(dev_cluster: Any, namespace: str) -> Iterator[str]:
    """A second namespace (the consumer), deleted afterwards."""
    core = kubernetes.client.CoreV1Api(dev_cluster.api_client)
    name = f"{namespace[:50]}-b{uuid.uuid4().hex[:4]}"
    meta = kubernetes.client.V1ObjectMeta(name=name, labels={"mlkube.io/test": "true"})
    core.create_namespace(kubernetes.client.V1Namespace(metadata=meta))
    yield name
    try:
        core.delete_namespace(name)
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise


def credentials(s3: S3Server, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key},
    }


def predict(ip: str) -> dict[str, Any]:
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}).encode()
    req = urllib.request.Request(
        f"http://{ip}/v1/models/iris:predict", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    return out


def served_sha(api: kubernetes.client.ApiClient, namespace: str, ip: str) -> str:
    with urllib.request.urlopen(f"http://{ip}/v2/models/iris", timeout=10) as resp:
        return str(json.loads(resp.read())["parameters"]["sha256"])


def grant(owner: str, consumer: str) -> dict[str, Any]:
    (doc,) = example("model-grant", "modelgrant.yaml")
    doc["metadata"]["namespace"] = owner
    doc["spec"]["from"] = [{"namespace": consumer}]
    return doc


def consumer_docs(s3: S3Server, owner: str, consumer: str) -> list[dict[str, Any]]:
    secret, md = example("model-grant", "modeldeployment.yaml")
    for doc in (secret, md):
        doc["metadata"]["namespace"] = consumer
    secret["stringData"] = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    md["spec"]["model"]["trainingRunRef"]["namespace"] = owner
    return [secret, md]


def second_model() -> dict[str, Any]:
    (doc,) = example("iris", "trainingrun.yaml")
    doc["spec"]["estimator"]["params"]["n_estimators"] = 60
    return doc


def test_a_granted_namespace_serves_another_namespaces_model(
    dev_cluster: Any, namespace: str, consumer: str, node_s3: S3Server, tmp_path: Path
) -> None:
    kc, api = str(dev_cluster.kubeconfig), dev_cluster.api_client
    owner = namespace
    bucket = node_s3.make_bucket(f"grant-{uuid.uuid4().hex[:6]}")
    store = f"s3://{bucket}/mlkube"
    operator = OperatorProcess(
        kc,
        tmp_path,
        env={
            "MLKUBE_ARTIFACT_STORE": store,
            "MLKUBE_ARTIFACT_ENDPOINT": node_s3.endpoint,
            "MLKUBE_ARTIFACT_CREDENTIALS_SECRET": SECRET,
        },
        argv=[
            str(Path(sys.executable).with_name("kopf")),
            "run",
            "-m",
            "mlkube_operator.handlers",
            "--standalone",
            "--namespace",
            owner,
            "--namespace",
            consumer,
        ],
    )
    operator.start()
    try:
        _scenario(kc, api, owner, consumer, node_s3, store, tmp_path)
    except BaseException:
        print(operator.logs()[-8000:])
        raise
    finally:
        operator.stop()


def _scenario(kc: str, api: Any, owner: str, consumer: str, s3: S3Server, store: str, tmp: Path) -> None:
    # Argo CD's health of the grant and of the revoked reference, on the live objects (and
    # recorded for tests/gitops with MLKUBE_RECORD_ARGOCD_FIXTURES=1).
    owner_health, consumer_health = Recorder(api, owner, tmp), Recorder(api, consumer, tmp)
    # Team A trains; its model goes to object storage.
    apply(kc, owner, credentials(s3, SECRET))
    apply(kc, owner, *example("iris", "dataset.yaml"), *example("iris", "trainingrun.yaml"))
    run = wait_condition(api, "trainingruns", owner, "iris-rf", C.SUCCEEDED, ("True",), timeout=300)
    first_sha = run["status"]["model"]["sha256"]
    assert run["status"]["model"]["uri"].startswith(f"{store}/models/{owner}/iris-rf/")

    # Team B refers to it: refused without a grant, and nothing is created.
    apply(kc, consumer, *consumer_docs(s3, owner, consumer))
    md = wait_condition(api, "modeldeployments", consumer, "iris", C.READY, ("False",), timeout=60)
    ready = condition(md, C.READY)
    assert ready is not None and ready["reason"] == "ReferenceNotPermitted", ready
    assert f"no ModelGrant in namespace {owner} lets namespace {consumer} serve it" in ready["message"]
    apps = kubernetes.client.AppsV1Api(api)
    assert apps.list_namespaced_deployment(consumer).items == []

    # Team A grants it: served at once (the grant's event wakes the ModelDeployment).
    apply(kc, owner, grant(owner, consumer))
    md = wait_condition(api, "modeldeployments", consumer, "iris", C.READY, ("True",), timeout=240)
    assert md["status"]["currentModel"]["trainingRun"] == f"{owner}/iris-rf"
    assert md["status"]["currentModel"]["sha256"] == first_sha
    assert md["status"]["reference"]["grant"] == "share-iris" and md["status"]["reference"]["permitted"]
    g = wait_condition(api, "modelgrants", owner, "share-iris", C.ACCEPTED, ("True",), timeout=30)
    assert g["status"]["summary"] == f"{consumer} -> iris-rf"
    owner_health.state("modelgrant-accepted", "ModelGrant", "share-iris", lambda o: o is not None)
    listing = kubectl(kc, "-n", owner, "get", "mlgrant")
    assert "share-iris" in listing and f"{consumer} -> iris-rf" in listing
    ip = kubernetes.client.CoreV1Api(api).read_namespaced_service("iris", consumer).spec.cluster_ip
    wait_ready_endpoints(api, consumer, "iris", 1)
    wait_routed(f"http://{ip}")
    assert len(predict(ip)["predictions"]) == 2
    assert served_sha(api, consumer, ip) == first_sha

    # Revoked: still serving, not rolling out team A's next model.
    kubectl(kc, "-n", owner, "delete", "modelgrant", "share-iris")

    def refused() -> dict[str, Any] | None:
        obj = get_cr(api, "modeldeployments", consumer, "iris")
        prog = condition(obj, C.PROGRESSING)
        return obj if prog is not None and prog["reason"] == "ReferenceNotPermitted" else None

    md = wait_for(refused, 30, "Progressing=False ReferenceNotPermitted after the grant was deleted")
    assert md["status"]["stateSummary"] == "Steady (ReferenceNotPermitted)"
    assert condition(md, C.READY)["status"] == "True"  # type: ignore[index]
    consumer_health.state(
        "modeldeployment-reference-revoked",
        "ModelDeployment",
        "iris",
        lambda o: (condition(o, C.PROGRESSING) or {}).get("reason") == "ReferenceNotPermitted",
    )
    apply(kc, owner, second_model())
    run = wait_condition(api, "trainingruns", owner, "iris-rf", C.SUCCEEDED, ("True",), timeout=300)
    second_sha = run["status"]["model"]["sha256"]
    assert second_sha != first_sha
    time.sleep(5)  # the TrainingRun's events reached the ModelDeployment (a reconcile per event)
    md = get_cr(api, "modeldeployments", consumer, "iris")
    assert md is not None and md["status"]["currentModel"]["sha256"] == first_sha
    assert md["status"].get("candidateModel") is None
    assert served_sha(api, consumer, ip) == first_sha and len(predict(ip)["predictions"]) == 2

    # Granted again: the new model rolls out.
    apply(kc, owner, grant(owner, consumer))

    def rolled() -> dict[str, Any] | None:
        obj = get_cr(api, "modeldeployments", consumer, "iris")
        current = ((obj or {}).get("status") or {}).get("currentModel") or {}
        return obj if current.get("sha256") == second_sha else None

    md = wait_for(rolled, 240, "the second model served after the grant was restored")
    assert md["status"]["stateSummary"] == "Steady"
    wait_ready_endpoints(api, consumer, "iris", 1)
    wait_for(
        lambda: served_sha(api, consumer, ip) == second_sha or None,
        60,
        "the Service answering with the new model",
    )
