"""The references exported beside the counts: the operator's analysis reads both from one scrape.

Inputs are compared with the Dataset's profile; predictions with the model's own
predictions on its held-out rows (metadata.json's referencePredictions), never with
the training labels.
"""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlkube_serving.artifacts import ReferencePredictions, ReferenceProfile
from mlkube_serving.metrics import ServingMetrics
from mlkube_serving.schema import InputSchema

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(m: ServingMetrics, prefix: str) -> Series:
    out: Series = {}
    for fam in text_string_to_metric_families(generate_latest(m.registry).decode()):
        for s in fam.samples:
            if s.name.startswith(prefix):
                out[(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "model")))] = s.value
    return out


def _bound(
    task: str,
    profile: ReferenceProfile | None,
    labels: list[str],
    reference: ReferencePredictions | None = None,
) -> ServingMetrics:
    m = ServingMetrics("m", with_process=False)
    m.bind_model(
        sha256="0" * 64,
        version="v",
        task=task,
        class_labels=labels,
        schema=InputSchema(("x", "colour"), (False, True), allow_nan=True),
        profile=profile,
        reference=reference,
        reference_accuracy=None if reference is None else reference.accuracy,
    )
    return m


SCORES = {"kind": "numeric", "binEdges": [0.0, 0.5, 1.0], "fractions": [0.3, 0.7]}


FEATURES = [
    {"name": "x", "kind": "numeric", "binEdges": [0, 1, 2, 4], "fractions": [0.25, 0.5, 0.25]},
    {"name": "colour", "kind": "categorical", "levels": {"red": 0.75, "blue": 0.25}},
]


def test_classification_reference() -> None:
    profile = ReferenceProfile.model_validate(
        {
            "rows": 100,
            "features": FEATURES,
            "targetProfile": {"kind": "categorical", "levels": {"1": 0.5, "0": 0.5}},
        }
    )
    reference = ReferencePredictions.model_validate(
        {
            "rows": 30,
            "accuracy": 0.9,
            "classes": {"1": 0.6, "0": 0.4},
            "scoreKind": "positiveProbability",
            "scores": SCORES,
        }
    )
    m = _bound("classification", profile, ["0", "1"], reference)
    assert m.wants_proba  # the score histogram needs probabilities for every row
    f = "mlkube_feature_reference_ratio"
    assert _samples(m, f) == {
        (f, (("bin", "0"), ("feature", "x"))): 0.0,
        (f, (("bin", "1"), ("feature", "x"))): 0.25,
        (f, (("bin", "2"), ("feature", "x"))): 0.5,
        (f, (("bin", "3"), ("feature", "x"))): 0.25,
        (f, (("bin", "4"), ("feature", "x"))): 0.0,
        (f, (("bin", "missing"), ("feature", "x"))): 0.0,
        (f, (("bin", "red"), ("feature", "colour"))): 0.75,
        (f, (("bin", "blue"), ("feature", "colour"))): 0.25,
        (f, (("bin", "__other__"), ("feature", "colour"))): 0.0,
        (f, (("bin", "__missing__"), ("feature", "colour"))): 0.0,
    }
    p = "mlkube_prediction_reference_ratio"
    assert _samples(m, p) == {(p, (("bin", "0"),)): 0.4, (p, (("bin", "1"),)): 0.6}  # not the labels' 0.5
    s = "mlkube_prediction_score_reference_ratio"
    assert _samples(m, s) == {
        (s, (("bin", "0"),)): 0.0,
        (s, (("bin", "1"),)): 0.3,
        (s, (("bin", "2"),)): 0.7,
        (s, (("bin", "3"),)): 0.0,
        (s, (("bin", "missing"),)): 0.0,
    }
    scored = {dict(k[1])["bin"] for k in _samples(m, "mlkube_prediction_score_bin_total")}
    assert scored == {dict(k[1])["bin"] for k in _samples(m, s)}
    rows = "mlkube_feature_reference_rows"
    assert _samples(m, rows) == {(rows, (("feature", "x"),)): 100.0, (rows, (("feature", "colour"),)): 100.0}
    assert _samples(m, "mlkube_prediction_reference_rows") == {("mlkube_prediction_reference_rows", ()): 30.0}
    assert _samples(m, "mlkube_reference_accuracy") == {("mlkube_reference_accuracy", ()): 0.9}
    # Same label values as the counters they are the reference of.
    counted = _samples(m, "mlkube_feature_bin_total") | _samples(m, "mlkube_feature_level_total")
    assert {dict(k[1]).get("bin", dict(k[1]).get("level")) for k in counted} == {
        dict(k[1])["bin"] for k in _samples(m, f)
    }
    assert {k[1] for k in _samples(m, "mlkube_predictions_total")} == {
        (("class", "0"),),
        (("class", "1"),),
    }


def test_regression_reference_is_the_models_own_predictions() -> None:
    profile = ReferenceProfile.model_validate(
        {
            "features": FEATURES,
            "targetProfile": {"kind": "numeric", "binEdges": [-1.0, 0.0, 1.0], "fractions": [0.3, 0.7]},
        }
    )
    reference = ReferencePredictions.model_validate({"rows": 30, "scoreKind": "prediction", "scores": SCORES})
    m = _bound("regression", profile, [], reference)
    assert not m.wants_proba
    assert _samples(m, "mlkube_prediction_reference_ratio") == {}  # classes only
    s = "mlkube_prediction_score_reference_ratio"
    assert _samples(m, s)[(s, (("bin", "2"),))] == 0.7
    # Predictions are still counted on the target's edges too (dashboards), without a reference.
    assert {dict(k[1])["bin"] for k in _samples(m, "mlkube_prediction_bin_total")} == {
        "0",
        "1",
        "2",
        "3",
        "missing",
    }


def test_no_reference_without_profile_or_fractions() -> None:
    m = _bound("classification", None, ["0", "1"])
    assert _samples(m, "mlkube_feature_reference") == {}
    assert _samples(m, "mlkube_prediction_reference") == {}
    assert _samples(m, "mlkube_prediction_score") == {} and not m.wants_proba
    # A model trained before reference predictions were recorded: nothing to compare
    # predictions with (the labels' shares are not a reference for predictions).
    labelled = ReferenceProfile.model_validate(
        {"features": FEATURES, "targetProfile": {"kind": "categorical", "levels": {"1": 0.6, "0": 0.4}}}
    )
    m = _bound("classification", labelled, ["0", "1"])
    assert _samples(m, "mlkube_prediction_reference") == {}
    assert _samples(m, "mlkube_reference_accuracy") == {}
    # Edges without fractions: counted, but no reference to compare with.
    profile = ReferenceProfile.model_validate(
        {"features": [{"name": "x", "kind": "numeric", "binEdges": [0, 1]}]}
    )
    m = _bound("classification", profile, ["0", "1"])
    assert _samples(m, "mlkube_feature_bin_total")
    assert _samples(m, "mlkube_feature_reference") == {}
    assert _samples(m, "mlkube_prediction_reference") == {}
