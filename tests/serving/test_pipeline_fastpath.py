"""The exact fast path for mlkube's own training pipelines (ColumnTransformer + estimator).

The models are made by the real training Job code (`python -m mlkube_operator.training
profile` then `train`), on iris and on a small CSV with a categorical column, a boolean
column and missing values, so the server is tested against exactly what it will serve.
Every check compares the fast path with the generic path (the pipeline's own predict on
the DataFrame the server builds) bit for bit.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlkube_operator.training.cli import main as training_main
from mlkube_operator.training.pipeline import build_pipeline, model_input
from mlkube_serving import fastpath
from mlkube_serving.app import ServingApp
from mlkube_serving.artifacts import ModelMetadata, ReferenceProfile
from mlkube_serving.model import ServedModel
from mlkube_serving.settings import Settings


@dataclass
class Trained:
    path: Path
    sha256: str
    profile: Path
    metadata: dict[str, Any]
    data: Path  # the canonical data.csv it was trained on


def _run(root: Path, argv: list[str]) -> dict[str, Any]:
    log = root / "termination-log"
    with contextlib.redirect_stdout(io.StringIO()):
        code = training_main([*argv, "--termination-log", str(log)])
    result: dict[str, Any] = json.loads(log.read_text())
    assert code == 0, result
    return result


def _csv(rng: np.random.Generator) -> str:
    lines = ["size,colour,weight,count,fresh,score,label"]
    for _ in range(240):
        size = rng.normal(10, 3)
        colour = rng.choice(["red", "green", "blue", ""])
        weight = "" if rng.random() < 0.15 else f"{rng.normal(5, 1):.4f}"
        count = int(rng.integers(0, 40))
        fresh = rng.choice(["True", "False"])
        score = 2 * size - (float(weight) if weight else 5.0) + rng.normal()
        label = "big" if size > 10 and colour != "blue" else ("many" if count > 25 else "small")
        lines.append(f"{size:.4f},{colour},{weight},{count},{fresh},{score:.4f},{label}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trained]:
    root = tmp_path_factory.mktemp("training")
    (root / "mixed.csv").write_text(_csv(np.random.default_rng(0)))
    datasets = {
        "iris": {"source": {"builtin": "iris"}, "target": "species"},
        "mixed": {
            "source": {"path": "mixed.csv"},
            "target": "label",
            "features": ["size", "colour", "weight", "count", "fresh"],
            "validation": {"maxMissingFraction": 0.5},
        },
        "numbers": {
            "source": {"path": "mixed.csv"},
            "target": "score",
            "features": ["weight", "size", "count"],
            "validation": {"maxMissingFraction": 0.5},
        },
    }
    profiles = {
        name: _run(
            root,
            [
                "profile",
                "--spec-json",
                json.dumps(spec),
                "--namespace",
                "ns",
                "--name",
                name,
                "--artifact-root",
                str(root),
            ],
        )
        for name, spec in datasets.items()
    }
    runs = {
        "iris-rf": ("iris", "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 12, "max_depth": 5}),
        "iris-lr": ("iris", "sklearn.linear_model.LogisticRegression", {"max_iter": 1000}),
        "mixed-rf": ("mixed", "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 12}),
        "mixed-lr": ("mixed", "sklearn.linear_model.LogisticRegression", {"max_iter": 1000}),
        "numbers-ridge": ("numbers", "sklearn.linear_model.Ridge", {}),
        "numbers-et": ("numbers", "sklearn.ensemble.ExtraTreesRegressor", {"n_estimators": 8}),
    }
    out = {}
    for name, (dataset, class_name, params) in runs.items():
        ds = profiles[dataset]
        spec = {"datasetRef": {"name": dataset}, "estimator": {"className": class_name, "params": params}}
        result = _run(
            root,
            [
                *(
                    "train",
                    "--spec-json",
                    json.dumps(spec),
                    "--namespace",
                    "ns",
                    "--name",
                    name,
                    "--uid",
                    "u1",
                ),
                *("--data-uri", ds["dataUri"], "--dataset-hash", ds["contentHash"], "--target", ds["target"]),
                *("--artifact-root", str(root)),
            ],
        )
        path = Path(result["model"]["uri"].removeprefix("file://"))
        out[name] = Trained(
            path,
            result["model"]["sha256"],
            Path(ds["profileUri"].removeprefix("file://")),
            json.loads((path.parent / "metadata.json").read_text()),
            Path(ds["dataUri"].removeprefix("file://")),
        )
    return out


def _served(
    t: Trained, fast: bool, estimator: Any = None, metadata: dict[str, Any] | None = None
) -> ServedModel:
    model = ServedModel(
        estimator if estimator is not None else joblib.load(t.path),
        name="m",
        sha256=t.sha256,
        metadata=ModelMetadata.model_validate(metadata if metadata is not None else t.metadata),
        profile=ReferenceProfile.model_validate(json.loads(t.profile.read_text())),
    )
    model.warm_up(rows=4, fast_path=fast)
    return model


def _random_rows(model: ServedModel, n: int, seed: int) -> Any:
    """Rows as the codec makes them: numbers around and beyond the training range with NaNs,
    categories known, unknown, spelt differently (1 for True, "True" for True) or missing."""
    rng = np.random.default_rng(seed)
    odd = [True, False, 1, 0, 1.0, "True", "nan", "", "RED", "never-seen"]
    x = model.check_rows(n=n, seed=seed, levels={j: odd for j in range(model.schema.n_features)})[1:]
    numeric = [j for j, c in enumerate(model.schema.categorical) if not c]
    for j in numeric:
        x[:, j] = [v * 50 if rng.random() < 0.05 else v for v in x[:, j].tolist()]
        x[rng.random(n) < 0.2, j] = np.nan
    return x


def _same(a: Any, b: Any) -> None:
    np.testing.assert_array_equal(a.values, b.values, strict=True)
    if a.proba is not None or b.proba is not None:
        np.testing.assert_array_equal(a.proba, b.proba, strict=True)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("iris-rf", "pipeline+forest"),
        ("iris-lr", "pipeline+linear"),
        ("mixed-rf", "pipeline+forest"),
        ("mixed-lr", "pipeline+linear"),
        ("numbers-ridge", "pipeline+linear"),
        ("numbers-et", "pipeline+forest"),
    ],
)
def test_training_pipelines_are_served_exactly_by_the_fast_path(
    trained: dict[str, Trained], name: str, kind: str
) -> None:
    t = trained[name]
    fast, plain = _served(t, True), _served(t, False)
    assert fast.fast_path == kind and fast.describe()["fastPath"] == kind
    assert plain.fast_path is None
    assert fast.schema.allow_nan  # the median imputer takes missing numbers
    assert fast.schema.categorical == plain.schema.categorical
    assert any(fast.schema.categorical) == name.startswith("mixed")
    pipeline = joblib.load(t.path)
    for seed, n in enumerate([1, 1, 2, 3, 17, 64, 300]):
        x = _random_rows(fast, n, seed)
        before = [repr(v) for v in x.ravel().tolist()]
        got = fast.predict(x, want_proba=fast.has_proba)
        assert [repr(v) for v in x.ravel().tolist()] == before  # the request's matrix is untouched
        _same(got, plain.predict(x, want_proba=plain.has_proba))
        # ... and what a user gets from the pipeline itself on the documented DataFrame input.
        expected = pipeline.predict(plain._model_input(x))
        np.testing.assert_array_equal(got.values, expected)
        if fast.has_proba:
            np.testing.assert_array_equal(got.proba, pipeline.predict_proba(plain._model_input(x)))


def test_feature_order_in_metadata_need_not_be_the_fitted_order(trained: dict[str, Trained]) -> None:
    t = trained["mixed-lr"]
    meta = dict(t.metadata, featureNames=list(reversed(t.metadata["featureNames"])))
    fast, plain = _served(t, True, metadata=meta), _served(t, False, metadata=meta)
    assert fast.fast_path == "pipeline+linear"
    for seed in range(3):
        x = _random_rows(fast, 40, seed)
        _same(fast.predict(x, True), plain.predict(x, True))


def _variants() -> dict[str, Any]:
    """Pipelines the fast path does not reproduce: each must fall back to plain sklearn."""

    class MyForest(RandomForestClassifier):
        pass

    return {
        "as trained (the control: fast)": {},
        "min-max scaler": {"preprocess__numeric__scale": MinMaxScaler()},
        "one-hot drop first": {
            "preprocess__categorical": OneHotEncoder(
                drop="first", handle_unknown="ignore", sparse_output=False
            )
        },
        "one-hot unknown error": {
            "preprocess__categorical": OneHotEncoder(handle_unknown="error", sparse_output=False)
        },
        "one-hot infrequent": {
            "preprocess__categorical": OneHotEncoder(
                handle_unknown="infrequent_if_exist", min_frequency=70, sparse_output=False
            )
        },
        "remainder passthrough": {"preprocess__remainder": "passthrough"},
        "no fast path for the estimator": {"estimator": DecisionTreeClassifier(random_state=0)},
        "estimator subclass": {"estimator": MyForest(n_estimators=5, random_state=0)},
        "pandas output": "set_output",
        "three steps": "three steps",
    }


@pytest.mark.filterwarnings("ignore:Found unknown categories:UserWarning")
@pytest.mark.parametrize("variant", list(_variants()))
def test_unrecognised_pipelines_fall_back(trained: dict[str, Trained], variant: str) -> None:
    t = trained["mixed-rf"]
    features = t.metadata["featureNames"]
    if variant == "one-hot unknown error":
        # Without the boolean column: the profile spells its levels "True"/"False", which such
        # an encoder would refuse at warm-up (the server would say WarmupFailed).
        features = [f for f in features if f != "fresh"]
    frame = pd.read_csv(t.data)
    x = model_input(frame, features)
    pipe = build_pipeline(x, features, RandomForestClassifier(n_estimators=5, random_state=0))
    change = _variants()[variant]
    if change == "set_output":
        pipe.set_output(transform="pandas")
        # set_output on the pipeline alone leaves the ColumnTransformer's config default.
        pipe.steps[0][1].set_output(transform="pandas")
    elif change == "three steps":
        from sklearn.pipeline import Pipeline

        pipe = Pipeline([pipe.steps[0], ("scale-again", StandardScaler()), pipe.steps[1]])
    else:
        pipe.set_params(**change)
    if variant == "remainder passthrough":
        x = x.assign(extra=1.0)
        features = [*features, "extra"]
    pipe.fit(x, frame[t.metadata["target"]])
    meta = dict(t.metadata, featureNames=features, schema=None)
    fast, plain = _served(t, True, pipe, meta), _served(t, False, pipe, meta)
    assert fast.fast_path == ("pipeline+forest" if variant.startswith("as trained") else None)
    for known_levels_only in (False, True):
        xs = _random_rows(fast, 30, 1)
        if known_levels_only:  # what an encoder with handle_unknown="error" accepts
            xs[:, features.index("colour")] = "red"
            if "fresh" in features:
                xs[:, features.index("fresh")] = True
        try:
            expected = plain.predict(xs, True)
        except ValueError:
            with pytest.raises(ValueError):
                fast.predict(xs, True)
            continue
        _same(fast.predict(xs, True), expected)


def test_verification_catches_a_wrong_transform(trained: dict[str, Trained]) -> None:
    t = trained["mixed-rf"]
    model = _served(t, False)
    pipeline = model.estimator
    names, flags = list(model.schema.feature_names), model.schema.categorical
    rows = model.check_rows()
    assert np.isnan(rows[:, names.index("weight")].astype(float)).any()  # the probe has NaNs
    assert "__mlkube_unseen_level__" in set(rows[:, names.index("colour")].tolist())  # and unknown levels

    def tampered(edit: Any) -> bool:
        path = fastpath.build(pipeline, names, flags)
        assert isinstance(path, fastpath.PipelinePath) and fastpath.verify(path, rows, model._model_input)
        edit(path)
        return fastpath.verify(path, rows, model._model_input)

    def impute(path: fastpath.PipelinePath) -> None:
        step = path.numeric[0].steps[0]
        assert isinstance(step, fastpath._Impute)
        step.statistics = step.statistics + 1e-9

    def scale(path: fastpath.PipelinePath) -> None:
        step = path.numeric[0].steps[1]
        assert isinstance(step, fastpath._Scale) and step.scale is not None
        step.scale = np.nextafter(step.scale, np.inf)

    def onehot(path: fastpath.PipelinePath) -> None:
        path.onehot[0].nan_index = [-1 for _ in path.onehot[0].nan_index]

    assert not tampered(impute)
    assert not tampered(scale)
    assert not tampered(onehot)


async def test_fast_path_reported_and_identical_over_the_protocols(trained: dict[str, Trained]) -> None:
    t = trained["mixed-rf"]
    assert t.metadata["featureNames"] == ["size", "colour", "weight", "count", "fresh"]
    rows = [
        [9.5, "red", 5.1, 3, True],
        [None, None, None, None, None],
        [30.0, "never-seen", -2.0, 100, True],
        [12.0, "green", None, 7, False],
    ]
    # ("fresh" was fitted on booleans: the string "True" is refused with a 400, see
    # test_metadata_truth.py, rather than silently becoming an unseen level.)
    # One tensor per feature, as MLServer's pandas codec sends them; "fresh" (booleans in
    # training) as a BOOL tensor.
    tensors = [
        {"name": "size", "datatype": "FP64", "data": [9.5, None, 30.0, 12.0]},
        {"name": "colour", "datatype": "BYTES", "data": ["red", None, "never-seen", "green"]},
        {"name": "weight", "datatype": "FP64", "data": [5.1, None, -2.0, None]},
        {"name": "count", "datatype": "FP32", "data": [3, None, 100, 7]},
        {"name": "fresh", "datatype": "BOOL", "data": [True, False, True, False]},
    ]
    v2_body = {
        "inputs": [{**tensor, "shape": [4]} for tensor in tensors],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    answers = []
    for fast in (True, False):
        settings = Settings(
            model_uri=f"file://{t.path}",
            model_sha256=t.sha256,
            model_name="mixed",
            reference_profile=str(t.profile),
            fast_path=fast,
        )
        app = ServingApp(settings)
        app.start_loading()
        await app.wait_loaded()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c:
                meta = (await c.get("/v2/models/mixed")).json()
                assert meta["parameters"]["fastPath"] == ("pipeline+forest" if fast else None)
                v2 = await c.post("/v2/models/mixed/infer", json=v2_body)
                v1 = await c.post("/v1/models/mixed:predict", json={"instances": rows})
                assert v2.status_code == 200 and v1.status_code == 200, (v2.text, v1.text)
                answers.append((v2.json()["outputs"], v1.json()["predictions"]))
        finally:
            await app.shutdown()
    assert answers[0] == answers[1]
