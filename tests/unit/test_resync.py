"""The resync scheduler that replaces kopf timers: due runs, filters, retries, deletions."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import kopf

from mlkube_operator.handlers.resync import (
    Scheduler,
    dataset_in_flight,
    deployment_active,
    deployment_serving,
    deployment_waiting,
    run_in_flight,
    run_waiting,
)


def body(name: str, active: bool = True) -> kopf.Body:
    raw = {"metadata": {"namespace": "ns", "name": name, "generation": 1}, "spec": {"active": active}}
    return kopf.Body(raw)  # type: ignore[arg-type]


async def test_runs_every_object_when_due_retries_failures_and_forgets_deleted() -> None:
    sched = Scheduler(registry=kopf.OperatorRegistry(), tick=0.05)
    calls: Counter[str] = Counter()
    retries: dict[str, int] = {}

    @sched.timer("things", interval=0.2, initial_delay=0, when=lambda b: bool(b["spec"]["active"]))
    def tick(body: kopf.Body, logger: Any, retry: int, **_: Any) -> None:
        name = body["metadata"]["name"]
        calls[name] += 1
        retries[name] = retry
        if name == "boom":
            raise RuntimeError("a bug")
        if name == "later":
            raise kopf.TemporaryError("not yet", delay=5)

    track = sched._track("things")
    for name in ("a", "b", "boom", "later", "gone"):
        await track(type=None, body=body(name))
    await track(type=None, body=body("idle", active=False))
    try:
        await asyncio.sleep(0.7)
        await track(type="DELETED", body=body("gone"))
        gone = calls["gone"]
        await asyncio.sleep(0.8)
    finally:
        await sched.stop()
    assert calls["a"] >= 3 and calls["b"] >= 3
    assert calls["boom"] >= 3  # an unexpected failure never ends the resync
    assert retries["boom"] == calls["boom"] - 1 and retries["a"] == 0  # kopf's `retry`: failures in a row
    assert calls["later"] == 1  # a TemporaryError's delay is honoured
    assert calls["idle"] == 0  # filtered out
    assert gone >= 1 and calls["gone"] == gone  # deleted: no more runs


def test_filters_tell_work_in_flight_from_settled_and_waiting() -> None:
    def obj(cond_type: str, status: str, reason: str, observed: int = 1) -> dict[str, Any]:
        return {
            "metadata": {"generation": 1},
            "status": {
                "observedGeneration": observed,
                "conditions": [
                    {
                        "type": cond_type,
                        "status": status,
                        "reason": reason,
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "observedGeneration": observed,
                    }
                ],
            },
        }

    assert dataset_in_flight({"metadata": {"generation": 1}})
    assert dataset_in_flight(obj("Ready", "Unknown", "Profiling"))
    assert not dataset_in_flight(obj("Ready", "False", "ValidationFailed"))
    # A read is scheduled (retry after SourceUnavailable, a refresh interval) or running.
    retrying = obj("Ready", "False", "SourceUnavailable")
    retrying["status"]["nextReadTime"] = "2026-01-01T00:00:30Z"
    assert dataset_in_flight(retrying)
    refreshing = obj("Ready", "True", "Profiled")
    refreshing["status"]["refreshing"] = True
    assert dataset_in_flight(refreshing) and not dataset_in_flight(obj("Ready", "True", "Profiled"))
    assert dataset_in_flight(obj("Ready", "True", "Profiled", observed=0))  # a new generation
    waiting = obj("Succeeded", "Unknown", "DatasetNotReady")
    assert run_waiting(waiting) and not run_in_flight(waiting)
    training = obj("Succeeded", "Unknown", "Training")
    assert run_in_flight(training) and not run_waiting(training)
    done = obj("Succeeded", "True", "Trained")
    assert not run_in_flight(done) and not run_waiting(done)
    failing = obj("Succeeded", "True", "Trained")
    failing["status"]["conditions"].append(
        {
            "type": "Reconciled",
            "status": "False",
            "reason": "Forbidden",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    )
    assert run_in_flight(failing)  # an error in status is retried until it clears

    waiting_md = obj("Ready", "False", "ModelNotReady")
    assert deployment_waiting(waiting_md) and not deployment_active(waiting_md)
    assert not deployment_serving(waiting_md)
    serving = obj("Ready", "True", "Serving")
    serving["status"]["currentModel"] = {"sha256": "ab", "trainingRun": "r"}
    assert deployment_active(serving) and deployment_serving(serving) and not deployment_waiting(serving)
