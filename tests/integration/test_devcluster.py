"""The dev cluster is a real node: containers, Services that route, DNS, RBAC, and a clean host.

Everything is observed through the Kubernetes API, kubectl and the host's own state
(iptables, links, mounts, processes), as a user and an operator would observe it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube_devcluster import cluster, images, node, procs
from mlkube_devcluster.state import BRIDGE, StateDir
from mlkube_devcluster.testing import DevClusterHandle, wait_for

pytestmark = pytest.mark.cluster

WAIT = 120.0
SERVER = images.mlkube_image("server")
TRAINER = images.mlkube_image("trainer")
OPERATOR = images.mlkube_image("operator")
OPERATOR_SA = "system:serviceaccount:mlkube-system:mlkube-operator"


def apply(dc: DevClusterHandle, namespace: str, *docs: dict[str, Any]) -> None:
    dc.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(docs))


def get_json(dc: DevClusterHandle, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(dc.kubectl(*args, "-o", "json").stdout)
    return data


def python_pod(name: str, image: str, code: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": image, "command": ["python", "-c", textwrap.dedent(code)]}
            ],
            **spec,
        },
    }


def pod_logs_when_done(dc: DevClusterHandle, namespace: str, name: str) -> tuple[str, str]:
    def done() -> str | None:
        phase = dc.kubectl("-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}").stdout
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(done, WAIT, f"pod {name} to finish")
    return phase, dc.kubectl("-n", namespace, "logs", name).stdout


def test_images_hold_what_their_target_needs_and_nothing_more(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    code = """
        import importlib.util, json, os
        mods = ["kopf", "kubernetes", "sklearn", "pandas", "uvicorn", "mlkube_operator", "mlkube_serving", "mlkube_devcluster"]
        print(json.dumps({"uid": os.getuid(), "mods": {m: importlib.util.find_spec(m) is not None for m in mods}}))
    """
    for image in (OPERATOR, TRAINER, SERVER):
        apply(dev_cluster, namespace, python_pod(image.split("/")[-1].split(":")[0], image, code))
    found = {}
    for image in (OPERATOR, TRAINER, SERVER):
        name = image.split("/")[-1].split(":")[0]
        phase, logs = pod_logs_when_done(dev_cluster, namespace, name)
        assert phase == "Succeeded", logs
        found[name] = json.loads(logs.strip().splitlines()[-1])
    assert {v["uid"] for v in found.values()} == {10001}
    op, tr, sv = (found[k]["mods"] for k in ("mlkube-operator", "mlkube-trainer", "mlkube-server"))
    assert op["kopf"] and op["kubernetes"] and op["mlkube_operator"]
    assert not op["sklearn"] and not op["uvicorn"]
    assert tr["sklearn"] and tr["pandas"] and tr["mlkube_operator"]
    assert not tr["kubernetes"] and not tr["kopf"]
    assert sv["sklearn"] and sv["uvicorn"] and sv["mlkube_serving"]
    assert not sv["kubernetes"] and not sv["kopf"]
    assert not any(m["mlkube_devcluster"] for m in (op, tr, sv))


def test_service_routes_by_cluster_ip_and_dns_name_from_host_and_pods(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    server = """
        import http.server, os, socketserver
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = os.environ["POD_NAME"].encode()
                self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
                self.wfile.write(body)
        socketserver.TCPServer.allow_reuse_address = True
        http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
    """
    labels = {"app": "echo"}
    container = {
        "name": "echo",
        "image": SERVER,
        "command": ["python", "-c", textwrap.dedent(server)],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"containerPort": 8000}],
        "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8000}]},
    }
    apply(dev_cluster, namespace, deployment, service)
    dev_cluster.kubectl("-n", namespace, "rollout", "status", "deploy/echo", f"--timeout={int(WAIT)}s")
    ip = dev_cluster.kubectl("-n", namespace, "get", "svc", "echo", "-o", "jsonpath={.spec.clusterIP}").stdout

    import urllib.request

    def answer() -> str | None:
        try:
            with urllib.request.urlopen(f"http://{ip}/", timeout=5) as resp:
                return str(resp.read().decode())
        except OSError:
            return None  # kube-proxy has not written the Service's rules yet

    seen: set[str] = set()

    def both() -> bool:  # from the host, through kube-proxy's rules, to both pods
        if (body := answer()) is not None:
            seen.add(body)
        return len(seen) == 2

    wait_for(both, 60, f"Service echo at {ip} to reach both pods", interval=0.1)

    client = f"""
        import json, socket, urllib.request
        name = "echo.{namespace}.svc.cluster.local"
        addr = socket.gethostbyname(name)
        with urllib.request.urlopen(f"http://{{name}}/", timeout=5) as resp:
            body = resp.read().decode()
        with urllib.request.urlopen("http://echo/", timeout=5) as resp:
            short = resp.read().decode()
        print(json.dumps({{"addr": addr, "body": body, "short": short}}))
    """
    apply(dev_cluster, namespace, python_pod("client", SERVER, client))
    phase, logs = pod_logs_when_done(dev_cluster, namespace, "client")
    assert phase == "Succeeded", logs
    out = json.loads(logs.strip().splitlines()[-1])
    assert out["addr"] == ip
    assert out["body"].startswith("echo-") and out["short"].startswith("echo-")


def test_a_service_address_kube_proxy_has_no_rule_for_is_refused_on_the_machine(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    """Until kube-proxy writes a new Service's rules, its address must not be routed off the
    machine (out of the default route, to whatever answers there): it is refused, from the
    host and from pods, as a Service without endpoints is."""
    import ipaddress
    import socket

    from mlkube_devcluster.state import SERVICE_CIDR

    used = set(
        dev_cluster.kubectl("get", "svc", "-A", "-o", "jsonpath={.items[*].spec.clusterIP}").stdout.split()
    )
    free = next(
        str(a) for a in reversed(list(ipaddress.ip_network(SERVICE_CIDR).hosts())) if str(a) not in used
    )
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((free, 80), timeout=5).close()
    client = f"""
        import socket
        try:
            socket.create_connection(("{free}", 80), timeout=5).close()
            print("connected")
        except OSError as exc:
            print(type(exc).__name__)
    """
    apply(dev_cluster, namespace, python_pod("client", SERVER, client))
    phase, logs = pod_logs_when_done(dev_cluster, namespace, "client")
    assert phase == "Succeeded", logs
    assert logs.strip().splitlines()[-1] == "ConnectionRefusedError", logs


def test_pods_reach_the_api_server_through_the_kubernetes_service(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    code = """
        import json, os, ssl, urllib.request
        sa = "/var/run/secrets/kubernetes.io/serviceaccount"
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
        req = urllib.request.Request(f"https://{host}:{port}/version", headers={"Authorization": "Bearer " + open(f"{sa}/token").read()})
        print(json.dumps(json.load(urllib.request.urlopen(req, context=ctx, timeout=10))))
    """
    apply(dev_cluster, namespace, python_pod("version", SERVER, code))
    phase, logs = pod_logs_when_done(dev_cluster, namespace, "version")
    assert phase == "Succeeded", logs
    assert json.loads(logs.strip().splitlines()[-1])["gitVersion"].startswith("v1.")


def test_operator_runs_in_cluster_under_least_privilege_rbac(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    deploy = get_json(dev_cluster, "-n", "mlkube-system", "get", "deploy", "mlkube-operator")
    spec = deploy["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "mlkube-operator"
    assert spec["containers"][0]["image"] == OPERATOR
    env = {e["name"]: e.get("value") for e in spec["containers"][0].get("env", [])}
    assert env["MLKUBE_TRAINER_IMAGE"] == TRAINER and env["MLKUBE_SERVER_IMAGE"] == SERVER
    # `kubectl logs` works on the operator's pods; the leader logs its start-up.
    selector = "app.kubernetes.io/name=mlkube,app.kubernetes.io/component=operator"
    logs = dev_cluster.kubectl("-n", "mlkube-system", "logs", "-l", selector, "--tail=-1").stdout
    assert "mlkube operator started" in logs

    def can(verb: str, resource: str) -> bool:
        proc = dev_cluster.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, "--as", OPERATOR_SA, check=False
        )
        return proc.stdout.strip() == "yes"

    assert can("create", "jobs.batch") and can("watch", "trainingruns.mlkube.io")
    # Secrets: `get` only (a Job's or predictor's Secret is checked to exist before it is
    # created); they cannot be listed or watched, so the operator never enumerates them.
    assert can("get", "secrets") and not can("list", "secrets") and not can("watch", "secrets")
    assert not can("delete", "namespaces")

    # From inside the operator's own pod, with its own token: listing Secrets is refused.
    dev_cluster.kubectl("-n", namespace, "create", "secret", "generic", "private", "--from-literal=k=v")
    code = (
        "import kubernetes; kubernetes.config.load_incluster_config()\n"
        "try:\n"
        f"    kubernetes.client.CoreV1Api().list_namespaced_secret('{namespace}')\n"
        "    print('READ')\n"
        "except kubernetes.client.exceptions.ApiException as e:\n"
        "    print('STATUS', e.status)\n"
    )
    out = dev_cluster.kubectl(
        "-n", "mlkube-system", "exec", "deploy/mlkube-operator", "--", "python", "-c", code
    )
    assert out.stdout.strip() == "STATUS 403", out.stdout


def test_workload_pods_run_as_10001_on_a_read_only_root(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    """`kubectl exec` into a pod made from the operator's own training Job template."""
    from mlkube_operator.reconcile.jobs import build_job
    from mlkube_operator.settings import Settings

    settings = Settings(trainer_image=TRAINER, server_image=SERVER)
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "0"}
    job = build_job(
        name="probe",
        namespace=namespace,
        labels={},
        owner=owner,
        args=["train"],
        settings=settings,
        backoff_limit=0,
        deadline_seconds=600,
    )
    pod_spec = job["spec"]["template"]["spec"]
    pod_spec["containers"][0]["command"] = ["python", "-c", "import time; time.sleep(600)"]
    pod_spec["containers"][0].pop("args", None)
    pod_spec["restartPolicy"] = "Never"
    pod_spec["volumes"] = [v for v in pod_spec["volumes"] if "persistentVolumeClaim" not in v]
    pod_spec["containers"][0]["volumeMounts"] = [
        m
        for m in pod_spec["containers"][0]["volumeMounts"]
        if m["name"] in {v["name"] for v in pod_spec["volumes"]}
    ]
    apply(
        dev_cluster,
        namespace,
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "trainer"}, "spec": pod_spec},
    )
    dev_cluster.kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", "pod/trainer", f"--timeout={int(WAIT)}s"
    )
    uid = dev_cluster.kubectl("-n", namespace, "exec", "trainer", "--", "id", "-u").stdout.strip()
    assert uid == "10001"
    touch = dev_cluster.kubectl("-n", namespace, "exec", "trainer", "--", "touch", "/probe", check=False)
    assert touch.returncode != 0 and "Read-only file system" in touch.stderr
    tmp = dev_cluster.kubectl("-n", namespace, "exec", "trainer", "--", "touch", "/tmp/probe", check=False)
    assert tmp.returncode == 0, tmp.stderr


