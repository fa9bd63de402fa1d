"""Hypothesis tests on binned counts: what decides a verdict, sized to the window.

A fixed bound on PSI cannot tell noise from drift: the PSI of pure noise falls with
the number of rows (about 0.13 at 250 rows, 0.03 at 1,000 for ten bins), so one bound is
an alarm generator on small windows and blind on large ones.  Here every check is a
test whose p-value accounts for the rows it saw, on both sides:

* the window's bins against the reference's (a 2 x K table, Pearson's chi-square), with
  the reference's own sampling noise included when its row count is known (a profile
  of 150 iris rows is not a population);
* for ordered (numeric) bins also a rank-sum (Mann-Whitney) test on the same table,
  which has several times the power of chi-square against a shift of the mean; the
  feature's p-value is the smaller of the two, Bonferroni-doubled;
* the share of 5xx (or of slow requests) against its bound, and the fed-back accuracy
  against the model's held-out accuracy minus a tolerated drop, one-sided.

Sparse bins are folded into their neighbours first (numeric: the open outer bins into
the first/last bin, then any bin whose expected count is below the minimum; categorical:
the rarest levels, ``__other__`` included, into one) so the chi-square approximation
holds.  The p-values of one analysis are then corrected together (Holm), so ``alpha``
is the false-alarm budget of a whole analysis.  Because a tiny shift is significant on
enough traffic, a drift is only acted on when its effect, the total variation distance
(the share of traffic that moved between bins), is at least the spec's minimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .stats import psi


@dataclass(frozen=True)
class BinTest:
    """The outcome of comparing one binned distribution with its reference."""

    rows: float
    """Rows in the window (non-missing)."""
    bins: int
    """Bins after folding."""
    p_value: float
    """Combined p-value (chi-square, and for ordered bins the rank-sum test, Bonferroni)."""
    p_chi2: float
    p_rank: float | None
    z_rank: float | None
    """Signed rank-sum z (ordered bins): positive when the window's values are larger."""
    tvd: float
    """Total variation distance between the folded distributions: the share of rows that moved."""
    psi: float
    """PSI on the folded bins, for humans (comparable with the old bound)."""
    cramers_v: float
    """sqrt(chi2 / N) of the 2 x K table (Cohen's w against fixed fractions)."""


def fold_ordered(reference: Sequence[float], min_share: float) -> list[list[int]]:
    """Groups of adjacent bin indices such that every group's reference share is >= ``min_share``.

    Folding depends on the reference only, so the grouping is fixed before the window's
    counts are looked at.  Bins are merged left to right; a short remainder at the right
    end joins the last group.  With no reference mass at all, everything is one group.
    """
    total = math.fsum(reference)
    groups: list[list[int]] = []
    current: list[int] = []
    acc = 0.0
    for i in range(len(reference)):
        current.append(i)
        acc += reference[i] / total if total > 0 else 0.0
        if acc >= min_share - 1e-12:
            groups.append(current)
            current, acc = [], 0.0
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


def fold_levels(reference: Sequence[float], min_share: float) -> list[list[int]]:
    """Groups of category indices: the rarest levels pooled until the pool reaches ``min_share``."""
    total = math.fsum(reference)
    share = [r / total if total > 0 else 0.0 for r in reference]
    order = sorted(range(len(reference)), key=lambda i: (share[i], i))
    pool: list[int] = []
    acc = 0.0
    k = 0
    while k < len(order) and share[order[k]] < min_share - 1e-12:
        pool.append(order[k])
        acc += share[order[k]]
        k += 1
    rest = [[i] for i in order[k:]]
    if pool and acc < min_share - 1e-12 and rest:
        # The pool of rare levels is itself too small: it joins the smallest common level.
        pool.extend(rest.pop(0))
    groups = ([sorted(pool)] if pool else []) + rest
    return sorted(groups, key=lambda g: g[0])


def _apply(groups: list[list[int]], values: Sequence[float]) -> list[float]:
    return [math.fsum(values[i] for i in g) for g in groups]


def rank_sum_p(reference: Sequence[float], observed: Sequence[float]) -> float:
    """Two-sided p-value of :func:`rank_sum_z`."""
    z = rank_sum_z(reference, observed)
    return float(min(1.0, 2.0 * sps.norm.sf(abs(z))))


def rank_sum_z(reference: Sequence[float], observed: Sequence[float]) -> float:
    """Mann-Whitney z of ``observed`` against ``reference``, counts on the same ordered bins.

    Positive when the observed values tend to be larger.  Every value in a bin is tied
    with the others there, so the normal approximation with the tie correction is used
    (scipy's ``mannwhitneyu(method="asymptotic", use_continuity=False)`` on the expanded
    samples gives the same p-value).  0 when either side is empty.
    """
    r = np.asarray(reference, dtype=float)
    o = np.asarray(observed, dtype=float)
    m, n = r.sum(), o.sum()
    total = m + n
    if m <= 0 or n <= 0:
        return 0.0
    t = r + o
    midranks = np.cumsum(t) - (t - 1.0) / 2.0
    u = float((o * midranks).sum() - n * (n + 1.0) / 2.0)
    mean = m * n / 2.0
    ties = float((t**3 - t).sum())
    var = m * n / 12.0 * ((total + 1.0) - ties / (total * (total - 1.0)))
    if var <= 0:
        return 0.0
    return float((u - mean) / math.sqrt(var))


