"""Windows that fit the traffic: judged once they hold enough requests, not after so many seconds.

A window of a fixed time holds 50 requests at night and 50,000 at noon, so the same
spec means a different test at different hours.  Here a window is *open* until it
holds ``monitoring.windowRequests`` prediction requests; then it is judged and the next
one starts where it ended, so windows never overlap and every one holds about the same
evidence.  ``windowSeconds`` only bounds how long a window stays open: once older, it is
judged on what it holds if that is at least ``minSamples`` requests, and otherwise it
reports InsufficientData and stays open (its rows are kept, not thrown away).

Where the window starts must survive an operator restart or a new leader, so it lives
in ``status.analysisWindow`` (:class:`~mlkube_operator.api.modeldeployment.AnalysisWindow`),
never in operator memory: the start time (the Prometheus source asks Prometheus for
``increase`` since then) and, for the PodScrape source, every pod's cumulative counters
at the start (the baseline the pod's next scrape is differenced from).  A pod first seen
inside the window either started inside it (all its rows count) or was missed at the
start (it counts from the scrape that first saw it: rows inside the window, possibly not
all of them, never rows from before it).  Pure: the caller scrapes and writes status.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum

from mlkube_operator.api.modeldeployment import Analysis, AnalysisWindow, Monitoring, PodBaseline

from .counts import Counts, delta, total

# A process start up to this many seconds before the window's start still counts as
# inside it (clock granularity between the pod's clock and ours).
START_SLACK_SECONDS = 1.0

_FLAT = ("requests", "predictions", "prediction_scores", "feedback", "feedback_for")


def _key(*parts: str) -> str:
    return json.dumps(parts, separators=(",", ":"))  # labels may hold any character


def flatten(c: Counts) -> dict[str, float]:
    """A pod's cumulative series as one flat mapping (what ``PodBaseline.counters`` stores)."""
    out: dict[str, float] = {}
    for name in _FLAT:
        series: dict[str, float] = getattr(c, name)
        for label, value in series.items():
            out[_key(name, label)] = value
    for le, value in c.latency.items():
        out[_key("latency", repr(le))] = value
    for feature, bins in c.feature_bins.items():
        for label, value in bins.items():
            out[_key("feature_bins", feature, label)] = value
    return out


def unflatten(counters: Mapping[str, float], start_time: float | None = None) -> Counts:
    """The inverse of :func:`flatten` (references and identity are not stored: a baseline needs none)."""
    c = Counts(start_time=start_time)
    for key, value in counters.items():
        parts = json.loads(key)
        name = parts[0]
        if name in _FLAT:
            getattr(c, name)[parts[1]] = value
        elif name == "latency":
            c.latency[float(parts[1])] = value
        elif name == "feature_bins":
            c.feature_bins.setdefault(parts[1], {})[parts[2]] = value
    return c


def baseline_of(pods: Mapping[str, Counts]) -> list[PodBaseline]:
    return [
        PodBaseline(pod=uid, start_time=c.start_time, counters=flatten(c)) for uid, c in sorted(pods.items())
    ]


def open_window(
    model: str, now: datetime, pods: Mapping[str, Counts] | None = None, recent_seconds: float = 0.0
) -> AnalysisWindow:
    """A model's first window: it starts now, from the pods' current counters (PodScrape).

    A pod that started at most ``recent_seconds`` ago (``windowSeconds``) counts whole
    (every row it served is this model's and recent: the rows sent right after a
    rollout are not lost to the operator's first look), and the window then starts when
    the first such pod did.  An older pod is counted from now on: a window is never
    "everything since the pod started".
    """
    start = now
    baseline: list[PodBaseline] = []
    for uid, c in sorted((pods or {}).items()):
        if (
            c.start_time is not None
            and recent_seconds > 0
            and c.start_time >= now.timestamp() - recent_seconds
        ):
            baseline.append(PodBaseline(pod=uid, start_time=c.start_time, counters={}))
            start = min(start, datetime.fromtimestamp(c.start_time, tz=now.tzinfo or UTC))
        else:
            baseline.append(PodBaseline(pod=uid, start_time=c.start_time, counters=flatten(c)))
    return AnalysisWindow(model=model, start_time=start, checked_time=now, baseline=baseline)


