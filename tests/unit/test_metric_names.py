"""One list of the model server's metric names, and everything that queries them uses it.

The server exports exactly these families; the PrometheusRule, the Grafana dashboard,
the serving docs and the operator's Prometheus queries name no other mlkube_ series.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mlkube_operator.adapters.prometheus import SERIES
from mlkube_serving import metric_names as N
from mlkube_serving.artifacts import ReferencePredictions, ReferenceProfile
from mlkube_serving.metrics import ServingMetrics
from mlkube_serving.schema import InputSchema

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")
NAME = re.compile(r"\bmlkube_[a-z0-9_]+")


def _known(name: str) -> bool:
    return any(name == base + suffix for base in N.ALL for suffix in SUFFIXES)


def _used(text: str) -> set[str]:
    # mlkube_operator_* are the operator's own series (mlkube_operator.observability).
    return {n for n in NAME.findall(text) if not n.startswith(("mlkube_operator", "mlkube_serving"))}


def test_the_server_exports_exactly_the_listed_families() -> None:
    profile = ReferenceProfile.model_validate(
        {
            "rows": 10,
            "features": [
                {"name": "x", "kind": "numeric", "binEdges": [0, 1], "fractions": [1.0]},
                {"name": "c", "kind": "categorical", "levels": {"a": 1.0}},
            ],
            "targetProfile": {"kind": "numeric", "binEdges": [0, 1], "fractions": [1.0]},
        }
    )
    scores = {"kind": "numeric", "binEdges": [0, 1], "fractions": [1.0]}
    schema = InputSchema(("x", "c"), (False, True), allow_nan=True)
    exported: set[str] = set()
    for task, labels, reference in (
        ("classification", ["0", "1"], {"rows": 5, "accuracy": 0.9, "classes": {"0": 1.0}, "scores": scores}),
        ("regression", [], {"rows": 5, "scoreKind": "prediction", "scores": scores}),
    ):
        m = ServingMetrics("m", with_process=False)
        m.bind_model(
            sha256="0" * 64,
            version="v",
            task=task,
            class_labels=labels,
            schema=schema,
            profile=profile,
            reference=ReferencePredictions.model_validate(reference),
            reference_accuracy=0.9 if task == "classification" else None,
        )
        m.observe_request("/v1/models/{name}:predict", 200, 0.001)
        m.observe_batch(np.array([[0.5, "a"]], dtype=object), 1, np.array([0]), np.array([0.5]))
        m.observe_feedback("correct")
        exported |= {family.name for family in m.registry.collect()}
    assert exported == set(N.ALL)


def test_rules_dashboard_docs_and_queries_name_only_listed_metrics() -> None:
    sources = {
        "prometheusrule": (ROOT / "manifests" / "monitoring" / "prometheusrule.yaml").read_text(),
        "dashboard": (ROOT / "manifests" / "monitoring" / "grafana" / "mlkube.json").read_text(),
        # The metrics table (the page also names request fields such as mlkube_feedback_id).
        "serving.md": "\n".join(
            line
            for line in (ROOT / "docs" / "serving.md").read_text().splitlines()
            if line.startswith("| `mlkube_")
        ),
        "monitoring.md": (ROOT / "docs" / "monitoring.md").read_text(),
        "operator queries": " ".join(s.metric for s in SERIES),
    }
    unknown = {where: sorted(n for n in _used(text) if not _known(n)) for where, text in sources.items()}
    assert unknown == {where: [] for where in sources}
    assert _used(sources["prometheusrule"]) and _used(sources["dashboard"])  # the check saw names


def test_the_check_catches_an_unknown_name() -> None:
    assert not _known("mlkube_request_total") and _known("mlkube_requests_total")
