"""Remembering recent predictions so ground truth that arrives later can be scored.

Accuracy is the one degradation signal that needs the truth, and the truth arrives
after the prediction, from another system, by request id.  Behind a Service the label
usually reaches a different replica than the one that predicted, and replicas share
nothing.  So the id the server hands out is self-describing: ``<nonce>-<n>.<payload>``,
where the payload (base64url) carries the model's sha256 prefix, the predicted class
indices (bit-packed) or regression values (float64) and a checksum.  Any replica serving
the same model decodes it and scores the label; no shared store, no peer calls.

A per-replica LRU of the last N predictions is kept as before: it is how ids chosen by
the client (which are echoed unchanged, as the protocols require) are scored, and how a
prediction too large to encode is remembered.  An id no replica can decode and this one
does not know is counted as ``unknown_id`` and reported back, because late or foreign
feedback is normal, not an error.

A decodable id of another model (the canary's, or the stable model's on a canary pod, or
the previous model's after a rollout) must not count against this replica's model, and
during a canary it is the only way most of the other track's labels arrive (a Service
sends a canary's label to a stable pod with the stable pods' share). The id says which
model predicted (its sha256 prefix) and what, so this replica scores it *for that
model*, in ``mlkube_feedback_for_model_total{predicted_by=<sha256[:8]>}``, which the
operator adds to the predicting model's accuracy. Classes travel as indices, so this is
done only when the id's class-list digest equals this model's (same classes, same
order); otherwise the item is only counted as ``other_model``. A regressor's id carries
the predicted values themselves, so a regressor scores another regressor's id for it in
``mlkube_feedback_for_model_squared_error`` / ``_abs_error{predicted_by=...}``
(summaries), which the operator adds to that model's errors.

Each id is scored at most once per replica (a bounded set of scored ids), so a retried
feedback call to the same replica cannot inflate the numbers; a retry that lands on
another replica can be counted again, since replicas share no state.  The checksum
catches corrupted or truncated ids; it is not a signature: feedback is as trustworthy
as whoever can reach the endpoint, as it always was.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
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


_VERSION = 2  # 2: class ids carry a digest of the class list; 1 is still decoded
_CLASSES = 0
_VALUES = 1
_TAG_BYTES = 4
_CHECK_BYTES = 4
_CLASSES_TAG_BYTES = 2
# Largest payload put into an id (before base64): 4096 characters of id at most. A
# larger prediction gets a plain id that only its own replica (its LRU) knows.
MAX_PAYLOAD_BYTES = 3000


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _check(visible: str, body: bytes) -> bytes:
    return hashlib.blake2b(visible.encode() + b"." + body, digest_size=_CHECK_BYTES).digest()


@dataclass(frozen=True)
class Decoded:
    """What a self-describing id says: which model predicted, and what."""

    model_tag: bytes
    class_index: npt.NDArray[np.intp] | None
    values: npt.NDArray[np.float64] | None
    classes_tag: bytes | None = None  # digest of the predicting model's class list (version 2)

    @property
    def rows(self) -> int:
        data = self.class_index if self.class_index is not None else self.values
        assert data is not None
        return len(data)


class FeedbackIds:
    """Encodes predictions into response ids, and decodes them on any replica of the model."""

    def __init__(self, sha256_hex: str, n_classes: int | None, class_labels: list[str] | None = None) -> None:
        self.tag = bytes.fromhex(sha256_hex[: 2 * _TAG_BYTES])
        self.n_classes = n_classes
        self.bits = max(1, (n_classes - 1).bit_length()) if n_classes else 0
        self.classes_tag = classes_digest(class_labels if class_labels is not None else [])

    def encode(
        self, visible: str, class_index: npt.NDArray[Any] | None, values: npt.NDArray[Any] | None
    ) -> str | None:
        """``visible.payload``, or None when the prediction cannot or should not be encoded."""
        if class_index is not None:
            index = np.asarray(class_index)
            if index.ndim != 1 or not len(index) or self.n_classes is None or self.bits > 16:
                return None
            rows = len(index)
            if rows * self.bits > 8 * MAX_PAYLOAD_BYTES:
                return None
            header = (
                bytes((_VERSION,))
                + self.tag
                + bytes((_CLASSES,))
                + self.classes_tag
                + bytes((self.bits,))
                + _varint(rows)
            )
            if rows <= 64:
                # Small requests (the usual case): Python ints beat numpy's per-call overhead.
                acc = 0
                for value in index.tolist():
                    if value < 0:
                        return None  # a label that is not one of the classes
                    acc = (acc << self.bits) | value
                pad = -(rows * self.bits) % 8
                data = (acc << pad).to_bytes((rows * self.bits + pad) // 8, "big")
            elif int(index.min()) < 0:
                return None
            elif self.bits == 8:
                data = index.astype(np.uint8).tobytes()
            else:
                # Row i's index in bits [i*bits, (i+1)*bits), most significant bit first.
                shifts = np.arange(self.bits - 1, -1, -1)
                bitmatrix = ((index[:, None] >> shifts) & 1).astype(np.uint8)
                data = np.packbits(bitmatrix.ravel()).tobytes()
        elif values is not None:
            vals = np.asarray(values, dtype=np.float64)
            if vals.ndim != 1 or not len(vals) or 8 * len(vals) > MAX_PAYLOAD_BYTES:
                return None
            header = bytes((_VERSION,)) + self.tag + bytes((_VALUES,)) + _varint(len(vals))
            data = vals.astype("<f8").tobytes()
        else:
            return None
        body = header + data
        token = base64.urlsafe_b64encode(body + _check(visible, body)).rstrip(b"=").decode()
        return f"{visible}.{token}"

    def decode(self, rid: str) -> Decoded | None:
        """The prediction an id carries; None for an id that is not one of ours or is damaged."""
        visible, dot, token = rid.rpartition(".")
        if not dot or not visible or not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) < 1 + _TAG_BYTES + 2 + _CHECK_BYTES or raw[0] not in (1, _VERSION):
            return None
        version = raw[0]
        body, check = raw[:-_CHECK_BYTES], raw[-_CHECK_BYTES:]
        if _check(visible, body) != check:
            return None
        tag = body[1 : 1 + _TAG_BYTES]
        kind = body[1 + _TAG_BYTES]
        pos = 2 + _TAG_BYTES
        try:
            if kind == _CLASSES:
                classes_tag = None
                if version >= 2:
                    classes_tag = body[pos : pos + _CLASSES_TAG_BYTES]
                    pos += _CLASSES_TAG_BYTES
                bits = body[pos]
                rows, pos = _read_varint(body, pos + 1)
                if not 1 <= bits <= 16 or rows == 0:
                    return None
                if bits == 8:
                    index = np.frombuffer(body, dtype=np.uint8, count=rows, offset=pos).astype(np.intp)
                else:
                    need = (rows * bits + 7) // 8
                    if len(body) - pos != need:
                        return None
                    flat = np.unpackbits(np.frombuffer(body, dtype=np.uint8, offset=pos))[: rows * bits]
                    weights = 1 << np.arange(bits - 1, -1, -1)
                    index = (flat.reshape(rows, bits).astype(np.intp) * weights).sum(axis=1)
                return Decoded(tag, index, None, classes_tag)
            if kind == _VALUES:
                rows, pos = _read_varint(body, pos)
                if rows == 0 or len(body) - pos != 8 * rows:
                    return None
                return Decoded(tag, None, np.frombuffer(body, dtype="<f8", offset=pos).astype(np.float64))
        except (ValueError, IndexError):
            return None
        return None


def classes_digest(class_labels: list[str]) -> bytes:
    """Two bytes naming a class list (labels spelt as the profiler spells them, in order)."""
    text = "\x00".join(class_labels).encode()
    return hashlib.blake2b(b"classes\x00" + text, digest_size=_CLASSES_TAG_BYTES).digest()


class ScoredIds:
    """Ids already scored on this replica (bounded), so a retried call counts nothing twice."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(capacity, 1)
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, rid: object) -> bool:
        return rid in self._ids

    def add(self, rid: str) -> None:
        self._ids[rid] = None
        self._ids.move_to_end(rid)
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    unknown_ids: list[str]
    rows: int
    other_model_ids: list[str] = field(default_factory=list)
    """Ids of another model: scored for it when this replica can read them, listed either way."""


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
    ids: FeedbackIds | None = None,
    scored_ids: ScoredIds | None = None,
    classes: npt.NDArray[Any] | None = None,
) -> FeedbackResult:
    """Validate every item first (a 400 changes nothing), then score and count them.

    An id is looked up in this replica's memory first, then decoded (``ids``); a decoded
    id is scored unless ``scored_ids`` says it already was here: for this model, or for
    the model that made it (a classifier's id with this model's class list).
    """
    scored: list[tuple[str, npt.NDArray[Any], list[Any]]] = []
    for_other: dict[str, str] = {}  # rid -> the predicting model's tag (hex), when scored for it
    unknown: list[str] = []
    other_model: list[str] = []
    seen: set[str] = set()
    for rid, label in items:
        if rid in seen:
            raise bad_request(f"id {rid!r} appears more than once in this feedback")
        seen.add(rid)
        predicted = memory.peek(rid)
        if predicted is None and ids is not None and (scored_ids is None or rid not in scored_ids):
            decoded = ids.decode(rid)
            if decoded is not None and decoded.model_tag != ids.tag:
                other_model.append(rid)
                if task == "classification" and decoded.classes_tag != ids.classes_tag:
                    continue  # its predictions cannot be read here: counted as other_model only
                predicted = _decoded_prediction(decoded, task, classes)
                if predicted is None:
                    continue
                for_other[rid] = decoded.model_tag.hex()
            elif decoded is not None:
                predicted = _decoded_prediction(decoded, task, classes)
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
        if scored_ids is not None:
            scored_ids.add(rid)
        rows += len(labels)
        if task == "classification":
            # Compared as the profiler spells labels: 1, 1.0 and "1" are the same class.
            correct = sum(
                label_text(t) == label_text(p) for t, p in zip(labels, predicted.tolist(), strict=True)
            )
            if rid in for_other:
                metrics.observe_feedback_for(for_other[rid], "correct", correct)
                metrics.observe_feedback_for(for_other[rid], "incorrect", len(labels) - correct)
                continue
            if correct:
                metrics.observe_feedback("correct", correct)
            if len(labels) - correct:
                metrics.observe_feedback("incorrect", len(labels) - correct)
        else:
            errors = np.asarray(labels, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
            if rid in for_other:
                metrics.observe_errors_for(for_other[rid], errors)
                continue
            metrics.observe_errors(errors)
            metrics.observe_feedback("scored", len(labels))
    if unknown:
        metrics.observe_feedback("unknown_id", len(unknown))
    if other_model:
        metrics.observe_feedback("other_model", len(other_model))
    return FeedbackResult(accepted=len(scored), unknown_ids=unknown, rows=rows, other_model_ids=other_model)


def _decoded_prediction(
    decoded: Decoded, task: str, classes: npt.NDArray[Any] | None
) -> npt.NDArray[Any] | None:
    """The predicted labels (or values) a decoded id stands for; None if it does not fit this model."""
    if task == "classification":
        if decoded.class_index is None or classes is None or int(decoded.class_index.max()) >= len(classes):
            return None
        return classes.take(decoded.class_index)
    return decoded.values
