"""`mlkube rollout promote|abort|unpin`: manual control of a ModelDeployment without a spec edit.

The command only writes two annotations (`mlkube.io/action` and a fresh
`mlkube.io/action-id`); the operator acts on a request id once and records the result in
`status.manualAction` and an Event. Annotations, not spec: a GitOps tool that owns the
spec sees no drift, and `kubectl annotate` does the same thing for those without the CLI.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

from . import constants as C

JSON = dict[str, Any]
PLURAL = "modeldeployments"


def request_patch(action: str, request_id: str) -> JSON:
    """The merge patch that asks the operator for `action` (pure)."""
    if action not in C.MANUAL_ACTIONS:
        raise ValueError(f"unknown action {action!r}: use one of {', '.join(C.MANUAL_ACTIONS)}")
    return {"metadata": {"annotations": {C.ANNOTATION_ACTION: action, C.ANNOTATION_ACTION_ID: request_id}}}


def new_request_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def request(
    api: Any, namespace: str, name: str, action: str, wait_seconds: float = 30.0, poll: float = 1.0
) -> tuple[bool, str]:
    """Annotate the ModelDeployment and wait (bounded) for the operator's answer: (acted, result)."""
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(api)
    request_id = new_request_id()
    custom.patch_namespaced_custom_object(
        C.GROUP, C.VERSION, namespace, PLURAL, name, request_patch(action, request_id)
    )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        obj = cast(JSON, custom.get_namespaced_custom_object(C.GROUP, C.VERSION, namespace, PLURAL, name))
        status: JSON = obj.get("status") or {}
        done: JSON = status.get("manualAction") or {}
        if done.get("requestId") == request_id:
            acted = str(status.get("lastAction") or "").startswith(f"By request ({action})")
            return acted, str(done.get("result", ""))
        time.sleep(poll)
    return False, f"requested ({request_id}); the operator has not answered within {wait_seconds:.0f}s"
