"""Windows by traffic and evidence across windows (issue 9, item 6): the pure planner and the CUSUM.

The state that must survive an operator restart is checked by round-tripping it through
the status JSON, as a new operator would read it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from prometheus_client import generate_latest

from mlkube_operator.analysis import Counts, analyse, parse_metrics, sequential
from mlkube_operator.analysis import windows as W
from mlkube_operator.api.modeldeployment import (
    AnalysisWindow,
    CusumCheck,
    Evidence,
    ModelDeploymentSpec,
    Monitoring,
    Thresholds,
    Verdict,
)
from mlkube_operator.api.validation import InvalidSpecError, parse_model
from mlkube_operator.training.profiling import build_profile
from mlkube_serving.artifacts import ReferenceProfile
from mlkube_serving.metrics import ServingMetrics
from mlkube_serving.schema import InputSchema

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "ab" * 32
PREDICT = "/v1/models/{name}:predict"
LEVELS, SHARES = ["a", "b", "c", "d"], [0.4, 0.3, 0.2, 0.1]


def _rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": rng.normal(size=n) + shift,
            "w": np.round(np.abs(rng.normal(1.2, 0.76, n)), 1),
            "c": rng.choice(LEVELS, size=n, p=SHARES).astype(object),
            "y": rng.integers(0, 2, n),
        }
    )


PROFILE = ReferenceProfile.model_validate(
    build_profile(_rows(np.random.default_rng(0), 3000), ["x", "w", "c"], "y", 10, "sha256:t")
)


def pod(requests: float, started: float | None = 0.0, **features: dict[str, float]) -> Counts:
    return Counts(requests={"200": requests}, feature_bins=dict(features), start_time=started)


# -- the CUSUM ---------------------------------------------------------------------------


def test_z_score_is_the_normal_quantile_and_stays_finite() -> None:
    assert sequential.z_score(0.5) == pytest.approx(0.0)
    assert sequential.z_score(0.001) == pytest.approx(3.0902, abs=1e-3)
    assert sequential.z_score(1.0) == sequential.Z_MIN
    assert sequential.z_score(0.0) == sequential.Z_MAX


def test_evidence_adds_up_and_noise_does_not() -> None:
    seen = sequential.Observation(z=2.0, rows=250, reference_rows=None)
    s = None
    for expected in (1.5, 3.0, 4.5):
        s = sequential.step(s, seen, allowance=0.5, limit=4.0)
        assert s.cusum == pytest.approx(expected)
    assert s is not None and s.windows == 3
    quiet = sequential.step(s, sequential.Observation(z=-1.0, rows=250, reference_rows=None), 0.5, 10.0)
    assert quiet.cusum == pytest.approx(3.0)
    assert sequential.step(None, sequential.Observation(-1.0, 250, None), 0.5, 4.0).cusum == 0.0


def test_an_alarmed_cusum_resets_on_the_first_window_that_adds_nothing() -> None:
    alarmed = sequential.State(cusum=5.0, z=3.0, allowance=0.5, windows=3)
    still = sequential.step(alarmed, sequential.Observation(2.0, 250, None), 0.5, 4.0)
    assert still.cusum == pytest.approx(6.5) and still.windows == 4
    recovered = sequential.step(alarmed, sequential.Observation(0.3, 250, None), 0.5, 4.0)
    assert recovered.cusum == 0.0 and recovered.windows == 0


def test_a_small_reference_gets_more_slack_because_every_window_shares_its_noise() -> None:
    big = sequential.allowance_for(0.5, 250, 100_000)
    small = sequential.allowance_for(0.5, 250, 150)
    assert 0.5 < big < 0.6 < 1.5 < small
    assert sequential.allowance_for(0.5, 250, None) == 0.5


def test_a_shared_reference_offset_does_not_add_up_to_an_alarm() -> None:
    """The reference (150 rows) is 2 of its standard errors off: every window sees it."""
    rng = np.random.default_rng(3)
    rows, reference_rows = 250.0, 150.0
    rho = rows / (rows + reference_rows)
    s = None
    for _ in range(2000):
        z = 2.0 * np.sqrt(rho) + np.sqrt(1 - rho) * rng.normal()
        s = sequential.step(s, sequential.Observation(float(z), rows, reference_rows), 0.5, 6.0)
        assert s.cusum < 6.0
    # Without the reference's share in the allowance the same windows alarm.
    s = None
    alarms = 0
    for _ in range(2000):
        z = 2.0 * np.sqrt(rho) + np.sqrt(1 - rho) * rng.normal()
        s = sequential.step(s, sequential.Observation(float(z), rows, None), 0.5, 6.0)
        alarms += s.cusum >= 6.0
    assert alarms > 100


# -- windows by traffic ------------------------------------------------------------------


def test_due_by_requests_then_by_time_with_min_samples() -> None:
    m = Monitoring(window_requests=250, window_seconds=300, min_samples=200)
    assert W.due(249, 10, m)[0] is W.Due.WAIT
    assert W.due(250, 10, m)[0] is W.Due.JUDGE
    assert W.due(5000, 1, m)[0] is W.Due.JUDGE
    decision, why = W.due(210, 300, m)
    assert decision is W.Due.JUDGE and "windowSeconds" in why
    decision, why = W.due(120, 900, m)
    assert decision is W.Due.TOO_FEW and "120 requests < minSamples 200" in why


def test_flatten_round_trips_labels_with_any_character() -> None:
    c = Counts(
        requests={"200": 5.0, "503": 1.0},
        latency={0.005: 3.0, float("inf"): 6.0},
        feature_bins={'a/b "c"': {"0": 1.0, "__other__": 2.0}, "x": {"3": 4.0}},
        predictions={"setosa": 6.0},
        prediction_scores={"2": 6.0},
        feedback={"correct": 2.0},
        feedback_for={"abcd1234/correct": 1.0},
    )
    back = W.unflatten(W.flatten(c), start_time=7.0)
    assert (back.requests, back.latency, back.feature_bins) == (c.requests, c.latency, c.feature_bins)
    assert (back.predictions, back.prediction_scores, back.feedback) == (
        c.predictions,
        c.prediction_scores,
        c.feedback,
    )
    assert back.feedback_for == c.feedback_for and back.start_time == 7.0


def test_a_window_counts_from_the_baseline_in_status_across_an_operator_restart() -> None:
    window = W.open_window(SHA, NOW, {"p": pod(1000, x={"1": 400.0})})
    # A new operator (or leader) reads the window back from the status JSON.
    stored = AnalysisWindow.model_validate(window.model_dump(mode="json", by_alias=True))
    counts, baseline = W.since_start(stored, {"p": pod(1250, x={"1": 500.0, "2": 7.0})})
    assert counts.requests == {"200": 250.0}
    assert counts.feature_bins == {"x": {"1": 100.0, "2": 7.0}}
    assert [b.pod for b in baseline] == ["p"]


def test_pods_new_to_the_window_count_whole_only_if_they_started_inside_it() -> None:
    start = NOW.timestamp()
    window = W.open_window(SHA, NOW, {"p": pod(100)})
    pods = {"p": pod(160), "young": pod(30, started=start + 20), "missed": pod(5000, started=start - 3600)}
    counts, baseline = W.since_start(window, pods)
    assert counts.requests == {"200": 60.0 + 30.0}  # the old pod missed at the start is not counted...
    later = window.model_copy(update={"baseline": baseline})
    pods = {"p": pod(170), "young": pod(40, started=start + 20), "missed": pod(5025, started=start - 3600)}
    counts, _ = W.since_start(later, pods)
    assert counts.requests == {"200": 70.0 + 40.0 + 25.0}  # ...until it has a baseline of its own


def test_a_restarted_pod_counts_from_zero_and_a_gone_pod_leaves_the_baseline() -> None:
    window = W.open_window(SHA, NOW, {"p": pod(900, started=1.0), "gone": pod(50)})
    counts, baseline = W.since_start(window, {"p": pod(40, started=NOW.timestamp() + 5)})
    assert counts.requests == {"200": 40.0}
    assert [b.pod for b in baseline] == ["p"]


def test_the_next_window_starts_where_the_judged_one_ended_and_carries_the_evidence() -> None:
    window = W.open_window(SHA, NOW, {"p": pod(0)})
    counts, _ = W.since_start(window, {"p": pod(300)})
    analysis = analyse(counts, Thresholds(), 200, NOW + timedelta(seconds=60))
    after = W.next_window(window, NOW + timedelta(seconds=60), analysis, {"p": pod(300)})
    assert after.judged == 1 and after.requests == 0 and after.start_time == NOW + timedelta(seconds=60)
    assert W.since_start(after, {"p": pod(310)})[0].requests == {"200": 10.0}
    assert after.cusum == analysis.values.evidence


# -- evidence in the verdict ----------------------------------------------------------------


def _window_counts(rng: np.random.Generator, n: int, shift: float) -> Counts:
    """One window of ``n`` requests counted by the real model server code."""
    m = ServingMetrics("t", with_process=False)
    m.bind_model(
        sha256=SHA,
        version="1",
        task="classification",
        class_labels=["0", "1"],
        schema=InputSchema(("x", "w", "c"), (False, False, True), allow_nan=True),
        profile=PROFILE,
        reference=None,
        reference_accuracy=None,
    )
    frame = _rows(rng, n, shift)
    x = np.empty((n, 3), dtype=object)
    x[:, 0] = frame["x"].to_numpy().tolist()
    x[:, 1] = frame["w"].to_numpy().tolist()
    x[:, 2] = frame["c"].to_numpy()
    cls = rng.integers(0, 2, n).astype(np.intp)
    m.observe_batch(x, n, cls, cls)
    for _ in range(n):
        m.observe_request(PREDICT, 200, 0.002)
    return parse_metrics(generate_latest(m.registry).decode())


def test_a_shift_too_small_for_any_one_window_is_caught_by_the_evidence_across_windows() -> None:
    rng = np.random.default_rng(11)
    alone: list[Verdict] = []
    reasons: list[list[str]] = []
    evidence: list[Evidence] = []
    for _ in range(20):
        counts = _window_counts(rng, 250, shift=0.12)
        alone.append(analyse(counts, Thresholds(cusum=CusumCheck(enabled=False)), 200, NOW).verdict)
        result = analyse(counts, Thresholds(), 200, NOW, evidence)
        evidence = result.values.evidence
        reasons.append(result.reasons if result.verdict is Verdict.DEGRADED else [])
    caught = [
        i for i, r in enumerate(reasons) if any("inputDrift 'x': accumulated evidence (up)" in x for x in r)
    ]
    assert caught and caught[0] <= 12
    assert alone.count(Verdict.DEGRADED) < len(caught)


def test_evidence_is_left_as_it_was_by_a_window_without_enough_requests() -> None:
    rng = np.random.default_rng(2)
    evidence = analyse(_window_counts(rng, 250, shift=0.3), Thresholds(), 200, NOW).values.evidence
    assert evidence
    assert analyse(_window_counts(rng, 50, 0.0), Thresholds(), 200, NOW, evidence).values.evidence == evidence


def test_noise_across_many_windows_does_not_add_up() -> None:
    rng = np.random.default_rng(5)
    evidence: list[Evidence] = []
    degraded = 0
    for _ in range(60):
        result = analyse(_window_counts(rng, 250, 0.0), Thresholds(), 200, NOW, evidence)
        evidence = result.values.evidence
        degraded += result.verdict is Verdict.DEGRADED
    assert degraded <= 1


# -- the spec ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("monitoring", "field"),
    [
        ({"windowRequests": 100, "minSamples": 200}, "windowRequests"),
        ({"windowRequests": 0}, "windowRequests"),
        ({"thresholds": {"cusum": {"limit": 0}}}, "limit"),
        ({"thresholds": {"cusum": {"allowance": -1}}}, "allowance"),
    ],
)
def test_invalid_window_and_cusum_fields_are_refused_naming_the_field(monitoring: dict, field: str) -> None:
    spec = {"model": {"trainingRunRef": {"name": "r"}}, "monitoring": monitoring}
    with pytest.raises(InvalidSpecError, match=field):
        parse_model(ModelDeploymentSpec, spec)


def test_the_first_window_counts_pods_that_just_started_whole_and_older_ones_from_now() -> None:
    now = NOW.timestamp()
    pods = {"new": pod(30, started=now - 20), "old": pod(5000, started=now - 86_400)}
    window = W.open_window(SHA, NOW, pods, recent_seconds=60)
    assert window.start_time == NOW - timedelta(seconds=20)
    pods = {"new": pod(35, started=now - 20), "old": pod(5010, started=now - 86_400)}
    assert W.since_start(window, pods)[0].requests == {"200": 35.0 + 10.0}
