"""The reference profile exported beside the counts: the operator's analysis reads both from one scrape."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlkube_serving.artifacts import ReferenceProfile
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


def _bound(task: str, profile: ReferenceProfile | None, labels: list[str]) -> ServingMetrics:
    m = ServingMetrics("m", with_process=False)
    m.bind_model(
        sha256="0" * 64,
        version="v",
        task=task,
        class_labels=labels,
        schema=InputSchema(("x", "colour"), (False, True), allow_nan=True),
        profile=profile,
    )
    return m


FEATURES = [
    {"name": "x", "kind": "numeric", "binEdges": [0, 1, 2, 4], "fractions": [0.25, 0.5, 0.25]},
    {"name": "colour", "kind": "categorical", "levels": {"red": 0.75, "blue": 0.25}},
]


def test_classification_reference() -> None:
    profile = ReferenceProfile.model_validate(
        {"features": FEATURES, "targetProfile": {"kind": "categorical", "levels": {"1": 0.6, "0": 0.4}}}
    )
    m = _bound("classification", profile, ["0", "1"])
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
    assert _samples(m, p) == {(p, (("bin", "0"),)): 0.4, (p, (("bin", "1"),)): 0.6}
    # Same label values as the counters they are the reference of.
    counted = _samples(m, "mlkube_feature_bin_total") | _samples(m, "mlkube_feature_level_total")
    assert {dict(k[1]).get("bin", dict(k[1]).get("level")) for k in counted} == {
        dict(k[1])["bin"] for k in _samples(m, f)
    }
    assert {k[1] for k in _samples(m, "mlkube_predictions_total")} == {
        (("class", "0"),),
        (("class", "1"),),
    }


def test_regression_reference_uses_prediction_bins() -> None:
    profile = ReferenceProfile.model_validate(
        {
            "features": FEATURES,
            "targetProfile": {"kind": "numeric", "binEdges": [-1.0, 0.0, 1.0], "fractions": [0.3, 0.7]},
        }
    )
    m = _bound("regression", profile, [])
    p = "mlkube_prediction_reference_ratio"
    assert _samples(m, p) == {
        (p, (("bin", "0"),)): 0.0,
        (p, (("bin", "1"),)): 0.3,
        (p, (("bin", "2"),)): 0.7,
        (p, (("bin", "3"),)): 0.0,
        (p, (("bin", "missing"),)): 0.0,
    }
    bins = {dict(k[1])["bin"] for k in _samples(m, "mlkube_prediction_bin_total")}
    assert bins == {dict(k[1])["bin"] for k in _samples(m, p)}


def test_no_reference_without_profile_or_fractions() -> None:
    m = _bound("classification", None, ["0", "1"])
    assert _samples(m, "mlkube_feature_reference") == {}
    assert _samples(m, "mlkube_prediction_reference") == {}
    # Edges without fractions: counted, but no reference to compare with.
    profile = ReferenceProfile.model_validate(
        {"features": [{"name": "x", "kind": "numeric", "binEdges": [0, 1]}]}
    )
    m = _bound("classification", profile, ["0", "1"])
    assert _samples(m, "mlkube_feature_bin_total")
    assert _samples(m, "mlkube_feature_reference") == {}
    assert _samples(m, "mlkube_prediction_reference") == {}
