"""Evidence that adds up across windows: a one-sided CUSUM per statistic (issue 9, item 6).

A window is judged on its own first (``verdict``): Holm at ``alpha`` over its p-values.
That misses a drift too small to show in any single window, e.g. the early part of a
gradual one.  So each check that compares with a reference (every input feature, the
predictions, the scores, the fed-back accuracy) also carries CUSUMs across windows:

* a statistic ``z`` per window that is a standard normal when nothing changed: the
  normal quantile of the check's p-value (``z = Φ⁻¹(1 - p)``), and for ordered bins
  also the signed rank-sum z, once per direction (``verdict._accumulate``);
* ``S = max(0, S + z - k)``; the check fails once ``S >= limit`` (``h``).  With
  ``k = 0.5`` and ``h = 4.5`` Siegmund's approximation gives about 560 windows between
  false alarms per statistic on independent windows (more with the reference slack
  below); ``benchmarks/drift.py`` measures the rate over all statistics together;
* ``k`` is ``allowance`` plus ``2·√rho`` where ``rho = n / (n + m)`` is the share of the
  window's test variance that comes from the reference (``n`` rows in the window, ``m``
  rows the reference was measured on).  Every window is compared with the same
  reference, so its sampling noise is in every window's ``z`` (correlation ``rho``); the
  larger slack keeps a reference that is off by up to about two of its standard errors
  from adding up to an alarm over many windows.  A small reference (150 iris rows)
  therefore accumulates little, and a large one nearly as much as independent windows.

Reset rule: ``S`` starts at 0 for each model (a new model, state or canary step drops
the whole window state); it returns to 0 by itself when windows show no evidence; and
once at or above ``h`` it stays there only while each new window adds evidence
(``z > k``): the first window that does not resets it to 0, so a check recovers as soon
as the drift is gone instead of draining slowly.

Pure: the state is plain data the caller keeps in ``status.analysisWindow.cusum``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats as sps

Z_MIN, Z_MAX = -3.0, 8.0  # a p of 1 (nothing seen) and of 1e-300 stay finite and comparable
REFERENCE_SLACK = 2.0  # reference standard errors a CUSUM tolerates without accumulating


@dataclass(frozen=True)
class Observation:
    """One statistic of a check in one window."""

    z: float
    """Standardized: N(0, 1) when nothing changed (``z_score(p)``, or a signed rank-sum z)."""
    rows: float
    """Rows the test saw in the window (labels, for accuracy)."""
    reference_rows: float | None
    """Rows behind the reference (None: exact, e.g. a bound)."""


@dataclass(frozen=True)
class State:
    """One check's CUSUM after a window."""

    cusum: float
    z: float
    allowance: float
    windows: int
    """Windows since it was last 0."""


def z_score(p: float) -> float:
    """Φ⁻¹(1 - p), clipped to [Z_MIN, Z_MAX]."""
    if not math.isfinite(p) or p >= 1.0:
        return Z_MIN
    if p <= 0.0:
        return Z_MAX
    return min(max(float(sps.norm.isf(p)), Z_MIN), Z_MAX)


def allowance_for(base: float, rows: float, reference_rows: float | None) -> float:
    """``k``: the spec's allowance plus the reference's share of the noise (see the module doc)."""
    if reference_rows is None or reference_rows <= 0 or rows <= 0:
        return base
    rho = rows / (rows + reference_rows)
    return base + REFERENCE_SLACK * math.sqrt(rho)


def step(previous: State | None, seen: Observation, allowance: float, limit: float) -> State:
    """The CUSUM after one more window."""
    z = min(max(seen.z, Z_MIN), Z_MAX)
    k = allowance_for(allowance, seen.rows, seen.reference_rows)
    before = previous.cusum if previous is not None else 0.0
    if before >= limit and z <= k:
        return State(0.0, z, k, 0)  # alarmed, and this window adds nothing: recovered
    s = max(0.0, before + z - k)
    windows = (previous.windows if previous is not None and before > 0 else 0) + 1 if s > 0 else 0
    return State(s, z, k, windows)


def update(
    previous: Mapping[str, State],
    seen: Mapping[str, Observation],
    allowance: float,
    limit: float,
) -> dict[str, State]:
    """Every check's CUSUM after a window; a check not decided in it keeps its value."""
    out = {key: state for key, state in previous.items() if key not in seen}
    for key, observation in seen.items():
        out[key] = step(previous.get(key), observation, allowance, limit)
    return out


def alarms(states: Mapping[str, State], limit: float) -> set[str]:
    return {key for key, s in states.items() if s.cusum >= limit}


__all__ = ["Observation", "State", "alarms", "allowance_for", "step", "update", "z_score"]
