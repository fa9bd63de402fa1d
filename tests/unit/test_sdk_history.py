"""A ModelDeployment's history as the SDK builds it from Events and status (specs.history_rows).

The inputs are shaped as the API server returns them (core/v1 Events with `lastTimestamp`
or `eventTime`, a status dumped by the operator's models in camelCase); the integration
test (tests/integration/test_sdk.py) reads the real ones of a served model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlkube import specs
from mlkube_operator.api.modeldeployment import ModelDeploymentStatus


def _event(reason: str, message: str, when: str, type_: str = "Normal", count: int = 1) -> dict[str, Any]:
    return {
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "lastTimestamp": when,
        "involvedObject": {"kind": "ModelDeployment", "name": "iris"},
    }


def _status() -> dict[str, Any]:
    status = ModelDeploymentStatus.model_validate(
        {
            "state": "RolledBack",
            "stateSummary": "RolledBack",
            "stateSince": "2026-12-01T01:20:00Z",
            "currentModel": {"trainingRun": "iris-rf", "uri": "file:///m", "sha256": "a" * 64},
            "lastAnalysis": {
                "time": "2026-12-01T01:25:00.5Z",
                "verdict": "Healthy",
                "values": {"samples": 400, "accuracy": 0.96, "inputDriftPsi": 0.02, "errorRate": 0.0},
                "reasons": ["all checks passed"],
            },
            "rejectedModels": [
                {
                    "sha256": "b" * 64,
                    "trainingRun": "iris-lr",
                    "reason": "RolledBack",
                    "message": "accuracy dropped",
                    "time": "2026-12-01T01:19:59Z",
                },
                {
                    "sha256": "c" * 64,
                    "trainingRun": "iris-svc",
                    "reason": "CanaryAborted",
                    "message": "drift",
                    "time": "2026-12-01T01:05:00+00:00",
                },
            ],
        }
    )
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def test_events_and_status_become_one_timeline_oldest_first() -> None:
    events = [
        _event("Serving", "Serving iris-rf on 1/1 replicas", "2026-12-01T01:00:30Z"),
        _event("RollingOut", "Rolling out iris-rf", "2026-12-01T01:00:00Z"),
        _event("RolledBack", "Rolled back to iris-rf", "2026-12-01T01:19:59Z", "Warning"),
        _event("Canary", "Canary of iris-svc: step 1/2", "2026-12-01T01:02:00Z", count=3),
        _event("ReconcileSucceeded", "ok again", "2026-12-01T01:03:00Z"),
        _event("SomethingNew", "x", "2026-12-01T01:04:00Z"),
    ]
    rows = specs.history_rows({"status": _status()}, events)
    assert [(r["category"], r["reason"], r["source"]) for r in rows] == [
        ("rollout", "RollingOut", "event"),
        ("rollout", "Serving", "event"),
        ("canary", "Canary", "event"),
        ("error", "ReconcileSucceeded", "event"),
        ("other", "SomethingNew", "event"),
        ("canary", "CanaryAborted", "status"),
        ("rollback", "RolledBack", "event"),  # the Event first, then the status row of the same second
        ("rollback", "RolledBack", "status"),
        ("state", "RolledBack", "status"),
        ("verdict", "Healthy", "status"),
    ]
    assert all(r["time"].tzinfo is UTC for r in rows)
    assert rows[2]["count"] == 3
    verdict = rows[-1]
    assert verdict["time"] == datetime(2026, 12, 1, 1, 25, 0, 500000, tzinfo=UTC)
    assert (verdict["samples"], verdict["accuracy"], verdict["input_drift_psi"], verdict["error_rate"]) == (
        400,
        0.96,
        0.02,
        0.0,
    )
    assert verdict["model"] == "iris-rf" and verdict["message"] == "all checks passed"
    rejected = rows[7]
    assert rejected["model"] == "iris-lr" and rejected["message"].startswith("model bbbbbbbbbbbb rejected")
    assert set(rows[0]) == set(specs.HISTORY_COLUMNS)


def test_events_timed_by_event_time_or_series_and_without_time_dropped() -> None:
    new_style = {"reason": "Serving", "type": "Normal", "eventTime": "2026-12-01T02:00:00.123456Z"}
    series = {"reason": "Canary", "series": {"count": 4, "lastObservedTime": "2026-12-01T02:01:00Z"}}
    timeless = {"reason": "Serving", "message": "no time"}
    rows = specs.history_rows({"status": {}}, [series, timeless, new_style])
    assert [(r["reason"], r["count"]) for r in rows] == [("Serving", 1), ("Canary", 4)]


def test_a_deployment_without_events_or_status_has_an_empty_history() -> None:
    assert specs.history_rows({}, []) == []