def _chi2(ref: list[float], obs: list[float], ref_rows: float | None) -> tuple[float, float]:
    """(statistic, p) of the 2 x K homogeneity test, or of goodness of fit when ref_rows is None."""
    n = math.fsum(obs)
    k = len(obs)
    rt = math.fsum(ref)
    if k < 2:
        return 0.0, 1.0
    if ref_rows is None or ref_rows <= 0:
        expected = [n * r / rt for r in ref]
        stat = math.fsum((o - e) ** 2 / e for o, e in zip(obs, expected, strict=True) if e > 0)
        return stat, float(sps.chi2.sf(stat, k - 1))
    ref_counts = [ref_rows * r / rt for r in ref]
    total = n + ref_rows
    stat = 0.0
    for rc, oc in zip(ref_counts, obs, strict=True):
        col = rc + oc
        if col <= 0:
            continue
        e_r, e_o = ref_rows * col / total, n * col / total
        stat += (rc - e_r) ** 2 / e_r + (oc - e_o) ** 2 / e_o
    return stat, float(sps.chi2.sf(stat, k - 1))


def compare_bins(
    reference: Sequence[float],
    observed: Sequence[float],
    *,
    ordered: bool,
    min_expected: float,
    reference_rows: float | None = None,
) -> BinTest | None:
    """Compare ``observed`` counts with ``reference`` fractions (same bins, same order).

    ``reference_rows`` is how many rows the reference fractions were measured on (None:
    treat them as exact).  Bins are folded so that every group expects at least
    ``min_expected`` rows on each side.  None when fewer than two groups remain (too few
    rows for any test, or a reference with a single bin).
    """
    n = math.fsum(observed)
    if n <= 0 or math.fsum(reference) <= 0:
        return None
    smallest = n if reference_rows is None else min(n, reference_rows)
    min_share = min_expected / smallest
    groups = fold_ordered(reference, min_share) if ordered else fold_levels(reference, min_share)
    if len(groups) < 2:
        return None
    ref, obs = _apply(groups, reference), _apply(groups, observed)
    rt = math.fsum(ref)
    stat, p_chi2 = _chi2(ref, obs, reference_rows)
    p_rank: float | None = None
    z_rank: float | None = None
    p = p_chi2
    if ordered:
        ref_counts = [(reference_rows or n) * r / rt for r in ref]
        z_rank = rank_sum_z(ref_counts, obs)
        p_rank = float(min(1.0, 2.0 * sps.norm.sf(abs(z_rank))))
        p = min(1.0, 2.0 * min(p_chi2, p_rank))
    q = [r / rt for r in ref]
    o = [c / n for c in obs]
    tvd = 0.5 * math.fsum(abs(a - b) for a, b in zip(o, q, strict=True))
    big_n = n + (reference_rows or 0.0)
    return BinTest(
        rows=n,
        bins=len(groups),
        p_value=p,
        p_chi2=p_chi2,
        p_rank=p_rank,
        z_rank=z_rank,
        tvd=tvd,
        psi=psi({str(i): v for i, v in enumerate(q)}, {str(i): v for i, v in enumerate(o)}),
        cramers_v=math.sqrt(stat / big_n) if big_n > 0 else 0.0,
    )


def holm(p_values: Mapping[str, float], alpha: float) -> set[str]:
    """Keys whose null hypothesis Holm's step-down procedure rejects at family-wise level ``alpha``."""
    ordered = sorted(p_values.items(), key=lambda kv: (kv[1], kv[0]))
    m = len(ordered)
    rejected: set[str] = set()
    for i, (key, p) in enumerate(ordered):
        if p > alpha / (m - i):
            break
        rejected.add(key)
    return rejected


def exceed_p(hits: float, n: float, bound: float) -> float:
    """One-sided binomial p-value of seeing >= ``hits`` of ``n`` when the true share is ``bound``.

    The test of "the share is above ``bound``": small when the share is clearly higher.
    """
    if n <= 0 or hits <= 0:
        return 1.0
    k = round(hits)
    return float(sps.binom.sf(k - 1, round(n), min(max(bound, 0.0), 1.0)))


def accuracy_drop_p(
    correct: float, labelled: float, reference: float, reference_rows: float | None, max_drop: float
) -> float:
    """One-sided p-value of "accuracy fell by more than ``max_drop`` below the reference".

    With the held-out row count known, the reference's own uncertainty counts too (a
    Wald test of the difference with one success and one failure added to each side,
    so a perfect held-out score still has a variance); without it, an exact binomial
    test against ``reference - max_drop``.
    """
    if labelled <= 0:
        return 1.0
    if reference_rows is None or reference_rows <= 0:
        bound = max(reference - max_drop, 0.0)
        if bound <= 0:
            return 1.0
        return float(sps.binom.cdf(round(correct), round(labelled), bound))
    pr = (reference * reference_rows + 1.0) / (reference_rows + 2.0)
    po = (correct + 1.0) / (labelled + 2.0)
    var = pr * (1 - pr) / (reference_rows + 2.0) + po * (1 - po) / (labelled + 2.0)
    z = (pr - po - max_drop) / math.sqrt(var)
    return float(sps.norm.sf(z))


__all__ = [
    "BinTest",
    "accuracy_drop_p",
    "compare_bins",
    "exceed_p",
    "fold_levels",
    "fold_ordered",
    "holm",
    "rank_sum_p",
    "rank_sum_z",
]
