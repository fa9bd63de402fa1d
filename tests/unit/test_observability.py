"""The operator's metrics: request naming, counting hooks, bounded per-deployment series."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from mlkube_operator import observability as obs
from mlkube_operator.errors import Conflict, PermanentFailure, TemporaryFailure


def value(name: str, **labels: str) -> float:
    return obs.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("method", "url", "content_type", "expected"),
    [
        ("GET", "https://h:6443/apis/batch/v1/namespaces/ns/jobs/run-train-1", None, ("get", "jobs")),
        ("GET", "https://h/api/v1/namespaces/ns/pods?labelSelector=a%3Db", None, ("list", "pods")),
        ("GET", "https://h/apis/mlkube.io/v1alpha1/datasets?watch=true", None, ("watch", "datasets")),
        (
            "PATCH",
            "https://h/apis/mlkube.io/v1alpha1/namespaces/ns/datasets/iris/status",
            "application/merge-patch+json",
            ("patch", "datasets/status"),
        ),
        (
            "PATCH",
            "https://h/apis/apps/v1/namespaces/ns/deployments/x?fieldManager=m",
            "application/apply-patch+yaml",
            ("apply", "deployments"),
        ),
        ("POST", "https://h/api/v1/namespaces/ns/events", None, ("create", "events")),
        ("PUT", "https://h/apis/coordination.k8s.io/v1/namespaces/s/leases/l", None, ("update", "leases")),
        ("DELETE", "https://h/apis/apps/v1/namespaces/ns/deployments/x", None, ("delete", "deployments")),
        ("GET", "https://h/version", None, ("list", "other")),
    ],
)
def test_request_labels(method: str, url: str, content_type: str | None, expected: tuple[str, str]) -> None:
    assert obs.request_labels(method, url, content_type) == expected


def test_api_requests_errors_and_launched_jobs() -> None:
    before = {
        "req": value(obs.API_REQUESTS, verb="create", resource="jobs", code="201"),
        "err403": value(obs.API_ERRORS, verb="get", resource="jobs", code="403"),
        "err404": value(obs.API_ERRORS, verb="get", resource="jobs", code="404"),
        "none": value(obs.API_ERRORS, verb="get", resource="jobs", code="none"),
        "training": value(obs.JOBS_LAUNCHED, component="training"),
    }
    job = {"metadata": {"labels": {"app.kubernetes.io/component": "training"}}}
    obs.observe_api_request("create", "jobs", 201, job)
    obs.observe_api_request("create", "jobs", 409, job)  # already there: not launched, not an error
    obs.observe_api_request("get", "jobs", 404)
    obs.observe_api_request("get", "jobs", 403)
    obs.observe_api_request("get", "jobs", None)
    assert value(obs.API_REQUESTS, verb="create", resource="jobs", code="201") == before["req"] + 1
    assert value(obs.JOBS_LAUNCHED, component="training") == before["training"] + 1
    assert value(obs.API_ERRORS, verb="get", resource="jobs", code="403") == before["err403"] + 1
    assert value(obs.API_ERRORS, verb="get", resource="jobs", code="404") == before["err404"]
    assert value(obs.API_ERRORS, verb="get", resource="jobs", code="none") == before["none"] + 1


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, obs.OUTCOME_SUCCESS),
        (Conflict("x"), obs.OUTCOME_CONFLICT),
        (TemporaryFailure("x"), obs.OUTCOME_RETRY),
        (PermanentFailure("x"), obs.OUTCOME_FAILED),
        (KeyError("x"), obs.OUTCOME_ERROR),
    ],
)
def test_reconciliation_counts_outcome_and_duration(error: Exception | None, outcome: str) -> None:
    @obs.reconciliation(obs.KIND_DATASET)
    def reconcile() -> int:
        if error is not None:
            raise error
        return 7

    count = value(obs.RECONCILIATIONS, kind="Dataset", outcome=outcome)
    timed = value(obs.RECONCILE_DURATION + "_count", kind="Dataset")
    if error is None:
        assert reconcile() == 7
    else:
        with pytest.raises(type(error)):
            reconcile()
    assert value(obs.RECONCILIATIONS, kind="Dataset", outcome=outcome) == count + 1
    assert value(obs.RECONCILE_DURATION + "_count", kind="Dataset") == timed + 1


def test_every_reconciliation_series_exists_before_the_first_reconcile() -> None:
    text = generate_latest(obs.REGISTRY).decode()
    for kind in (obs.KIND_DATASET, obs.KIND_TRAINING_RUN, obs.KIND_MODEL_DEPLOYMENT):
        for outcome in obs.OUTCOMES:
            assert f'{obs.RECONCILIATIONS}{{kind="{kind}",outcome="{outcome}"}}' in text
    assert f"{obs.LEADER} 0.0" in text or f"{obs.LEADER} 1.0" in text
    assert obs.PROCESS_RSS in text


def test_analysis_values_actions_and_forgetting() -> None:
    values: dict[str, object] = {"samples": 120, "errorRate": 0.5, "accuracy": None, "inputDriftFeature": "f"}
    obs.observe_analysis("ns", "md", "Degraded", values, ["Degraded", "RolledBack"])
    assert value(obs.ANALYSIS_VERDICTS, namespace="ns", modeldeployment="md", verdict="Degraded") == 1
    assert value(obs.ANALYSIS_VALUE, namespace="ns", modeldeployment="md", value="samples") == 120
    assert value(obs.ANALYSIS_VALUE, namespace="ns", modeldeployment="md", value="errorRate") == 0.5
    assert (
        obs.REGISTRY.get_sample_value(
            obs.ANALYSIS_VALUE, {"namespace": "ns", "modeldeployment": "md", "value": "accuracy"}
        )
        is None
    )
    assert value(obs.DEGRADATION_ACTIONS, namespace="ns", modeldeployment="md", action="Rollback") == 1
    # "Degraded" is a condition Event, not an action.
    assert "Degraded" not in obs.ACTION_OF_REASON
    # A later analysis that cannot measure errorRate drops that series rather than keep a stale value.
    obs.observe_analysis("ns", "md", "InsufficientData", {"samples": 3}, [])
    assert (
        obs.REGISTRY.get_sample_value(
            obs.ANALYSIS_VALUE, {"namespace": "ns", "modeldeployment": "md", "value": "errorRate"}
        )
        is None
    )
    obs.forget_model_deployment("ns", "md")
    assert 'modeldeployment="md"' not in generate_latest(obs.REGISTRY).decode()
