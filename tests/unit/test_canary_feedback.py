"""Labels fed back during a canary count for the model that made the prediction.

A Service spreads feedback like traffic: with a canary on 10 % of the pods, 90 % of the
canary's labels reach stable pods. The real server code (feedback ids, scoring, metrics)
runs for one stable and one canary pod, its /metrics text is parsed as the operator
parses a scrape, and the canary's accuracy must be computed from every one of its
labels (and the stable model's from every one of its own), with nothing counted twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from mlkube_operator.adapters.prometheus import counts_from_results
from mlkube_operator.analysis.canary import compare
from mlkube_operator.analysis.counts import Counts, credit_feedback, delta, parse_metrics
from mlkube_serving.feedback import FeedbackIds, PredictionMemory, ScoredIds, score_feedback
from mlkube_serving.metrics import ServingMetrics

CLASSES = ["0", "1", "2"]
STABLE_SHA, CANARY_SHA = "5" * 64, "c" * 64


class Pod:
    def __init__(self, sha: str) -> None:
        self.sha = sha
        self.metrics = ServingMetrics("churn", with_process=False)
        self.ids = FeedbackIds(sha, len(CLASSES), CLASSES)
        self.memory = PredictionMemory(1000)
        self.scored = ScoredIds(1000)
        self.n = 0

    def predict(self, predicted: int) -> str:
        self.n += 1
        rid = self.ids.encode(f"{self.sha[:4]}-{self.n}", np.array([predicted]), None)
        assert rid is not None
        return rid

    def feedback(self, items: list[tuple[str, Any]]) -> None:
        score_feedback(
            items,
            self.memory,
            "classification",
            self.metrics,
            ids=self.ids,
            scored_ids=self.scored,
            classes=np.array([0, 1, 2]),
        )

    def counts(self) -> Counts:
        c = parse_metrics(generate_latest(self.metrics.registry).decode())
        c.model_sha256 = self.sha
        return c


def simulate(seed: int = 7) -> tuple[Pod, Pod, dict[str, tuple[int, int]]]:
    """400 predictions, 10 % on the canary (right half of the time), feedback spread the same way."""
    rng = np.random.default_rng(seed)
    stable, canary = Pod(STABLE_SHA), Pod(CANARY_SHA)
    truth = {"stable": [0, 0], "canary": [0, 0]}  # [correct, labelled]
    for _ in range(400):
        track = "canary" if rng.random() < 0.1 else "stable"
        pod = canary if track == "canary" else stable
        label = int(rng.integers(0, 3))
        right = rng.random() < (0.5 if track == "canary" else 0.95)
        predicted = label if right else (label + 1) % 3
        rid = pod.predict(predicted)
        truth[track][0] += int(right)
        truth[track][1] += 1
        receiver = canary if rng.random() < 0.1 else stable
        receiver.feedback([(rid, label)])
    return stable, canary, {k: (v[0], v[1]) for k, v in truth.items()}


def accuracy(c: Counts) -> tuple[float, float]:
    return c.feedback.get("correct", 0.0), c.feedback.get("correct", 0.0) + c.feedback.get("incorrect", 0.0)


def test_every_label_counts_once_for_the_model_that_predicted() -> None:
    stable_pod, canary_pod, truth = simulate()
    stable, canary = stable_pod.counts(), canary_pod.counts()
    # Each pod alone sees only the labels that happened to reach it for its own model.
    assert accuracy(canary)[1] < truth["canary"][1] / 2
    credited_canary, credited_stable = credit_feedback(canary, stable), credit_feedback(stable, canary)
    assert accuracy(credited_canary) == truth["canary"]
    assert accuracy(credited_stable) == truth["stable"]
    # Crediting never adds the other model's labels to the wrong side, nor changes other series.
    assert credited_canary.requests == canary.requests and credited_canary.feedback_for == canary.feedback_for


def test_a_worse_canary_is_seen_only_with_the_labels_the_stable_pods_scored() -> None:
    stable_pod, canary_pod, _ = simulate()
    stable, canary = stable_pod.counts(), canary_pod.counts()
    without = compare(canary, stable)
    assert "accuracy: too few feedback labels on a track" in without.skipped
    with_credit = compare(credit_feedback(canary, stable), credit_feedback(stable, canary))
    check = next(c for c in with_credit.checks if c.name == "accuracy")
    assert check.worse and check.canary < 0.7 < 0.9 < check.stable


def test_windows_difference_the_credited_series_too() -> None:
    stable_pod, canary_pod, _ = simulate(1)
    before = stable_pod.counts()
    rid = canary_pod.predict(2)
    stable_pod.feedback([(rid, 2)])
    window = delta(stable_pod.counts(), before)
    assert window.feedback_for == {f"{CANARY_SHA[:8]}/correct": 1.0, f"{CANARY_SHA[:8]}/incorrect": 0.0}
    assert window.feedback.get("correct", 0.0) == 0.0  # never the stable model's own


def test_the_prometheus_source_reads_the_credited_series() -> None:
    result = [
        {"metric": {"predicted_by": CANARY_SHA[:8], "outcome": "correct"}, "value": [0, "7"]},
        {"metric": {"predicted_by": CANARY_SHA[:8], "outcome": "incorrect"}, "value": [0, "3"]},
    ]
    stable = counts_from_results({"feedback_for": result}, STABLE_SHA)
    canary = credit_feedback(Counts(model_sha256=CANARY_SHA, feedback={"correct": 1.0}), stable)
    assert canary.feedback == {"correct": 8.0, "incorrect": 3.0}


class RegressionPod:
    """A regressor's pod: ids carry the predicted values; errors are scored wherever labels land."""

    def __init__(self, sha: str) -> None:
        self.sha = sha
        self.metrics = ServingMetrics("price", with_process=False)
        self.metrics.task = "regression"  # as bind_model sets it: the error summaries are exported
        self.ids = FeedbackIds(sha, None)
        self.memory = PredictionMemory(1000)
        self.scored = ScoredIds(1000)
        self.n = 0

    def predict(self, value: float) -> str:
        self.n += 1
        rid = self.ids.encode(f"{self.sha[:4]}-{self.n}", None, np.array([value]))
        assert rid is not None
        return rid

    def feedback(self, items: list[tuple[str, Any]]) -> None:
        score_feedback(items, self.memory, "regression", self.metrics, ids=self.ids, scored_ids=self.scored)

    def counts(self) -> Counts:
        c = parse_metrics(generate_latest(self.metrics.registry).decode())
        c.model_sha256 = self.sha
        return c


