"""Prometheus metrics whose series the operator's drift and degradation analysis reads.

The series names, label sets and bin semantics are a contract with the operator (see
docs/serving.md), so they are defined here in one place.  The counting itself is not
done with prometheus_client's Counter/Histogram children: those take a lock and a label
lookup per increment, and a 20-feature model would need dozens per request.  All
updates happen on the event loop thread (the predict worker thread never touches
metrics), so plain Python numbers and numpy arrays suffice, updated once per coalesced
batch with vectorised counting, and turned into metric families only when scraped.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from .artifacts import ColumnProfile, ReferencePredictions, ReferenceProfile
from .schema import InputSchema

# Fine enough to tell a 1 ms server from a 2 ms one and to compute p99 up to 1 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02,
    0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
)  # fmt: skip
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
DEFAULT_VALUE_BUCKETS: tuple[float, ...] = (
    -1000, -100, -10, -1, -0.1, 0, 0.1, 1, 10, 100, 1000, 10000,
)  # fmt: skip
OTHER_LEVEL = "__other__"
MISSING_LEVEL = "__missing__"


def _fmt(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class _Histogram:
    """Label set -> bucket counts (non-cumulative), sum, count; cumulated at scrape."""

    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.bounds = list(buckets)
        self.series: dict[tuple[str, ...], list[float]] = {}  # [b0..bn, +Inf, sum]

    def _row(self, key: tuple[str, ...]) -> list[float]:
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * (len(self.bounds) + 2)
        return row

    def observe(self, key: tuple[str, ...], value: float) -> None:
        row = self._row(key)
        row[bisect.bisect_left(self.bounds, value)] += 1
        row[-1] += value

    def observe_many(self, key: tuple[str, ...], values: npt.NDArray[np.float64]) -> None:
        if values.size == 0:
            return
        row = self._row(key)
        idx = np.searchsorted(np.asarray(self.bounds), values, side="left")
        counts = np.bincount(idx, minlength=len(self.bounds) + 1)
        for i, c in enumerate(counts.tolist()):
            if c:
                row[i] += c
        row[-1] += float(values.sum())

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, row in self.series.items():
            cum = 0.0
            buckets = []
            for bound, count in zip([*self.bounds, math.inf], row[:-1], strict=True):
                cum += count
                buckets.append((_fmt(bound), cum))
            fam.add_metric(list(key), buckets, row[-1])
            if self.bounds and self.bounds[0] < 0:
                # prometheus_client drops _sum and _count when a bucket bound is negative
                # (OpenMetrics: such a _sum is not monotonic); the count still is.
                fam.samples.append(
                    Sample(self.name + "_count", dict(zip(self.labels, key, strict=True)), cum)
                )
        return fam


class _Counter:
    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.series: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        self.series[key] = self.series.get(key, 0.0) + amount

    def family(self) -> CounterMetricFamily:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.series.items():
            fam.add_metric(list(key), value)
        return fam


class FeatureBins:
    """Per-feature counts on the reference profile's bin edges, counted per batch in one pass.

    For edges e0..eN (N bins): bin "0" is x < e0, bin "i" (1..N-1) is e(i-1) <= x < e(i),
    bin "N" is e(N-1) <= x <= eN (the last bin is closed, like numpy.histogram), bin "N+1"
    is x > eN, and "missing" is NaN.
    """

    def __init__(self, columns: list[int], names: list[str], edges: list[list[float]]) -> None:
        self.columns = np.asarray(columns, dtype=np.intp)
        self.names = names
        self.n_edges = np.asarray([len(e) for e in edges], dtype=np.intp)
        width = max(len(e) for e in edges)
        padded = np.full((len(edges), width), np.inf)
        for k, e in enumerate(edges):
            padded[k, : len(e)] = e
        self.edges = padded  # (F, W), padded with +inf
        self.last = np.asarray([e[-1] for e in edges])
        self.slots = width + 2  # bins 0..W (at most) and "missing"
        self.counts = np.zeros((len(edges), self.slots), dtype=np.int64)
        self._offsets = np.arange(len(edges), dtype=np.intp) * self.slots

    def count(self, x: npt.NDArray[Any]) -> None:
        values = x[:, self.columns]
        if values.dtype != np.float64:
            values = values.astype(np.float64)
        # Number of edges <= x, per (row, feature): 0 below e0 ... n_edges above the last edge.
        idx = (values[:, :, None] >= self.edges[None, :, :]).sum(axis=2)
        on_last = values == self.last[None, :]
        idx[on_last] -= 1  # the last bin is closed on the right
        nan = np.isnan(values)
        if nan.any():
            idx[nan] = self.slots - 1
        flat = (idx + self._offsets[None, :]).ravel()
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    def bin_counts(self, k: int) -> list[tuple[str, float]]:
        """(bin label, count) for feature k: "0" .. "N+1", then "missing"."""
        n_bins = int(self.n_edges[k]) - 1
        row = self.counts[k].tolist()
        return [
            *((str(b), float(row[b])) for b in range(n_bins + 2)),
            ("missing", float(row[self.slots - 1])),
        ]

    def family(self, model: str, name: str, doc: str) -> CounterMetricFamily:
        fam = CounterMetricFamily(name, doc, labels=["model", "feature", "bin"])
        for k, feature in enumerate(self.names):
            for label, value in self.bin_counts(k):
                fam.add_metric([model, feature, label], value)
        return fam


class FeatureLevels:
    """Per-feature counts of categorical levels known to the reference profile (others as __other__)."""

    def __init__(self, columns: list[int], names: list[str], levels: list[list[str]]) -> None:
        self.columns = columns
        self.names = names
        self.levels = levels
        self.lookup = [{lv: i for i, lv in enumerate(lvls)} for lvls in levels]
        self.counts = [[0] * (len(lvls) + 2) for lvls in levels]  # levels..., __other__, __missing__

    def count(self, x: npt.NDArray[Any]) -> None:
        from .model import label_text

        for k, col in enumerate(self.columns):
            lookup, counts = self.lookup[k], self.counts[k]
            other, missing = len(counts) - 2, len(counts) - 1
            for value in x[:, col].tolist():
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    counts[missing] += 1
                else:
                    counts[lookup.get(label_text(value), other)] += 1

    def family(self, model: str, name: str, doc: str) -> CounterMetricFamily:
        fam = CounterMetricFamily(name, doc, labels=["model", "feature", "level"])
        for k, feature in enumerate(self.names):
            counts = self.counts[k]
            for i, level in enumerate([*self.levels[k], OTHER_LEVEL, MISSING_LEVEL]):
                fam.add_metric([model, feature, level], float(counts[i]))
        return fam


def _bin_reference(fractions: Sequence[float]) -> list[tuple[str, float]]:
    """Reference fractions on FeatureBins' labels: the profile's bins are "1".."N"; values
    outside the edges and missing ones are not part of the reference, so those bins are 0."""
    n = len(fractions)
    return [
        ("0", 0.0),
        *((str(i + 1), float(f)) for i, f in enumerate(fractions)),
        (str(n + 1), 0.0),
        ("missing", 0.0),
    ]


def _edges_of(column: ColumnProfile | None) -> list[float] | None:
    if column is None or column.kind != "numeric" or not column.bin_edges:
        return None
    return [float(e) for e in column.bin_edges]


class ServingMetrics(Collector):
    """All of the server's series, in its own registry (no global state shared with anything)."""

    def __init__(self, model_name: str, with_process: bool = True) -> None:
        self.model = model_name
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = _Counter(
            "mlkube_requests", "HTTP requests by route template and status code.", ["model", "route", "code"]
        )
        self.duration = _Histogram(
            "mlkube_request_duration_seconds",
            "Time from receiving a request to sending its response, by route template.",
            ["model", "route"],
            LATENCY_BUCKETS,
        )
        self.batch_size = _Histogram(
            "mlkube_batch_size", "Rows per coalesced predict call.", ["model"], BATCH_BUCKETS
        )
        self.batch_requests = _Histogram(
            "mlkube_batch_requests", "Requests coalesced into one predict call.", ["model"], BATCH_BUCKETS
        )
        self.feedback = _Counter(
            "mlkube_feedback",
            "Feedback outcomes: correct, incorrect, scored (regression), unknown_id, other_model.",
            ["model", "outcome"],
        )
        self.feedback_for = _Counter(
            "mlkube_feedback_for_model",
            "Labels of another model's predictions (a canary's, the stable model's) scored here for it: "
            "predicted_by is its sha256[:8]; outcome correct or incorrect.",
            ["model", "predicted_by", "outcome"],
        )
        # Batches whose rows are not counted yet: counting 20 features for one row costs as
        # much as for a thousand, so it is done in bulk at scrape time (or every flush_rows).
        self._pending: list[
            tuple[
                npt.NDArray[Any],
                npt.NDArray[np.intp] | None,
                npt.NDArray[Any] | None,
                npt.NDArray[np.float64] | None,
            ]
        ] = []
        self._pending_rows = 0
        self.flush_rows = 2048
        self.class_labels: list[str] = []
        self.class_counts: npt.NDArray[np.int64] | None = None
        self.prediction_value: _Histogram | None = None
        self.prediction_bins: FeatureBins | None = None
        self.bins: FeatureBins | None = None
        self.levels: FeatureLevels | None = None
        self.sq_error: list[float] = [0, 0.0]  # count, sum
        self.abs_error: list[float] = [0, 0.0]
        # Regression labels of another model's predictions scored here for it, by its
        # sha256[:8]: predicted_by -> [count, sum of squared errors, sum of absolute errors].
        self.errors_for: dict[str, list[float]] = {}
        self.info: tuple[str, str] | None = None  # (sha256, version)
        self._class_index_of: Callable[[npt.NDArray[Any]], npt.NDArray[np.intp]] | None = None
        self.ready = False
        self.in_flight = 0  # requests with a body between arrival and answer (set by the app)
        self.task: str | None = None
        # The profile's distributions as constant gauges, so whoever reads the counts (the
        # operator's analysis, a Grafana panel) has the reference beside them on one scrape.
        self.feature_reference: list[tuple[str, str, float]] = []  # (feature, bin, ratio)
        self.feature_reference_rows: list[tuple[str, float]] = []  # (feature, non-missing rows)
        self.prediction_reference: list[tuple[str, float]] = []  # (class, ratio)
        # The model's own predictions on its held-out rows: scores on their quantile bins.
        self.score_bins: FeatureBins | None = None
        self.score_kind: str | None = None
        self.score_reference: list[tuple[str, float]] = []  # (bin, ratio)
        self.prediction_reference_rows: float | None = None
        self.reference_accuracy: float | None = None
        self.registry.register(self)
        if with_process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    # -- set-up once the model is known ------------------------------------------------------

    def bind_model(
        self,
        *,
        sha256: str,
        version: str,
        task: str,
        class_labels: list[str],
        schema: InputSchema,
        profile: ReferenceProfile | None,
        class_index_of: Callable[[npt.NDArray[Any]], npt.NDArray[np.intp]] | None = None,
        reference: ReferencePredictions | None = None,
        reference_accuracy: float | None = None,
    ) -> list[str]:
        """Prepare model-dependent series; returns warnings (features the profile does not cover).

        ``reference`` (the model's predictions on its held-out rows, from metadata.json)
        gives the prediction references; a model trained before they were recorded has
        none, and the operator then says that prediction drift is not checked.
        """
        notes: list[str] = []
        self.feature_reference = []
        self.feature_reference_rows = []
        self.prediction_reference = []
        self.score_reference = []
        self.score_bins = None
        self.score_kind = None
        self.prediction_reference_rows = float(reference.rows) if reference is not None else None
        self.reference_accuracy = reference_accuracy
        if reference is not None:
            if task == "classification" and reference.classes:
                # Every class the model can predict, 0 where it never did on the held-out rows.
                labels = [*class_labels, *(c for c in reference.classes if c not in class_labels)]
                self.prediction_reference = [(c, float(reference.classes.get(c, 0.0))) for c in labels]
            score_edges = _edges_of(reference.scores)
            if score_edges is not None and reference.scores is not None and reference.scores.fractions:
                self.score_bins = FeatureBins([0], ["score"], [score_edges])
                self.score_kind = reference.score_kind
                self.score_reference = _bin_reference(reference.scores.fractions)
        else:
            notes.append("metadata.json has no referencePredictions; prediction drift cannot be checked")
        self._class_index_of = class_index_of
        self.info = (sha256, version)
        self.task = task
        if task == "classification":
            self.class_labels = class_labels
            self.class_counts = np.zeros(len(class_labels), dtype=np.int64)
        else:
            target = profile.target_profile if profile is not None else None
            edges = _edges_of(target)
            self.prediction_value = _Histogram(
                "mlkube_prediction_value",
                "Regression predictions (buckets: the target's reference bin edges when known).",
                ["model"],
                edges or DEFAULT_VALUE_BUCKETS,
            )
            if edges is not None:
                self.prediction_bins = FeatureBins([0], ["prediction"], [edges])
        if profile is None:
            return notes
        b_cols, b_names, b_edges = [], [], []
        l_cols, l_names, l_levels = [], [], []
        for j, name in enumerate(schema.feature_names):
            column = profile.feature(name)
            if column is None:
                notes.append(f"feature {name!r} is not in the reference profile; no drift histogram for it")
                continue
            edges = _edges_of(column)
            if edges is not None and not schema.categorical[j]:
                b_cols.append(j)
                b_names.append(name)
                b_edges.append(edges)
            elif column.kind == "categorical" and column.levels is not None:
                l_cols.append(j)
                l_names.append(name)
                l_levels.append(list(column.levels))
            else:
                notes.append(f"feature {name!r} has no bin edges or levels in the reference profile")
        if b_cols:
            self.bins = FeatureBins(b_cols, b_names, b_edges)
        if l_cols:
            self.levels = FeatureLevels(l_cols, l_names, l_levels)
        for name in b_names:
            column = profile.feature(name)
            if column is not None and column.fractions is not None:
                self.feature_reference += [(name, b, r) for b, r in _bin_reference(column.fractions)]
                self._reference_rows(name, profile, column)
        for name in l_names:
            column = profile.feature(name)
            if column is not None and column.levels is not None:
                self.feature_reference += [(name, lv, float(r)) for lv, r in column.levels.items()]
                self.feature_reference += [(name, OTHER_LEVEL, 0.0), (name, MISSING_LEVEL, 0.0)]
                self._reference_rows(name, profile, column)
        return notes

    def _reference_rows(self, name: str, profile: ReferenceProfile, column: ColumnProfile) -> None:
        """How many rows a feature's fractions stand for: their own sampling noise is part of the test."""
        if profile.rows is not None and profile.rows - column.missing > 0:
            self.feature_reference_rows.append((name, float(profile.rows - column.missing)))

    @property
    def wants_proba(self) -> bool:
        """Whether every predict must also give probabilities (for the score histogram)."""
        return self.score_bins is not None and self.task == "classification"

    # -- hot path (event loop thread only) -----------------------------------------------------

    def observe_request(self, route: str, code: int, seconds: float) -> None:
        key = (self.model, route, str(code))
        series = self.requests.series
        series[key] = series.get(key, 0.0) + 1.0
        self.duration.observe((self.model, route), seconds)

    def observe_batch(
        self,
        x: npt.NDArray[Any],
        requests: int,
        class_index: npt.NDArray[np.intp] | None,
        values: npt.NDArray[Any] | None,
        proba: npt.NDArray[np.float64] | None = None,
    ) -> None:
        """Record one predict call; the per-row counting is deferred and done in bulk."""
        key = (self.model,)
        self.batch_size.observe(key, len(x))
        self.batch_requests.observe(key, requests)
        self._pending.append((x, class_index, values, proba))
        self._pending_rows += len(x)
        if self._pending_rows >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Count the inputs and predictions of every batch since the last flush (scrape or 2048 rows)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._pending_rows = 0
        if len(pending) == 1:
            x, class_index, values, proba = pending[0]
        else:
            x = np.concatenate([p[0] for p in pending])
            indices = [p[1] for p in pending]
            class_index = None if any(i is None for i in indices) else np.concatenate(indices)  # type: ignore[arg-type]
            values = None if pending[0][2] is None else np.concatenate([p[2] for p in pending])
            probas = [p[3] for p in pending]
            proba = None if any(p is None for p in probas) else np.concatenate(probas)  # type: ignore[arg-type]
        self._count_scores(x, values, proba)
        if self.bins is not None:
            self.bins.count(x)
        if self.levels is not None:
            self.levels.count(x)
        if class_index is None and values is not None and self._class_index_of is not None:
            class_index = self._class_index_of(values)
        if self.class_counts is not None and class_index is not None:
            valid = class_index[class_index >= 0]
            self.class_counts += np.bincount(valid, minlength=len(self.class_counts))
        elif self.prediction_value is not None and values is not None:
            v = np.asarray(values, dtype=np.float64).reshape(len(x), -1)[:, 0]
            self.prediction_value.observe_many((self.model,), v)
            if self.prediction_bins is not None:
                self.prediction_bins.count(v.reshape(-1, 1))

    def _count_scores(
        self, x: npt.NDArray[Any], values: npt.NDArray[Any] | None, proba: npt.NDArray[np.float64] | None
    ) -> None:
        if self.score_bins is None:
            return
        if self.task == "classification":
            if proba is None or proba.ndim != 2 or len(proba) != len(x):
                return  # a batch without probabilities (cannot happen while wants_proba holds)
            score = (
                proba[:, 1]
                if self.score_kind == "positiveProbability" and proba.shape[1] == 2
                else proba.max(axis=1)
            )
        elif values is not None:
            score = np.asarray(values, dtype=np.float64).reshape(len(x), -1)[:, 0]
        else:
            return
        self.score_bins.count(np.ascontiguousarray(score, dtype=np.float64).reshape(-1, 1))

    def observe_feedback(self, outcome: str, n: float = 1.0) -> None:
        self.feedback.inc((self.model, outcome), n)

    def observe_feedback_for(self, predicted_by: str, outcome: str, n: float) -> None:
        self.feedback_for.inc((self.model, predicted_by, outcome), n)

    def observe_errors_for(self, predicted_by: str, errors: npt.NDArray[np.float64]) -> None:
        """Errors of another (regression) model's predictions, scored here for that model."""
        sums = self.errors_for.setdefault(predicted_by, [0, 0.0, 0.0])
        sums[0] += int(errors.size)
        sums[1] += float(np.square(errors).sum())
        sums[2] += float(np.abs(errors).sum())

    def observe_errors(self, errors: npt.NDArray[np.float64]) -> None:
        self.sq_error[0] += int(errors.size)
        self.sq_error[1] += float(np.square(errors).sum())
        self.abs_error[0] += int(errors.size)
        self.abs_error[1] += float(np.abs(errors).sum())

    # -- scrape -----------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        self.flush()
        m = self.model
        yield self.requests.family()
        yield self.duration.family()
        yield self.batch_size.family()
        yield self.batch_requests.family()
        ready = GaugeMetricFamily(
            "mlkube_model_ready", "1 once the model is loaded and warmed up.", labels=["model"]
        )
        ready.add_metric([m], 1.0 if self.ready else 0.0)
        yield ready
        in_flight = GaugeMetricFamily(
            "mlkube_requests_in_flight",
            "Predict, infer and feedback requests received and not yet answered "
            "(on SIGTERM, the ones a graceful shutdown waits for).",
            labels=["model"],
        )
        in_flight.add_metric([m], float(self.in_flight))
        yield in_flight
        if self.info is not None:
            info = GaugeMetricFamily(
                "mlkube_model_info",
                "The served model's identity (always 1).",
                labels=["model", "sha256", "version"],
            )
            info.add_metric([m, *self.info], 1.0)
            yield info
        if self.class_counts is not None:
            fam = CounterMetricFamily(
                "mlkube_predictions", "Predictions by predicted class.", labels=["model", "class"]
            )
            for label, count in zip(self.class_labels, self.class_counts.tolist(), strict=True):
                fam.add_metric([m, label], float(count))
            yield fam
        if self.prediction_value is not None:
            yield self.prediction_value.family()
        if self.prediction_bins is not None:
            fam = CounterMetricFamily(
                "mlkube_prediction_bin",
                "Regression predictions on the target's reference bin edges (same bins as mlkube_feature_bin).",
                labels=["model", "bin"],
            )
            for label, value in self.prediction_bins.bin_counts(0):
                fam.add_metric([m, label], value)
            yield fam
        if self.bins is not None:
            yield self.bins.family(
                m,
                "mlkube_feature_bin",
                "Input values per feature, counted on the reference profile's bin edges.",
            )
        if self.levels is not None:
            yield self.levels.family(
                m, "mlkube_feature_level", "Categorical input values per feature and reference level."
            )
        if self.feature_reference:
            ref = GaugeMetricFamily(
                "mlkube_feature_reference_ratio",
                "The reference profile's fraction per feature bin (numeric) or level (categorical), "
                "on the labels of mlkube_feature_bin_total / mlkube_feature_level_total.",
                labels=["model", "feature", "bin"],
            )
            for feature, label, ratio in self.feature_reference:
                ref.add_metric([m, feature, label], ratio)
            yield ref
        if self.prediction_reference:
            ref = GaugeMetricFamily(
                "mlkube_prediction_reference_ratio",
                "The model's own predictions on its held-out rows: fraction per class of mlkube_predictions_total.",
                labels=["model", "bin"],
            )
            for label, ratio in self.prediction_reference:
                ref.add_metric([m, label], ratio)
            yield ref
        if self.score_bins is not None:
            fam = CounterMetricFamily(
                "mlkube_prediction_score_bin",
                "Prediction scores (positive-class or largest probability; regression: the prediction) "
                "on the quantile bins of the model's own scores on its held-out rows.",
                labels=["model", "bin"],
            )
            for label, value in self.score_bins.bin_counts(0):
                fam.add_metric([m, label], value)
            yield fam
            ref = GaugeMetricFamily(
                "mlkube_prediction_score_reference_ratio",
                "The held-out rows' share per bin of mlkube_prediction_score_bin_total.",
                labels=["model", "bin"],
            )
            for label, ratio in self.score_reference:
                ref.add_metric([m, label], ratio)
            yield ref
        if self.feature_reference_rows:
            rows = GaugeMetricFamily(
                "mlkube_feature_reference_rows",
                "Non-missing rows behind each feature's reference fractions (the test counts their noise).",
                labels=["model", "feature"],
            )
            for feature, n in self.feature_reference_rows:
                rows.add_metric([m, feature], n)
            yield rows
        if self.prediction_reference_rows is not None:
            g = GaugeMetricFamily(
                "mlkube_prediction_reference_rows",
                "Held-out rows behind the prediction references and mlkube_reference_accuracy.",
                labels=["model"],
            )
            g.add_metric([m], self.prediction_reference_rows)
            yield g
        if self.reference_accuracy is not None:
            g = GaugeMetricFamily(
                "mlkube_reference_accuracy", "The model's accuracy on its held-out rows.", labels=["model"]
            )
            g.add_metric([m], self.reference_accuracy)
            yield g
        fb = self.feedback.family()
        yield fb
        yield self.feedback_for.family()
        if self.task == "regression":
            for name, (count, total), doc in (
                (
                    "mlkube_feedback_squared_error",
                    self.sq_error,
                    "Squared error of predictions with feedback.",
                ),
                ("mlkube_feedback_abs_error", self.abs_error, "Absolute error of predictions with feedback."),
            ):
                summ = SummaryMetricFamily(name, doc, labels=["model"])
                summ.add_metric([m], count_value=int(count), sum_value=total)
                yield summ
            for name, index, doc in (
                (
                    "mlkube_feedback_for_model_squared_error",
                    1,
                    "Squared error of another model's predictions (a canary's, the stable model's) whose "
                    "labels were scored here for it; predicted_by is its sha256[:8].",
                ),
                (
                    "mlkube_feedback_for_model_abs_error",
                    2,
                    "Absolute error of another model's predictions scored here for it.",
                ),
            ):
                summ = SummaryMetricFamily(name, doc, labels=["model", "predicted_by"])
                for predicted_by, sums in self.errors_for.items():
                    summ.add_metric([m, predicted_by], count_value=int(sums[0]), sum_value=sums[index])
                yield summ


def exposition(metrics: ServingMetrics, accept: str | None) -> tuple[bytes, str]:
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(metrics.registry), content_type