def _ipsets() -> list[str]:
    out = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True, check=True).stdout
    return sorted(n for n in out.split() if n.startswith(node.IPSET_PREFIXES))


def _host_state(state: StateDir) -> dict[str, Any]:
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    chains = sorted({ln.split()[0][1:] for ln in rules.splitlines() if ln.startswith((":KUBE-", ":CNI-"))})
    return {
        "kube_chains": chains,
        # kube-router's: a pod firewall per pod a policy selects, a chain per policy.
        "firewall_chains": [
            c for c in chains if c.startswith(("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-"))
        ],
        "ipsets": _ipsets(),
        "bridge": Path(f"/sys/class/net/{BRIDGE}").exists(),
        "mounts": node.mounts_under(state.root),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        "processes": [n for n in cluster.COMPONENTS if procs.running(state.pid_file(n))],
    }


@pytest.mark.timeout(1200)
@pytest.mark.exclusive
def test_down_undoes_host_changes_and_up_brings_back_the_same_cluster(dev_cluster: DevClusterHandle) -> None:
    state = StateDir(dev_cluster.state_dir)
    changes = json.loads(state.host_changes.read_text())
    ns = "updown"
    dev_cluster.kubectl("create", "namespace", ns, check=False)
    dev_cluster.kubectl("-n", ns, "create", "configmap", "keep", "--from-literal=k=v", check=False)
    sleeper = python_pod("sleeper", SERVER, "import time; time.sleep(3600)", restartPolicy="Always")
    sleeper["metadata"]["labels"] = {"run": "sleeper"}
    apply(dev_cluster, ns, sleeper)
    dev_cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/sleeper", f"--timeout={int(WAIT)}s")
    # A policy selecting the pod, so that kube-router has a pod firewall, a policy chain and
    # ipsets on the host for `down` to remove.
    apply(dev_cluster, ns, _deny_all_ingress("sleeper"))

    def firewalled() -> dict[str, Any] | None:
        h = _host_state(state)
        has_pod_chain = any(c.startswith("KUBE-POD-FW-") for c in h["firewall_chains"])
        return h if has_pod_chain and h["ipsets"] else None

    before = wait_for(firewalled, 60, "kube-router's pod firewall chains and ipsets")
    assert before["bridge"] and "kube-router" in before["processes"], before

    mlkube = [sys.executable, "-m", "mlkube_operator.cli", "dev"]
    down = subprocess.run(
        [*mlkube, "down", "--state-dir", str(state.root)], capture_output=True, text=True, timeout=300
    )
    assert down.returncode == 0, down.stderr
    after = _host_state(state)
    assert after["processes"] == [] and after["mounts"] == [] and not after["bridge"], after
    assert after["kube_chains"] == [] and after["ipsets"] == [], after
    for key, original in (changes.get("sysctls") or {}).items():
        assert (Path("/proc/sys") / key).read_text().strip() == str(original)
    assert not any(f"{state.containerd_socket}".encode() in p for p in _cmdlines())

    up = subprocess.run(
        [*mlkube, "up", "--state-dir", str(state.root)], capture_output=True, text=True, timeout=600
    )
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip().splitlines()[-1] == f"export KUBECONFIG={state.kubeconfig}"
    keep = dev_cluster.kubectl("-n", ns, "get", "configmap", "keep", "-o", "jsonpath={.data.k}").stdout
    assert keep == "v"
    dev_cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/sleeper", f"--timeout={int(WAIT)}s")
    # The enforcer is back and has rebuilt the firewall of the policy kept in etcd.
    wait_for(
        lambda: any(c.startswith("KUBE-POD-FW-") for c in _host_state(state)["firewall_chains"]) or None,
        60,
        "kube-router to rebuild the pod firewall after up",
    )
    shown = subprocess.run(
        [*mlkube, "status", "--state-dir", str(state.root)], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0 and re.search(r"^kube-router\s+running \(pid \d+\)", shown.stdout, re.M), (
        shown.stdout
    )
    again = subprocess.run(
        [*mlkube, "up", "--state-dir", str(state.root)], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "already running: etcd, kube-apiserver" in again.stderr, again.stderr
    dev_cluster.kubectl("delete", "namespace", ns, "--wait=false")


def _deny_all_ingress(pod: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"deny-{pod}"},
        "spec": {"podSelector": {"matchLabels": {"run": pod}}, "policyTypes": ["Ingress"]},
    }


def _jumps(chain: str) -> int:
    """How many rules of the built-in filter chains jump to `chain`."""
    rules = subprocess.run(["iptables", "-t", "filter", "-S"], capture_output=True, text=True).stdout
    return sum(1 for ln in rules.splitlines() if ln.startswith("-A ") and ln.endswith(f"-j {chain}"))


@pytest.mark.timeout(600)
@pytest.mark.exclusive
def test_up_after_a_killed_kube_router_adopts_its_leftover_firewall(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    """SIGKILL leaves kube-router's chains and ipsets behind; `up` restarts it over them."""
    state = StateDir(dev_cluster.state_dir)
    apply(dev_cluster, namespace, _deny_all_ingress("steady"))
    pod = python_pod("steady", SERVER, "import time; time.sleep(3600)")
    pod["metadata"]["labels"] = {"run": "steady"}
    apply(dev_cluster, namespace, pod)
    dev_cluster.kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", "pod/steady", f"--timeout={int(WAIT)}s"
    )
    wait_for(lambda: _host_state(state)["ipsets"] or None, 60, "kube-router's ipsets")
    record = procs.running(state.pid_file("kube-router"))
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    wait_for(lambda: procs.running(state.pid_file("kube-router")) is None, 30, "kube-router to die")
    left = _host_state(state)
    assert left["ipsets"] and "KUBE-ROUTER-FORWARD" in left["firewall_chains"], left

    result = cluster.up(state.root, operator="cluster")
    assert result.started == ["kube-router", "operator (in-cluster)"], result.started
    assert procs.running(state.pid_file("kube-router")) is not None
    # One jump per top-level chain, not one per run.
    assert _jumps("KUBE-ROUTER-FORWARD") == 1 and _jumps("KUBE-ROUTER-INPUT") == 1
    assert _host_state(state)["ipsets"]


def _cmdlines() -> list[bytes]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                out.append((entry / "cmdline").read_bytes())
    return out


@pytest.mark.timeout(900)
@pytest.mark.parametrize("component", ["kubelet", "containerd"])
@pytest.mark.exclusive
def test_killed_node_component_recovers_running_pods(
    dev_cluster: DevClusterHandle, namespace: str, component: str
) -> None:
    apply(dev_cluster, namespace, python_pod("steady", SERVER, "import time; time.sleep(3600)"))
    dev_cluster.kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", "pod/steady", f"--timeout={int(WAIT)}s"
    )
    before = get_json(dev_cluster, "-n", namespace, "get", "pod", "steady")["status"]["containerStatuses"][0]
    state = StateDir(dev_cluster.state_dir)
    record = procs.running(state.pid_file(component))
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    wait_for(lambda: procs.running(state.pid_file(component)) is None, 30, f"{component} to die")
    cluster.up(state.root, operator="cluster")
    time.sleep(2)  # let the restarted kubelet resync the pod's status
    dev_cluster.kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", "pod/steady", f"--timeout={int(WAIT)}s"
    )
    after = get_json(dev_cluster, "-n", namespace, "get", "pod", "steady")["status"]["containerStatuses"][0]
    assert after["containerID"] == before["containerID"] and after["restartCount"] == 0, (before, after)