def simulate_regression(seed: int = 3) -> tuple[RegressionPod, RegressionPod, dict[str, list[float]]]:
    """600 predictions, 10 % on a canary whose errors are twice the stable's; labels spread the same way."""
    rng = np.random.default_rng(seed)
    stable, canary = RegressionPod(STABLE_SHA), RegressionPod(CANARY_SHA)
    errors: dict[str, list[float]] = {"stable": [], "canary": []}
    for _ in range(600):
        track = "canary" if rng.random() < 0.1 else "stable"
        pod = canary if track == "canary" else stable
        truth = float(rng.normal(100, 20))
        error = float(rng.normal(0, 8.0 if track == "canary" else 4.0))
        rid = pod.predict(truth - error)
        errors[track].append(error)
        receiver = canary if rng.random() < 0.1 else stable
        receiver.feedback([(rid, truth)])
    return stable, canary, errors


def test_a_regressors_errors_count_for_the_model_that_predicted() -> None:
    stable_pod, canary_pod, errors = simulate_regression()
    stable, canary = stable_pod.counts(), canary_pod.counts()
    assert canary.feedback.get("error_rows", 0.0) < len(errors["canary"]) / 2  # alone: a few of its labels
    credited = {"canary": credit_feedback(canary, stable), "stable": credit_feedback(stable, canary)}
    for track, c in credited.items():
        e = np.asarray(errors[track])
        assert c.feedback["error_rows"] == len(e)
        assert c.feedback["squared_error"] == pytest.approx(float(np.square(e).sum()), rel=1e-9)
        assert c.feedback["abs_error"] == pytest.approx(float(np.abs(e).sum()), rel=1e-9)


def test_a_worse_regression_canary_is_seen_only_with_the_errors_the_stable_pods_scored() -> None:
    stable_pod, canary_pod, errors = simulate_regression()
    stable, canary = stable_pod.counts(), canary_pod.counts()
    without = compare(canary, stable)
    assert "mean absolute error: too few feedback labels on a track" in without.skipped
    with_credit = compare(credit_feedback(canary, stable), credit_feedback(stable, canary))
    check = next(c for c in with_credit.checks if c.name == "mean absolute error")
    assert check.worse, with_credit.summary()
    assert check.canary == pytest.approx(float(np.abs(errors["canary"]).mean()))
    assert check.stable == pytest.approx(float(np.abs(errors["stable"]).mean()))


def test_an_equally_good_regression_canary_passes() -> None:
    rng = np.random.default_rng(11)
    stable, canary = RegressionPod(STABLE_SHA), RegressionPod(CANARY_SHA)
    for i in range(400):
        pod = canary if i % 2 else stable
        truth = float(rng.normal(100, 20))
        rid = pod.predict(truth - float(rng.normal(0, 4.0)))
        (stable if i % 3 else canary).feedback([(rid, truth)])
    comparison = compare(
        credit_feedback(canary.counts(), stable.counts()), credit_feedback(stable.counts(), canary.counts())
    )
    check = next(c for c in comparison.checks if c.name == "mean absolute error")
    assert not check.worse, comparison.summary()


def test_the_prometheus_source_reads_the_credited_error_summaries() -> None:
    def sample(value: str, **labels: str) -> list[dict[str, Any]]:
        return [{"metric": labels, "value": [0, value]}]

    tag = CANARY_SHA[:8]
    stable = counts_from_results(
        {
            "feedback:mlkube_feedback_squared_error_sum": sample("40"),
            "feedback:mlkube_feedback_squared_error_count": sample("10"),
            "feedback_for:mlkube_feedback_for_model_squared_error_sum": sample("90", predicted_by=tag),
            "feedback_for:mlkube_feedback_for_model_abs_error_sum": sample("27", predicted_by=tag),
            "feedback_for:mlkube_feedback_for_model_squared_error_count": sample("9", predicted_by=tag),
        },
        STABLE_SHA,
    )
    assert stable.feedback == {"squared_error": 40.0, "error_rows": 10.0}
    canary = Counts(
        model_sha256=CANARY_SHA, feedback={"squared_error": 10.0, "abs_error": 3.0, "error_rows": 1.0}
    )
    assert credit_feedback(canary, stable).feedback == {
        "squared_error": 100.0,
        "abs_error": 30.0,
        "error_rows": 10.0,
    }
