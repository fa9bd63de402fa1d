"""The kopf indexes that replace per-event LISTs: what each object is filed under."""

from __future__ import annotations

from typing import Any, cast

import kopf

from mlkube_operator.handlers.serving import deployments_by_run
from mlkube_operator.handlers.training import waiting_runs


def body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


def run(generation: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "iris-rf", "namespace": "ns", "generation": generation},
        "spec": {"datasetRef": {"name": "iris"}},
        "status": status or {},
    }


def settled_status(generation: int) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "Trained",
                "lastTransitionTime": "2026-11-30T12:00:00Z",
                "observedGeneration": generation,
            }
        ],
    }


def test_every_run_is_filed_under_its_dataset_settled_or_not() -> None:
    """A settled run is filed too: a Dataset event tells it that its model is stale
    (or, with datasetPolicy Follow, that it trains again)."""
    filed = waiting_runs(body=body(run(1)))
    assert filed is not None and list(filed) == [("ns", "iris")]
    assert filed[("ns", "iris")]["metadata"]["name"] == "iris-rf"
    settled = waiting_runs(body=body(run(1, settled_status(1))))
    assert settled is not None and list(settled) == [("ns", "iris")]
    no_ref = run(1)
    no_ref["spec"] = {}
    assert waiting_runs(body=body(no_ref)) is None


def test_a_model_deployment_is_filed_under_its_run_and_its_retrain() -> None:
    md = {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ns"},
        "spec": {"model": {"trainingRunRef": {"name": "iris-rf"}}},
        "status": {"retrainRun": "iris-retrain-1"},
    }
    filed = deployments_by_run(body=body(md))
    assert filed is not None and set(filed) == {("ns", "iris-rf"), ("ns", "iris-retrain-1")}
    md["status"] = {}
    assert set(deployments_by_run(body=body(md)) or {}) == {("ns", "iris-rf")}