def test_up_fails_fast_naming_what_the_node_lacks(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "MLKUBE_DEV_DIR": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, "-m", "mlkube_operator.cli", "dev", "up"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "containerd (apt-get install containerd)" in proc.stderr
    assert "iptables" in proc.stderr
    assert "ipset (apt-get install ipset)" in proc.stderr
    assert not (tmp_path / "state").exists()


def test_a_missing_image_is_named_in_the_condition_message(
    dev_cluster: DevClusterHandle, namespace: str
) -> None:
    """The kubelet's real answer for an image nobody built, read by the operator's Job view."""
    from mlkube_operator.reconcile.jobs import JobPhase, view_job

    missing = "localhost/mlkube-trainer:never-built"
    apply(dev_cluster, namespace, python_pod("nowhere", missing, "print('unreachable')"))

    def waiting_pod() -> dict[str, Any] | None:
        pod = get_json(dev_cluster, "-n", namespace, "get", "pod", "nowhere")
        statuses = pod.get("status", {}).get("containerStatuses") or []
        reason = (statuses[0].get("state", {}).get("waiting") or {}).get("reason") if statuses else None
        return pod if reason in ("ErrImagePull", "ImagePullBackOff") else None

    pod = wait_for(waiting_pod, WAIT, "the kubelet to report that the image cannot be pulled")
    view = view_job({"metadata": {"name": "j"}, "status": {"active": 1}}, [pod])
    assert view.phase is JobPhase.RUNNING
    assert missing in view.image_problem and "make image" in view.image_problem
