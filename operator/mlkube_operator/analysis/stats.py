"""The few statistics a degradation verdict needs, in the form the server's counters allow.

Everything here works on aggregated counts (bins, buckets, outcomes), never on raw
rows: that is all Prometheus keeps, and it makes the numbers the operator reports the
same ones a PromQL query or a Grafana panel over the same series would show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def psi(expected: Mapping[str, float], observed: Mapping[str, float], epsilon: float = 1e-4) -> float:
    """Population stability index of ``observed`` against ``expected``.

    ``PSI = sum_k (o_k - e_k) * ln(o_k / e_k)`` over the union of the keys of both
    mappings, where ``e_k`` and ``o_k`` are each side normalised to sum to 1 (so
    ``expected`` may be fractions and ``observed`` raw counts) and a key missing on one
    side counts as 0.  Both are then floored at ``epsilon``, so a bin empty on one side
    contributes a large but finite term instead of infinity (it is not renormalised
    afterwards).  Rule of thumb: < 0.1 stable, 0.1-0.25 some shift, > 0.25 a real shift.

    Raises ValueError when either side sums to zero: there is no distribution to compare.
    """
    e_total = math.fsum(expected.values())
    o_total = math.fsum(observed.values())
    if e_total <= 0 or o_total <= 0:
        raise ValueError("psi needs a positive total on both sides")
    value = 0.0
    for key in expected.keys() | observed.keys():
        e = max(expected.get(key, 0.0) / e_total, epsilon)
        o = max(observed.get(key, 0.0) / o_total, epsilon)
        value += (o - e) * math.log(o / e)
    return value


def error_rate(requests: Mapping[str, float]) -> float | None:
    """Share of 5xx responses (status code -> count); None without requests."""
    n = math.fsum(requests.values())
    if n <= 0:
        return None
    return math.fsum(v for code, v in requests.items() if code.startswith("5")) / n


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram (upper bound -> count), like PromQL's.

    Linear interpolation inside the bucket holding the rank, the first bucket starting
    at 0 (or being its bound when that is <= 0); a rank in the +Inf bucket gives the
    highest finite bound.  None without an +Inf bucket, finite buckets or observations.
    Bucket counts are made monotonic first, as Prometheus does, since differenced
    scrapes can be off by a few in-flight observations.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is not within [0, 1]")
    bounds = sorted(buckets)
    if len(bounds) < 2 or not math.isinf(bounds[-1]):
        return None
    counts: list[float] = []
    for b in bounds:
        counts.append(max(buckets[b], counts[-1] if counts else 0.0))
    n = counts[-1]
    if n <= 0:
        return None
    rank = q * n
    i = next((j for j, c in enumerate(counts[:-1]) if c >= rank), len(bounds) - 1)
    if i == len(bounds) - 1:
        return bounds[-2]
    upper = bounds[i]
    if i == 0:
        if upper <= 0:
            return upper
        lower, below = 0.0, 0.0
    else:
        lower, below = bounds[i - 1], counts[i - 1]
    inside = counts[i] - below
    if inside <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / inside


def accuracy(feedback: Mapping[str, float]) -> float | None:
    """correct / (correct + incorrect) from feedback outcomes; None without labelled rows."""
    correct = feedback.get("correct", 0.0)
    labelled = correct + feedback.get("incorrect", 0.0)
    if labelled <= 0:
        return None
    return correct / labelled


__all__ = ["accuracy", "error_rate", "histogram_quantile", "psi"]
