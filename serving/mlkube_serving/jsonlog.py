"""One JSON object per log line, for every logger in the process (uvicorn's included).

Serving pods' logs are read by machines first (Loki, kubectl logs | jq) and by people
second; a refusal to load a model must be findable by its ``reason`` field, not by
grepping prose.  Structured fields go in ``extra={"fields": {...}}``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

# LogRecord's own attributes, and uvicorn's ANSI-coloured duplicate of its message.
_STD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and key != "fields" and not key.startswith("_"):
                payload.setdefault(key, value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def configure_logging(level: str = "info") -> None:
    """Route the root logger (and uvicorn's, which propagate to it) through the JSON formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # The access logger stays silent: the app logs requests itself when asked to.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
