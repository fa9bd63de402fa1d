"""How a reconcile's outcome reaches the user: the `Reconciled` condition, Events, retries.

kopf only logs what an event handler raises, and retries a timer after the delay its
`TemporaryError` asks for (a `PermanentError` would end the timer). So every reconcile
runs inside `guard`, which never lets a failure pass silently and never stops a timer:
- an API error (`errors.ApiError`: 403, 422, 5xx, no answer) sets `Reconciled=False`
  with the reason from `errors.classify` and a message naming the call and the answer,
  posts a Warning Event when that changes, and asks kopf to retry with exponential
  backoff (the resync timers carry the retries; an event handler's failure waits for
  the next timer tick or watch event);
- an unexpected exception (a bug) does the same with reason `InternalError` (the log
  has the traceback);
- a 409 (the object changed meanwhile) is dropped: the change triggers a new reconcile.
The next successful reconcile of the same loop writes `Reconciled=True` together with
the planner's status and posts a `ReconcileSucceeded` Event.

One ModelDeployment is reconciled by two loops (serving and monitoring), so failures
are remembered per object and loop: a loop's success clears only its own failure, and
the condition shows the first remaining one. The memory is in-process: after a restart
the condition keeps what it said until a loop succeeds or fails again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import kopf

from .. import constants as C
from ..errors import ApiError, Conflict, MissingSecret, PermanentFailure, TemporaryFailure, backoff
from ..reconcile.conditions import with_reconciled
from ..reconcile.plan import Event
from .lifecycle import post_event, runtime

JSON = dict[str, Any]
Key = tuple[str, str, str, str]  # plural, namespace, name, uid
Failure = tuple[str, str]  # reason, message

RECONCILE, SERVING, MONITORING = "reconcile", "serving", "monitoring"


class Failures:
    """The failed call of each (object, loop), until that loop succeeds again."""

    def __init__(self) -> None:
        self._by_object: dict[Key, dict[str, Failure]] = {}

    def set(self, key: Key, loop: str, failure: Failure | None) -> None:
        loops = self._by_object.setdefault(key, {})
        if failure is None:
            loops.pop(loop, None)
        else:
            loops[loop] = failure
        if not loops:
            del self._by_object[key]

    def succeeded(self, plural: str, obj: JSON, loop: str) -> None:
        """`loop`'s calls succeeded; the next status write of the object shows it."""
        self.set(_key(plural, obj), loop, None)

    def current(self, key: Key) -> Failure | None:
        loops = self._by_object.get(key)
        return next(iter(loops.values())) if loops else None

    def forget(self, plural: str, namespace: str, name: str) -> None:
        for key in [k for k in self._by_object if k[:3] == (plural, namespace, name)]:
            del self._by_object[key]


FAILURES = Failures()


def _key(plural: str, obj: JSON) -> Key:
    meta = obj["metadata"]
    return plural, meta["namespace"], meta["name"], str(meta.get("uid") or "")


def _was_failing(obj: JSON) -> bool:
    return any(
        c.get("type") == C.RECONCILED and c.get("status") == "False"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def write_status(plural: str, obj: JSON, status: JSON, changed: bool, loop: str = RECONCILE) -> None:
    """Write a planner's status once every call of `loop` succeeded; `Reconciled` clears with it."""
    key = _key(plural, obj)
    FAILURES.set(key, loop, None)
    failure = FAILURES.current(key)
    status, moved = with_reconciled(status, failure, datetime.now(UTC), obj["metadata"].get("generation"))
    if changed or moved:
        runtime().kube.patch_status(plural, obj, status)
    if moved and failure is None and _was_failing(obj):
        post_event(
            obj, Event("Normal", C.REASON_RECONCILE_SUCCEEDED, "The operator's API calls succeed again")
        )


def _record(plural: str, obj: JSON, loop: str, failure: Failure, logger: kopf.Logger) -> None:
    """Show a failure in the object's status and as an Event (once per change, not per retry)."""
    key = _key(plural, obj)
    FAILURES.set(key, loop, failure)
    shown = FAILURES.current(key) or failure
    status, moved = with_reconciled(
        dict(obj.get("status") or {}), shown, datetime.now(UTC), obj["metadata"].get("generation")
    )
    if not moved:
        return
    try:
        runtime().kube.patch_status(plural, obj, status)
    except Conflict:
        return  # a newer version of the object is being reconciled: it records the failure, once
    except (ApiError, TemporaryFailure) as err:  # e.g. no RBAC for status either: the Event and log remain
        logger.warning("Cannot record the failure in status: %s", err)
    post_event(obj, Event("Warning", shown[0], shown[1]))


def guard(
    plural: str,
    obj: JSON,
    fn: Callable[[], None],
    logger: kopf.Logger,
    *,
    retry: int = 0,
    loop: str = RECONCILE,
) -> None:
    """Run one reconcile of `obj`; map its failure to status, an Event and kopf's retry."""
    try:
        fn()
    except kopf.TemporaryError:
        raise  # already kopf's (the operator is still starting)
    except Conflict as err:
        logger.debug("%s", err)
    except ApiError as err:
        _record(plural, obj, loop, (err.reason, err.message), logger)
        raise kopf.TemporaryError(err.message, delay=backoff(retry)) from err
    except MissingSecret as err:
        # Nothing was created; the Secret is not watched, so look again with backoff.
        _record(plural, obj, loop, (err.reason, str(err)), logger)
        raise kopf.TemporaryError(str(err), delay=backoff(retry)) from err
    except TemporaryFailure as err:
        raise kopf.TemporaryError(str(err), delay=err.delay) from err
    except PermanentFailure as err:
        # Retrying the same request cannot help, but the timer must live on: a spec change fixes it.
        _record(plural, obj, loop, (C.REASON_INVALID_SPEC, str(err)), logger)
        logger.error("%s", err)
    except Exception as err:
        logger.exception("Reconcile of %s %s failed", plural, obj["metadata"].get("name"))
        _record(plural, obj, loop, (C.REASON_INTERNAL_ERROR, f"{type(err).__name__}: {err}"), logger)
        raise kopf.TemporaryError(f"{type(err).__name__}: {err}", delay=backoff(retry)) from err


def guard_each(
    plural: str,
    objs: Iterable[JSON],
    reconcile: Callable[[JSON], None],
    logger: kopf.Logger,
    *,
    retry: int = 0,
    loop: str = RECONCILE,
) -> None:
    """`guard` every object in turn; one failing object does not hold up the others."""
    first: kopf.TemporaryError | None = None
    for obj in objs:
        try:
            guard(plural, obj, functools.partial(reconcile, obj), logger, retry=retry, loop=loop)
        except kopf.TemporaryError as err:
            first = first or err
    if first is not None:
        raise first


def retry_later(fn: Callable[[], None], retry: int = 0) -> None:
    """For calls made before there is an object to report on (finding a Job's owner):
    the failure is logged by kopf and retried by the owner's own timer."""
    try:
        fn()
    except Conflict:
        pass
    except (ApiError, TemporaryFailure) as err:
        raise kopf.TemporaryError(str(err), delay=backoff(retry)) from err
