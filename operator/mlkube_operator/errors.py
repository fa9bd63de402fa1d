"""The one place that decides what a failure means and how it is retried.

Kubernetes API failures become an `ApiError` that names the call (verb, resource,
namespace/name) and the server's answer, with a condition reason for the object's
status (`Reconciled=False`). Every API error is retried with backoff: a 403 clears
when RBAC is fixed, a 422 when the operator is upgraded, a 5xx or a timeout by
itself, so none of them is a reason to stop trying. Other dependencies raise
`TemporaryFailure` (retry after `delay`); `PermanentFailure` is for requests that
cannot succeed as written. Nothing else needs to know HTTP status codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import constants as C


class TemporaryFailure(Exception):
    """A dependency is not ready or had a transient problem."""

    def __init__(self, message: str, delay: float = 10.0) -> None:
        super().__init__(message)
        self.delay = delay


class Conflict(TemporaryFailure):
    """The object changed while we reconciled it; the change itself triggers a fresh reconcile."""


class MissingSecret(TemporaryFailure):
    """A Secret (or a key of it) a child's pods would read does not exist yet.

    Temporary: it clears once someone creates the Secret, which the operator does not
    watch, so the object is checked again with backoff (`backoff`), its `Reconciled`
    condition showing `reason` (SecretNotFound, SecretKeyNotFound) meanwhile.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PermanentFailure(Exception):
    """Retrying cannot help: the request itself is wrong."""


@dataclass(frozen=True)
class Call:
    """One Kubernetes API call, as a user reads it: `apply jobs.batch ns/name`."""

    verb: str  # get | list | apply | patch | delete
    resource: str  # plural[.group], e.g. jobs.batch, services, trainingruns.mlkube.io
    namespace: str = ""
    name: str = ""

    def __str__(self) -> str:
        where = "/".join(p for p in (self.namespace, self.name) if p)
        return f"{self.verb} {self.resource} {where}".rstrip()


class ApiError(Exception):
    """A failed API call: which call, what the server answered (status 0: no answer)."""

    def __init__(self, call: Call, status: int, answer: str) -> None:
        # Transport errors name objects by address ("<...Connection object at 0x7f...>"): drop
        # it, so the same failure gives the same message (no status write or Event per retry).
        answer = _ADDRESS.sub("", answer)
        self.call, self.status, self.answer = call, status, answer
        self.reason = _reason(status, answer)
        code = f"HTTP {status}" if status else "no answer"
        super().__init__(f"{call}: {code}: {answer}")

    @property
    def message(self) -> str:
        return str(self)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

# A server-side apply with a field the schema does not declare is answered 500 with this
# text (kubernetes/kubernetes#139253), though it is the request that is wrong, as a 400.
_UNDECLARED_FIELD = "failed to create typed patch object"


def _reason(status: int, answer: str) -> str:
    if status in (401, 403):
        return C.REASON_FORBIDDEN
    if status in (400, 422) or (status == 500 and _UNDECLARED_FIELD in answer):
        return C.REASON_REJECTED
    if status == 0:
        return C.REASON_API_UNREACHABLE
    return C.REASON_API_ERROR


def immutable_field_changed(err: ApiError) -> bool:
    """The object exists and the request would change a field that cannot change (a Job's template)."""
    return err.status == 422 and "field is immutable" in err.answer


def classify(call: Call, status: int, answer: str) -> Exception:
    """An API failure as an exception: 409 is a Conflict (reconcile again), the rest an ApiError."""
    if status == 409:
        return Conflict(f"{call}: the object changed meanwhile; reconciling again", delay=1)
    return ApiError(call, status, answer)


BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 60.0


def backoff(retry: int) -> float:
    """Delay before the next attempt after `retry` failed ones in a row: 5, 10, 20, 40, 60, 60 ... s."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * (1 << min(max(retry, 0), 10)))
