"""The PodScrape history: windows never fall back to "everything since the pod started"."""

from __future__ import annotations

from mlkube_operator.analysis.counts import Counts
from mlkube_operator.handlers.monitoring import History

KEY = ("ns", "iris", "a" * 64)


def pod(requests: float, started: float | None) -> Counts:
    return Counts(requests={"200": requests}, start_time=started)


def test_a_window_is_the_difference_from_a_snapshot_at_or_before_its_start() -> None:
    h = History()
    h.window(KEY, 1000.0, 940.0, {"p": pod(100, 0.0)})
    counts, partial = h.window(KEY, 1060.0, 1000.0, {"p": pod(130, 0.0)})
    assert partial is None and counts.requests == {"200": 30.0}


def test_after_an_operator_restart_an_old_pod_is_not_counted_until_the_history_covers_the_window() -> None:
    h = History()  # a fresh operator: the pod has served 5000 requests since it started long ago
    counts, partial = h.window(KEY, 10_000.0, 9_940.0, {"p": pod(5000, 0.0)})
    assert partial is not None and "operator history covers" in partial and counts.requests == {}
    counts, partial = h.window(KEY, 10_030.0, 9_970.0, {"p": pod(5020, 0.0)})
    assert partial is not None  # 30 s of history for a 60 s window
    counts, partial = h.window(KEY, 10_060.0, 10_000.0, {"p": pod(5050, 0.0)})
    assert partial is None and counts.requests == {"200": 50.0}


def test_a_pod_that_started_inside_the_window_counts_whole() -> None:
    h = History()
    counts, partial = h.window(KEY, 10_000.0, 9_940.0, {"new": pod(40, 9_990.0)})
    assert partial is None and counts.requests == {"200": 40.0}


def test_a_pod_without_a_start_time_needs_history() -> None:
    h = History()
    _, partial = h.window(KEY, 10_000.0, 9_940.0, {"p": pod(40, None)})
    assert partial is not None


def test_forget_drops_every_model_of_a_deployment() -> None:
    h = History()
    h.window(KEY, 1.0, 0.0, {"p": pod(1, 0.0)})
    h.window(("ns", "iris", "b" * 64), 1.0, 0.0, {"p": pod(1, 0.0)})
    h.forget("ns", "iris")
    assert h.oldest(KEY) is None and h.oldest(("ns", "iris", "b" * 64)) is None


def test_a_canary_pod_first_scraped_after_an_empty_snapshot_counts_from_its_start() -> None:
    # Seen on the dev cluster: the first analysis of a step found no canary pod running yet.
    h = History()
    step = 1000.0
    h.window(KEY, 1005.0, step, {}, late_baseline_ok=True)
    counts, partial = h.window(KEY, 1010.0, step, {"c": pod(0, 1003.0)}, late_baseline_ok=True)
    assert partial is None and counts.requests == {"200": 0.0}
    counts, partial = h.window(KEY, 1060.0, step, {"c": pod(30, 1003.0)}, late_baseline_ok=True)
    assert partial is None and counts.requests == {"200": 30.0}


def test_a_canary_step_after_an_operator_restart_counts_from_the_first_scrape() -> None:
    h = History()
    step = 1000.0  # the step started before this operator did; the pod before the step
    _, partial = h.window(KEY, 2000.0, step, {"c": pod(500, 900.0)}, late_baseline_ok=True)
    assert partial is not None
    counts, partial = h.window(KEY, 2010.0, step, {"c": pod(530, 900.0)}, late_baseline_ok=True)
    assert partial is None and counts.requests == {"200": 30.0}
    _, partial = h.window(KEY, 2010.0, step, {"c": pod(530, 900.0)})  # a steady window never does this
    assert partial is not None


def test_a_stable_pod_missing_from_the_oldest_snapshot_counts_from_its_own_first_scrape() -> None:
    # Seen on the dev cluster: the stable model's history began with pods that were later
    # replaced, so "the oldest snapshot" never held the new pods and they stayed uncounted.
    h = History()
    h.window(KEY, 900.0, 800.0, {"old": pod(10, 0.0)})
    step = 1000.0
    _, partial = h.window(KEY, 1005.0, step, {"new": pod(50, 950.0)}, late_baseline_ok=True)
    assert partial is not None  # older than the step, never scraped before: no baseline yet
    counts, partial = h.window(KEY, 1010.0, step, {"new": pod(60, 950.0)}, late_baseline_ok=True)
    assert partial is None and counts.requests == {"200": 10.0}
