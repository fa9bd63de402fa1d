"""Every panel of the Grafana dashboard on a real Prometheus that scraped the real operator
and real predictor pods on the dev cluster.

The operator is the one `mlkube dev up` installs in-cluster (two replicas, leader
election, metrics port). Prometheus scrapes the predictor pods and the operator pods
with the scrape jobs the Prometheus Operator would make of
`manifests/monitoring/podmonitor.yaml` and `podmonitor-operator.yaml` (honorLabels);
the pods are listed from the API server and written as file-SD targets with Kubernetes
discovery's labels, since Debian's Prometheus has no Kubernetes discovery. An iris
ModelDeployment gets traffic, feedback, a second model, drifted traffic and a rollback;
then each panel's queries, taken from the shipped JSON with the variables substituted,
must show data (tests/gitops/dashboard.py: finite values, only metrics Prometheus has).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from gitops.dashboard import (
    REPO,
    Checker,
    dashboard,
    dashboard_problems,
    pod_targets,
    podmonitor_scrape_config,
)

from .helpers import apply_docs, condition, get_cr, iris_stack, kubectl, post_json, wait_condition, wait_for
from .test_monitoring_e2e import IRIS_ROWS, all_ready, predictor_pods, status

pytestmark = pytest.mark.cluster
MONITORING = {
    "intervalSeconds": 5,
    "windowRequests": 20,
    "windowSeconds": 30,
    "minSamples": 20,
    "thresholds": {"latency": {"maxP99Ms": 2000}},
}
IRIS_LABELS = [0] * 50 + [1] * 50 + [2] * 50  # load_iris().target, in order
# Only a numeric classifier here; the regressor's panel, and the `or` alternatives for
# categorical inputs and regressors' predictions, are run by tests/serving/test_grafana_dashboard.py
# (where every metric must exist).
NOT_HERE = {"Regression error from feedback"}
OTHER_MODEL_KINDS = frozenset(
    {
        "mlkube_feature_level_total",
        "mlkube_prediction_score_bin_total",
        "mlkube_prediction_score_reference_ratio",
    }
)


def manifest(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "manifests" / "monitoring" / name).read_text())
    return doc


def list_pods(api: Any, namespace: str) -> list[dict[str, Any]]:
    core = kubernetes.client.CoreV1Api(api)
    data = json.loads(core.list_namespaced_pod(namespace, _preload_content=False).data)
    return list(data["items"])


@contextlib.contextmanager
def prometheus(tmp: Path, api: Any, namespaces: list[str]) -> Iterator[str]:
    """A real Prometheus scraping the pods of `namespaces` as mlkube's PodMonitors say."""
    sd_file = tmp / "pods.json"
    sd_file.write_text("[]")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            podmonitor_scrape_config(manifest("podmonitor.yaml"), sd_file),
            podmonitor_scrape_config(manifest("podmonitor-operator.yaml"), sd_file),
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    subprocess.run(["promtool", "check", "config", str(tmp / "prometheus.yml")], check=True, timeout=60)
    stop = threading.Event()

    def discover() -> None:  # what Kubernetes pod discovery would keep up to date
        while not stop.wait(1.0):
            with contextlib.suppress(Exception):
                pods = [p for ns in namespaces for p in list_pods(api, ns)]
                (tmp / "pods.json.tmp").write_text(json.dumps(pod_targets(pods)))
                (tmp / "pods.json.tmp").replace(sd_file)

    discovery = threading.Thread(target=discover, daemon=True)
    discovery.start()
    port = free_port()
    with (tmp / "prometheus.log").open("wb") as log:
        prom = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: prom.poll() is not None or ready(port), 60, "Prometheus to start")
        assert prom.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        prom.terminate()
        prom.wait(timeout=20)
        discovery.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def traffic(api: Any, namespace: str, rows: list[list[float]], labels: list[int] | None = None) -> None:
    """`rows` 5 at a time to every predictor pod; with `labels`, their true labels fed back."""
    for pod in predictor_pods(api, namespace):
        if not pod["status"].get("podIP"):
            continue  # not started yet
        base = f"http://{pod['status']['podIP']}:8080"
        feedback = []
        for i in range(0, len(rows), 5):
            answer = post_json(f"{base}/v1/models/iris:predict", {"instances": rows[i : i + 5]})
            if labels is not None:
                feedback.append({"id": answer["id"], "label": labels[i : i + 5]})
        if feedback:
            post_json(f"{base}/v2/models/iris/feedback", {"feedback": feedback})


def test_every_panel_shows_data_from_the_operator_and_predictor_pods(
    dev_cluster: Any, namespace: str, mlkube_operator: Any, tmp_path: Path
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    operator_ns = mlkube_operator.NAMESPACE
    with prometheus(tmp_path, api, [namespace, operator_ns]) as prom:
        docs = iris_stack(
            "iris-lr",
            {
                "replicas": 1,
                "monitoring": MONITORING,
                "onDegradation": {"action": "Rollback", "cooldownSeconds": 0, "failureLimit": 1},
            },
        )
        apply_docs(kc, namespace, *docs)
        kubectl(
            kc, "-n", namespace, "wait", "--for=condition=Ready", "modeldeployment/iris", "--timeout=300s"
        )
        wait_for(lambda: all_ready(api, namespace), 120, "the predictor pod to be ready")
        first = status(api, namespace)["currentModel"]["sha256"]

        def healthy() -> bool:
            traffic(api, namespace, IRIS_ROWS, IRIS_LABELS)
            return (status(api, namespace).get("lastAnalysis") or {}).get("verdict") == "Healthy"

        wait_for(healthy, 180, "a Healthy verdict", interval=2)

        # A second model, then drifted inputs: the operator rolls back to the first.
        patch = '{"spec":{"estimator":{"params":{"max_iter":300,"C":0.2}}}}'
        kubectl(kc, "-n", namespace, "patch", "trainingrun", "iris-lr", "--type=merge", "-p", patch)
        wait_condition(api, "trainingruns", namespace, "iris-lr", "Succeeded", timeout=240)
        wait_for(
            lambda: (
                status(api, namespace).get("currentModel", {}).get("sha256") != first
                and status(api, namespace).get("state") == "Steady"
                and all_ready(api, namespace)
            ),
            240,
            "the second model to serve",
        )

        def rolled_back() -> bool:
            with contextlib.suppress(OSError):  # pods come and go during the rollback
                traffic(api, namespace, [[50.0, 50.0, 50.0, 50.0]] * 50, [0] * 50)
            return status(api, namespace).get("rollbacks", 0) >= 1

        wait_for(rolled_back, 180, "a rollback", interval=2)
        wait_for(
            lambda: status(api, namespace).get("state") == "RolledBack" and all_ready(api, namespace),
            240,
            "the first model to serve again",
        )
        md = get_cr(api, "modeldeployments", namespace, "iris")
        assert condition(md, "Ready")["status"] == "True"  # type: ignore[index]

        # Every panel, with traffic flowing (rates need fresh samples).
        checker, board = Checker(prom), dashboard()
        problems: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                traffic(api, namespace, IRIS_ROWS, IRIS_LABELS)
            time.sleep(2)
            problems = dashboard_problems(
                checker,
                board,
                namespace,
                ["iris"],
                {},
                lambda p: p["title"] not in NOT_HERE,
                OTHER_MODEL_KINDS,
            )
            if not problems:
                break
        assert problems == [], "\n".join(problems)
