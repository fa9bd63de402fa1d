"""The SDK's pure parts: estimator -> spec.estimator, manifests as YAML, the comparison table, rows.

No cluster: these are the conversions every SDK call goes through before it talks to the
API server (tests/integration/test_sdk.py drives the same calls against the dev cluster).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.ensemble import BaggingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import mlkube
from mlkube import specs
from mlkube.handles import _rows, v2_inputs
from mlkube_operator.api import DATASET, TRAINING_RUN
from mlkube_operator.api.trainingrun import TrainingRunSpec


def test_an_estimator_instance_gives_its_public_class_path_and_only_the_chosen_params() -> None:
    est = RandomForestClassifier(n_estimators=50, max_depth=5, random_state=0)
    spec = specs.estimator_spec(est)
    assert spec.class_name == "sklearn.ensemble.RandomForestClassifier"  # not sklearn.ensemble._forest
    assert spec.params == {"n_estimators": 50, "max_depth": 5, "random_state": 0}


def test_params_override_and_numpy_scalars_become_json_numbers() -> None:
    spec = specs.estimator_spec(LogisticRegression(C=np.float64(0.5), max_iter=np.int64(300)), {"C": 2.0})
    assert spec.class_name == "sklearn.linear_model.LogisticRegression"
    assert spec.params == {"C": 2.0, "max_iter": 300}
    assert type(spec.params["max_iter"]) is int


def test_a_class_or_a_class_path_takes_params_as_given() -> None:
    assert specs.estimator_spec(DecisionTreeClassifier, {"max_depth": 3}).model_dump() == {
        "class_name": "sklearn.tree.DecisionTreeClassifier",
        "params": {"max_depth": 3},
    }
    assert specs.estimator_spec("xgboost.XGBClassifier").class_name == "xgboost.XGBClassifier"


def test_a_param_without_a_json_form_is_invalid_spec_naming_it() -> None:
    with pytest.raises(
        mlkube.InvalidSpec, match=r"spec\.estimator\.params\.estimator: a DecisionTreeClassifier"
    ):
        specs.estimator_spec(BaggingClassifier(estimator=DecisionTreeClassifier()))
    with pytest.raises(mlkube.InvalidSpec, match=r"params\.alpha: nan is not a finite number"):
        specs.estimator_spec("sklearn.linear_model.Ridge", {"alpha": float("nan")})
    with pytest.raises(mlkube.InvalidSpec, match=r"spec\.estimator\.class_name|className"):
        specs.estimator_spec("RandomForest")
    with pytest.raises(mlkube.InvalidSpec, match="expected a class path"):
        specs.estimator_spec(42)


def test_parse_spec_names_the_field_in_camel_case() -> None:
    with pytest.raises(mlkube.InvalidSpec) as info:
        specs.parse_spec(
            TrainingRunSpec,
            {
                "datasetRef": {"name": "iris"},
                "estimator": {"className": "sklearn.svm.SVC"},
                "qualityGate": {"metric": "accuracy"},
            },
            "TrainingRun",
            "r",
        )
    assert info.value.reason == "InvalidSpec" and info.value.name == "r"
    assert (
        "spec.qualityGate" in info.value.message and "exactly one of minimum or maximum" in info.value.message
    )


def test_to_yaml_is_the_manifest_without_defaults_and_round_trips() -> None:
    live_spec = {  # as the API server returns it: every schema default filled in
        "datasetRef": {"name": "iris"},
        "datasetPolicy": "Pin",
        "estimator": {"className": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 50}},
        "split": {"testFraction": 0.2, "seed": 42, "stratify": True},
        "metrics": [],
        "qualityGate": {"metric": "accuracy", "minimum": 0.9},
        "backoffLimit": 1,
        "activeDeadlineSeconds": 3600,
    }
    text = specs.to_yaml(TRAINING_RUN, "iris-rf", live_spec)
    doc = yaml.safe_load(text)
    assert doc == {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "iris-rf"},
        "spec": {
            "datasetRef": {"name": "iris"},
            "estimator": {
                "className": "sklearn.ensemble.RandomForestClassifier",
                "params": {"n_estimators": 50},
            },
            "qualityGate": {"metric": "accuracy", "minimum": 0.9},
        },
    }
    assert TrainingRunSpec.model_validate(doc["spec"]) == TrainingRunSpec.model_validate(live_spec)
    ds = yaml.safe_load(
        specs.to_yaml(
            DATASET, "t", {"source": {"configMap": {"name": "t-data", "key": "data.csv"}}, "target": "y"}
        )
    )
    assert ds["spec"] == {"source": {"configMap": {"name": "t-data", "key": "data.csv"}}, "target": "y"}


def _run(name: str, params: dict[str, Any], metrics: dict[str, float], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "generation": 1},
        "spec": {
            "datasetRef": {"name": "iris"},
            "estimator": {"className": "sklearn.svm.SVC", "params": params},
        },
        "status": {
            "metrics": metrics,
            "conditions": [
                {"type": "Succeeded", "status": "True", "reason": "Trained", "observedGeneration": 1}
            ],
            **status,
        },
    }


def test_comparison_rows_hold_params_and_metrics_per_run() -> None:
    rows = specs.comparison_rows(
        [
            _run("a", {"C": 1.0}, {"accuracy": 0.9, "f1_macro": 0.88}),
            _run("b", {"C": 10.0, "kernel": "rbf"}, {"accuracy": 0.95}),
            _run("s", {}, {"accuracy": 0.97}, search={"bestParams": '{"C": 3.5, "gamma": null}'}),
        ]
    )
    frame = pd.DataFrame(rows).set_index("run")
    assert frame.loc["a", "param.C"] == 1.0 and frame.loc["b", "param.kernel"] == "rbf"
    assert frame.loc["b", "metric.accuracy"] == 0.95 and pd.isna(frame.loc["b", "metric.f1_macro"])
    assert frame.loc["s", "param.C"] == 3.5 and rows[2]["param.gamma"] is None  # the best trial's
    assert list(frame["succeeded"]) == ["True"] * 3 and list(frame["reason"]) == ["Trained"] * 3


def test_a_condition_of_an_older_generation_does_not_count() -> None:
    obj = _run("a", {}, {})
    obj["metadata"]["generation"] = 2
    assert specs.condition(obj, "Succeeded") is None
    assert specs.comparison_rows([obj])[0]["succeeded"] == ""


def test_rows_from_a_dataframe_an_array_and_one_row() -> None:
    df = pd.DataFrame({"a": [1.5, np.nan], "b": np.array([1, 2], dtype=np.int64), "c": ["x", "y"]})
    assert _rows(df) == [{"a": 1.5, "b": 1, "c": "x"}, {"a": None, "b": 2, "c": "y"}]
    assert _rows(np.array([[1.0, 2.0], [3.0, 4.0]])) == [[1.0, 2.0], [3.0, 4.0]]
    assert _rows([5.1, 3.5]) == [[5.1, 3.5]]


def test_a_table_too_large_for_a_configmap_is_refused_before_anything_is_written() -> None:
    big = pd.DataFrame({"x": np.arange(200_000) / 7.0, "y": 0})
    assert len(big.to_csv(index=False).encode()) > specs.CONFIGMAP_LIMIT_BYTES
    with pytest.raises(
        mlkube.DataTooLarge, match=r"upload='s3://bucket/prefix'.*use Dataset\.from_url, from_s3 or from_sql"
    ):
        mlkube.Dataset.from_dataframe(big, name="big", target="y")
    with pytest.raises(mlkube.InvalidSpec, match="'label' is not a column"):
        mlkube.Dataset.from_dataframe(big.head(), name="big", target="label")


def test_errors_carry_the_reason_and_the_resource() -> None:
    err = mlkube.QualityGateFailed(
        "accuracy 0.5 < 0.9", reason="QualityGateFailed", kind="TrainingRun", name="r"
    )
    assert isinstance(err, mlkube.TrainingFailed) and isinstance(err, mlkube.MlkubeError)
    assert str(err) == "TrainingRun/r: QualityGateFailed: accuracy 0.5 < 0.9"
    assert issubclass(mlkube.WaitTimeout, TimeoutError) and issubclass(mlkube.NotFound, LookupError)


def test_connect_picks_the_namespace_argument_then_env_then_context(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ctx-ns"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.delenv("MLKUBE_NAMESPACE", raising=False)
    assert mlkube.connect(kubeconfig=kubeconfig).namespace == "ctx-ns"
    monkeypatch.setenv("MLKUBE_NAMESPACE", "env-ns")
    assert mlkube.connect(kubeconfig=kubeconfig).namespace == "env-ns"
    session = mlkube.connect(namespace="given", kubeconfig=kubeconfig)
    assert session.namespace == "given" and session.api.configuration.host == "https://127.0.0.1:1"


def test_v2_inputs_are_one_tensor_per_column_or_one_matrix() -> None:
    rows = _rows(pd.DataFrame({"a": [1.5, np.nan], "plan": ["basic", "pro"]}))
    assert v2_inputs(rows) == [
        {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.5, None]},
        {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
    ]
    assert v2_inputs([[1.0, 2.0], [3.0, 4.0]]) == [
        {"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [[1.0, 2.0], [3.0, 4.0]]}
    ]
