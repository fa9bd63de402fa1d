"""Datasets and TrainingRuns end to end on the dev control plane, through kubectl.

The real operator runs as a separate process; the local kubelet runs the profile
and training Jobs as local processes of the mlkube image; results are read back
with kubectl and the Kubernetes API, and model files are checked byte for byte.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube_operator import constants as C

from .helpers import (
    artifact_host_path,
    condition,
    event_reasons,
    get_cr,
    jobs_of,
    kubectl,
    wait_condition,
    wait_for,
)

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def apply(kubeconfig: str, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl(kubeconfig, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def dataset(name: str, source: dict[str, Any], target: str = "target", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": source, "target": target, **spec},
    }


def run(
    name: str, ds: str, class_name: str, params: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": {
            "datasetRef": {"name": ds},
            "estimator": {"className": class_name, "params": params or {}},
            **spec,
        },
    }


@pytest.fixture()
def csv_server(tmp_path: Path, dev_cluster: Any) -> Iterator[str]:
    """An HTTP server of the test's own serving CSV files from tmp_path, on the node's address.

    Pods reach the machine at the node IP (their loopback is their own).
    """
    (tmp_path / "good.csv").write_text(
        "x1,x2,label\n" + "".join(f"{i},{i % 7 * 0.5},{i % 2}\n" for i in range(60))
    )
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer((dev_cluster.node_ip, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{dev_cluster.node_ip}:{server.server_address[1]}"
    server.shutdown()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_iris_example_end_to_end(dev_cluster: Any, namespace: str, mlkube_operator: Any) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    kubectl(kc, "-n", namespace, "apply", "-f", str(ROOT / "examples" / "iris"))
    kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "dataset/iris", "--timeout=180s")
    ds = get_cr(api, "datasets", namespace, "iris")
    assert ds is not None
    assert ds["status"]["rows"] == 150 and ds["status"]["columns"] == 5
    content_hash = ds["status"]["contentHash"]
    assert len(content_hash) == 64

    kubectl(kc, "-n", namespace, "wait", "--for=condition=Succeeded", "trainingrun/iris-rf", "--timeout=240s")
    tr = get_cr(api, "trainingruns", namespace, "iris-rf")
    assert tr is not None
    assert condition(tr, "Succeeded")["reason"] == "Trained"  # type: ignore[index]
    status = tr["status"]
    assert status["metrics"]["accuracy"] >= 0.9
    assert {"balanced_accuracy", "f1_macro", "roc_auc"} <= set(status["metrics"])
    model = status["model"]
    model_file = artifact_host_path(api, namespace, model["uri"], C.ARTIFACT_MOUNT)
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == model["sha256"]
    assert model["sizeBytes"] == model_file.stat().st_size
    metadata = json.loads(
        artifact_host_path(api, namespace, model["metadataUri"], C.ARTIFACT_MOUNT).read_text()
    )
    assert metadata["datasetHash"] == content_hash == model["datasetHash"] == status["datasetHash"]
    profile = json.loads(
        artifact_host_path(api, namespace, ds["status"]["profileUri"], C.ARTIFACT_MOUNT).read_text()
    )
    assert profile["contentHash"] == content_hash and len(profile["features"]) == 4

    jobs = jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=iris-rf")
    assert [j["metadata"]["name"] for j in jobs] == ["iris-rf-train-1"]
    job = jobs[0]
    assert job["metadata"]["ownerReferences"][0]["uid"] == tr["metadata"]["uid"]
    assert job["metadata"]["labels"][C.LABEL_MANAGED_BY] == C.MANAGED_BY

    table = kubectl(kc, "-n", namespace, "get", "trainingruns")
    assert "SUCCEEDED" in table and "ACCURACY" in table and "True" in table
    assert "iris-rf" in kubectl(kc, "-n", namespace, "get", "mlkube")
    assert {"Profiling", "Profiled", "Training", "Trained"} <= event_reasons(kc, namespace)

    kubectl(kc, "-n", namespace, "delete", "trainingrun", "iris-rf", "--wait=true")
    wait_for(
        lambda: not jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=iris-rf"),
        60,
        "the training Job to be collected",
    )


def test_http_configmap_and_builtin_sources(
    dev_cluster: Any, namespace: str, mlkube_operator: Any, csv_server: str
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "tiny"},
        "data": {
            "data.csv": "a,b,colour,outcome\n"
            + "".join(f"{i},{i * 2.5},{'red' if i % 3 else 'blue'},{i % 2}\n" for i in range(40))
        },
    }
    apply(
        kc,
        namespace,
        cm,
        dataset("web", {"url": f"{csv_server}/good.csv"}, target="label"),
        dataset("cm", {"configMap": {"name": "tiny", "key": "data.csv"}}, target="outcome"),
        dataset("wine", {"builtin": "wine"}),
        run("web-lr", "web", "sklearn.linear_model.LogisticRegression", {"max_iter": 500}),
        run("cm-tree", "cm", "sklearn.tree.DecisionTreeClassifier", {"random_state": 0}),
    )
    expected_rows = {"web": 60, "cm": 40, "wine": 178}
    for name, rows in expected_rows.items():
        ds = wait_condition(api, "datasets", namespace, name, "Ready", timeout=180)
        assert condition(ds, "Ready")["status"] == "True", condition(ds, "Ready")  # type: ignore[index]
        assert ds["status"]["rows"] == rows
    cm_schema = {c["name"]: c["dtype"] for c in get_cr(api, "datasets", namespace, "cm")["status"]["schema"]}  # type: ignore[index]
    assert cm_schema["colour"] == "categorical" and cm_schema["a"] == "numeric"
    for name in ("web-lr", "cm-tree"):
        tr = wait_condition(api, "trainingruns", namespace, name, "Succeeded", timeout=240)
        assert condition(tr, "Succeeded")["status"] == "True", condition(tr, "Succeeded")  # type: ignore[index]
        assert "accuracy" in tr["status"]["metrics"]


def test_dataset_failures_are_specific(
    dev_cluster: Any, namespace: str, mlkube_operator: Any, csv_server: str
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    bad_csv = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "bad"},
        "data": {
            "ragged.csv": 'a,b,y\n1,2,0\n3,4,5,6,7\n"unterminated,1\n',
            "holes.csv": "a,b,y\n1,,0\n2,,1\n3,4,0\n4,,1\n",
        },
    }
    apply(
        kc,
        namespace,
        bad_csv,
        dataset("refused", {"url": f"http://127.0.0.1:{closed_port()}/x.csv"}),
        dataset("notfound", {"url": f"{csv_server}/missing.csv"}),
        dataset("malformed", {"configMap": {"name": "bad", "key": "ragged.csv"}}, target="outcome"),
        dataset("nokey", {"configMap": {"name": "bad", "key": "absent.csv"}}, target="outcome"),
        dataset("notarget", {"configMap": {"name": "bad", "key": "holes.csv"}}, target="species"),
        dataset("toosmall", {"builtin": "iris"}, validation={"minRows": 1000}),
        dataset(
            "holes",
            {"configMap": {"name": "bad", "key": "holes.csv"}},
            target="outcome",
            validation={"maxMissingFraction": 0.1},
        ),
        dataset("badspec", {"builtin": "iris"}, features=["target"]),
    )
    expected = {
        "refused": ("SourceUnavailable", "127.0.0.1"),
        "notfound": ("SourceUnavailable", "404"),
        "malformed": ("ValidationFailed", ""),
        "nokey": ("SourceUnavailable", "absent.csv"),
        "notarget": ("ValidationFailed", "species"),
        "toosmall": ("ValidationFailed", "1000"),
        "holes": ("ValidationFailed", "b"),
        "badspec": ("InvalidSpec", "spec.features"),
    }
    for name, (reason, needle) in expected.items():
        ds = wait_condition(api, "datasets", namespace, name, "Ready", timeout=240)
        ready = condition(ds, "Ready")
        assert ready is not None and ready["status"] == "False", (name, ready)
        assert ready["reason"] == reason, (name, ready)
        assert needle in ready["message"], (name, ready)
        assert "rows" not in ds["status"] or ds["status"]["rows"] is None
    assert jobs_of(api, namespace, f"{C.LABEL_DATASET}=badspec") == []


def test_training_failures_are_specific(dev_cluster: Any, namespace: str, mlkube_operator: Any) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    apply(
        kc,
        namespace,
        dataset("iris", {"builtin": "iris"}),
        run("unknown", "iris", "sklearn.ensemble.NoSuchForest"),
        run("foreign", "iris", "collections.OrderedDict"),
        run("badparam", "iris", "sklearn.ensemble.RandomForestClassifier", {"n_estimators": -1}),
        run(
            "gate",
            "iris",
            "sklearn.dummy.DummyClassifier",
            {"strategy": "most_frequent"},
            qualityGate={"metric": "accuracy", "minimum": 0.9},
        ),
        run("crash", "iris", "sklearn.dummy.DummyClassifier", {"strategy": "constant"}, backoffLimit=1),
        run("orphan", "nosuchdataset", "sklearn.dummy.DummyClassifier"),
    )
    expected = {
        "unknown": ("InvalidSpec", "NoSuchForest"),
        "foreign": ("InvalidSpec", "spec.estimator.className"),
        "badparam": ("InvalidSpec", "n_estimators"),
        "gate": ("QualityGateFailed", "0.9"),
        "crash": ("TrainingFailed", "constant"),
    }
    for name, (reason, needle) in expected.items():
        tr = wait_condition(api, "trainingruns", namespace, name, "Succeeded", timeout=240)
        cond = condition(tr, "Succeeded")
        assert cond is not None and (cond["status"], cond["reason"]) == ("False", reason), (name, cond)
        assert needle in cond["message"], (name, cond)
    assert "accuracy" in get_cr(api, "trainingruns", namespace, "gate")["status"]["metrics"]  # type: ignore[index]
    assert jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=foreign") == []
    crash_jobs = jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=crash")
    assert len(crash_jobs) == 1 and crash_jobs[0]["status"].get("failed") == 2  # 1 try + backoffLimit 1
    orphan = wait_condition(
        api, "trainingruns", namespace, "orphan", "Succeeded", statuses=("Unknown",), timeout=60
    )
    assert condition(orphan, "Succeeded")["reason"] == "DatasetNotReady"  # type: ignore[index]
    assert jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=orphan") == []


def test_spec_change_retrains_and_keeps_the_old_result(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    apply(
        kc,
        namespace,
        dataset("iris", {"builtin": "iris"}),
        run("lr", "iris", "sklearn.linear_model.LogisticRegression", {"max_iter": 300}),
    )
    first = wait_condition(api, "trainingruns", namespace, "lr", "Succeeded", timeout=240)
    old_model = first["status"]["model"]
    kubectl(
        kc,
        "-n",
        namespace,
        "patch",
        "trainingrun",
        "lr",
        "--type=merge",
        "-p",
        '{"spec":{"estimator":{"params":{"max_iter":400,"C":0.5}}}}',
    )

    def training_again() -> dict[str, Any] | None:
        obj = get_cr(api, "trainingruns", namespace, "lr")
        cond = condition(obj, "Succeeded")
        return obj if obj and cond and cond.get("observedGeneration") == 2 else None

    during = wait_for(training_again, 60, "generation 2 to be picked up")
    if condition(during, "Succeeded")["status"] == "Unknown":  # type: ignore[index]
        assert during["status"]["model"] == old_model
    second = wait_condition(api, "trainingruns", namespace, "lr", "Succeeded", timeout=240)
    assert condition(second, "Succeeded")["status"] == "True"  # type: ignore[index]
    assert second["status"]["model"]["uri"] != old_model["uri"]
    names = sorted(j["metadata"]["name"] for j in jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=lr"))
    assert names == ["lr-train-1", "lr-train-2"]
    assert artifact_host_path(api, namespace, old_model["uri"], C.ARTIFACT_MOUNT).exists()


@pytest.mark.exclusive
def test_operator_restarts_never_duplicate_jobs(
    dev_cluster: Any, namespace: str, mlkube_operator: Any
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    apply(kc, namespace, dataset("digits", {"builtin": "digits"}))
    wait_for(lambda: jobs_of(api, namespace, f"{C.LABEL_DATASET}=digits"), 60, "the profile Job")
    mlkube_operator.kill()  # during profiling
    mlkube_operator.start()
    wait_condition(api, "datasets", namespace, "digits", "Ready", timeout=180)
    apply(
        kc,
        namespace,
        run(
            "forest",
            "digits",
            "sklearn.ensemble.RandomForestClassifier",
            {"n_estimators": 150, "random_state": 0},
        ),
    )
    wait_for(lambda: jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=forest"), 60, "the training Job")
    mlkube_operator.kill()  # during training; the Job finishes while no operator runs

    def job_done() -> bool:
        jobs = jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=forest")
        return bool(jobs) and bool(jobs[0]["status"].get("succeeded"))

    try:
        wait_for(job_done, 240, "the training Job to finish without the operator")
    finally:
        mlkube_operator.start()
    tr = wait_condition(api, "trainingruns", namespace, "forest", "Succeeded", timeout=120)
    assert condition(tr, "Succeeded")["status"] == "True"  # type: ignore[index]
    assert len(jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=forest")) == 1
    profile_jobs = jobs_of(
        api, namespace, f"{C.LABEL_DATASET}=digits,{C.LABEL_COMPONENT}={C.COMPONENT_PROFILE}"
    )
    assert [j["metadata"]["name"] for j in profile_jobs] == ["digits-profile-1"]
