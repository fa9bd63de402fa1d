"""Model loading rules and the exact fast paths (bit-identical to sklearn, or not used)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_regression
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier

from mlkube_serving import fastpath
from mlkube_serving.artifacts import (
    LoadRefused,
    ModelMetadata,
    ReferenceProfile,
    parse_sha256,
    read_verified,
    resolve_uri,
)
from mlkube_serving.model import ServedModel, label_text

X, Y = load_iris(return_X_y=True)
XR, YR = make_regression(n_samples=200, n_features=4, random_state=0)


class MyForest(RandomForestClassifier):
    pass


@pytest.mark.parametrize(
    ("est", "x", "y", "kind"),
    [
        (RandomForestClassifier(n_estimators=7, random_state=0), X, Y, "forest"),
        (ExtraTreesClassifier(n_estimators=7, random_state=0), X, Y, "forest"),
        (RandomForestClassifier(n_estimators=5, random_state=0), X, Y == 1, "forest"),
        (RandomForestRegressor(n_estimators=5, random_state=0), XR, YR, "forest"),
        (LogisticRegression(max_iter=500), X, Y, "linear"),
        (LogisticRegression(max_iter=500), X, Y == 2, "linear"),
        (LinearRegression(), XR, YR, "linear"),
        (Ridge(), XR, YR, "linear"),
        (DecisionTreeClassifier(), X, Y, None),
        (MyForest(n_estimators=3), X, Y, None),
    ],
)
def test_fast_path_is_exact_or_absent(est: Any, x: Any, y: Any, kind: str | None) -> None:
    est.fit(x, y)
    model = ServedModel(est, name="m", sha256="0" * 64, metadata=None, profile=None)
    model.warm_up(rows=4)
    assert model.fast_path == kind
    rng = np.random.default_rng(3)
    rows = x[rng.integers(0, len(x), 50)] + rng.normal(0, 0.5, (50, x.shape[1]))
    pred = model.predict(rows, want_proba=model.has_proba)
    np.testing.assert_array_equal(pred.values, est.predict(rows))
    if model.has_proba:
        np.testing.assert_array_equal(pred.proba, est.predict_proba(rows))
    if model.classes is not None:
        index = pred.class_index if pred.class_index is not None else model.class_index_of(pred.values)
        np.testing.assert_array_equal(model.classes[index], pred.values)


def test_fast_path_disabled_on_mismatch() -> None:
    est = LogisticRegression(max_iter=500).fit(X, Y)
    path = fastpath.build(est)
    assert path is not None
    path.coef = -path.coef  # type: ignore[attr-defined]
    assert not fastpath.verify(path, X)


def test_nan_probe_and_tags() -> None:
    rf = ServedModel(
        RandomForestClassifier(n_estimators=3).fit(X, Y),
        name="m",
        sha256="0" * 64,
        metadata=None,
        profile=None,
    )
    lr = ServedModel(
        LogisticRegression(max_iter=300).fit(X, Y), name="m", sha256="0" * 64, metadata=None, profile=None
    )
    rf.warm_up(rows=2)
    lr.warm_up(rows=2)
    assert rf.schema.allow_nan and not lr.schema.allow_nan


def test_metadata_must_match_the_model() -> None:
    est = LogisticRegression(max_iter=300).fit(X, Y)
    with pytest.raises(LoadRefused) as info:
        ServedModel(
            est, name="m", sha256="0" * 64, metadata=ModelMetadata(feature_names=["a", "b"]), profile=None
        )
    assert info.value.reason == "MetadataInvalid" and "takes 4 features" in info.value.message
    with pytest.raises(LoadRefused):
        ServedModel(
            LinearRegression().fit(XR, YR),
            name="m",
            sha256="0" * 64,
            metadata=ModelMetadata(task="classification"),
            profile=None,
        )


def test_digests_and_uris(tmp_path: Path) -> None:
    f = tmp_path / "model.joblib"
    f.write_bytes(b"hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    assert read_verified(f, parse_sha256(digest.upper())) == b"hello"
    assert parse_sha256(f"sha256:{digest}") == digest
    for bad, reason in [(None, "DigestMissing"), ("", "DigestMissing"), ("abc", "DigestInvalid")]:
        with pytest.raises(LoadRefused) as info:
            parse_sha256(bad)
        assert info.value.reason == reason
    with pytest.raises(LoadRefused) as info:
        read_verified(f, "0" * 64)
    assert info.value.reason == "DigestMismatch" and digest in info.value.message
    assert resolve_uri("file:///a/b%20c") == Path("/a/b c")
    assert resolve_uri("/x/y") == Path("/x/y")
    with pytest.raises(LoadRefused) as info:
        resolve_uri("s3://bucket/model.joblib")
    assert info.value.reason == "UnsupportedUri"


def test_profile_validation() -> None:
    ok = ReferenceProfile.model_validate(
        {"contentHash": "h", "features": [{"name": "x", "kind": "numeric", "binEdges": None, "missing": 3}]}
    )
    assert ok.features[0].bin_edges is None
    for bad in (
        {"features": [{"name": "x", "kind": "numeric", "binEdges": [1]}]},
        {"features": [{"name": "x", "kind": "numeric", "binEdges": [0, 1], "fractions": [0.5, 0.5]}]},
        {"features": [{"name": "x", "kind": "ordinal"}]},
    ):
        with pytest.raises(ValueError):
            ReferenceProfile.model_validate(bad)


def test_label_text_matches_the_profiler() -> None:
    assert [label_text(v) for v in (np.int64(1), 2.0, 2.5, True, "a")] == ["1", "2", "2.5", "True", "a"]
