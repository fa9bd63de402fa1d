"""The notebook SDK against the dev cluster: the docs' quickstart runs, and failures raise typed errors.

No mocked client: `mlkube.connect` gets the dev cluster's kubeconfig and the test's
namespace, and every call goes to the real API server, the in-cluster operator, its Jobs
and the model server behind the Service. The happy path is the quickstart block of
docs/sdk.md, executed as written; its results are then checked against the cluster.
Round trips are kept few: one model is trained for the happy path, and the error test
shares one Dataset among its cases.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import mlkube
from mlkube_devcluster.testing import wait_for
from mlkube_operator.api.trainingrun import TrainingRunSpec

from .helpers import get_cr, kubectl

pytestmark = pytest.mark.cluster

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def quickstart() -> str:
    match = re.search(r"<!-- sdk-quickstart -->\n```python\n(.*?)\n```", DOC.read_text(), re.S)
    assert match, "docs/sdk.md lost its quickstart block"
    return match.group(1)


@pytest.fixture
def sdk(dev_cluster: Any, namespace: str, mlkube_operator: Any) -> mlkube.Session:
    return mlkube.connect(namespace=namespace, kubeconfig=dev_cluster.kubeconfig)


def test_quickstart_from_a_dataframe_to_a_served_model(sdk: mlkube.Session, dev_cluster: Any) -> None:
    scope: dict[str, Any] = {}
    exec(compile(quickstart(), str(DOC), "exec"), scope)
    ds, run, md = scope["ds"], scope["run"], scope["md"]
    api, ns = dev_cluster.api_client, sdk.namespace

    # The Dataset came from a ConfigMap the Dataset owns, and was profiled.
    live_ds = get_cr(api, "datasets", ns, "iris")
    assert live_ds is not None and live_ds["spec"]["source"] == {
        "configMap": {"name": "iris-data", "key": "data.csv"}
    }
    cm = yaml.safe_load(
        kubectl(dev_cluster.kubeconfig, "-n", ns, "get", "configmap", "iris-data", "-o", "yaml")
    )
    assert cm["metadata"]["ownerReferences"][0]["uid"] == live_ds["metadata"]["uid"]
    assert ds.status.rows == 150 and ds.ready
    # The full profile, read from the artifact volume by a reader pod (the PVC is not reachable from here).
    profile = ds.profile
    df = scope["df"]
    assert sorted(profile.index) == sorted(df.columns)
    assert profile.loc["target", "role"] == "target"
    feature = "petal length (cm)"
    assert profile.loc[feature, "mean"] == pytest.approx(df[feature].mean())
    assert profile.loc[feature, "std"] == pytest.approx(df[feature].std(ddof=0))
    assert (
        profile.loc[feature, "min"] <= df[feature].min() and profile.loc[feature, "max"] >= df[feature].max()
    )
    assert profile.loc[feature, "missing"] == 0 and profile.loc[feature, "bins"] >= 2
    _no_reader_pods_left(dev_cluster, ns)

    # The run: the estimator instance became the spec, the model and metrics are in status.
    live_run = get_cr(api, "trainingruns", ns, run.name)
    assert live_run is not None
    assert live_run["spec"]["estimator"] == {
        "className": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 30, "random_state": 0},
    }
    assert run.name.startswith("iris-randomforestclassifier-")
    assert run.metrics == live_run["status"]["metrics"] and run.metrics["accuracy"] >= 0.8
    assert run.model is not None and run.model.sha256 == live_run["status"]["model"]["sha256"]
    logs = run.logs()
    assert logs.startswith(f"==> {live_run['status']['jobName']}-") and run.model.sha256 in logs

    # The manifest for Git is the run's spec without defaults; applying it elsewhere means the same.
    doc = yaml.safe_load(scope["manifest"])
    assert doc["metadata"] == {"name": run.name} and "split" not in doc["spec"]
    assert TrainingRunSpec.model_validate(doc["spec"]) == TrainingRunSpec.model_validate(live_run["spec"])

    # compare: params and metrics of the run.
    table = scope["table"]
    assert table.loc[run.name, "param.n_estimators"] == 30
    assert table.loc[run.name, "metric.accuracy"] == run.metrics["accuracy"]

    # Served through the Service: the prototypical rows of the three classes, and feedback scored.
    assert list(scope["pred"]) == [0, 1, 2] and scope["pred"].id
    assert scope["answer"] == {"accepted": 1, "unknownIds": [], "scoredRows": 3}
    assert md.status.current_model is not None and md.status.current_model.sha256 == run.model.sha256
    svc = yaml.safe_load(kubectl(dev_cluster.kubeconfig, "-n", ns, "get", "service", "iris", "-o", "yaml"))
    assert md.url == f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    assert md.analysis is None or md.analysis.verdict.value in ("Healthy", "Degraded", "InsufficientData")
    arr = md.predict(scope["rows"].to_numpy())  # a plain array, rows in feature order
    assert list(arr) == [0, 1, 2]
    v2 = md.predict(scope["rows"], protocol="v2")  # one tensor per column, Open Inference Protocol
    assert list(v2) == [0, 1, 2] and v2.id and v2.id != scope["pred"].id
    assert md.feedback(v2.id, [0, 1, 2]) == {"accepted": 1, "unknownIds": [], "scoredRows": 3}
    assert list(md.predict(scope["rows"].to_numpy(), protocol="v2")) == [0, 1, 2]

    # The history: the rollout's Events (RollingOut, then Serving) and the state from status, in time order.
    history = md.history()
    assert history["time"].is_monotonic_increasing
    events = history[history["source"] == "event"]
    assert {"RollingOut", "Serving"} <= set(events["reason"])
    assert set(events[events["reason"].isin(["RollingOut", "Serving"])]["category"]) == {"rollout"}
    assert list(history[history["category"] == "state"]["reason"]) == [md.status.state_summary]
    ax = md.plot_history()
    assert "rollout" in [t.get_text() for t in ax.get_yticklabels()]

    # Displays: the one-line repr and the HTML summary with the conditions table.
    assert repr(run).startswith(f"<Run {ns}/{run.name}: Succeeded=True (Trained)")
    html = md._repr_html_()
    assert "<b>ModelDeployment</b>" in html and "Serving" in html and "<th>Reason</th>" in html


def _no_reader_pods_left(dev_cluster: Any, ns: str) -> None:
    def gone() -> bool:
        out = kubectl(
            dev_cluster.kubeconfig, "-n", ns, "get", "pods", "-l", "mlkube.io/artifact-reader", "-o", "name"
        )
        return out.strip() == ""

    wait_for(gone, timeout=30, what="the artifact reader pod deleted")


def test_a_search_run_shows_its_trials(sdk: mlkube.Session, dev_cluster: Any) -> None:
    from sklearn.datasets import load_iris

    df = load_iris(as_frame=True).frame
    ds = mlkube.Dataset.from_dataframe(df, name="iris-s", target="target").wait(timeout=300, progress=False)
    plain = mlkube.train(ds, "sklearn.tree.DecisionTreeClassifier", {"max_depth": 2}).wait(
        600, progress=False
    )
    search = {"type": "Grid", "metric": "accuracy", "cv": 3, "space": {"max_depth": {"values": [1, 3, 5]}}}
    run = mlkube.train(ds, "sklearn.tree.DecisionTreeClassifier", search=search).wait(600, progress=False)

    trials = run.trials  # trials.json read from the artifact volume by a reader pod
    assert len(trials) == 3 and sorted(trials["param.max_depth"]) == [1, 3, 5]
    assert list(trials["rank"]) == [1, 2, 3] and trials["ok"].all()
    assert list(trials["score"]) == sorted(trials["score"], reverse=True)  # best first
    best = trials.iloc[0]
    assert run.status.search is not None and run.status.search.best_index == best["trial"]
    assert best["score"] == pytest.approx(run.status.search.best_score)
    _no_reader_pods_left(dev_cluster, sdk.namespace)

    table = mlkube.compare([plain, run], trials=True)
    assert list(table.index) == [plain.name] + [run.name] * 3
    assert table.loc[plain.name, "param.max_depth"] == 2 and table.loc[plain.name, "metric.accuracy"] > 0
    assert list(table.loc[run.name, "trial"]) == list(trials["trial"])
    # Without trials: one row per run, the search run with its best trial's parameters.
    assert mlkube.compare([plain, run]).loc[run.name, "param.max_depth"] == best["param.max_depth"]


def test_failures_raise_typed_errors(sdk: mlkube.Session) -> None:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    # A missing Dataset: NotFound at once, nothing created.
    with pytest.raises(mlkube.NotFound) as missing:
        mlkube.train("no-such-data", "sklearn.svm.SVC")
    assert missing.value.kind == "Dataset" and missing.value.name == "no-such-data"
    with pytest.raises(mlkube.NotFound):
        mlkube.Dataset.get_existing("no-such-data")
    assert mlkube.runs() == []

    df = load_iris(as_frame=True).frame
    ds = mlkube.Dataset.from_dataframe(df, name="flowers", target="target")

    # A timeout in wait: the run was just created, its Job cannot have finished.
    gate = mlkube.train(
        ds, DecisionTreeClassifier(max_depth=1), quality_gate={"metric": "accuracy", "minimum": 0.99}
    )
    with pytest.raises(mlkube.WaitTimeout) as timeout:
        gate.wait(timeout=0, progress=False)
    assert timeout.value.reason == "WaitTimeout" and "last:" in timeout.value.message

    # A disallowed estimator: the operator refuses it (no Job), the SDK raises InvalidSpec with its message.
    bad = mlkube.train(ds, "xgboost.XGBClassifier", {"n_estimators": 10})
    with pytest.raises(mlkube.InvalidSpec) as invalid:
        bad.wait(timeout=300, progress=False)
    assert invalid.value.reason == "InvalidSpec" and "xgboost.XGBClassifier" in invalid.value.message

    # A failed quality gate (a stump cannot reach 0.99 on three classes): metrics still readable.
    with pytest.raises(mlkube.QualityGateFailed) as failed:
        gate.wait(timeout=600, progress=False)
    assert failed.value.reason == "QualityGateFailed" and failed.value.name == gate.name
    assert 0 < gate.metrics["accuracy"] < 0.99 and gate.model is None

    # A deployment whose model is not ready: its run failed, so wait raises ModelNotReady.
    md = mlkube.deploy(gate, name="stump")
    with pytest.raises(mlkube.ModelNotReady) as not_ready:
        md.wait(timeout=120, progress=False)
    assert not_ready.value.reason == "ModelNotReady" and "QualityGateFailed" in not_ready.value.message

    # A spec the API models refuse never reaches the cluster.
    with pytest.raises(mlkube.InvalidSpec, match=r"spec\.replicas"):
        mlkube.deploy(gate, name="stump2", replicas=-1)
    assert sorted(r.name for r in mlkube.runs()) == sorted([gate.name, bad.name])
    assert mlkube.compare([gate, bad]).loc[gate.name, "reason"] == "QualityGateFailed"
