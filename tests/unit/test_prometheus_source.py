"""The Prometheus source's pure parts: the PromQL it sends and how it reads the answers.

The queries are checked by Prometheus' own engine (`promtool test rules`, Debian's
`prometheus` package) on hand-written series, so the join on the model digest and the
route filter are tested as Prometheus evaluates them, not as strings.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube_operator.adapters.prometheus import (
    MODEL_ROUTE_MATCHERS,
    PODS,
    SERIES,
    build_queries,
    counts_from_results,
    string_literal,
)
from mlkube_operator.analysis.counts import is_model_route

SHA_A, SHA_B = "a" * 64, "b" * 64

ROUTES = [
    "/v1/models/{name}:predict",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/feedback",
    "/v2/models/{name}/ready",
    "/v2/models/{name}",
    "/v1/models/{name}:explain",
    "/v1/models/infer",  # the prefix's slash is the suffix's slash
    "/v1/models/:predict",
    "/v3/models/{name}/infer",
    "/x/v1/models/{name}:predict",
    "/v1/models/{name}:predict/",
    "/v2/health/ready",
    "/metrics",
    "",
]


def test_route_matchers_mirror_is_model_route() -> None:
    regexes = re.findall(r'route=~"([^"]*)"', MODEL_ROUTE_MATCHERS)
    assert len(regexes) == 2
    for route in ROUTES:
        # PromQL anchors label regexes at both ends: fullmatch; RE2 and `re` agree on these.
        matched = all(re.fullmatch(rx, route) for rx in regexes)
        assert matched == is_model_route(route), route


def test_label_values_are_quoted_as_promql_strings() -> None:
    assert string_literal('we"ird\\ns\n') == '"we\\"ird\\\\ns\\n"'
    q = build_queries('a"b', "m", SHA_A, 60)
    assert 'namespace="a\\"b"' in q["requests"]


def test_every_query_is_windowed_scoped_and_joined_on_the_digest() -> None:
    q = build_queries("ns", "iris", SHA_A, 300)
    assert set(q) == {PODS, *(s.key for s in SERIES)}
    assert q[PODS] == (
        f'max by (namespace, pod) (max_over_time(mlkube_model_info{{namespace="ns",model="iris",'
        f'sha256="{SHA_A}"}}[300s]))'
    )
    for s in SERIES:
        expr = q[s.key]
        assert f'{s.metric}{{namespace="ns",model="iris"' in expr
        assert f"[300s]) and on (namespace, pod) {q[PODS]})" in expr
        assert expr.startswith(("sum by (" if s.counter else "max by (") + ", ".join(s.labels) + ")")
        assert ("increase(" in expr) == s.counter
        assert (MODEL_ROUTE_MATCHERS in expr) == s.model_routes


def vector(*items: tuple[dict[str, str], str]) -> list[dict[str, Any]]:
    return [{"metric": labels, "value": [1700000000.0, value]} for labels, value in items]


def test_counts_from_results_fills_counts_like_parse_metrics() -> None:
    results = {
        "requests": vector(({"code": "200"}, "120"), ({"code": "500"}, "3.5")),
        "latency": vector(({"le": "0.005"}, "10"), ({"le": "0.1"}, "100"), ({"le": "+Inf"}, "123.5")),
        "feature_bins": vector(
            ({"feature": "size", "bin": "1"}, "7"), ({"feature": "size", "bin": "2"}, "NaN")
        ),
        "feature_levels": vector(({"feature": "colour", "level": "red"}, "4")),
        "predictions": vector(({"class": "big"}, "5")),
        "prediction_bins": vector(({"bin": "3"}, "2")),
        "feedback": vector(({"outcome": "correct"}, "9"), ({"outcome": "incorrect"}, "1")),
        "feature_reference": vector(({"feature": "size", "bin": "1"}, "0.5")),
        "prediction_reference": vector(({"bin": "big"}, "0.4")),
    }
    c = counts_from_results(results, SHA_A)
    assert c.requests == {"200": 120.0, "500": 3.5}
    assert c.latency == {0.005: 10.0, 0.1: 100.0, math.inf: 123.5}
    assert c.feature_bins == {"size": {"1": 7.0}, "colour": {"red": 4.0}}  # NaN dropped, levels merged
    assert c.predictions == {"big": 5.0, "3": 2.0}
    assert c.feedback == {"correct": 9.0, "incorrect": 1.0}
    assert c.feature_reference == {"size": {"1": 0.5}}
    assert c.prediction_reference == {"big": 0.4}
    assert (c.model_sha256, c.ready, c.start_time) == (SHA_A, None, None)
    assert counts_from_results({}, SHA_A).requests == {}


# -- the queries as Prometheus evaluates them -----------------------------------------------------------


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (.ci/run and `make test` do)")
    return found


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    text = ",".join(f"{k}={string_literal(v)}" for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def test_queries_count_only_the_digests_pods_and_model_routes(tmp_path: Path) -> None:
    """Pod a serves digest A, pod b (same model) digest B, pod c is another namespace's model.

    Samples every minute; at 10m a [300s] window holds the samples 5m..10m, so increase()
    is exact (no extrapolation) and the expected numbers are plain arithmetic.
    """
    a = {"namespace": "ns", "pod": "iris-a", "model": "iris"}
    b = {"namespace": "ns", "pod": "iris-b", "model": "iris"}
    c = {"namespace": "other", "pod": "iris-c", "model": "iris"}
    predict, feedback = "/v1/models/{name}:predict", "/v2/models/{name}/feedback"
    series = [
        _series("mlkube_model_info", {**a, "sha256": SHA_A, "version": "1"}, "1x10"),
        _series("mlkube_model_info", {**b, "sha256": SHA_B, "version": "2"}, "1x10"),
        _series("mlkube_model_info", {**c, "sha256": SHA_A, "version": "1"}, "1x10"),
    ]
    for pod, step in ((a, 10), (b, 1000), (c, 1000)):
        series += [
            _series("mlkube_requests_total", {**pod, "route": predict, "code": "200"}, f"0+{step}x10"),
            _series(
                "mlkube_requests_total", {**pod, "route": "/v2/models/{name}/infer", "code": "500"}, "0+1x10"
            ),
            _series("mlkube_requests_total", {**pod, "route": feedback, "code": "200"}, f"0+{step}x10"),
            _series(
                "mlkube_request_duration_seconds_bucket", {**pod, "route": predict, "le": "0.1"}, "0+8x10"
            ),
            _series(
                "mlkube_request_duration_seconds_bucket", {**pod, "route": predict, "le": "+Inf"}, "0+10x10"
            ),
            _series(
                "mlkube_request_duration_seconds_bucket", {**pod, "route": feedback, "le": "+Inf"}, "0+7x10"
            ),
            _series("mlkube_feature_bin_total", {**pod, "feature": "size", "bin": "1"}, "0+3x10"),
            _series("mlkube_feature_level_total", {**pod, "feature": "colour", "level": "red"}, "0+2x10"),
            _series("mlkube_predictions_total", {**pod, "class": "big"}, "0+4x10"),
            _series("mlkube_prediction_bin_total", {**pod, "bin": "2"}, "0+6x10"),
            _series("mlkube_feedback_total", {**pod, "outcome": "correct"}, "0+5x10"),
        ]
    series += [
        _series("mlkube_feature_reference_ratio", {**a, "feature": "size", "bin": "1"}, "0.25x10"),
        _series("mlkube_feature_reference_ratio", {**b, "feature": "size", "bin": "1"}, "0.75x10"),
        _series("mlkube_prediction_reference_ratio", {**a, "bin": "big"}, "0.4x10"),
    ]
    q = build_queries("ns", "iris", SHA_A, 300)

    def exp(query: str, *samples: tuple[dict[str, str], float]) -> dict[str, Any]:
        return {
            "expr": query,
            "eval_time": "10m",
            "exp_samples": [
                {"labels": "{" + ",".join(f'{k}="{v}"' for k, v in lb.items()) + "}", "value": v}
                for lb, v in samples
            ],
        }

    tests = [
        exp(q[PODS], ({"namespace": "ns", "pod": "iris-a"}, 1)),
        exp(q["requests"], ({"code": "200"}, 50), ({"code": "500"}, 5)),
        exp(q["latency"], ({"le": "0.1"}, 40), ({"le": "+Inf"}, 50)),
        exp(q["feature_bins"], ({"feature": "size", "bin": "1"}, 15)),
        exp(q["feature_levels"], ({"feature": "colour", "level": "red"}, 10)),
        exp(q["predictions"], ({"class": "big"}, 20)),
        exp(q["prediction_bins"], ({"bin": "2"}, 30)),
        exp(q["feedback"], ({"outcome": "correct"}, 25)),
        exp(q["feature_reference"], ({"feature": "size", "bin": "1"}, 0.25)),
        exp(q["prediction_reference"], ({"bin": "big"}, 0.4)),
        exp(build_queries("ns", "iris", "f" * 64, 300)["requests"]),  # no pod serves it: nothing
    ]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": []}))
    (tmp_path / "test.yml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["rules.yml"],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
            }
        )
    )
    out = subprocess.run(
        [promtool(), "test", "rules", "test.yml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stdout + out.stderr
