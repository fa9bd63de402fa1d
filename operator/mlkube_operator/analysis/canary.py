"""Is the canary worse than the stable pods it would replace? (pure)

Absolute thresholds say whether a model is acceptable; they cannot say whether the new
model is *worse than the one serving now*. Both tracks serve the same traffic through one
Service at the same time, so their concurrent windows are two samples of one population
and the comparison needs no reference profile: a difference beyond chance is the model's.

Each check is a one-sided test of "the canary is worse", run only when both sides have
enough rows, and it fails only when the difference is both significant (p below
``alpha`` divided by the number of checks run, a Bonferroni correction) and large enough
to matter (a minimum effect), so heavy traffic does not turn a negligible difference
into an abort:

- error rate: Fisher's exact two-proportion test on 5xx counts (exact at any size);
- latency: the share of requests slower than the stable pods' p99 bucket bound (at
  least 25 ms: below that a difference is noise such as a cold cache), Fisher's exact
  test again (a histogram gives counts above a bound, not raw latencies);
- prediction distribution: a chi-squared test of homogeneity on the 2 x k table of
  predicted classes (or prediction bins), effect size Cramér's V;
- accuracy, where both tracks received feedback labels: Fisher's exact test on
  correct/incorrect counts;
- a regressor's mean absolute error, where both tracks received feedback labels: Welch's
  t-test on the absolute errors, whose mean and variance come from the servers' error
  summaries (sum of |e|, sum of e², rows: var |e| = mean e² - (mean |e|)²), minimum
  effect a 10 % higher MAE.

The labels of each track are all of its labels, wherever the Service sent them
(`counts.credit_feedback`), not only those that reached its own pods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from scipy import stats

from .counts import ABS_ERROR, ERROR_ROWS, SQUARED_ERROR, Counts
from .stats import histogram_quantile

DEFAULT_ALPHA = 0.01
MIN_ROWS = 20  # fewest requests (or labels) on each side before a check runs
MIN_ERROR_RATE_INCREASE = 0.01  # absolute
MIN_SLOW_SHARE_INCREASE = 0.02  # absolute, on top of doubling the stable's slow share
MIN_LATENCY_BOUND_SECONDS = 0.025  # "slow" starts at the stable p99 or 25 ms, whichever is higher
MIN_CRAMERS_V = 0.2
MIN_ACCURACY_DROP = 0.02  # absolute
MIN_MAE_INCREASE = 0.10  # relative: the canary's mean absolute error at least 10 % above the stable's


@dataclass(frozen=True)
class Check:
    name: str
    canary: float
    stable: float
    p_value: float
    effect: float  # the difference (or Cramér's V) the minimum effect applies to
    worse: bool = False

    def describe(self) -> str:
        return (
            f"{self.name} canary {self.canary:.3g} vs stable {self.stable:.3g} "
            f"(p={self.p_value:.2g}, effect {self.effect:.3g})"
        )


@dataclass(frozen=True)
class Comparison:
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why a check did not run
    # Both tracks served enough requests in the window to be compared at all. A canary
    # judged Healthy on its own requests is still not promoted before this holds: the
    # stable pods may simply not have been asked yet.
    enough: bool = True

    @property
    def worse(self) -> bool:
        return any(c.worse for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [f"worse than stable: {c.describe()}" for c in self.checks if c.worse]

    def summary(self) -> str:
        parts = [c.describe() for c in self.checks] + [f"skipped {s}" for s in self.skipped]
        return "; ".join(parts) if parts else "nothing to compare"


def _fisher_greater(a_bad: float, a_n: float, b_bad: float, b_n: float) -> float:
    """p-value of "side a has a higher bad share than side b" (one-sided Fisher exact)."""
    table = [[round(a_bad), round(a_n - a_bad)], [round(b_bad), round(b_n - b_bad)]]
    _, p = stats.fisher_exact(table, alternative="greater")
    return float(p)


def _errors(requests: Mapping[str, float]) -> tuple[float, float]:
    n = math.fsum(requests.values())
    return math.fsum(v for code, v in requests.items() if code.startswith("5")), n


def _slow(latency: Mapping[float, float], bound: float) -> tuple[float, float]:
    """(requests slower than `bound`, requests) of a cumulative histogram; `bound` is one of its bounds."""
    n = max(latency.values(), default=0.0)
    return max(0.0, n - latency.get(bound, n)), n


def _abs_error(feedback: Mapping[str, float]) -> tuple[float, float, float]:
    """(rows, mean |e|, sample variance of |e|) from a regressor's error summaries."""
    n = feedback.get(ERROR_ROWS, 0.0)
    if n < 2:
        return n, 0.0, 0.0
    mean = feedback.get(ABS_ERROR, 0.0) / n
    var = max(0.0, (feedback.get(SQUARED_ERROR, 0.0) - n * mean * mean) / (n - 1))
    return n, mean, var


def _welch_greater(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """p-value of "side a has a higher mean than side b" (one-sided Welch t-test from moments)."""
    (na, ma, va), (nb, mb, vb) = a, b
    se2 = va / na + vb / nb
    if se2 <= 0:
        return 0.0 if ma > mb else 1.0
    t = (ma - mb) / math.sqrt(se2)
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1)) if va + vb > 0 else na + nb - 2
    return float(stats.t.sf(t, df))


