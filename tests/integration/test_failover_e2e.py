"""Failover end to end: two operator processes, the leader killed with -9 in the middle of work.

The standby takes over and finishes what was in flight: one profile Job, one training
Job, the right status. (Another operator watching all namespaces, such as the session's,
would only add a third writer; the assertions hold either way because they rest on
deterministic child names and guarded status writes, which is the point.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube_operator import constants as C

from .helpers import condition, jobs_of, kubectl, wait_condition, wait_for
from .test_leader_election import Replica

pytestmark = [pytest.mark.cluster, pytest.mark.host_operator]


def test_leader_killed_mid_profiling_and_mid_training(
    dev_cluster: Any, namespace: str, tmp_path: Path
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    env = {
        "MLKUBE_LEADER_LEASE_NAMESPACE": namespace,
        "MLKUBE_NAMESPACES": namespace,
        "MLKUBE_BIND_ADDRESS": "127.0.0.1",
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
        kubectl(kc, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
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
    finally:
        for r in (a, b):
            r.proc.stop()
