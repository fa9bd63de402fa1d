"""Argo CD health of real mlkube objects, walked through their states by the real operator.

Each state of a Dataset, TrainingRun and ModelDeployment that the health scripts tell
apart is produced on the dev cluster; the live object is run through the Lua script
(gitops.harness, a real Lua interpreter) and must get the expected health. With
MLKUBE_RECORD_ARGOCD_FIXTURES=1 the objects are also written to tests/data/argocd/,
which tests/gitops/test_argocd_health.py checks on every run without a cluster:

    MLKUBE_RECORD_ARGOCD_FIXTURES=1 .venv/bin/python -m pytest -p no:cacheprovider \
        tests/integration/test_argocd_health.py
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.harness import EXPECTED, FIXTURES_DIR, GRANT_STATES, health

from .helpers import apply_docs, condition, get_cr, iris_stack, kubectl, wait_for
from .test_monitoring_e2e import IRIS_ROWS, all_ready, predictor_pods, send

pytestmark = pytest.mark.cluster
RECORD = os.environ.get("MLKUBE_RECORD_ARGOCD_FIXTURES") == "1"
PENDING = {"dataset-generation-pending", "modeldeployment-generation-pending"}
PLURALS = {
    "Dataset": "datasets",
    "TrainingRun": "trainingruns",
    "ModelDeployment": "modeldeployments",
    "ModelGrant": "modelgrants",
}
MONITORING = {
    "intervalSeconds": 5,
    "windowRequests": 20,
    "windowSeconds": 60,
    "minSamples": 20,
    "thresholds": {"latency": {"maxP99Ms": 2000}},
}


def cleaned(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as Argo CD sees it, without the bulky managedFields."""
    out = json.loads(json.dumps(obj))
    out["metadata"].pop("managedFields", None)
    return out


class Recorder:
    def __init__(self, api: Any, namespace: str, tmp: Path) -> None:
        self.api, self.namespace, self.tmp = api, namespace, tmp
        self.seen: set[str] = set()

    def state(self, name: str, kind: str, obj_name: str, pred: Any, timeout: float = 240) -> dict[str, Any]:
        """Wait until the live object satisfies `pred`, check its health, record it."""
        plural = PLURALS[kind]

        def probe() -> dict[str, Any] | None:
            obj = get_cr(self.api, plural, self.namespace, obj_name)
            return obj if obj is not None and pred(obj) else None

        obj = cleaned(wait_for(probe, timeout, f"{kind}/{obj_name} in state {name}", interval=0.1))
        want_status, want_fragment = EXPECTED[name]
        got = health(obj, self.tmp)
        assert got["status"] == want_status and want_fragment in (got["message"] or ""), (name, got, obj)
        self.seen.add(name)
        if RECORD:
            FIXTURES_DIR.mkdir(parents=True, exist_ok=True)
            header = (
                f"# {kind} in state {name}, recorded from the dev cluster by\n"
                "# MLKUBE_RECORD_ARGOCD_FIXTURES=1 pytest tests/integration/test_argocd_health.py\n"
            )
            (FIXTURES_DIR / f"{name}.yaml").write_text(header + yaml.safe_dump(obj, sort_keys=False))
        return obj


def cond_is(type_: str, status: str, reason: str | None = None) -> Any:
    def pred(obj: dict[str, Any]) -> bool:
        c = condition(obj, type_)
        return (
            c is not None
            and c["status"] == status
            and (reason is None or c["reason"] == reason)
            and c.get("observedGeneration") == obj["metadata"]["generation"]
        )

    return pred


