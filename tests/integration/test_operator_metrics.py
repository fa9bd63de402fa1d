"""The operator process's /metrics: the series exist from the start and move with a reconcile."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlkube_operator import observability as obs

from .helpers import condition, get_cr, kubectl, wait_for
from .test_leader_election import Replica

pytestmark = [pytest.mark.cluster, pytest.mark.host_operator]


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_operator_metrics_move_with_a_reconcile(dev_cluster: Any, namespace: str, tmp_path: Path) -> None:
    op = Replica(dev_cluster, namespace, tmp_path, "metrics")
    op.proc.start()
    try:
        wait_for(op.leads, 90, "the operator to lead", interval=0.2)
        before = scrape(op.metrics)
        assert value(before, obs.LEADER) == 1
        assert value(before, obs.LEADER_ACQUISITIONS) == 1
        assert (obs.RECONCILIATIONS, frozenset({("kind", "TrainingRun"), ("outcome", "success")})) in before
        assert value(before, obs.PROCESS_RSS) > 0
        run = {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": "waits", "namespace": namespace},
            "spec": {
                "datasetRef": {"name": "missing"},
                "estimator": {"className": "sklearn.linear_model.LogisticRegression"},
            },
        }
        kubectl(dev_cluster.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(run))

        def waiting() -> bool:
            cond = condition(get_cr(dev_cluster.api_client, "trainingruns", namespace, "waits"), "Succeeded")
            return cond is not None and cond["reason"] == "DatasetNotReady"

        wait_for(waiting, 60, "the TrainingRun to wait for its Dataset")
        after = scrape(op.metrics)
        ok = {"kind": "TrainingRun", "outcome": "success"}
        assert value(after, obs.RECONCILIATIONS, **ok) > value(before, obs.RECONCILIATIONS, **ok)
        assert value(after, obs.RECONCILE_DURATION + "_count", kind="TrainingRun") > value(
            before, obs.RECONCILE_DURATION + "_count", kind="TrainingRun"
        )
        status_patch = {"verb": "patch", "resource": "trainingruns/status", "code": "200"}
        assert value(after, obs.API_REQUESTS, **status_patch) >= 1
        # The Lease calls are counted too: a fresh namespace, so the first round created it.
        assert value(after, obs.API_REQUESTS, verb="create", resource="leases", code="201") == 1
        assert value(after, obs.JOBS_LAUNCHED, component="training") == 0  # it waits: no Job
    finally:
        op.proc.stop()
    assert "succeeded." not in op.proc.logs()  # quiet steady state
