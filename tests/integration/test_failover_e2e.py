"""Failover end to end: two operator processes, the leader killed with -9 in the middle of work.

The standby takes over and finishes what was in flight: one profile Job, one training
Job, the right status. (Another operator watching all namespaces, such as the session's,
would only add a third writer; the assertions hold either way because they rest on
deterministic child names and guarded status writes, which is the point.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mlkube_operator import constants as C

from .helpers import apply_docs, condition, get_cr, iris_stack, jobs_of, kubectl, wait_condition, wait_for
from .test_leader_election import Replica
from .test_serving_e2e import served_shas

pytestmark = [pytest.mark.cluster, pytest.mark.host_operator]


@contextmanager
def leader_and_standby(dev_cluster: Any, namespace: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    """Two operator processes on `namespace`: a leads, b stands by; both stopped afterwards."""
    env = {
        # Short timings keep the test short; the defaults are measured in test_leader_election.
        "MLKUBE_LEADER_LEASE_DURATION_SECONDS": "6",
        "MLKUBE_LEADER_RENEW_DEADLINE_SECONDS": "4",
        "MLKUBE_LEADER_RETRY_PERIOD_SECONDS": "1",
    }
    a, b = (Replica(dev_cluster, namespace, tmp_path, name, env) for name in ("replica-a", "replica-b"))
    try:
        a.proc.start()
        wait_for(a.leads, 90, "replica a to lead", interval=0.2)
        b.proc.start()
        wait_for(b.ready, 90, "replica b to stand by", interval=0.2)
        yield a, b
    finally:
        for r in (a, b):
            r.proc.stop()


def test_leader_killed_mid_profiling_and_mid_training(
    dev_cluster: Any, namespace: str, tmp_path: Path
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    with leader_and_standby(dev_cluster, namespace, tmp_path) as (a, b):
        docs = [
            {
                "apiVersion": "mlkube.io/v1alpha1",
                "kind": "Dataset",
                "metadata": {"name": "digits"},
                "spec": {"source": {"builtin": "digits"}, "target": "target"},
            },
            {
                "apiVersion": "mlkube.io/v1alpha1",
                "kind": "TrainingRun",
                "metadata": {"name": "forest"},
                "spec": {
                    "datasetRef": {"name": "digits"},
                    "estimator": {
                        "className": "sklearn.ensemble.RandomForestClassifier",
                        "params": {"n_estimators": 150, "random_state": 0},
                    },
                },
            },
        ]
        apply_docs(kc, namespace, *docs)
        wait_for(lambda: jobs_of(api, namespace, f"{C.LABEL_DATASET}=digits"), 60, "the profile Job")
        a.proc.kill()  # mid-profiling
        wait_for(b.leads, 60, "replica b to take over", interval=0.1)
        wait_for(lambda: jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=forest"), 240, "the training Job")
        b.proc.kill()  # mid-training: the leader now is b
        a.proc.start()
        wait_for(a.leads, 90, "replica a to take over again", interval=0.1)
        tr = wait_condition(api, "trainingruns", namespace, "forest", "Succeeded", timeout=300)
        assert condition(tr, "Succeeded")["status"] == "True", tr["status"]  # type: ignore[index]
        assert tr["status"]["model"]["sha256"]
        ds = wait_condition(api, "datasets", namespace, "digits", "Ready", timeout=60)
        assert condition(ds, "Ready")["status"] == "True"  # type: ignore[index]
        train_jobs = [
            j["metadata"]["name"] for j in jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=forest")
        ]
        profile_jobs = [
            j["metadata"]["name"]
            for j in jobs_of(
                api, namespace, f"{C.LABEL_DATASET}=digits,{C.LABEL_COMPONENT}={C.COMPONENT_PROFILE}"
            )
        ]
        assert train_jobs == ["forest-train-1"]
        assert profile_jobs == ["digits-profile-1"]
        events = kubectl(kc, "-n", namespace, "get", "events", "-o", "jsonpath={.items[*].reason}").split()
        assert events.count("Trained") <= 1 and events.count("Profiled") <= 1, events  # no duplicates


def test_leader_killed_mid_rollout(dev_cluster: Any, namespace: str, tmp_path: Path) -> None:
    """A new model rolls out; the leader dies in the middle: one rollout, to the new model, status right."""
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    with leader_and_standby(dev_cluster, namespace, tmp_path) as (a, b):
        apply_docs(kc, namespace, *iris_stack("iris-lr", {"replicas": 2}))
        kubectl(
            kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s"
        )
        first = get_cr(api, "modeldeployments", namespace, "iris")
        assert first is not None
        first_sha = first["status"]["currentModel"]["sha256"]
        patch = '{"spec":{"estimator":{"params":{"max_iter":300,"C":0.3}}}}'
        kubectl(kc, "-n", namespace, "patch", "trainingrun", "iris-lr", "--type=merge", "-p", patch)

        def rolling_out() -> bool:
            cond = condition(get_cr(api, "modeldeployments", namespace, "iris"), "Progressing")
            return cond is not None and cond["status"] == "True"

        wait_for(rolling_out, 240, "the rollout of the new model to start", interval=0.1)
        a.proc.kill()  # mid-rollout
        wait_for(b.leads, 60, "replica b to take over", interval=0.1)
        second_sha = wait_condition(api, "trainingruns", namespace, "iris-lr", "Succeeded")["status"][
            "model"
        ]["sha256"]
        assert second_sha != first_sha

        def rolled() -> dict[str, Any] | None:
            obj = get_cr(api, "modeldeployments", namespace, "iris")
            status = (obj or {}).get("status") or {}
            ready = condition(obj, "Ready") or {}
            done = (status.get("currentModel") or {}).get("sha256") == second_sha and ready.get(
                "status"
            ) == "True"
            return obj if done and served_shas(api, namespace) == {second_sha} else None

        md = wait_for(rolled, 240, "the rollout to finish under the new leader")
        assert md["status"]["previousModel"]["sha256"] == first_sha
        assert md["status"].get("rollbacks", 0) == 0 and not md["status"].get("candidateModel")
        predictor = json.loads(
            kubectl(kc, "-n", namespace, "get", "deployment", "iris-predictor", "-o", "json")
        )
        # One rollout: the Deployment's second revision, however many reconciles applied it.
        assert predictor["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        assert [
            j["metadata"]["name"] for j in jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=iris-lr")
        ] == [
            "iris-lr-train-1",
            "iris-lr-train-2",
        ]