def test_health_scripts_on_every_state_of_the_three_kinds(
    dev_cluster: Any, namespace: str, tmp_path: Path
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    rec = Recorder(api, namespace, tmp_path)
    dataset, run, deployment = iris_stack(
        "iris-lr",
        {
            "replicas": 1,
            "monitoring": MONITORING,
            "onDegradation": {"action": "Rollback", "cooldownSeconds": 0, "failureLimit": 1},
        },
    )
    canary = {
        **deployment,
        "metadata": {"name": "iris-canary"},
        "spec": {
            "model": {"trainingRunRef": {"name": "iris-lr"}},
            "replicas": 2,
            # No traffic reaches the canary: it holds (InsufficientData) until the deadline.
            "strategy": {
                "type": "Canary",
                "steps": [{"weight": 50, "pauseSeconds": 5}],
                "progressDeadlineSeconds": 3600,
            },
            "monitoring": MONITORING,
        },
    }
    gate = {
        **run,
        "metadata": {"name": "iris-gate"},
        "spec": {
            "datasetRef": {"name": "iris"},
            "estimator": {"className": "sklearn.dummy.DummyClassifier"},
            "qualityGate": {"metric": "accuracy", "minimum": 0.9},
        },
    }
    broken = {**dataset, "metadata": {"name": "iris-small"}}
    broken["spec"] = {**dataset["spec"], "validation": {"minRows": 1000}}

    def apply(*docs: dict[str, Any]) -> None:
        apply_docs(kc, namespace, *docs)

    # Nothing to train on yet: the TrainingRun waits, the ModelDeployment has no model.
    apply(run, deployment, canary)
    rec.state(
        "trainingrun-dataset-not-ready",
        "TrainingRun",
        "iris-lr",
        cond_is("Succeeded", "Unknown", "DatasetNotReady"),
    )
    rec.state(
        "modeldeployment-model-not-ready",
        "ModelDeployment",
        "iris",
        cond_is("Ready", "False", "ModelNotReady"),
    )
    apply(dataset, broken, gate)
    rec.state("dataset-profiling", "Dataset", "iris", cond_is("Ready", "Unknown", "Profiling"))
    # In the order the states pass by (each lasts a few seconds at least).
    rec.state("dataset-profiled", "Dataset", "iris", cond_is("Ready", "True"))
    rec.state("trainingrun-training", "TrainingRun", "iris-lr", cond_is("Succeeded", "Unknown", "Training"))
    rec.state("trainingrun-trained", "TrainingRun", "iris-lr", cond_is("Succeeded", "True"))
    rec.state(
        "modeldeployment-rolling-out",
        "ModelDeployment",
        "iris",
        cond_is("Progressing", "True", "RollingOut"),
    )
    rec.state("dataset-validation-failed", "Dataset", "iris-small", cond_is("Ready", "False"))
    rec.state(
        "trainingrun-quality-gate-failed",
        "TrainingRun",
        "iris-gate",
        cond_is("Succeeded", "False", "QualityGateFailed"),
    )
    first = wait_for(
        lambda: (
            (o := get_cr(api, "modeldeployments", namespace, "iris")) and cond_is("Ready", "True")(o) and o
        ),
        240,
        "the first model to serve",
    )
    first_sha = first["status"]["currentModel"]["sha256"]
    wait_for(lambda: all_ready(api, namespace), 120, "the predictor pod to be ready")

    # In-distribution traffic: a Healthy verdict. The canary deployment gets none.
    send(api, namespace, IRIS_ROWS)
    rec.state("modeldeployment-serving", "ModelDeployment", "iris", cond_is("Degraded", "False", "Healthy"))
    rec.state(
        "modeldeployment-insufficient-data",
        "ModelDeployment",
        "iris-canary",
        lambda o: cond_is("Ready", "True")(o) and cond_is("Degraded", "Unknown", "InsufficientData")(o),
    )

    # A second model: a canary for iris-canary, a rolling update for iris, then drift.
    patch = '{"spec":{"estimator":{"params":{"max_iter":300,"C":0.2}}}}'
    kubectl(kc, "-n", namespace, "patch", "trainingrun", "iris-lr", "--type=merge", "-p", patch)
    rec.state(
        "modeldeployment-canary",
        "ModelDeployment",
        "iris-canary",
        cond_is("Progressing", "True", "Canary"),
    )

    def second_serving(obj: dict[str, Any]) -> bool:
        current = (obj.get("status") or {}).get("currentModel") or {}
        return current.get("sha256") not in (None, first_sha) and cond_is("Ready", "True")(obj)

    wait_for(
        lambda: (
            second_serving(get_cr(api, "modeldeployments", namespace, "iris") or {"metadata": {}})
            and all_ready(api, namespace)
            and len(predictor_pods(api, namespace)) == 1
        ),
        240,
        "the second model to serve",
    )
    degraded = cond_is("Degraded", "True")

    def drifted(obj: dict[str, Any]) -> bool:
        if degraded(obj):
            return True
        with contextlib.suppress(OSError):  # far outside the profile, until the verdict says so
            send(api, namespace, [[50.0, 50.0, 50.0, 50.0]] * 50)
        return False

    rec.state("modeldeployment-degraded", "ModelDeployment", "iris", drifted, timeout=240)
    rec.state(
        "modeldeployment-rolled-back",
        "ModelDeployment",
        "iris",
        lambda o: (
            (o.get("status") or {}).get("state") == "RolledBack"
            and (o["status"].get("currentModel") or {}).get("sha256") == first_sha
            and cond_is("Ready", "True")(o)
            and not cond_is("Degraded", "True")(o)
            and not cond_is("Progressing", "True")(o)
        ),
        timeout=180,
    )

    assert rec.seen >= set(EXPECTED) - PENDING - GRANT_STATES, (
        set(EXPECTED) - PENDING - GRANT_STATES - rec.seen
    )


@pytest.mark.exclusive
def test_health_of_specs_the_stopped_operator_has_not_seen(
    dev_cluster: Any, namespace: str, mlkube_operator: Any, tmp_path: Path
) -> None:
    """A spec change the operator has not observed is Progressing whatever the conditions
    say. The operator is stopped to hold that state, so this test runs alone."""
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    rec = Recorder(api, namespace, tmp_path)
    dataset, _, deployment = iris_stack("iris-lr", {"replicas": 1})  # the run never exists
    apply_docs(kc, namespace, dataset, deployment)

    def observed(plural: str) -> bool:
        obj = get_cr(api, plural, namespace, "iris") or {}
        return (obj.get("status") or {}).get("observedGeneration") == 1

    wait_for(lambda: observed("datasets") and observed("modeldeployments"), 120, "both objects observed")
    mlkube_operator.kill()
    try:
        kubectl(
            kc,
            "-n",
            namespace,
            "patch",
            "dataset",
            "iris",
            "--type=merge",
            "-p",
            '{"spec":{"profile":{"bins":12}}}',
        )
        rec.state("dataset-generation-pending", "Dataset", "iris", lambda o: o["metadata"]["generation"] == 2)
        kubectl(
            kc,
            "-n",
            namespace,
            "patch",
            "modeldeployment",
            "iris",
            "--type=merge",
            "-p",
            '{"spec":{"replicas":2}}',
        )
        rec.state(
            "modeldeployment-generation-pending",
            "ModelDeployment",
            "iris",
            lambda o: o["metadata"]["generation"] == 2,
        )
    finally:
        mlkube_operator.start()
    assert rec.seen == PENDING
