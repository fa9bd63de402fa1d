"""In a namespace whose ResourceQuota requires requests, Jobs still run; and a `path` source.

A ResourceQuota on requests.cpu/requests.memory refuses any pod that requests nothing, so
this fails when the operator's Jobs carry no default requests. The Dataset's CSV is put on
the artifact volume exactly as docs/training.md says (its claim and upload pod manifests
are read from the page), so the documented procedure is the tested one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from mlkube_operator import constants as C
from mlkube_operator.settings import Settings

from .helpers import apply_docs, condition, get_cr, jobs_of, kubectl, wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def documented_manifests() -> tuple[dict[str, Any], dict[str, Any]]:
    """The claim and the upload pod of docs/training.md#putting-a-file-on-the-artifact-volume."""
    text = (ROOT / "docs" / "training.md").read_text()
    section = text.split("### Putting a file on the artifact volume", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"<<'YAML'\n(.*?)\n\s*YAML\n", section, re.DOTALL)
    claim, pod = (yaml.safe_load(_dedent(b)) for b in blocks)
    assert claim["kind"] == "PersistentVolumeClaim" and pod["kind"] == "Pod"
    return claim, pod


def _dedent(block: str) -> str:
    lines = block.splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines)


def trainer_image(api: kubernetes.client.ApiClient) -> str:
    deployment = kubernetes.client.AppsV1Api(api).read_namespaced_deployment(
        "mlkube-operator", "mlkube-system"
    )
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    return str(env["MLKUBE_TRAINER_IMAGE"])


def test_dataset_profiles_and_run_trains_under_a_quota_from_an_uploaded_file(
    dev_cluster: Any, namespace: str, mlkube_operator: Any, tmp_path: Path
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    core = kubernetes.client.CoreV1Api(api)
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "compute"},
        "spec": {"hard": {"requests.cpu": "2", "requests.memory": "4Gi"}},
    }
    apply_docs(kc, namespace, quota)
    wait_for(
        lambda: core.read_namespaced_resource_quota("compute", namespace).status.hard or None,
        60,
        "the quota controller to compute the quota's status",
    )
    # The quota bites: a pod without requests is refused.
    bare = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare"},
        "spec": {"containers": [{"name": "c", "image": trainer_image(api), "command": ["true"]}]},
    }
    refused = kubectl(kc, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump(bare), check=False)
    assert "must specify" in refused and "requests.cpu" in refused, refused

    claim, pod = documented_manifests()
    pod["spec"]["containers"][0]["image"] = trainer_image(api)
    apply_docs(kc, namespace, claim, pod)
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "pod/mlkube-upload", "--timeout=120s")
    csv = "a,b,label\n" + "".join(f"{i % 13},{(i * 7) % 11 * 0.5},{int(i % 13 > 6)}\n" for i in range(120))
    kubectl(
        kc,
        "-n",
        namespace,
        "exec",
        "-i",
        "mlkube-upload",
        "--",
        "sh",
        "-c",
        "mkdir -p /var/lib/mlkube/artifacts/data && cat > /var/lib/mlkube/artifacts/data/points.csv",
        stdin=csv,
    )
    kubectl(kc, "-n", namespace, "delete", "pod", "mlkube-upload", "--wait=true")

    resources = [
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "points"},
            "spec": {"source": {"path": "data/points.csv"}, "target": "label"},
        },
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": "points-dt"},
            "spec": {
                "datasetRef": {"name": "points"},
                "estimator": {
                    "className": "sklearn.tree.DecisionTreeClassifier",
                    "params": {"random_state": 0},
                },
            },
        },
    ]
    apply_docs(kc, namespace, *resources)
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "dataset/points", "--timeout=180s")
    ds = get_cr(api, "datasets", namespace, "points")
    assert ds is not None and ds["status"]["rows"] == 120
    kubectl(
        kc, "-n", namespace, "wait", "--for=condition=Succeeded", "trainingrun/points-dt", "--timeout=240s"
    )
    run = get_cr(api, "trainingruns", namespace, "points-dt")
    assert condition(run, "Succeeded")["reason"] == "Trained"  # type: ignore[index]

    # The operator's defaults are what let the Jobs in (the operator runs with the defaults).
    defaults = Settings()
    for component in (C.COMPONENT_PROFILE, C.COMPONENT_TRAINING):
        selector = f"{C.LABEL_COMPONENT}={component}"
        (job, *_) = jobs_of(api, namespace, selector)
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["requests"] == {
            "cpu": defaults.job_cpu_request,
            "memory": defaults.job_memory_request,
        }
    # The user's claim was used as it was (the operator creates one only when missing).
    pvc = core.read_namespaced_persistent_volume_claim("mlkube-artifacts", namespace)
    assert pvc.metadata.labels == claim["metadata"]["labels"]
