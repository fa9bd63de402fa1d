"""The training Job entrypoint: verified data, allow-listed estimators, metrics, gate.

Datasets are produced by the real profile command first, so every training test
starts from a canonical data.csv and its contentHash, as the operator would hand it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from mlkube_operator.training import contract
from mlkube_operator.training.cli import main
from mlkube_operator.training.errors import JobFailure
from mlkube_operator.training.estimators import build_estimator, resolve_class

LR = {"className": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000}}


def run(capsys: pytest.CaptureFixture[str], log: Path, argv: list[str]) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--termination-log", str(log)])
    text = log.read_text()
    assert capsys.readouterr().out.strip().splitlines()[-1] == text
    assert len(text.encode()) < contract.TERMINATION_MESSAGE_MAX_BYTES
    result: dict[str, Any] = json.loads(text)
    return code, result


def dataset(capsys: pytest.CaptureFixture[str], root: Path, spec: dict[str, Any]) -> dict[str, Any]:
    argv = ["profile", "--spec-json", json.dumps(spec), "--namespace", "ns", "--name", "ds"]
    code, result = run(capsys, root / "profile-log", [*argv, "--artifact-root", str(root)])
    assert code == 0, result
    return result


def csv_dataset(
    capsys: pytest.CaptureFixture[str], root: Path, data: bytes, target: str, **spec: Any
) -> dict[str, Any]:
    (root / "src.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "src.csv").write_bytes(data)
    return dataset(capsys, root, {"source": {"path": "src.csv"}, "target": target, **spec})


def train_argv(root: Path, ds: dict[str, Any], spec: dict[str, Any], *extra: str) -> list[str]:
    body = {"datasetRef": {"name": "ds"}, **spec}
    return [
        "train",
        "--spec-json",
        json.dumps(body),
        "--namespace",
        "ns",
        "--name",
        "run",
        "--uid",
        "uid-1",
        "--generation",
        "2",
        "--data-uri",
        ds["dataUri"],
        "--dataset-hash",
        ds["contentHash"],
        "--target",
        ds["target"],
        "--artifact-root",
        str(root),
        *extra,
    ]


def train(
    capsys: pytest.CaptureFixture[str], root: Path, ds: dict[str, Any], spec: dict[str, Any], *extra: str
) -> tuple[int, dict[str, Any]]:
    return run(capsys, root / "train-log", train_argv(root, ds, spec, *extra))


def failure(code: int, result: dict[str, Any], reason: str, exit_code: int = contract.EXIT_PERMANENT) -> str:
    assert (code, result["ok"], result["reason"]) == (exit_code, False, reason), result
    message: str = result["message"]
    return message


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("iris")
    log = root / "log"
    cmd = [sys.executable, "-m", "mlkube_operator.training", "profile", "--namespace", "ns", "--name", "ds"]
    cmd += ["--spec-json", json.dumps({"source": {"builtin": "iris"}, "target": "species"})]
    proc = subprocess.run(
        [*cmd, "--artifact-root", str(root), "--termination-log", str(log)], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(log.read_text())
    return root, result


def test_iris_end_to_end_in_a_subprocess(iris: tuple[Path, dict[str, Any]]) -> None:
    root, ds = iris
    log = root / "train-log"
    spec = {"estimator": LR, "qualityGate": {"metric": "accuracy", "minimum": 0.9}}
    argv = train_argv(root, ds, spec, "--termination-log", str(log))
    proc = subprocess.run(
        [sys.executable, "-m", "mlkube_operator.training", *argv], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(log.read_text())
    assert proc.stdout.decode().strip().splitlines()[-1] == log.read_text()
    assert result["ok"] is True and result["task"] == "classification"
    assert result["metrics"]["accuracy"] >= 0.9
    assert set(result["metrics"]) == {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc"}
    assert result["rows"] == {"train": 120, "test": 30} and result["stratified"] is True
    model = result["model"]
    path = root / "models" / "ns" / "run" / "uid-1" / "2" / "model.joblib"
    assert model["uri"] == path.as_uri()
    assert model["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model["sizeBytes"] == path.stat().st_size
    assert model["datasetHash"] == ds["contentHash"]
    metadata = json.loads(Path(model["metadataUri"].removeprefix("file://")).read_text())
    profile = json.loads(Path(ds["profileUri"].removeprefix("file://")).read_text())
    assert metadata["datasetHash"] == profile["contentHash"] == ds["contentHash"]
    assert metadata["featureNames"] == ds["features"]
    assert metadata["classes"] == [0, 1, 2] and metadata["task"] == "classification"
    assert metadata["estimator"] == LR["className"] and metadata["params"]["max_iter"] == 1000
    assert metadata["params"]["random_state"] == 42  # defaulted to the split seed
    assert metadata["trainingRun"] == {"namespace": "ns", "name": "run", "uid": "uid-1", "generation": 2}
    assert metadata["metrics"] == result["metrics"] and metadata["modelSha256"] == model["sha256"]
    assert {"sklearnVersion", "createdAt"} <= metadata.keys()
    # The model's own predictions on the 30 held-out rows: the reference for prediction drift.
    ref = metadata["referencePredictions"]
    assert ref["rows"] == 30 and ref["accuracy"] == metadata["metrics"]["accuracy"]
    assert set(ref["classes"]) <= {"0", "1", "2"} and sum(ref["classes"].values()) == pytest.approx(1.0)
    assert ref["scoreKind"] == "maxProbability"  # three classes: the largest probability
    assert sum(ref["scores"]["fractions"]) == pytest.approx(1.0)
    assert 1 / 3 <= ref["scores"]["binEdges"][0] <= ref["scores"]["binEdges"][-1] <= 1.0
    from mlkube_serving.artifacts import ModelMetadata

    assert ModelMetadata.model_validate(metadata).reference_predictions is not None  # the server reads it
    loaded = joblib.load(path)
    rows = pd.DataFrame([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], columns=metadata["featureNames"])
    assert loaded.predict(rows).tolist() == [0, 2]


def test_categorical_features(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    colours = rng.choice(["red", "green", "blue"], size=200)
    size = rng.normal(size=200).round(3)
    label = np.where((colours == "red") | (size > 1.0), "yes", "no")
    frame = pd.DataFrame({"colour": colours, "size": size, "label": label})
    frame.loc[3, "colour"] = None
    data = frame.to_csv(index=False).encode()
    ds = csv_dataset(capsys, tmp_path, data, "label", validation={"maxMissingFraction": 0.01})
    assert ds["schema"][0] == {"name": "colour", "dtype": "categorical"}
    code, result = train(
        capsys, tmp_path, ds, {"estimator": {"className": "sklearn.tree.DecisionTreeClassifier"}}
    )
    assert code == 0 and result["metrics"]["accuracy"] > 0.9
    model = joblib.load(Path(result["model"]["uri"].removeprefix("file://")))
    rows = pd.DataFrame([["red", -2.0], ["purple", 0.0], [np.nan, 2.0]], columns=["colour", "size"])
    assert model.predict(rows).tolist() == ["yes", "no", "yes"]


def test_regression_metrics(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ds = dataset(capsys, tmp_path, {"source": {"builtin": "diabetes"}, "target": "target"})
    assert ds["task"] == "regression"
    code, result = train(capsys, tmp_path, ds, {"estimator": {"className": "sklearn.linear_model.Ridge"}})
    assert code == 0 and result["task"] == "regression"
    assert set(result["metrics"]) == {"rmse", "mae", "r2"}
    assert 0.3 < result["metrics"]["r2"] < 1 and result["metrics"]["rmse"] > result["metrics"]["mae"] > 0
    metadata = json.loads(Path(result["model"]["metadataUri"].removeprefix("file://")).read_text())
    assert metadata["classes"] is None and metadata["task"] == "regression"
    ref = metadata["referencePredictions"]
    assert ref["scoreKind"] == "prediction" and "classes" not in ref and "accuracy" not in ref
    assert ref["rows"] == result["rows"]["test"] and len(ref["scores"]["binEdges"]) == 11
    spec = {
        "estimator": {"className": "sklearn.linear_model.Ridge"},
        "qualityGate": {"metric": "rmse", "maximum": 1},
    }
    message = failure(*train(capsys, tmp_path, ds, spec), "QualityGateFailed")
    assert "rmse" in message and "above the maximum 1" in message


def test_only_requested_metrics(
    capsys: pytest.CaptureFixture[str], iris: tuple[Path, dict[str, Any]]
) -> None:
    root, ds = iris
    code, result = train(capsys, root, ds, {"estimator": LR, "metrics": ["accuracy", "f1_macro"]})
    assert code == 0 and set(result["metrics"]) == {"accuracy", "f1_macro"}
    message = failure(
        *train(capsys, root, ds, {"estimator": LR, "metrics": ["accuracy", "rmse"]}), "InvalidSpec"
    )
    assert "rmse" in message and "classification" in message


def test_roc_auc_skipped_without_predict_proba(
    capsys: pytest.CaptureFixture[str], iris: tuple[Path, dict[str, Any]]
) -> None:
    root, ds = iris
    code, result = train(capsys, root, ds, {"estimator": {"className": "sklearn.svm.LinearSVC"}})
    assert code == 0 and "roc_auc" not in result["metrics"] and "accuracy" in result["metrics"]
    assert "predict_proba" in result["skippedMetrics"]["roc_auc"]


def test_quality_gate_missed_still_reports(
    capsys: pytest.CaptureFixture[str], iris: tuple[Path, dict[str, Any]]
) -> None:
    root, ds = iris
    spec = {
        "estimator": {"className": "sklearn.dummy.DummyClassifier"},
        "qualityGate": {"metric": "accuracy", "minimum": 0.9},
    }
    message = failure(*(outcome := train(capsys, root, ds, spec)), "QualityGateFailed")
    result = outcome[1]
    assert "accuracy 0.333333 is below the minimum 0.9" in message
    assert result["metrics"]["accuracy"] == pytest.approx(1 / 3)
    path = Path(result["model"]["uri"].removeprefix("file://"))
    assert result["model"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("class_name", "extra", "expected"),
    [
        ("sklearn.ensemble.NoSuchForest", [], "sklearn.ensemble has no 'NoSuchForest'"),
        ("sklearn.nosuchmodule.Thing", [], "sklearn has no 'nosuchmodule'"),
        ("os.path.join", [], "not allowed (allowed: sklearn.*)"),
        ("collections.OrderedDict", [], "not allowed"),
        ("os.path.join", ["--allowed-prefixes", "os.,collections."], "is a function, not an estimator class"),
        ("collections.OrderedDict", ["--allowed-prefixes", "collections."], "not a scikit-learn estimator"),
        ("sklearn.preprocessing.StandardScaler", [], "has no predict method"),
        (
            "sklearn.linear_model.LinearRegression",
            [],
            "is a regressor, but the dataset's task is classification",
        ),
        ("sklearn.cluster.KMeans", [], "not a classifier"),
    ],
)
def test_invalid_estimators(
    capsys: pytest.CaptureFixture[str],
    iris: tuple[Path, dict[str, Any]],
    class_name: str,
    extra: list[str],
    expected: str,
) -> None:
    root, ds = iris
    message = failure(
        *train(capsys, root, ds, {"estimator": {"className": class_name}}, *extra), "InvalidEstimator"
    )
    assert expected in message and class_name in message


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"n_estimators": -1}, "The 'n_estimators' parameter of RandomForestClassifier must be an int"),
        ({"bogus": 1}, "Invalid parameter 'bogus' for estimator RandomForestClassifier"),
        ({"criterion": "purity"}, "The 'criterion' parameter of RandomForestClassifier must be a str among"),
    ],
)
def test_invalid_parameters(
    capsys: pytest.CaptureFixture[str],
    iris: tuple[Path, dict[str, Any]],
    params: dict[str, Any],
    expected: str,
) -> None:
    root, ds = iris
    spec = {"estimator": {"className": "sklearn.ensemble.RandomForestClassifier", "params": params}}
    assert expected in failure(*train(capsys, root, ds, spec), "InvalidParameters")


def test_dataset_hash_is_verified(
    capsys: pytest.CaptureFixture[str], iris: tuple[Path, dict[str, Any]]
) -> None:
    root, ds = iris
    wrong = {**ds, "contentHash": "0" * 64}
    message = failure(*train(capsys, root, wrong, {"estimator": LR}), "DatasetHashMismatch")
    assert ds["contentHash"] in message and "0" * 64 in message
    gone = {**ds, "dataUri": (root / "missing.csv").as_uri()}
    assert "does not exist" in failure(*train(capsys, root, gone, {"estimator": LR}), "DatasetUnavailable")


def test_crash_is_retryable_without_traceback(
    capsys: pytest.CaptureFixture[str], iris: tuple[Path, dict[str, Any]]
) -> None:
    root, ds = iris
    spec = {
        "estimator": {"className": "sklearn.neighbors.KNeighborsClassifier", "params": {"n_neighbors": 500}}
    }
    message = failure(*train(capsys, root, ds, spec), "TrainingFailed", contract.EXIT_RETRYABLE)
    assert message.startswith("ValueError: ") and "Traceback" not in message


def test_stratify_falls_back_when_a_class_is_tiny(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = [f"{i},{i % 7},{'a' if i % 2 else 'b'}" for i in range(40)] + ["99,1,c"]
    ds = csv_dataset(capsys, tmp_path, ("x,z,label\n" + "\n".join(rows) + "\n").encode(), "label")
    code, result = train(capsys, tmp_path, ds, {"estimator": LR})
    assert code == 0 and result["stratified"] is False
    assert any("class 'c' has 1 member(s)" in note for note in result["notes"])


def test_invalid_training_spec(capsys: pytest.CaptureFixture[str], iris: tuple[Path, dict[str, Any]]) -> None:
    root, ds = iris
    spec = {"estimator": LR, "split": {"testFraction": 1.5}}
    assert "spec.split.testFraction" in failure(*train(capsys, root, ds, spec), "InvalidSpec")
    spec = {"estimator": LR, "qualityGate": {"metric": "r2", "minimum": 0.5}}
    assert "r2 (qualityGate)" in failure(*train(capsys, root, ds, spec), "InvalidSpec")


def test_resolution_and_parameters_directly() -> None:
    cls = resolve_class("sklearn.ensemble.RandomForestClassifier", ("sklearn.",))
    estimator = build_estimator(cls, {"n_estimators": 5}, seed=7)
    assert estimator.get_params()["n_estimators"] == 5 and estimator.get_params()["random_state"] == 7
    assert build_estimator(cls, {"random_state": 1}, seed=7).get_params()["random_state"] == 1
    with pytest.raises(JobFailure) as info:
        resolve_class("sklearnx.Foo", ("sklearn.",))
    assert info.value.reason == "InvalidEstimator" and info.value.exit_code == contract.EXIT_PERMANENT


def test_single_class_is_a_permanent_failure(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = ("x,label\n" + "".join(f"{i},same\n" for i in range(10))).encode()
    ds = csv_dataset(capsys, tmp_path, data, "label")
    message = failure(*train(capsys, tmp_path, ds, {"estimator": LR}), "TrainingFailed")
    assert "single class ('same')" in message
