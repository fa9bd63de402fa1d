"""Bringing the dev cluster up and down, one component at a time, idempotently.

Each component is checked on its own (pid file plus process start time) and only what is
missing is started, so `up` after a crash of one process repairs just that process (a
restarted containerd finds its running containers again, a restarted kubelet adopts its
pods, as on a real node), and `up` on a running cluster returns in about a second.
Components start in dependency order and `up` waits for each readiness signal a later one
needs (etcd health, the API server's /readyz, containerd's socket, the Node turning Ready,
cluster DNS), so that when it prints the kubeconfig a Pod created right away runs and can
resolve Service names. Slow preparation (Go builds, image builds and imports) happens
before any process starts and is skipped when its inputs have not changed.

mlkube itself is installed the way a user installs it: `kubectl apply -k` of a dev overlay
of `manifests/` (local image tags, nothing else changed), so the operator runs in a pod
under its own ServiceAccount and RBAC. `--operator=host` runs it as a host process instead,
for debugging with a local checkout.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import urllib3
import yaml

from . import addons, images, node, procs
from .binaries import find_binaries, find_kube_router, repo_root
from .kube import PATCH_APPLY, ApiError, Kube
from .pki import Pki, ensure_pki
from .state import CLUSTER_DOMAIN, SERVICE_CIDR, ClusterConfig, StateDir

log = logging.getLogger("mlkube.devcluster")

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE = ("containerd", "kubelet", "kube-proxy", "kube-router", "provisioner")
COMPONENTS = (*CONTROL_PLANE, *NODE, "operator")
CONTEXT = "mlkube-dev"
OPERATOR_MODULE = "mlkube_operator.handlers"
OPERATOR_NAMESPACE = "mlkube-system"
OPERATOR_DEPLOYMENT = "mlkube-operator"
FIELD_MANAGER = "mlkube-dev"
OperatorMode = Literal["cluster", "host", "none"]


class DevClusterError(RuntimeError):
    pass


@dataclass
class UpResult:
    state_dir: Path
    kubeconfig: Path
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    images: list[images.BuiltImage] = field(default_factory=list)
    failed: bool = False


@dataclass
class ComponentStatus:
    name: str
    pid: int | None
    log_file: Path


@dataclass
class ClusterStatus:
    state_dir: Path
    exists: bool
    kubeconfig: Path
    components: list[ComponentStatus]
    api_url: str | None = None
    api_ready: bool = False
    node_ready: bool | None = None

    @property
    def running(self) -> bool:
        core = [c for c in self.components if c.name != "operator"]
        return self.exists and all(c.pid is not None for c in core) and self.api_ready


@contextlib.contextmanager
def _locked(state: StateDir) -> Iterator[None]:
    state.root.mkdir(parents=True, exist_ok=True)
    with state.lock_file.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _kubeconfig(server: str, pki: Pki, user: str, cert: Path, key: Path) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CONTEXT, "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}}
        ],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user, "namespace": "default"}}
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _write_private(path: Path, text: str) -> Path:
    if path.is_file() and path.read_text() == text:
        return path
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)
    return path


def write_kubeconfig(state: StateDir, cfg: ClusterConfig, pki: Pki) -> Path:
    """An admin kubeconfig with everything inlined, so it can be copied anywhere."""
    text = _kubeconfig(cfg.apiserver_url, pki, f"{CONTEXT}-admin", pki.admin_cert, pki.admin_key)
    return _write_private(state.kubeconfig, text)


def _argv(name: str, bins: Path, state: StateDir, cfg: ClusterConfig, pki: Pki, ip: str) -> list[str]:
    p = cfg.ports
    kc = str(state.kubeconfig)
    if name == "etcd":
        peer = f"http://127.0.0.1:{p.etcd_peer}"
        client = f"http://127.0.0.1:{p.etcd_client}"
        return [
            str(bins / "etcd"),
            "--name=default",
            f"--data-dir={state.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
    if name == "kube-apiserver":
        # Pods reach the API server through the `kubernetes` Service, whose endpoint is the
        # advertised address: it must be the node's address, not loopback.
        return [
            str(bins / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{p.etcd_client}",
            "--bind-address=0.0.0.0",
            f"--advertise-address={ip}",
            f"--secure-port={p.apiserver}",
            f"--cert-dir={state.run / 'apiserver-certs'}",
            f"--tls-cert-file={pki.apiserver_cert}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--kubelet-certificate-authority={pki.ca_cert}",
            f"--kubelet-client-certificate={pki.admin_cert}",
            f"--kubelet-client-key={pki.admin_key}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--profiling=false",
        ]
    if name == "kube-controller-manager":
        return [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={p.controller_manager}",
            f"--cert-dir={state.run / 'kcm-certs'}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allocate-node-cidrs=false",
            "--configure-cloud-routes=false",
            "--use-service-account-credentials=true",
            "--profiling=false",
        ]
    if name == "kube-scheduler":
        return [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={p.scheduler}",
            f"--cert-dir={state.run / 'scheduler-certs'}",
            "--profiling=false",
        ]
    if name == "provisioner":
        return [sys.executable, "-m", "mlkube_devcluster.provisioner", f"--state-dir={state.root}"]
    if name == "operator":
        # The same entrypoint as the operator's container (`mlkube operator`).
        return [sys.executable, "-m", "mlkube_operator"]
    raise ValueError(name)


def _check_alive(state: StateDir, name: str) -> None:
    if procs.running(state.pid_file(name)) is None:
        tail = _tail(state.log_file(name), 25)
        raise DevClusterError(f"{name} exited during startup; last lines of {state.log_file(name)}:\n{tail}")


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(
    what: str, check: Callable[[], bool], timeout: float, state: StateDir, component: str | None
) -> float:
    start = time.monotonic()
    delay = 0.05
    while True:
        if check():
            return time.monotonic() - start
        if component is not None:
            _check_alive(state, component)
        if time.monotonic() - start > timeout:
            extra = ""
            if component is not None:
                extra = (
                    f"; last lines of {state.log_file(component)}:\n{_tail(state.log_file(component), 25)}"
                )
            raise DevClusterError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


_plain = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False)


def _http_ok(url: str) -> bool:
    try:
        with contextlib.suppress(Exception):
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        resp = _plain.request("GET", url, timeout=urllib3.Timeout(connect=1.0, read=3.0))
    except urllib3.exceptions.HTTPError:
        return False
    return resp.status == 200


def _node_ready(kube: Kube, node_name: str) -> bool:
    try:
        obj = kube.get_or_none(f"/api/v1/nodes/{node_name}")
    except (ApiError, urllib3.exceptions.HTTPError):
        return False
    if obj is None:
        return False
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _deployment_available(kube: Kube, namespace: str, name: str) -> bool:
    try:
        obj = kube.get_or_none(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    except (ApiError, urllib3.exceptions.HTTPError):
        return False
    if obj is None:
        return False
    st = obj.get("status") or {}
    want = (obj.get("spec") or {}).get("replicas", 1)
    return bool(
        st.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
        and st.get("updatedReplicas", 0) >= want
        and st.get("availableReplicas", 0) >= want
        and not st.get("unavailableReplicas")
    )


def _containerd_ready(state: StateDir) -> bool:
    proc = subprocess.run(
        ["ctr", "-a", str(state.containerd_socket), "version"], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and "Server:" in proc.stdout


def _our_shims(state: StateDir) -> list[int]:
    """containerd shims serving this node's containerd (they outlive containerd itself)."""
    sock = str(state.containerd_socket)
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock.encode() in argv:
            pids.append(int(entry.name))
    return pids


