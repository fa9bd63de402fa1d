"""The dev cluster itself: real controllers and the local kubelet behave like a cluster.

Every workload here uses mlkube's image, so the local kubelet runs it as a process of
this environment; everything is observed only through the Kubernetes API and kubectl,
as the operator and a user would observe it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube_operator.constants import IMAGE
from mlkube_operator.devcluster import cluster, procs
from mlkube_operator.devcluster.testing import DevClusterHandle, wait_for

pytestmark = pytest.mark.cluster

WAIT = 120.0


def apply(dc: DevClusterHandle, namespace: str, *docs: dict[str, Any]) -> None:
    dc.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(docs))


def get(dc: DevClusterHandle, path: str) -> dict[str, Any] | None:
    """GET an API path as a plain dict (None on 404)."""
    api = dc.api_client
    method, url, headers, body, post = api.param_serialize("GET", path, auth_settings=["BearerToken"])
    resp = api.call_api(method, url, headers, body, post)
    raw = resp.read()
    if resp.status == 404:
        return None
    assert resp.status == 200, f"GET {path}: HTTP {resp.status}: {raw[:500]!r}"
    data: dict[str, Any] = json.loads(raw)
    return data


def pods(dc: DevClusterHandle, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    listing = get(
        dc, f"/api/v1/namespaces/{namespace}/pods?{urllib.parse.urlencode({'labelSelector': selector})}"
    )
    assert listing is not None
    items: list[dict[str, Any]] = listing["items"]
    return items


def pod(dc: DevClusterHandle, namespace: str, name: str) -> dict[str, Any] | None:
    return get(dc, f"/api/v1/namespaces/{namespace}/pods/{name}")


def container_status(p: dict[str, Any] | None, index: int = 0) -> dict[str, Any]:
    statuses = ((p or {}).get("status") or {}).get("containerStatuses") or []
    return dict(statuses[index]) if len(statuses) > index else {}


def condition(obj: dict[str, Any] | None, ctype: str) -> str | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return str(cond.get("status"))
    return None


def python_container(name: str, code: str, *args: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "command": ["python", "-c", textwrap.dedent(code), *args],
        **extra,
    }


def job(name: str, container: dict[str, Any], backoff_limit: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def test_job_completes_and_reports_its_termination_message(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    code = """
        import json, sys
        print("training done")
        with open(sys.argv[1], "w") as f:
            json.dump({"accuracy": 0.97}, f)
    """
    apply(dev_cluster, namespace, job("ok", python_container("main", code, "/dev/termination-log")))
    dev_cluster.kubectl(
        "-n", namespace, "wait", "--for=condition=complete", "job/ok", f"--timeout={int(WAIT)}s"
    )
    j = get(dev_cluster, f"/apis/batch/v1/namespaces/{namespace}/jobs/ok")
    assert j is not None and j["status"].get("succeeded") == 1, j
    (p,) = pods(dev_cluster, namespace, "job-name=ok")
    assert p["status"]["phase"] == "Succeeded"
    terminated = container_status(p)["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert json.loads(terminated["message"]) == {"accuracy": 0.97}
    assert p["status"]["podIP"].startswith("127.0.")
    logs = dev_cluster.kubectl("-n", namespace, "logs", p["metadata"]["name"]).stdout
    assert "training done" in logs


def test_failing_job_retries_up_to_backoff_limit(dev_cluster: DevClusterHandle, namespace: str) -> None:
    code = """
        import sys
        print("cannot read the dataset")
        sys.exit(3)
    """
    container = python_container("main", code, terminationMessagePolicy="FallbackToLogsOnError")
    apply(dev_cluster, namespace, job("bad", container, backoff_limit=1))

    def failed() -> dict[str, Any] | None:
        j = get(dev_cluster, f"/apis/batch/v1/namespaces/{namespace}/jobs/bad")
        return j if condition(j, "Failed") == "True" else None

    j = wait_for(failed, WAIT, "job/bad to fail")
    assert j["status"]["failed"] == 2, j["status"]
    failed_pods = pods(dev_cluster, namespace, "job-name=bad")
    assert len(failed_pods) == 2
    for p in failed_pods:
        assert p["status"]["phase"] == "Failed"
        terminated = container_status(p)["state"]["terminated"]
        assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
        assert "cannot read the dataset" in terminated["message"]


def test_deployment_serves_http_on_two_pod_ips_and_is_garbage_collected(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    labels = {"app": "web"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "http",
                            "image": IMAGE,
                            "command": ["python", "-m", "http.server", "8000"],
                            "args": ["--bind", "$(POD_IP)", "--directory", "/srv"],
                            "env": [
                                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                            ],
                            "ports": [{"name": "http", "containerPort": 8000}],
                            "readinessProbe": {
                                "httpGet": {"path": "/hello.txt", "port": "http"},
                                "periodSeconds": 1,
                            },
                            "livenessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 2},
                            "volumeMounts": [{"name": "content", "mountPath": "/srv"}],
                        }
                    ],
                    "volumes": [{"name": "content", "configMap": {"name": "web-content"}}],
                },
            },
        },
    }
    content = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-content"},
        "data": {"hello.txt": "hi\n"},
    }
    apply(dev_cluster, namespace, content, deployment)

    def available() -> dict[str, Any] | None:
        d = get(dev_cluster, f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
        return (
            d
            if condition(d, "Available") == "True" and (d or {})["status"].get("readyReplicas") == 2
            else None
        )

    wait_for(available, WAIT, "deployment/web to be Available with 2 ready replicas")
    running = pods(dev_cluster, namespace, "app=web")
    ips = sorted(p["status"]["podIP"] for p in running)
    assert len(ips) == 2 and ips[0] != ips[1], ips
    for ip in ips:
        with urllib.request.urlopen(f"http://{ip}:8000/hello.txt", timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b"hi\n"
    for p in running:
        assert condition(p, "Ready") == "True"
        assert container_status(p)["ready"] is True

    dev_cluster.kubectl("-n", namespace, "delete", "deployment", "web", "--wait=false")
    wait_for(lambda: not pods(dev_cluster, namespace, "app=web"), WAIT, "the Deployment's pods to be deleted")
    rs = get(dev_cluster, f"/apis/apps/v1/namespaces/{namespace}/replicasets")
    assert rs is not None and rs["items"] == []

    def refused(ip: str) -> bool:
        try:
            urllib.request.urlopen(f"http://{ip}:8000/", timeout=2).close()
        except OSError:
            return True
        return False

    for ip in ips:
        wait_for(lambda ip=ip: refused(ip), 30, f"the server on {ip} to stop")  # type: ignore[misc]


def test_deleting_an_owner_garbage_collects_its_children(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    apply(dev_cluster, namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    owner = get(dev_cluster, f"/api/v1/namespaces/{namespace}/configmaps/owner")
    assert owner is not None
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    sleeper = python_container("main", "import time\nwhile True: time.sleep(1)")
    child_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "child", "ownerReferences": [ref]},
        "spec": {"containers": [sleeper], "terminationGracePeriodSeconds": 5},
    }
    child_cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "child", "ownerReferences": [ref]},
    }
    apply(dev_cluster, namespace, child_pod, child_cm)
    wait_for(
        lambda: (pod(dev_cluster, namespace, "child") or {}).get("status", {}).get("phase") == "Running",
        WAIT,
        "pod/child to run",
    )
    dev_cluster.kubectl("-n", namespace, "delete", "configmap", "owner")
    wait_for(
        lambda: get(dev_cluster, f"/api/v1/namespaces/{namespace}/configmaps/child") is None,
        WAIT,
        "configmap/child to be garbage-collected",
    )
    wait_for(lambda: pod(dev_cluster, namespace, "child") is None, WAIT, "pod/child to be garbage-collected")


def test_foreign_image_is_refused_with_a_clear_status(dev_cluster: DevClusterHandle, namespace: str) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nginx"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    }
    apply(dev_cluster, namespace, foreign)

    def waiting() -> dict[str, Any] | None:
        w = container_status(pod(dev_cluster, namespace, "nginx")).get("state", {}).get("waiting")
        return w if w and w.get("reason") == "ErrImageNeverPull" else None

    w = wait_for(waiting, WAIT, "pod/nginx to be refused")
    assert "nginx:1.27" in w["message"] and "ghcr.io/mlkube/mlkube" in w["message"]
    p = pod(dev_cluster, namespace, "nginx")
    assert p is not None and p["status"]["phase"] == "Pending"


def test_pvc_directory_is_shared_between_pods(dev_cluster: DevClusterHandle, namespace: str) -> None:
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "store"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }

    def pod_with_store(name: str, code: str) -> dict[str, Any]:
        container = python_container(
            name,
            code,
            env=[{"name": "STORE", "value": "/store/models"}],
            volumeMounts=[{"name": "store", "mountPath": "/store"}],
        )
        container["args"] = ["$(STORE)/model.txt", "/dev/termination-log"]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [container],
                "volumes": [{"name": "store", "persistentVolumeClaim": {"claimName": "store"}}],
            },
        }

    writer = """
        import os, sys
        os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
        open(sys.argv[1], "w").write(os.environ["HOSTNAME"])
    """
    reader = """
        import sys
        open(sys.argv[2], "w").write(open(sys.argv[1]).read())
    """
    apply(dev_cluster, namespace, pvc, pod_with_store("writer", writer))

    def phase(name: str) -> str | None:
        p = pod(dev_cluster, namespace, name)
        ph = (p or {}).get("status", {}).get("phase")
        return ph if ph in ("Succeeded", "Failed") else None

    assert wait_for(lambda: phase("writer"), WAIT, "pod/writer to finish") == "Succeeded"
    apply(dev_cluster, namespace, pod_with_store("reader", reader))
    assert wait_for(lambda: phase("reader"), WAIT, "pod/reader to finish") == "Succeeded"
    message = container_status(pod(dev_cluster, namespace, "reader"))["state"]["terminated"]["message"]
    assert message == "writer"
    claim = get(dev_cluster, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/store")
    assert claim is not None and claim["status"]["phase"] == "Bound"
    pv = get(dev_cluster, f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
    assert pv is not None
    host_dir = Path(pv["spec"]["hostPath"]["path"])
    assert (host_dir / "models" / "model.txt").read_text() == "writer"
    assert str(host_dir).startswith(str(dev_cluster.state_dir))


def test_env_downward_api_config_and_service_account_volumes(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"mode": "fast"}}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "stringData": {"token": "s3cr3t"},
    }
    code = """
        import json, os, sys
        sa = "/var/run/secrets/kubernetes.io/serviceaccount"
        out = {
            "env": {k: os.environ.get(k) for k in ("POD_NAME", "POD_NS", "NODE", "MODE", "TOKEN", "DIR", "LIMIT_MB")},
            "cwd": os.getcwd(),
            "config": open(sys.argv[1] + "/mode").read(),
            "namespace_file": open(sys.argv[2] + "/namespace").read(),
            "token_parts": len(open(sys.argv[2] + "/token").read().split(".")),
            "ca": open(sys.argv[2] + "/ca.crt").read().startswith("-----BEGIN CERTIFICATE-----"),
        }
        open(sys.argv[3], "w").write(json.dumps(out))
    """
    container = python_container(
        "main",
        code,
        "/etc/cfg",
        "/var/run/secrets/kubernetes.io/serviceaccount",
        "/dev/termination-log",
        workingDir="/work",
        resources={"limits": {"memory": "256Mi"}},
        env=[
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "DIR", "value": "/etc/cfg/$(MODE)"},
            {
                "name": "LIMIT_MB",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
        ],
        volumeMounts=[{"name": "cfg", "mountPath": "/etc/cfg"}],
    )
    p = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "env"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
        },
    }
    apply(dev_cluster, namespace, cm, secret, p)

    def terminated() -> dict[str, Any] | None:
        t = container_status(pod(dev_cluster, namespace, "env")).get("state", {}).get("terminated")
        return dict(t) if t else None

    t = wait_for(terminated, WAIT, "pod/env to finish")
    assert t["exitCode"] == 0, dev_cluster.kubectl("-n", namespace, "logs", "env", check=False).stdout
    out = json.loads(t["message"])
    env = out["env"]
    assert env["POD_NAME"] == "env" and env["POD_NS"] == namespace and env["NODE"] == "mlkube-dev"
    assert env["MODE"] == "fast" and env["TOKEN"] == "s3cr3t" and env["LIMIT_MB"] == "256"
    assert env["DIR"].endswith("/volumes/cfg/fast") and env["DIR"].startswith(str(dev_cluster.state_dir))
    assert out["cwd"].startswith(str(dev_cluster.state_dir))
    assert out["config"] == "fast" and out["namespace_file"] == namespace
    assert out["token_parts"] == 3 and out["ca"] is True


def test_crashing_container_is_restarted_with_backoff(dev_cluster: DevClusterHandle, namespace: str) -> None:
    crasher = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "crash"},
        "spec": {"containers": [python_container("main", "import sys; print('boom'); sys.exit(2)")]},
    }
    apply(dev_cluster, namespace, crasher)

    def restarted_twice() -> dict[str, Any] | None:
        st = container_status(pod(dev_cluster, namespace, "crash"))
        return st if st.get("restartCount", 0) >= 2 else None

    st = wait_for(restarted_twice, WAIT, "pod/crash to be restarted twice")
    assert st["lastState"]["terminated"]["exitCode"] == 2
    p = pod(dev_cluster, namespace, "crash")
    assert p is not None and p["status"]["phase"] == "Running"


def _processes_of(state_dir: Path) -> list[str]:
    """Live processes started for `state_dir`: its binaries' args, or a cwd inside it."""
    found: list[str] = []
    needle = str(state_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (needle in cmdline or cwd.startswith(needle)):
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def test_dev_up_is_idempotent_and_down_leaves_no_processes(dev_cluster: DevClusterHandle) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="mlkube-updown-"))
    mlkube = [sys.executable, "-m", "mlkube_operator.cli", "dev"]
    args = ["--state-dir", str(state_dir)]
    try:
        first = subprocess.run(
            [*mlkube, "up", *args, "--no-operator"], capture_output=True, text=True, timeout=180
        )
        assert first.returncode == 0, first.stderr
        kubeconfig = state_dir / "kubeconfig"
        assert first.stdout.strip().splitlines()[-1] == f"export KUBECONFIG={kubeconfig}"
        pids = {n: procs.running(state_dir / "run" / f"{n}.pid") for n in cluster.COMPONENTS[:5]}
        assert all(pids.values()), pids

        second = subprocess.run(
            [*mlkube, "up", *args, "--no-operator"], capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip().splitlines()[-1] == f"export KUBECONFIG={kubeconfig}"
        assert (
            "already running: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet"
            in second.stderr
        )
        again = {n: procs.running(state_dir / "run" / f"{n}.pid") for n in cluster.COMPONENTS[:5]}
        assert again == pids

        path = subprocess.run([*mlkube, "kubeconfig", *args], capture_output=True, text=True, timeout=30)
        assert path.stdout.strip() == str(kubeconfig)
        status = subprocess.run([*mlkube, "status", *args], capture_output=True, text=True, timeout=30)
        assert status.returncode == 0 and "node        Ready" in status.stdout, status.stdout

        # A pod whose process would outlive a careless `down`: it ignores SIGTERM.
        stubborn = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "stubborn", "namespace": "default"},
            "spec": {
                "containers": [
                    python_container(
                        "main",
                        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)",
                    )
                ]
            },
        }
        subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
            input=json.dumps(stubborn),
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        wait_for(
            lambda: (
                "Running"
                in subprocess.run(
                    [
                        "kubectl",
                        "--kubeconfig",
                        str(kubeconfig),
                        "get",
                        "pod",
                        "stubborn",
                        "-o",
                        "jsonpath={.status.phase}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout
            ),
            WAIT,
            "pod/stubborn to run",
        )
        assert any("time.sleep(3600)" in p for p in _processes_of(state_dir))

        down = subprocess.run([*mlkube, "down", *args], capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
        assert _processes_of(state_dir) == []
        status = subprocess.run([*mlkube, "status", *args], capture_output=True, text=True, timeout=30)
        assert status.returncode == 1
    finally:
        cluster.down(state_dir, purge=True)
