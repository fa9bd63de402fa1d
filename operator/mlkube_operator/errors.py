"""The one place that decides whether a failure is worth retrying.

Adapters raise these two; handlers turn them into kopf's TemporaryError (retry with
a delay) or PermanentError (give up, record why). Nothing else needs to know HTTP
status codes.
"""

from __future__ import annotations


class TemporaryFailure(Exception):
    """A dependency is not ready or the API server had a transient problem."""

    def __init__(self, message: str, delay: float = 10.0) -> None:
        super().__init__(message)
        self.delay = delay


class Conflict(TemporaryFailure):
    """The object changed while we reconciled it; the change itself triggers a fresh reconcile."""


class PermanentFailure(Exception):
    """Retrying cannot help: the request itself is wrong."""


def classify_http(status: int, message: str) -> Exception:
    if status in (408, 425, 429) or status >= 500 or status == 0:
        return TemporaryFailure(f"API server answered {status}: {message}", delay=5.0 if status else 10.0)
    return PermanentFailure(f"API server answered {status}: {message}")
