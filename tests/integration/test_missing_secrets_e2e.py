"""A missing credentials Secret shows in status before anything is created, and clears by itself.

In a namespace whose artifacts live in SeaweedFS (namespace annotations, as in
test_s3_store_e2e), a Dataset reads an s3 source with a credentials Secret that does not
exist yet, and a ModelDeployment names a `spec.model.credentialsSecret` that does not exist
yet. Each says `Reconciled=False` `SecretNotFound` naming the Secret and the field, with a
Warning Event, and no Job or Deployment is created for it (no pod in
CreateContainerConfigError). Once the Secrets are created, both become Ready without any
edit: the operator looks again with backoff.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from mlkube_operator import constants as C
from servers import S3Server, s3_server

from .helpers import condition, event_reasons, get_cr, iris_stack, kubectl, wait_condition, wait_for
from .test_training_e2e import apply

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def node_s3(dev_cluster: Any) -> Iterator[S3Server]:
    with s3_server(dev_cluster.node_ip) as server:
        yield server


def secret(name: str, s3: S3Server) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {
            C.SECRET_KEY_ACCESS_KEY_ID: s3.access_key,
            C.SECRET_KEY_SECRET_ACCESS_KEY: s3.secret_key,
        },
    }


def test_missing_secrets_block_creation_show_in_status_and_clear_when_created(
    dev_cluster: Any, namespace: str, mlkube_operator: Any, node_s3: S3Server
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    bucket = node_s3.make_bucket("secrets-team")
    kubectl(
        kc,
        "annotate",
        "namespace",
        namespace,
        f"{C.ANNOTATION_ARTIFACT_STORE}=s3://{bucket}/mlkube",
        f"{C.ANNOTATION_ARTIFACT_ENDPOINT}={node_s3.endpoint}",
        f"{C.ANNOTATION_ARTIFACT_CREDENTIALS_SECRET}=team-s3",
    )
    csv = io.StringIO()
    csv.write("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(60)))
    node_s3.put(f"{bucket}/lake/table.csv", csv.getvalue().encode())
    lake = {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "lake"},
        "spec": {
            "source": {
                "s3": {
                    "uri": f"s3://{bucket}/lake/table.csv",
                    "format": "csv",
                    "endpoint": node_s3.endpoint,
                    "credentialsSecret": {"name": "lake-creds"},
                }
            },
            "target": "label",
        },
    }
    stack = iris_stack("iris-lr", {"replicas": 1})
    stack[2]["spec"]["model"]["credentialsSecret"] = {"name": "predictor-s3"}
    apply(kc, namespace, secret("team-s3", node_s3), lake, *stack)

    # The Dataset: no Job, Reconciled=False naming the Secret and the field.
    ds = wait_condition(api, "datasets", namespace, "lake", C.RECONCILED, timeout=120)
    cond = condition(ds, C.RECONCILED)
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", C.REASON_SECRET_NOT_FOUND), cond
    assert f"Secret {namespace}/lake-creds not found (spec.source.s3.credentialsSecret)" in cond["message"]
    assert condition(ds, C.READY) is None  # no read was started, so nothing claims "Profiling"

    # The ModelDeployment: once its model is trained, the predictor would need predictor-s3.
    def md_blocked() -> dict[str, Any] | None:
        obj = get_cr(api, "modeldeployments", namespace, "iris")
        cond = condition(obj, C.RECONCILED)
        return obj if cond and cond["reason"] == C.REASON_SECRET_NOT_FOUND else None

    md = wait_for(md_blocked, 300, "modeldeployment/iris Reconciled SecretNotFound")
    cond = condition(md, C.RECONCILED)
    assert cond is not None and cond["status"] == "False"
    assert f"Secret {namespace}/predictor-s3 not found (spec.model.credentialsSecret)" in cond["message"]
    jobs = json.loads(kubectl(kc, "-n", namespace, "get", "jobs", "-o", "json"))["items"]
    assert all(not j["metadata"]["name"].startswith("lake-") for j in jobs), [
        j["metadata"]["name"] for j in jobs
    ]
    deployments = json.loads(kubectl(kc, "-n", namespace, "get", "deployments", "-o", "json"))["items"]
    assert deployments == []
    assert C.REASON_SECRET_NOT_FOUND in event_reasons(kc, namespace, "Dataset")
    assert C.REASON_SECRET_NOT_FOUND in event_reasons(kc, namespace, "ModelDeployment")

    # The Secrets appear: both clear by themselves, no spec edit.
    apply(kc, namespace, secret("lake-creds", node_s3), secret("predictor-s3", node_s3))
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "dataset/lake", "--timeout=240s")
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=240s")
    for plural, name in (("datasets", "lake"), ("modeldeployments", "iris")):
        obj = get_cr(api, plural, namespace, name)
        assert (condition(obj, C.READY) or {}).get("status") == "True", obj
        assert (condition(obj, C.RECONCILED) or {}).get("status") == "True", obj
    assert get_cr(api, "datasets", namespace, "lake")["status"]["rows"] == 60  # type: ignore[index]
    assert C.REASON_RECONCILE_SUCCEEDED in event_reasons(kc, namespace, "ModelDeployment")
