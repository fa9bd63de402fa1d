"""Degradation and drift statistics, kept free of I/O so every verdict is reproducible in a test.

The adapters fetch ``/metrics`` text (directly from pods or via Prometheus) and hand it
here; this package turns counts into numbers and numbers into an ``Analysis`` for the
ModelDeployment status.  Nothing here knows about Kubernetes, kopf or the clock.
"""

from __future__ import annotations

from .counts import Counts, delta, parse_metrics, total
from .stats import accuracy, error_rate, histogram_quantile, psi
from .verdict import analyse

__all__ = [
    "Counts",
    "accuracy",
    "analyse",
    "delta",
    "error_rate",
    "histogram_quantile",
    "parse_metrics",
    "psi",
    "total",
]