def since_start(window: AnalysisWindow, pods: Mapping[str, Counts]) -> tuple[Counts, list[PodBaseline]]:
    """(rows the pods served since the window started, the baseline to keep for the open window).

    Pods gone since are dropped from the baseline (their rows until they went are lost
    to this window, which only makes it fill later); a restarted pod counts from zero
    (``delta``); a pod first seen now counts whole when it started after the window did,
    else it is baselined now.
    """
    known = {b.pod: b for b in window.baseline}
    start = window.start_time.timestamp()
    parts: list[Counts] = []
    kept: list[PodBaseline] = []
    for uid, c in sorted(pods.items()):
        base = known.get(uid)
        if base is not None:
            parts.append(delta(c, unflatten(base.counters, base.start_time)))
            kept.append(base)
        elif c.start_time is not None and c.start_time >= start - START_SLACK_SECONDS:
            parts.append(c)
            kept.append(PodBaseline(pod=uid, start_time=c.start_time, counters={}))
        else:
            kept.append(PodBaseline(pod=uid, start_time=c.start_time, counters=flatten(c)))
    return total(parts), kept


class Due(StrEnum):
    WAIT = "Wait"  # keep filling the window
    JUDGE = "Judge"  # judge it and start the next one
    TOO_FEW = "TooFew"  # older than windowSeconds with fewer than minSamples: say so, keep it open


def due(requests: float, age_seconds: float, monitoring: Monitoring) -> tuple[Due, str]:
    """Whether the open window is judged now, and why."""
    if requests >= monitoring.window_requests:
        return Due.JUDGE, f"{requests:.0f} requests >= windowRequests {monitoring.window_requests}"
    if age_seconds >= monitoring.window_seconds:
        if requests >= monitoring.min_samples:
            return Due.JUDGE, (
                f"open {age_seconds:.0f}s >= windowSeconds {monitoring.window_seconds} with "
                f"{requests:.0f} requests >= minSamples {monitoring.min_samples}"
            )
        return Due.TOO_FEW, (
            f"open {age_seconds:.0f}s with {requests:.0f} requests < minSamples "
            f"{monitoring.min_samples}; the window stays open until it holds them"
        )
    return Due.WAIT, f"{requests:.0f} of {monitoring.window_requests} requests"


def progressed(
    window: AnalysisWindow, now: datetime, requests: float, baseline: list[PodBaseline] | None
) -> AnalysisWindow:
    """The same window, looked at again."""
    update: dict[str, object] = {"checked_time": now, "requests": round(requests)}
    if baseline is not None:
        update["baseline"] = baseline
    return window.model_copy(update=update)


def next_window(
    window: AnalysisWindow, now: datetime, analysis: Analysis, pods: Mapping[str, Counts] | None
) -> AnalysisWindow:
    """The window after a judged one: it starts where that one ended, carrying the evidence."""
    return AnalysisWindow(
        model=window.model,
        start_time=now,
        checked_time=now,
        requests=0,
        judged=window.judged + 1,
        baseline=baseline_of(pods or {}),
        cusum=list(analysis.values.evidence),
    )


def requests_in(counts: Counts) -> float:
    return math.fsum(counts.requests.values())


def pods_serving(pods: Iterable[tuple[str, Counts]], model: str) -> dict[str, Counts]:
    return {uid: c for uid, c in pods if c.model_sha256 == model}


__all__ = [
    "Due",
    "baseline_of",
    "due",
    "flatten",
    "next_window",
    "open_window",
    "pods_serving",
    "progressed",
    "requests_in",
    "since_start",
    "unflatten",
]