def compare(
    canary: Counts, stable: Counts, alpha: float = DEFAULT_ALPHA, min_rows: int = MIN_ROWS
) -> Comparison:
    """The canary's window against the stable pods' window over the same time."""
    raw: list[
        tuple[str, float, float, float, float, bool]
    ] = []  # name, canary, stable, p, effect, big enough
    skipped: list[str] = []

    c_err, c_n = _errors(canary.requests)
    s_err, s_n = _errors(stable.requests)
    if c_n >= min_rows and s_n >= min_rows:
        c_rate, s_rate = c_err / c_n, s_err / s_n
        p = _fisher_greater(c_err, c_n, s_err, s_n)
        raw.append(
            ("errorRate", c_rate, s_rate, p, c_rate - s_rate, c_rate - s_rate >= MIN_ERROR_RATE_INCREASE)
        )
    else:
        skipped.append(
            f"errorRate: {c_n:.0f} canary and {s_n:.0f} stable requests, {min_rows} needed on each"
        )

    p99 = histogram_quantile(0.99, stable.latency)
    finite = sorted(b for b in stable.latency if not math.isinf(b))
    # Sub-floor latencies are noise (a cold cache, a scheduler tick), not a worse model.
    floor = None if p99 is None else max(p99, MIN_LATENCY_BOUND_SECONDS)
    bound = next((b for b in finite if floor is not None and b >= floor), None)
    if bound is not None and c_n >= min_rows and s_n >= min_rows and bound in canary.latency:
        c_slow, c_total = _slow(canary.latency, bound)
        s_slow, s_total = _slow(stable.latency, bound)
        if c_total > 0 and s_total > 0:
            c_share, s_share = c_slow / c_total, s_slow / s_total
            p = _fisher_greater(c_slow, c_total, s_slow, s_total)
            big = c_share >= 2 * s_share and c_share - s_share >= MIN_SLOW_SHARE_INCREASE
            raw.append(
                (f"share slower than {bound * 1000:g} ms", c_share, s_share, p, c_share - s_share, big)
            )
    else:
        skipped.append("latency: too few requests or no histogram on both tracks")

    classes = sorted(k for k in canary.predictions.keys() | stable.predictions.keys())
    c_row = [canary.predictions.get(k, 0.0) for k in classes]
    s_row = [stable.predictions.get(k, 0.0) for k in classes]
    kept = [i for i in range(len(classes)) if c_row[i] + s_row[i] > 0]
    c_total, s_total = sum(c_row), sum(s_row)
    if len(kept) >= 2 and c_total >= min_rows and s_total >= min_rows:
        table = [[round(c_row[i]) for i in kept], [round(s_row[i]) for i in kept]]
        chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
        v = math.sqrt(float(chi2) / (c_total + s_total))  # Cramér's V of a 2 x k table
        top = max(kept, key=lambda i: abs(c_row[i] / c_total - s_row[i] / s_total))
        raw.append(
            (
                f"prediction share of {classes[top]!r}",
                c_row[top] / c_total,
                s_row[top] / s_total,
                float(p),
                v,
                v >= MIN_CRAMERS_V,
            )
        )
    else:
        skipped.append("predictions: fewer than two classes or too few predictions on a track")

    c_ok, c_bad = canary.feedback.get("correct", 0.0), canary.feedback.get("incorrect", 0.0)
    s_ok, s_bad = stable.feedback.get("correct", 0.0), stable.feedback.get("incorrect", 0.0)
    if c_ok + c_bad >= min_rows and s_ok + s_bad >= min_rows:
        c_acc, s_acc = c_ok / (c_ok + c_bad), s_ok / (s_ok + s_bad)
        p = _fisher_greater(c_bad, c_ok + c_bad, s_bad, s_ok + s_bad)
        raw.append(("accuracy", c_acc, s_acc, p, s_acc - c_acc, s_acc - c_acc >= MIN_ACCURACY_DROP))
    elif canary.feedback.get(ERROR_ROWS, 0.0) + stable.feedback.get(ERROR_ROWS, 0.0) == 0:
        skipped.append("accuracy: too few feedback labels on a track")

    c_mae, s_mae = _abs_error(canary.feedback), _abs_error(stable.feedback)
    if c_mae[0] >= min_rows and s_mae[0] >= min_rows:
        p = _welch_greater(c_mae, s_mae)
        increase = (c_mae[1] - s_mae[1]) / s_mae[1] if s_mae[1] > 0 else (math.inf if c_mae[1] > 0 else 0.0)
        raw.append(("mean absolute error", c_mae[1], s_mae[1], p, increase, increase >= MIN_MAE_INCREASE))
    elif c_mae[0] + s_mae[0] > 0:
        skipped.append("mean absolute error: too few feedback labels on a track")

    corrected = alpha / max(1, len(raw))
    checks = [Check(n, c, s, p, e, worse=big and p < corrected) for n, c, s, p, e, big in raw]
    return Comparison(checks, skipped, enough=c_n >= min_rows and s_n >= min_rows)


__all__ = ["DEFAULT_ALPHA", "Check", "Comparison", "compare"]
