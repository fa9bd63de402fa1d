"""The one exception the Job entrypoints turn into a termination message.

Every expected failure is raised as a JobFailure carrying the condition reason the
operator will show and whether retrying could help; anything else is a crash. Making
the permanent/retryable decision where the failure is understood (a 404 versus a
503, a bad parameter versus an out-of-memory) is what lets the Job's podFailurePolicy
stop at once on the former and retry the latter.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from .contract import EXIT_PERMANENT, EXIT_RETRYABLE, Reason


class JobFailure(Exception):
    """An expected failure: `reason` for the condition, `message` for the human."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        permanent: bool = True,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.permanent = permanent
        self.details: dict[str, Any] = dict(details or {})

    @property
    def exit_code(self) -> int:
        return EXIT_PERMANENT if self.permanent else EXIT_RETRYABLE

    def result(self) -> dict[str, Any]:
        """The termination message: `ok`, `reason`, `message`, then any details (e.g. metrics)."""
        return {"ok": False, "reason": str(self.reason), "message": self.message, **self.details}


def log(message: str) -> None:
    """Progress for `kubectl logs`; stdout is reserved for the final result line."""
    print(message, file=sys.stderr, flush=True)
