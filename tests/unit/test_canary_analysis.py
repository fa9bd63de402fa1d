"""Canary against stable: worse only when significant and large enough (analysis.canary)."""

from __future__ import annotations

import math

from mlkube_operator.analysis.canary import compare
from mlkube_operator.analysis.counts import Counts

BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, math.inf)


def track(
    n: int,
    errors: int = 0,
    slow: int = 0,
    classes: tuple[float, float] = (0.5, 0.5),
    correct: int = 0,
    incorrect: int = 0,
) -> Counts:
    """n requests: `slow` of them take 0.3 s, the rest 8 ms; predictions split by `classes`."""
    latency = {b: float(n - slow if b < 0.5 else n) if b >= 0.01 else 0.0 for b in BUCKETS}
    return Counts(
        requests={"200": float(n - errors), "500": float(errors)},
        latency=latency,
        predictions={"setosa": n * classes[0], "virginica": n * classes[1]},
        feedback={"correct": float(correct), "incorrect": float(incorrect)},
    )


def names(counts_a: Counts, counts_b: Counts) -> list[str]:
    return [c.name for c in compare(counts_a, counts_b).checks if c.worse]


def test_same_behaviour_is_not_worse() -> None:
    result = compare(track(500, errors=5, slow=5), track(500, errors=6, slow=4))
    assert not result.worse and len(result.checks) == 3 and result.reasons == []


def test_a_higher_error_rate_is_worse() -> None:
    assert names(track(300, errors=30), track(300, errors=2)) == ["errorRate"]


def test_a_fewer_error_canary_is_not_worse() -> None:
    assert names(track(300, errors=1), track(300, errors=30)) == []


def test_slower_canary_is_worse() -> None:
    worse = names(track(400, slow=80), track(400, slow=2))
    assert len(worse) == 1 and worse[0].startswith("share slower than")


def test_a_shifted_prediction_distribution_is_worse() -> None:
    assert names(track(400, classes=(0.9, 0.1)), track(400, classes=(0.5, 0.5))) == [
        "prediction share of 'setosa'"
    ]


def test_lower_accuracy_on_feedback_is_worse() -> None:
    result = compare(track(200, correct=60, incorrect=40), track(200, correct=95, incorrect=5))
    assert [c.name for c in result.checks if c.worse] == ["accuracy"]


def test_too_little_data_runs_no_check() -> None:
    result = compare(track(10, errors=5), track(500, errors=0))
    assert result.checks == [] and not result.worse
    assert any("errorRate" in s for s in result.skipped)


def test_a_negligible_difference_is_not_worse_however_much_traffic() -> None:
    # 0.5 % against 0.2 %: significant at this volume, below the minimum effect of 1 point.
    result = compare(track(200_000, errors=1_000), track(200_000, errors=400))
    err = next(c for c in result.checks if c.name == "errorRate")
    assert err.p_value < 1e-6 and not err.worse


def test_sub_millisecond_latency_differences_are_not_judged() -> None:
    fast = {0.0005: 0.0, 0.001: 30.0, 0.005: 30.0, 0.025: 30.0, 0.05: 30.0, math.inf: 30.0}
    cold = {0.0005: 0.0, 0.001: 18.0, 0.005: 30.0, 0.025: 30.0, 0.05: 30.0, math.inf: 30.0}
    stable = Counts(requests={"200": 30.0}, latency=dict(fast))
    stable.latency[0.0005] = 30.0  # every stable request under 0.5 ms
    canary = Counts(requests={"200": 30.0}, latency=cold)  # 40 % between 1 and 5 ms
    assert not compare(canary, stable).worse
