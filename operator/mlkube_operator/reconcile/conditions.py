"""Condition bookkeeping with Kubernetes semantics.

lastTransitionTime moves only when status changes, so `kubectl wait` and alerting
see real transitions, not every reconcile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import constants as C
from ..api.common import Condition, ConditionStatus

MAX_MESSAGE = 1024  # a condition message stays readable in `kubectl describe`


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Return a new list with `type_` set; other conditions are kept as they are."""
    out: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            out.append(cond)
            continue
        found = True
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=cond.last_transition_time if cond.status == status else now,
                observed_generation=generation,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=generation,
            )
        )
    return out


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def settled(
    conditions: list[Condition],
    observed_generation: int | None,
    generation: int,
    type_: str,
    waiting_reasons: frozenset[str] = frozenset(),
) -> bool:
    """The summary condition reached a verdict (True or False) for this very generation.

    Reasons in `waiting_reasons` mean "not started yet", never a verdict.
    """
    cond = get_condition(conditions, type_)
    return (
        observed_generation == generation
        and cond is not None
        and cond.observed_generation == generation
        and cond.status is not ConditionStatus.UNKNOWN
        and cond.reason not in waiting_reasons
    )


def with_reconciled(
    status: dict[str, Any],
    failure: tuple[str, str] | None,
    now: datetime,
    generation: int | None,
) -> tuple[dict[str, Any], bool]:
    """`status` (camelCase JSON) with the `Reconciled` condition set, and whether it moved.

    `failure` is (reason, message) of a failed API call (the object's status then says
    which call failed and what the server answered), None when every call succeeded.
    Only this condition is touched; "moved" means its status, reason or message changed.
    """
    conditions = [Condition.model_validate(c) for c in status.get("conditions") or []]
    old = get_condition(conditions, C.RECONCILED)
    if failure is None:
        state, (reason, message) = ConditionStatus.TRUE, (C.REASON_RECONCILE_SUCCEEDED, "")
    else:
        state, (reason, message) = ConditionStatus.FALSE, failure
    message = message[:MAX_MESSAGE]
    moved = old is None or (old.status, old.reason, old.message) != (state, reason, message)
    if not moved:
        return status, False
    updated = set_condition(conditions, C.RECONCILED, state, reason, message, now, generation)
    out = dict(status)
    out["conditions"] = [c.model_dump(mode="json", by_alias=True) for c in updated]
    return out, True
