"""Encode a Job's result so that it always survives the trip through the kubelet.

The kubelet keeps only the first 4096 bytes of a termination message; a truncated
JSON document is useless to the operator. So the result is shrunk deliberately, in
an order that keeps what the operator needs for status (ok, reason, counts, hash,
URIs, metrics) and drops what it can re-read from the artifact store (the per-column
schema and feature list, which profile.json holds in full). What was dropped is
named in `truncated`, so nothing disappears silently.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from .contract import TERMINATION_MESSAGE_MAX_BYTES

# Strictly below the kubelet's limit, with room for a trailing newline.
BUDGET_BYTES = TERMINATION_MESSAGE_MAX_BYTES - 96
# Optional keys, least useful first. `message` is shortened before anything is dropped.
_DROP_ORDER = ("warnings", "notes", "schema", "features", "skippedMetrics")
_FIRST_MESSAGE_CUT = 1024
_ELLIPSIS = "…[truncated]"


def json_safe(value: Any) -> Any:
    """Plain JSON types only: numpy scalars unwrapped, NaN/inf become null."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        return json_safe(item())
    return str(value)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _size(obj: Any) -> int:
    return len(_dumps(obj).encode("utf-8"))


def _cut(text: str, max_bytes: int) -> str:
    """Shorten `text` to at most `max_bytes` UTF-8 bytes, marking the cut."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    keep = max(0, max_bytes - len(_ELLIPSIS.encode("utf-8")))
    return raw[:keep].decode("utf-8", errors="ignore") + _ELLIPSIS


def encode(result: Mapping[str, Any], budget: int = BUDGET_BYTES) -> str:
    """Compact JSON of `result`, at most `budget` bytes of UTF-8."""
    data: dict[str, Any] = json_safe(dict(result))
    if _size(data) <= budget:
        return _dumps(data)
    if isinstance(data.get("message"), str):
        data["message"] = _cut(data["message"], _FIRST_MESSAGE_CUT)
    dropped: list[str] = []
    for key in _DROP_ORDER:
        if _size(data) <= budget:
            break
        if key in data:
            del data[key]
            dropped.append(key)
            data["truncated"] = dropped
    if _size(data) > budget and isinstance(data.get("message"), str):
        excess = _size(data) - budget
        data["message"] = _cut(data["message"], max(64, len(data["message"].encode("utf-8")) - excess))
    if _size(data) > budget:
        # Last resort: the verdict alone. Everything else is in the artifact store or the logs.
        keys = ("ok", "reason", "message", "rows", "columns", "contentHash", "task")
        data = {k: data[k] for k in keys if k in data}
        data["truncated"] = ["*"]
        if isinstance(data.get("message"), str):
            data["message"] = _cut(data["message"], 512)
    return _dumps(data)


def emit(result: Mapping[str, Any], termination_log: str | None) -> str:
    """Write the message where the kubelet reads it, and as the last line of stdout."""
    text = encode(result)
    if termination_log:
        try:
            with open(termination_log, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as err:
            print(f"warning: could not write termination log {termination_log}: {err}", file=sys.stderr)
    sys.stderr.flush()
    print(text, flush=True)
    return text
