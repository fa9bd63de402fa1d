"""Remembering recent predictions so ground truth that arrives later can be scored.

Accuracy is the one degradation signal that needs the truth, and the truth arrives
after the prediction, from another system, by request id.  The server keeps the last N
predictions in a bounded LRU (memory stays flat under any load) and scores labels
against them; an id it no longer (or never) knew is counted as ``unknown_id`` and
reported back, because late or foreign feedback is normal, not an error.  Each id is
scored at most once, so a retried feedback call cannot inflate the accuracy numbers.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import bad_request
from .metrics import ServingMetrics
from .model import label_text


class PredictionMemory:
    """request id -> what was predicted for its rows (class labels, or regression values)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, npt.NDArray[Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, request_id: str, predicted: npt.NDArray[Any]) -> None:
        if self.capacity <= 0:
            return
        items = self._items
        if request_id in items:
            items.move_to_end(request_id)
        items[request_id] = predicted
        if len(items) > self.capacity:
            items.popitem(last=False)

    def peek(self, request_id: str) -> npt.NDArray[Any] | None:
        return self._items.get(request_id)

    def forget(self, request_id: str) -> None:
        self._items.pop(request_id, None)


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    unknown_ids: list[str]
    rows: int


def _labels_for(rid: str, label: Any, rows: int) -> list[Any]:
    if isinstance(label, list):
        if len(label) != rows:
            raise bad_request(
                f"feedback for id {rid!r} has {len(label)} labels but the request had {rows} rows"
            )
        return label
    if rows != 1:
        raise bad_request(f"feedback for id {rid!r} needs a list of {rows} labels (one per row)")
    return [label]


def score_feedback(
    items: list[tuple[str, Any]],
    memory: PredictionMemory,
    task: str,
    metrics: ServingMetrics,
) -> FeedbackResult:
    """Validate every item first (a 400 changes nothing), then score and count them."""
    scored: list[tuple[str, npt.NDArray[Any], list[Any]]] = []
    unknown: list[str] = []
    seen: set[str] = set()
    for rid, label in items:
        if rid in seen:
            raise bad_request(f"id {rid!r} appears more than once in this feedback")
        seen.add(rid)
        predicted = memory.peek(rid)
        if predicted is None:
            unknown.append(rid)
            continue
        labels = _labels_for(rid, label, len(predicted))
        for i, value in enumerate(labels):
            if task == "classification":
                if value is None or isinstance(value, dict | list):
                    raise bad_request(
                        f"feedback for id {rid!r}: label {i} must be a class label, got {value!r}"
                    )
            elif value is None or isinstance(value, bool) or not isinstance(value, int | float):
                raise bad_request(f"feedback for id {rid!r}: label {i} must be a number, got {value!r}")
        scored.append((rid, predicted, labels))

    rows = 0
    for rid, predicted, labels in scored:
        memory.forget(rid)
        rows += len(labels)
        if task == "classification":
            # Compared as the profiler spells labels: 1, 1.0 and "1" are the same class.
            correct = sum(
                label_text(t) == label_text(p) for t, p in zip(labels, predicted.tolist(), strict=True)
            )
            if correct:
                metrics.observe_feedback("correct", correct)
            if len(labels) - correct:
                metrics.observe_feedback("incorrect", len(labels) - correct)
        else:
            errors = np.asarray(labels, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
            metrics.observe_errors(errors)
            metrics.observe_feedback("scored", len(labels))
    if unknown:
        metrics.observe_feedback("unknown_id", len(unknown))
    return FeedbackResult(accepted=len(scored), unknown_ids=unknown, rows=rows)
