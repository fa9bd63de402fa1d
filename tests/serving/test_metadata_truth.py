"""Truthful serving metadata (issue 13, finding 6).

``GET /v2/models/{name}`` lists what the model really takes (one tensor per feature,
BYTES for text, when a single numeric tensor cannot carry it); a number sent for a
feature trained on text, or text for a numeric one, is a 400 naming the feature; the
version identifies the model (TrainingRun generation and sha256), not scikit-learn.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlkube_serving.codec import parse_v1, parse_v2
from mlkube_serving.errors import RequestError
from mlkube_serving.model import fitted_levels
from mlkube_serving.schema import BOOL, NUMBER, STRING, InputSchema

from .conftest import Artifact, ServerProc
from .test_server_http import metric, post, scrape


def test_metadata_lists_each_feature_with_its_datatype(
    servers: dict[str, ServerProc], artifacts: dict[str, Artifact]
) -> None:
    meta = httpx.get(f"{servers['pipe'].url}/v2/models/pipe", timeout=10).json()
    assert meta["inputs"] == [
        {"name": "size", "datatype": "FP64", "shape": [-1]},
        {"name": "colour", "datatype": "BYTES", "shape": [-1]},
    ]
    # Following the metadata gives a prediction.
    body = {
        "inputs": [
            {"name": i["name"], "datatype": i["datatype"], "shape": [1], "data": [v]}
            for i, v in zip(meta["inputs"], [12.0, "red"], strict=True)
        ]
    }
    r = post(servers["pipe"], "/v2/models/pipe/infer", body)
    assert r.status_code == 200, r.text
    expected = artifacts["pipe"].model.predict(pd.DataFrame({"size": [12.0], "colour": ["red"]}))
    assert r.json()["outputs"][0]["data"] == expected.tolist()
    # A numeric-only model takes one [N, F] tensor, and says so.
    iris = httpx.get(f"{servers['iris'].url}/v2/models/iris", timeout=10).json()
    assert iris["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]


def _v2_tensor(name: str, datatype: str, data: list[Any], shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


@pytest.mark.parametrize(
    ("path", "body", "feature"),
    [
        # The request: one FP64 tensor for a model whose 'colour' is text.
        ("/v2/models/pipe/infer", {"inputs": [_v2_tensor("input-0", "FP64", [12.0, 3.0], [1, 2])]}, "colour"),
        ("/v1/models/pipe:predict", {"instances": [[12.0, 3]]}, "colour"),
        ("/v1/models/pipe:predict", {"instances": [{"size": 12.0, "colour": 3}]}, "colour"),
        ("/v1/models/pipe:predict", {"instances": [{"size": 12.0, "colour": True}]}, "colour"),
        (
            "/v2/models/pipe/infer",
            {"inputs": [_v2_tensor("size", "FP64", [12.0]), _v2_tensor("colour", "INT64", [3])]},
            "colour",
        ),
        (
            "/v2/models/pipe/infer",
            {"inputs": [_v2_tensor("size", "FP64", [12.0]), _v2_tensor("colour", "BYTES", [3])]},
            "colour",
        ),
        # And the other way round: text for a numeric feature.
        ("/v1/models/pipe:predict", {"instances": [{"size": "12", "colour": "red"}]}, "size"),
        (
            "/v2/models/pipe/infer",
            {"inputs": [_v2_tensor("size", "BYTES", ["12"]), _v2_tensor("colour", "BYTES", ["red"])]},
            "size",
        ),
        ("/v1/models/iris:predict", {"instances": [[5.1, "3.5", 1.4, 0.2]]}, "sepal_width"),
        (
            "/v2/models/iris/infer",
            {"inputs": [_v2_tensor("input-0", "FP64", [5.1, 3.5, "1.4", 0.2], [1, 4])]},
            "petal_length",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [_v2_tensor("input-0", "FP64", [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, 1.4, "x"]], [2, 4])]},
            "petal_width",
        ),
    ],
)
def test_a_value_of_the_wrong_kind_is_a_400_naming_the_feature(
    servers: dict[str, ServerProc], path: str, body: dict[str, Any], feature: str
) -> None:
    server = servers["iris"] if "iris" in path else servers["pipe"]
    r = post(server, path, body)
    assert r.status_code == 400, r.text
    assert f"{feature!r}" in r.json()["error"], r.json()


def test_version_identifies_the_model(servers: dict[str, ServerProc], artifacts: dict[str, Artifact]) -> None:
    import sklearn

    pipe, iris = servers["pipe"], servers["iris"]
    version = f"g3-{artifacts['pipe'].sha256[:12]}"
    meta = httpx.get(f"{pipe.url}/v2/models/pipe", timeout=10).json()
    assert meta["versions"] == [version]
    assert meta["parameters"]["trainingRun"]["generation"] == 3
    assert meta["parameters"]["sklearnVersion"] == sklearn.__version__  # still told, not as the version
    body = {"inputs": [_v2_tensor("size", "FP64", [12.0]), _v2_tensor("colour", "BYTES", ["red"])]}
    r = post(pipe, f"/v2/models/pipe/versions/{version}/infer", body)
    assert r.status_code == 200 and r.json()["model_version"] == version
    assert post(pipe, f"/v2/models/pipe/versions/{sklearn.__version__}/infer", body).status_code == 404
    assert metric(scrape(pipe), "mlkube_model_info", model="pipe", version=version) == 1
    # Without a TrainingRun in metadata.json, the sha256 prefix alone.
    iris_version = artifacts["iris"].sha256[:12]
    assert httpx.get(f"{iris.url}/v2/models/iris", timeout=10).json()["versions"] == [iris_version]
    assert metric(scrape(iris), "mlkube_model_info", model="iris", version=iris_version) == 1


def test_fitted_levels_and_their_kinds(artifacts: dict[str, Artifact]) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    assert fitted_levels(artifacts["pipe"].model) == {"colour": ["blue", "green", "red"]}
    assert fitted_levels(artifacts["iris"].model) == {}
    frame = pd.DataFrame({"flag": [True, False, True, False], "n": [1.0, 2.0, 3.0, 4.0]})
    model = Pipeline(
        [
            (
                "preprocess",
                ColumnTransformer(
                    [("c", OneHotEncoder(handle_unknown="ignore"), ["flag"])], remainder="drop"
                ),
            ),
            ("estimator", LogisticRegression()),
        ]
    ).fit(frame, [0, 1, 0, 1])
    levels = fitted_levels(model)
    assert levels == {"flag": [False, True]}
    schema = InputSchema.build(["flag", "n"], None, None, False, levels)
    assert schema.categorical == (False, False)  # no metadata or profile: numeric
    schema = InputSchema(("flag", "n"), (True, False), False, (frozenset({BOOL}), frozenset()))
    assert schema.accepts(0, BOOL) and not schema.accepts(0, STRING) and not schema.accepts(0, NUMBER)
    x, _ = parse_v1({"instances": [[True, 1.0], [None, 2.0]]}, schema)
    assert x[0, 0] is True and np.isnan(x[1, 0])
    with pytest.raises(
        RequestError, match="'flag' is categorical and was trained on booleans: send true/false"
    ):
        parse_v1({"instances": [["True", 1.0]]}, schema)
    # A BOOL tensor carries a boolean feature.
    v2 = parse_v2(
        {"inputs": [_v2_tensor("flag", "BOOL", [True, False]), _v2_tensor("n", "FP64", [1.0, 2.0])]},
        schema,
        False,
    )
    assert v2.x[:, 0].tolist() == [True, False]
