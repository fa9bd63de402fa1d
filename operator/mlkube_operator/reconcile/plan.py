"""What a planner hands back to a handler: the status to write, children, one Event.

Events are posted only when the summary condition moves (status or reason), so the
many reconciles a single change triggers leave one Event, not one per reconcile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.common import Condition
from .conditions import get_condition

JSON = dict[str, Any]


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    status: JSON  # the whole status, camelCase, as it must be written
    create: JSON | None = None  # a child to create (409 means it exists: fine)
    event: Event | None = None
    changed: bool = True


def transitioned(old: list[Condition], new: list[Condition], type_: str) -> bool:
    prev, cur = get_condition(old, type_), get_condition(new, type_)
    return prev is None or cur is None or (prev.status, prev.reason) != (cur.status, cur.reason)


def finish(old: Any, new: Any, summary: str, event: Event | None, create: JSON | None = None) -> Plan:
    """Plan from the old and new typed status of any kind (both have `conditions`)."""
    status: JSON = new.model_dump(mode="json", by_alias=True)
    changed = status != old.model_dump(mode="json", by_alias=True)
    moved = transitioned(old.conditions, new.conditions, summary)
    return Plan(status=status, create=create, event=event if moved else None, changed=changed)
