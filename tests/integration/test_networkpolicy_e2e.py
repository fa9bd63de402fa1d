"""mlkube's shipped NetworkPolicies, enforced by the dev cluster's network plugin (kube-router).

Everything is observed from real pods (the server image's Python, urllib with short
timeouts, run with `kubectl exec`) and from the operator itself: who reaches a predictor
before and after `manifests/networkpolicy/predictors/` is applied, and, with the
operator's own policy adjusted the way docs/install.md tells a user to (a kustomize
overlay adding the API server's port), that the operator still scrapes its predictors,
reaches the API server and DNS, and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_iris

from mlkube_devcluster import images
from mlkube_devcluster.testing import DevClusterHandle, wait_for
from mlkube_operator import constants as C

from .helpers import get_cr, iris_stack, kubectl

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "manifests" / "networkpolicy"
SERVER = images.mlkube_image("server")
OPERATOR_NS = "mlkube-system"
OPERATOR = "deployment/mlkube-operator"
PROMETHEUS_NS = "monitoring"
MONITORING = {
    "intervalSeconds": 5,
    "windowRequests": 30,
    "windowSeconds": 60,
    "minSamples": 20,
    "thresholds": {"latency": {"maxP99Ms": 2000}},
}
IRIS_ROWS: list[list[float]] = load_iris().data.tolist()
# Run in a pod: one HTTP request (GET, or POST of argv[2]), prints the status code or the
# error. Short timeouts: a policy that drops packets shows as a timeout.
PROBE = textwrap.dedent(
    """
    import sys, urllib.error, urllib.request
    body = sys.argv[2].encode() if len(sys.argv) > 2 else None
    req = urllib.request.Request(sys.argv[1], body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            print(resp.status)
    except urllib.error.HTTPError as exc:
        print(exc.code)
    except Exception as exc:
        print("error", type(exc).__name__, exc)
    """
)
# Run in a pod: `n` predictions of 5 iris rows each (argv[2], JSON), prints how many got 200.
PREDICT_ALL = textwrap.dedent(
    """
    import json, sys, urllib.request
    rows, ok = json.loads(sys.argv[2]), 0
    for i in range(0, len(rows), 5):
        body = json.dumps({"instances": rows[i : i + 5]}).encode()
        req = urllib.request.Request(sys.argv[1], body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                ok += resp.status == 200
        except Exception as exc:
            print("error", type(exc).__name__, exc)
    print(ok)
    """
)


def apply(dc: DevClusterHandle, namespace: str, *docs: dict[str, Any]) -> None:
    dc.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(docs))


def idle_pod(
    name: str, labels: dict[str, str] | None = None, code: str = "import time; time.sleep(3600)"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": SERVER,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", code],
                }
            ],
        },
    }


def exec_python(dc: DevClusterHandle, namespace: str, target: str, code: str, *args: str) -> str:
    out = dc.kubectl("-n", namespace, "exec", target, "--", "python", "-c", code, *args, timeout=120)
    return out.stdout.strip()


def probe(dc: DevClusterHandle, namespace: str, pod: str, url: str, body: str | None = None) -> str:
    return exec_python(dc, namespace, pod, PROBE, url, *([body] if body is not None else []))


def predictor_ip(dc: DevClusterHandle, namespace: str) -> str:
    selector = f"{C.LABEL_INSTANCE}=iris,{C.LABEL_COMPONENT}={C.COMPONENT_PREDICTOR}"
    pods = json.loads(dc.kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json").stdout)[
        "items"
    ]
    ips = [p["status"]["podIP"] for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(ips) == 1, pods
    return str(ips[0])


def last_analysis(dc: DevClusterHandle, namespace: str) -> dict[str, Any]:
    obj = get_cr(dc.api_client, "modeldeployments", namespace, "iris") or {}
    return dict((obj.get("status") or {}).get("lastAnalysis") or {})


@pytest.fixture()
def other_namespace(dev_cluster: DevClusterHandle, namespace: str) -> Iterator[str]:
    """A second namespace without any label but its name: clients from elsewhere."""
    name = f"{namespace[:50]}-other"
    dev_cluster.kubectl("create", "namespace", name)
    yield name
    dev_cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture()
def prometheus_namespace(dev_cluster: DevClusterHandle) -> Iterator[str]:
    """The namespace the policies admit Prometheus from (created unless it exists)."""
    # A namespace of an earlier run may still be terminating.
    dev_cluster.kubectl("wait", "--for=delete", f"namespace/{PROMETHEUS_NS}", "--timeout=120s", check=False)
    created = dev_cluster.kubectl("create", "namespace", PROMETHEUS_NS, check=False).returncode == 0
    yield PROMETHEUS_NS
    if created:
        dev_cluster.kubectl("delete", "namespace", PROMETHEUS_NS, "--wait=false")
    else:
        dev_cluster.kubectl(
            "-n", PROMETHEUS_NS, "delete", "pod", "-l", "mlkube.io/test-netpol", "--wait=false"
        )


def start_probers(
    dc: DevClusterHandle, namespace: str, other: str, prometheus_ns: str, tag: str
) -> dict[str, tuple[str, str]]:
    """Idle pods to probe from, by role: (namespace, pod name). All Ready when this returns."""
    mark = {"mlkube.io/test-netpol": tag}
    pods = {
        "client": (namespace, "client", {}),
        "prometheus": (prometheus_ns, f"prometheus-{tag}", {"app.kubernetes.io/name": "prometheus", **mark}),
        "stranger": (other, "stranger", {}),
        # The operator's labels, in the wrong namespace: the policy names mlkube-system too.
        "impostor": (
            other,
            "impostor",
            {"app.kubernetes.io/name": "mlkube", "app.kubernetes.io/component": "operator"},
        ),
    }
    for ns, name, labels in pods.values():
        apply(dc, ns, idle_pod(name, labels))
    for ns, name, _ in pods.values():
        dc.kubectl("-n", ns, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s")
    return {role: (ns, name) for role, (ns, name, _) in pods.items()}


def deploy_iris(dc: DevClusterHandle, namespace: str) -> str:
    docs = iris_stack("iris-lr", {"replicas": 1, "monitoring": MONITORING})
    apply(dc, namespace, *docs)
    kubectl(
        dc.kubeconfig,
        "-n",
        namespace,
        "wait",
        "--for=condition=Ready",
        "modeldeployment/iris",
        "--timeout=300s",
    )
    ip = predictor_ip(dc, namespace)
    return f"http://{ip}:8080"


def documented_api_port_overlay(overlay: Path, port: int) -> str:
    """docs/install.md's overlay for an API server on another port, for this cluster's port."""
    text = (REPO / "docs" / "install.md").read_text()
    part = text.split(f"<!-- tested by tests/integration/{Path(__file__).name}")[1]
    found = re.search(r"```yaml\n(.*?)```", part, re.DOTALL)
    assert found is not None
    block = found.group(1)
    assert "../mlkube/manifests/networkpolicy\n" in block and "{port: 8443, protocol: TCP}" in block
    block = block.replace("../mlkube/manifests/networkpolicy", os.path.relpath(POLICIES, overlay))
    return block.replace("{port: 8443,", f"{{port: {port},")


def refused(result: str) -> bool:
    return result.startswith("error")


def predict_body() -> str:
    return json.dumps({"instances": IRIS_ROWS[:2]})


def test_predictor_policies_admit_their_namespace_prometheus_and_the_operator_only(
    dev_cluster: DevClusterHandle,
    namespace: str,
    other_namespace: str,
    prometheus_namespace: str,
    mlkube_operator: Any,
) -> None:
    dc = dev_cluster
    base = deploy_iris(dc, namespace)
    tag = uuid.uuid4().hex[:6]
    probers = start_probers(dc, namespace, other_namespace, prometheus_namespace, tag)
    predict = f"{base}/v1/models/iris:predict"

    # No policy yet: anyone reaches the predictor (so what follows is the policies' doing).
    assert probe(dc, *probers["stranger"], predict, predict_body()) == "200"
    assert probe(dc, *probers["impostor"], f"{base}/metrics") == "200"

    dc.kubectl("-n", namespace, "apply", "-k", str(POLICIES / "predictors"))
    wait_for(
        lambda: refused(probe(dc, *probers["stranger"], predict, predict_body())),
        60,
        "kube-router to enforce mlkube-predictors against a pod of another namespace",
        interval=1,
    )
    assert refused(probe(dc, *probers["stranger"], f"{base}/metrics"))
    assert refused(probe(dc, *probers["impostor"], predict, predict_body()))
    assert refused(probe(dc, *probers["impostor"], f"{base}/metrics"))
    assert probe(dc, *probers["client"], predict, predict_body()) == "200"
    assert probe(dc, *probers["prometheus"], f"{base}/metrics") == "200"

    # The in-cluster operator (mlkube-system) still scrapes the predictor: traffic sent now
    # is judged, which needs its /metrics.
    before = last_analysis(dc, namespace).get("time")
    sent = exec_python(dc, *probers["client"], PREDICT_ALL, predict, json.dumps(IRIS_ROWS))
    assert sent.splitlines()[-1] == "30", sent
    judged = wait_for(
        lambda: (
            (a := last_analysis(dc, namespace)).get("verdict") == "Healthy" and a.get("time") != before and a
        ),
        120,
        "a Healthy verdict on the 30 requests, from the operator's scrapes",
    )
    assert judged["values"]["samples"] >= 30, judged


@pytest.mark.exclusive
def test_operator_policy_with_the_clusters_api_port_keeps_the_operator_working(
    dev_cluster: DevClusterHandle,
    namespace: str,
    other_namespace: str,
    mlkube_operator: Any,
    tmp_path: Path,
) -> None:
    """manifests/networkpolicy (the operator's egress) with the port a user adds for an
    API server that does not listen on 443/6443, as the dev cluster's does not."""
    dc = dev_cluster
    base = deploy_iris(dc, namespace)
    dc.kubectl("-n", namespace, "apply", "-k", str(POLICIES / "predictors"))
    # Something that is not a predictor, for the operator to be kept away from.
    apply(
        dc,
        other_namespace,
        idle_pod(
            "bystander",
            code="import http.server as h; h.HTTPServer(('', 8080), h.SimpleHTTPRequestHandler).serve_forever()",
        ),
    )
    dc.kubectl("-n", other_namespace, "wait", "--for=condition=Ready", "pod/bystander", "--timeout=120s")
    bystander = dc.kubectl(
        "-n", other_namespace, "get", "pod", "bystander", "-o", "jsonpath={.status.podIP}"
    ).stdout
    assert probe(dc, OPERATOR_NS, OPERATOR, f"http://{bystander}:8080/") == "200"  # before the policy

    # What docs/install.md tells a user: the API server's port from its EndpointSlice.
    port = dc.kubectl(
        "get",
        "endpointslices",
        "-n",
        "default",
        "-l",
        "kubernetes.io/service-name=kubernetes",
        "-o",
        "jsonpath={.items[0].ports[0].port}",
    ).stdout.strip()
    assert port.isdigit() and int(port) not in (443, 6443), port
    overlay = tmp_path / "my-mlkube-operator-netpol"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(documented_api_port_overlay(overlay, int(port)))
    try:
        dc.kubectl("apply", "-k", str(overlay))
        wait_for(
            lambda: refused(probe(dc, OPERATOR_NS, OPERATOR, f"http://{bystander}:8080/")),
            60,
            "kube-router to enforce the operator's egress policy",
            interval=1,
        )
        # What it may reach: a predictor's /metrics, the API server through the
        # `kubernetes` Service (any HTTP answer is a connection), cluster DNS.
        assert probe(dc, OPERATOR_NS, OPERATOR, f"{base}/metrics") == "200"
        # DNS pods listen on their own port (here 1053, named `dns`), not the Service's 53.
        dns = exec_python(
            dc,
            OPERATOR_NS,
            OPERATOR,
            "import socket\n"
            "try: print(socket.getaddrinfo('kubernetes.default.svc.cluster.local', 443)[0][4][0])\n"
            "except Exception as x: print('error', x)",
        )
        assert not refused(dns), dns
        api = exec_python(
            dc,
            OPERATOR_NS,
            OPERATOR,
            "import os, ssl, urllib.request as u, urllib.error as e\n"
            "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n"
            "url = f\"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}/readyz\"\n"
            "try: print(u.urlopen(url, timeout=3, context=ctx).status)\n"
            "except e.HTTPError as x: print(x.code)\n"
            "except Exception as x: print('error', x)",
        )
        assert api.isdigit(), api

        # And the operator does its work under it: a restart opens new connections to the
        # API server, then traffic is judged from its scrapes.
        mlkube_operator.restart()
        predict = f"{base}/v1/models/iris:predict"
        before = last_analysis(dc, namespace).get("time")
        dc.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(idle_pod("client")))
        dc.kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/client", "--timeout=120s")
        sent = exec_python(dc, namespace, "client", PREDICT_ALL, predict, json.dumps(IRIS_ROWS))
        assert sent.splitlines()[-1] == "30", sent
        judged = wait_for(
            lambda: (
                (a := last_analysis(dc, namespace)).get("verdict") == "Healthy"
                and a.get("time") != before
                and a
            ),
            150,
            "a Healthy verdict from the operator under its egress policy",
        )
        assert judged["values"]["samples"] >= 30, judged
    finally:
        # The cluster's operator is shared by every test.
        dc.kubectl("delete", "-k", str(overlay), "--ignore-not-found", check=False)