def default_crds_dir() -> Path | None:
    root = repo_root()
    if root is not None and (root / "crds").is_dir():
        return root / "crds"
    return None


def dev_overlay() -> Path:
    root = repo_root()
    if root is None or not (root / "devcluster" / "manifests").is_dir():
        raise DevClusterError(
            "devcluster/manifests not found: run `mlkube dev` from the mlkube source checkout"
        )
    return root / "devcluster" / "manifests"


def apply_crds(kube: Kube, crds_dir: Path, timeout: float = 30.0) -> list[str]:
    """Server-side apply every CustomResourceDefinition in `crds_dir/*.yaml`; wait until established."""
    names: list[str] = []
    for path in sorted(crds_dir.glob("*.yaml")) + sorted(crds_dir.glob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            kube.patch(
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
                doc,
                kind=PATCH_APPLY,
                fieldManager=FIELD_MANAGER,
                force=True,
            )
            names.append(name)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conds = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions") or []}
            if conds.get("Established") == "True":
                break
            if time.monotonic() > deadline:
                raise DevClusterError(f"CustomResourceDefinition {name} not Established after {timeout:.0f}s")
            time.sleep(0.1)
    return names


def _kubectl(bins: Path, state: StateDir, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bins / "kubectl"), "--kubeconfig", str(state.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def host_operator_env(state: StateDir) -> dict[str, str]:
    """The environment of a host-process operator: the dev cluster's kubeconfig and images."""
    env = dict(os.environ)
    env["KUBECONFIG"] = str(state.kubeconfig)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("MLKUBE_TRAINER_IMAGE", images.mlkube_image("trainer"))
    env.setdefault("MLKUBE_SERVER_IMAGE", images.mlkube_image("server"))
    return env


def start_host_operator(state_dir: Path | str | None = None) -> procs.ProcessRecord:
    """Start the operator (`python -m mlkube_operator`) on the host against the cluster, unless it runs."""
    state = StateDir(state_dir)
    existing = procs.running(state.pid_file("operator"))
    if existing is not None:
        return existing
    cfg = state.load_config()
    return procs.start(
        "operator",
        _argv("operator", Path(), state, cfg, Pki(state.pki), ""),
        log_file=state.log_file("operator"),
        pid_file=state.pid_file("operator"),
        env=host_operator_env(state),
        cwd=state.root,
    )


def stop_host_operator(state_dir: Path | str | None = None) -> bool:
    state = StateDir(state_dir)
    record = procs.running(state.pid_file("operator"))
    if record is None:
        return False
    procs.stop(record, timeout=15)
    state.pid_file("operator").unlink(missing_ok=True)
    return True


def install_operator(bins: Path, state: StateDir, kube: Kube, timeout: float) -> None:
    """`kubectl apply -k devcluster/manifests`, then wait for the operator to be available.

    The manifests are applied only when they changed since the last `up` (or the operator's
    Deployment is gone): applying them again would undo a scale that someone made on
    purpose, such as a test that paused the operator while another `up` runs.
    """
    rendered = _kubectl(bins, state, "kustomize", str(dev_overlay()))
    if rendered.returncode != 0:
        raise DevClusterError(f"kubectl kustomize {dev_overlay()} failed: {rendered.stderr.strip()}")
    digest = hashlib.sha256(rendered.stdout.encode()).hexdigest()
    applied = state.run / "operator-manifests.sha256"
    path = f"/apis/apps/v1/namespaces/{OPERATOR_NAMESPACE}/deployments/{OPERATOR_DEPLOYMENT}"
    current = applied.read_text().strip() if applied.is_file() else ""
    if current != digest or kube.get_or_none(path) is None:
        proc = _kubectl(
            bins,
            state,
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "-k",
            str(dev_overlay()),
        )
        if proc.returncode != 0:
            raise DevClusterError(f"kubectl apply -k {dev_overlay()} failed: {proc.stderr.strip()}")
        applied.write_text(digest + "\n")
    # A rebuilt image keeps its tag: restart the operator so it runs the new build.
    marker = state.run / "operator-image.id"
    ident = images.image_id(images.mlkube_image("operator")) or ""
    if marker.is_file() and marker.read_text().strip() != ident:
        _kubectl(
            bins, state, "-n", OPERATOR_NAMESPACE, "rollout", "restart", f"deployment/{OPERATOR_DEPLOYMENT}"
        )
    marker.write_text(ident + "\n")
    _wait(
        f"deployment/{OPERATOR_DEPLOYMENT} in {OPERATOR_NAMESPACE} to be available",
        lambda: _deployment_available(kube, OPERATOR_NAMESPACE, OPERATOR_DEPLOYMENT),
        timeout,
        state,
        "kubelet",
    )


def up(
    state_dir: Path | str | None = None,
    *,
    operator: OperatorMode = "cluster",
    crds_dir: Path | None = None,
    timeout: float = 120.0,
) -> UpResult:
    """Start whatever part of the cluster is not running; return once pods run and resolve names."""
    t_start = time.monotonic()
    state = StateDir(state_dir)
    tools = node.find_tools()  # fail fast, before anything is built or started
    ip = node.node_ip()
    state.ensure()
    with _locked(state):
        cfg = state.load_or_create_config()
        if not any(procs.running(state.pid_file(n)) for n in COMPONENTS):
            before = cfg.ports
            cfg = state.repick_ports_if_taken(cfg)
            if cfg.ports != before:
                log.warning("Some of this cluster's ports were taken by other programs: picked new ones")
        pki = ensure_pki(state.pki, cfg.node_name, ip)
        write_kubeconfig(state, cfg, pki)
        _write_private(
            state.run / "kubelet.kubeconfig",
            _kubeconfig(
                cfg.apiserver_url, pki, f"system:node:{cfg.node_name}", pki.kubelet_cert, pki.kubelet_key
            ),
        )
        kube = Kube.admin(cfg.apiserver_url, pki)
        result = UpResult(state_dir=state.root, kubeconfig=state.kubeconfig)

        # Everything slow and host-independent first: binaries and images.
        t = time.monotonic()
        bins = find_binaries()
        kube_router = find_kube_router()
        tools_dir = images.node_tools_dir()
        result.images = images.build_mlkube_images()
        wanted = {b.image: images.image_id(b.image) or "" for b in result.images}
        wanted.update(images.node_images(tools_dir))
        result.timings["build"] = time.monotonic() - t

        node_running = any(
            procs.running(state.pid_file(n)) for n in ("containerd", "kubelet", "kube-proxy", "kube-router")
        )
        if not node_running and not _our_shims(state):
            # A previous run ended without `down` (a crash, a killed session): its mounts,
            # chains and bridge are left over and nothing uses them any more.
            undone = node.undo_host_changes(state)
            if undone:
                log.info("Cleaned up after a previous run: %s", "; ".join(undone))
        node.prepare_host(state)
        node.write_node_files(state, cfg, pki, tools, ip)
        os.environ["PATH"] = f"{tools_dir}{os.pathsep}{os.environ.get('PATH', '')}"

        def ensure(name: str, argv: list[str], env: dict[str, str] | None = None) -> bool:
            if procs.running(state.pid_file(name)) is not None:
                result.already_running.append(name)
                return False
            procs.start(
                name,
                argv,
                log_file=state.log_file(name),
                pid_file=state.pid_file(name),
                env=env,
                cwd=state.root,
            )
            result.started.append(name)
            return True

        ensure("etcd", _argv("etcd", bins, state, cfg, pki, ip))
        etcd_url = f"http://127.0.0.1:{cfg.ports.etcd_client}/health"
        result.timings["etcd"] = _wait("etcd health", lambda: _http_ok(etcd_url), timeout, state, "etcd")
        ensure("kube-apiserver", _argv("kube-apiserver", bins, state, cfg, pki, ip))
        result.timings["kube-apiserver"] = _wait(
            "kube-apiserver /readyz", kube.ready, timeout, state, "kube-apiserver"
        )
        result.timings["api_ready"] = time.monotonic() - t_start
        log.info("API server ready at %s (%.1fs)", cfg.apiserver_url, result.timings["api_ready"])
        for name in ("kube-controller-manager", "kube-scheduler"):
            ensure(name, _argv(name, bins, state, cfg, pki, ip))

        ensure("containerd", node.node_argv("containerd", bins, state, cfg, tools, ip))
        result.timings["containerd"] = _wait(
            "containerd", lambda: _containerd_ready(state), timeout, state, "containerd"
        )
        t = time.monotonic()
        imported = images.import_images(state, wanted)
        result.timings["import"] = time.monotonic() - t
        if imported:
            log.info("Imported into containerd: %s", ", ".join(imported))
        ensure("kubelet", node.node_argv("kubelet", bins, state, cfg, tools, ip))
        result.timings["node_ready"] = _wait(
            f"node {cfg.node_name} to be Ready",
            lambda: _node_ready(kube, cfg.node_name),
            timeout,
            state,
            "kubelet",
        )
        ensure("kube-proxy", node.node_argv("kube-proxy", bins, state, cfg, tools, ip))
        proxy_url = f"http://127.0.0.1:{cfg.ports.kube_proxy_healthz}/healthz"
        _wait("kube-proxy /healthz", lambda: _http_ok(proxy_url), timeout, state, "kube-proxy")
        # The NetworkPolicy enforcer: it reads the Node (registered by now) and every pod.
        # A rebuilt binary replaces the running one (its rules and ipsets stay meanwhile).
        running_router = procs.running(state.pid_file("kube-router"))
        if running_router is not None and procs.binary_replaced(running_router.pid):
            log.info("kube-router was rebuilt: restarting it")
            procs.stop(running_router, timeout=10)
            state.pid_file("kube-router").unlink(missing_ok=True)
        ensure("kube-router", node.kube_router_argv(kube_router, state, cfg))
        result.timings["kube-router"] = _wait(
            f"kube-router's firewall (iptables chain {node.KUBE_ROUTER_CHAIN})",
            lambda: node.firewall_ready(tools.iptables),
            timeout,
            state,
            "kube-router",
        )
        ensure("provisioner", _argv("provisioner", bins, state, cfg, pki, ip))
        for name, port in (
            ("kube-controller-manager", cfg.ports.controller_manager),
            ("kube-scheduler", cfg.ports.scheduler),
        ):
            url = f"https://127.0.0.1:{port}/healthz"
            result.timings[name] = _wait(f"{name} /healthz", lambda u=url: _http_ok(u), timeout, state, name)  # type: ignore[misc]

        for obj in addons.coredns_objects(images.coredns_image(tools_dir)):
            kube.patch(addons.object_path(obj), obj, kind=PATCH_APPLY, fieldManager=FIELD_MANAGER, force=True)

        crds = crds_dir if crds_dir is not None else default_crds_dir()
        if crds is not None and crds.is_dir():
            try:
                names = apply_crds(kube, crds)
                log.info("Applied %d CustomResourceDefinitions from %s", len(names), crds)
            except (ApiError, DevClusterError, yaml.YAMLError) as exc:
                raise DevClusterError(f"CRDs from {crds} not applied: {exc}") from exc

        if operator == "cluster":
            stop_host_operator(state.root)
            t = time.monotonic()
            install_operator(bins, state, kube, timeout)
            result.timings["operator"] = time.monotonic() - t
            result.started.append("operator (in-cluster)")
        elif operator == "host":
            if procs.running(state.pid_file("operator")) is not None:
                result.already_running.append("operator")
            else:
                start_host_operator(state.root)
                result.started.append("operator")

        result.timings["dns_ready"] = _wait(
            "cluster DNS (deployment/coredns in kube-system)",
            lambda: _deployment_available(kube, addons.NAMESPACE, addons.NAME),
            timeout,
            state,
            "kubelet",
        )
        result.timings["total"] = time.monotonic() - t_start
        return result


def _crictl(state: StateDir, *args: str) -> subprocess.CompletedProcess[str]:
    crictl = shutil.which("crictl")
    if crictl is None:
        with contextlib.suppress(Exception):
            crictl = str(images.node_tools_dir() / "crictl")
    endpoint = f"unix://{state.containerd_socket}"
    return subprocess.run(
        [
            crictl or "crictl",
            "--runtime-endpoint",
            endpoint,
            "--image-endpoint",
            endpoint,
            "--timeout",
            "30s",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def down(state_dir: Path | str | None = None, *, purge: bool = False) -> list[str]:
    """Stop every process of the cluster and its pods, and undo what the node changed on the host.

    etcd's data is kept (unless `purge`), so `up` brings back the same cluster and objects;
    the kubelet then recreates the pods.
    """
    state = StateDir(state_dir)
    stopped: list[str] = []
    if not state.root.exists():
        return stopped
    with _locked(state):

        def stop(name: str, timeout: float = 10) -> None:
            record = procs.read_record(state.pid_file(name))
            if record is not None and procs.stop(record, timeout=timeout):
                stopped.append(name)
            state.pid_file(name).unlink(missing_ok=True)

        stop("operator", 15)
        stop("kubelet", 30)
        if procs.running(state.pid_file("containerd")) is not None:
            # The kubelet is gone, so nothing recreates them: stop and remove every pod
            # through the CRI, which also releases their network namespaces and addresses.
            removed = _crictl(state, "rmp", "--all", "--force")
            if removed.returncode == 0 and removed.stdout.strip():
                stopped.append(f"{len(removed.stdout.strip().splitlines())} pods")
        for name in ("kube-router", "kube-proxy", "provisioner", "containerd"):
            stop(name)
        for pid in _our_shims(state):
            procs.signal_group(pid, 9)
        for name in reversed(CONTROL_PLANE):
            stop(name)
        stopped.extend(node.undo_host_changes(state))
    if purge:
        shutil.rmtree(state.root, ignore_errors=True)
    return stopped


def status(state_dir: Path | str | None = None) -> ClusterStatus:
    state = StateDir(state_dir)
    comps = [
        ComponentStatus(
            name=n,
            pid=(r.pid if (r := procs.running(state.pid_file(n))) is not None else None),
            log_file=state.log_file(n),
        )
        for n in COMPONENTS
    ]
    st = ClusterStatus(
        state_dir=state.root, exists=state.exists(), kubeconfig=state.kubeconfig, components=comps
    )
    if not st.exists:
        return st
    try:
        cfg = state.load_config()
    except (OSError, ValueError, KeyError, TypeError):
        return st
    st.api_url = cfg.apiserver_url
    pki = Pki(state.pki)
    if pki.complete() and any(c.pid for c in comps if c.name == "kube-apiserver"):
        kube = Kube.admin(cfg.apiserver_url, pki)
        st.api_ready = kube.ready()
        if st.api_ready:
            st.node_ready = _node_ready(kube, cfg.node_name)
    return st


def describe(st: ClusterStatus) -> str:
    lines = [f"state dir   {st.state_dir}"]
    if not st.exists:
        lines.append("no cluster here (run `mlkube dev up`)")
        return "\n".join(lines)
    for c in st.components:
        if c.name == "operator" and c.pid is None:
            lines.append(f"{'operator':<24}{'in-cluster (kubectl -n mlkube-system get deploy)':<22}")
            continue
        state_txt = f"running (pid {c.pid})" if c.pid else "stopped"
        lines.append(f"{c.name:<24}{state_txt:<22}log {c.log_file}")
    lines.append(f"API server  {st.api_url} ({'ready' if st.api_ready else 'not ready'})")
    if st.node_ready is not None:
        lines.append(f"node        {'Ready' if st.node_ready else 'NotReady'}")
    lines.append(f"kubeconfig  {st.kubeconfig}")
    return "\n".join(lines)
