"""API failures: one classification, a message that names the call, a condition that clears."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlkube_operator import constants as C
from mlkube_operator.errors import ApiError, Call, Conflict, backoff, classify, immutable_field_changed
from mlkube_operator.reconcile.conditions import with_reconciled

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
JOB = Call("apply", "jobs.batch", "team-a", "iris-profile-1")


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (403, C.REASON_FORBIDDEN),
        (401, C.REASON_FORBIDDEN),
        (422, C.REASON_REJECTED),
        (400, C.REASON_REJECTED),
        (500, C.REASON_API_ERROR),
        (503, C.REASON_API_ERROR),
        (429, C.REASON_API_ERROR),
        (504, C.REASON_API_ERROR),
        (0, C.REASON_API_UNREACHABLE),
    ],
)
def test_every_status_code_gets_a_condition_reason(status: int, reason: str) -> None:
    err = classify(JOB, status, "the answer")
    assert isinstance(err, ApiError)
    assert (err.status, err.reason) == (status, reason)


def test_an_undeclared_field_in_an_apply_is_rejected_though_answered_500() -> None:
    """kubernetes/kubernetes#139253: SSA answers a field missing from the schema with a 500."""
    answer = (
        "failed to create typed patch object (ns/iris; /v1, Kind=Service): "
        '.spec.ports[port=80,protocol="TCP"].prot: field not declared in schema'
    )
    err = classify(Call("apply", "services", "ns", "iris"), 500, answer)
    assert isinstance(err, ApiError) and (err.status, err.reason) == (500, C.REASON_REJECTED)
    assert isinstance(other := classify(JOB, 500, "etcdserver: request timed out"), ApiError)
    assert other.reason == C.REASON_API_ERROR


def test_message_names_verb_resource_object_and_answer() -> None:
    answer = (
        'jobs.batch "iris-profile-1" is forbidden: User "system:serviceaccount:x:y" cannot create resource'
    )
    err = classify(JOB, 403, answer)
    assert str(err) == f"apply jobs.batch team-a/iris-profile-1: HTTP 403: {answer}"
    unreachable = classify(Call("list", "pods", "team-a"), 0, "cannot reach the API server: timed out")
    assert str(unreachable) == "list pods team-a: no answer: cannot reach the API server: timed out"


def test_the_same_transport_failure_gives_the_same_message() -> None:
    def failure(address: str) -> str:
        return str(
            classify(
                JOB,
                0,
                "cannot reach the API server: HTTPSConnectionPool(host='10.0.0.1', port=443): Max retries "
                f"exceeded (Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object at {address}>: "
                "Failed to establish a new connection: [Errno 111] Connection refused'))",
            )
        )

    assert failure("0x7f3a2c1b5d90") == failure("0x7f3a2c1b6e40")
    assert "Connection refused" in failure("0x1")


def test_only_a_422_for_an_immutable_field_counts_as_changed_immutable() -> None:
    answer = 'Job.batch "iris-profile-1" is invalid: spec.template: Invalid value: ...: field is immutable'
    assert immutable_field_changed(ApiError(JOB, 422, answer))
    assert not immutable_field_changed(ApiError(JOB, 422, 'spec.ports[1].name: Duplicate value: "http"'))
    assert not immutable_field_changed(ApiError(JOB, 403, answer))


def test_conflict_is_not_an_api_error() -> None:
    """409 means "reconcile again from the newer object", not a failure to show."""
    err = classify(JOB, 409, "the object has been modified")
    assert isinstance(err, Conflict) and not isinstance(err, ApiError)


def test_backoff_doubles_up_to_a_minute() -> None:
    assert [backoff(r) for r in range(7)] == [5, 10, 20, 40, 60, 60, 60]
    assert backoff(10_000) == 60


def _reconciled(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == C.RECONCILED)


def test_failure_sets_the_condition_and_success_clears_it() -> None:
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Profiled",
        "message": "",
        "lastTransitionTime": "2026-11-30T10:00:00Z",
    }
    status: dict[str, Any] = {"observedGeneration": 2, "conditions": [ready]}
    failed, moved = with_reconciled(
        status, (C.REASON_FORBIDDEN, "apply jobs.batch ns/x: HTTP 403: no"), NOW, 2
    )
    assert moved
    cond = _reconciled(failed)
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False",
        "Forbidden",
        "apply jobs.batch ns/x: HTTP 403: no",
    )
    assert cond["observedGeneration"] == 2
    assert failed["observedGeneration"] == 2 and failed["conditions"][0]["type"] == "Ready"
    assert status["conditions"] == [ready], "the input is not modified"

    # The same failure again: nothing to write (no status write or Event per retry).
    again, moved = with_reconciled(
        failed, (C.REASON_FORBIDDEN, "apply jobs.batch ns/x: HTTP 403: no"), NOW, 2
    )
    assert not moved and again is failed

    later = NOW + timedelta(minutes=1)
    cleared, moved = with_reconciled(failed, None, later, 2)
    assert moved
    cond = _reconciled(cleared)
    assert (cond["status"], cond["reason"], cond["message"]) == ("True", C.REASON_RECONCILE_SUCCEEDED, "")
    assert cond["lastTransitionTime"] == "2026-11-30T12:01:00Z"
    _, moved = with_reconciled(cleared, None, later + timedelta(minutes=1), 2)
    assert not moved


def test_a_different_failure_moves_the_condition_but_keeps_its_transition_time() -> None:
    first, _ = with_reconciled({}, (C.REASON_API_ERROR, "get jobs.batch ns/x: HTTP 503: busy"), NOW, 1)
    second, moved = with_reconciled(
        first, (C.REASON_FORBIDDEN, "get jobs.batch ns/x: HTTP 403: no"), NOW + timedelta(seconds=30), 1
    )
    assert moved
    cond = _reconciled(second)
    assert cond["reason"] == C.REASON_FORBIDDEN
    assert cond["lastTransitionTime"] == "2026-11-30T12:00:00Z"  # still False since the first failure


def test_long_answers_are_cut_to_a_readable_message() -> None:
    status, _ = with_reconciled({}, (C.REASON_REJECTED, "x" * 5000), NOW, 1)
    assert len(_reconciled(status)["message"]) == 1024


def test_each_loop_clears_only_its_own_failure() -> None:
    """Serving succeeding must not hide a monitoring failure of the same ModelDeployment."""
    from mlkube_operator.handlers.outcome import MONITORING, SERVING, Failures

    book = Failures()
    key = ("modeldeployments", "ns", "iris", "uid-1")
    scrape = (C.REASON_FORBIDDEN, "list pods ns/-l app=iris: HTTP 403: no")
    book.set(key, MONITORING, scrape)
    book.set(key, SERVING, None)
    assert book.current(key) == scrape
    book.set(key, MONITORING, None)
    assert book.current(key) is None
    book.set(key, SERVING, scrape)
    book.forget("modeldeployments", "ns", "iris")
    assert book.current(key) is None
