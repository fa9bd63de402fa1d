"""Bringing the dev cluster up and down, one component at a time, idempotently.

Each component is checked on its own (pid file plus process start time) and only what is
missing is started, so `up` after a crash of one process repairs just that process, and
`up` on a running cluster returns in well under a second. Components start in dependency
order and `up` waits for each readiness signal a later one needs (etcd health, the API
server's /readyz, the Node turning Ready), so that when it prints the kubeconfig a Pod
created right away is scheduled and run.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import importlib.util
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import urllib3
import yaml

from . import procs
from .binaries import find_binaries, k8s_version, repo_root
from .kube import PATCH_APPLY, ApiError, Kube
from .pki import Pki, ensure_pki
from .state import CLUSTER_DOMAIN, SERVICE_CIDR, ClusterConfig, StateDir

log = logging.getLogger("mlkube.devcluster")

COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "operator",
)
CONTEXT = "mlkube-dev"
OPERATOR_MODULE = "mlkube_operator.handlers"


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


def write_kubeconfig(state: StateDir, cfg: ClusterConfig, pki: Pki) -> Path:
    """An admin kubeconfig with everything inlined, so it can be copied anywhere."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {
                    "server": cfg.apiserver_url,
                    "certificate-authority-data": _b64(pki.ca_cert),
                },
            }
        ],
        "users": [
            {
                "name": f"{CONTEXT}-admin",
                "user": {
                    "client-certificate-data": _b64(pki.admin_cert),
                    "client-key-data": _b64(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": f"{CONTEXT}-admin", "namespace": "default"},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }
    text = yaml.safe_dump(doc, sort_keys=False)
    if state.kubeconfig.is_file() and state.kubeconfig.read_text() == text:
        return state.kubeconfig
    tmp = state.kubeconfig.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(state.kubeconfig)
    return state.kubeconfig


def _argv(
    name: str, bins: Path, state: StateDir, cfg: ClusterConfig, pki: Pki, kubelet_version: str
) -> list[str]:
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
        return [
            str(bins / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{p.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
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
            "--endpoint-reconciler-type=none",
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
            "--use-service-account-credentials=false",
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
    if name == "kubelet":
        return [
            sys.executable,
            "-m",
            "mlkube_operator.devcluster.kubelet",
            f"--state-dir={state.root}",
            f"--kubelet-version={kubelet_version}",
        ]
    if name == "operator":
        kopf = Path(sys.executable).parent / "kopf"
        head = [str(kopf)] if kopf.is_file() else [sys.executable, "-m", "kopf"]
        return [*head, "run", "-m", OPERATOR_MODULE, "--all-namespaces", "--standalone"]
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


def _node_ready(kube: Kube, node: str) -> bool:
    try:
        obj = kube.get_or_none(f"/api/v1/nodes/{node}")
    except (ApiError, urllib3.exceptions.HTTPError):
        return False
    if obj is None:
        return False
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _kubelet_ready(state: StateDir) -> bool:
    """The running kubelet (not a previous one) has registered the node and watches pods."""
    record = procs.running(state.pid_file("kubelet"))
    try:
        marker = (state.run / "kubelet.ready").read_text().strip()
    except OSError:
        return False
    return record is not None and marker == str(record.pid)


def default_crds_dir() -> Path | None:
    root = repo_root()
    if root is not None and (root / "crds").is_dir():
        return root / "crds"
    return None


def apply_crds(kube: Kube, crds_dir: Path, timeout: float = 30.0) -> list[str]:
    """Server-side apply every CustomResourceDefinition in `crds_dir/*.yaml`; wait until established."""
    names: list[str] = []
    for path in sorted(crds_dir.glob("*.yaml")) + sorted(crds_dir.glob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or not doc:
                continue
            if doc.get("kind") == "Kustomization":
                continue
            if doc.get("kind") != "CustomResourceDefinition":
                log.warning(
                    "Skipping %s in %s: only CustomResourceDefinitions are applied", doc.get("kind"), path
                )
                continue
            name = doc["metadata"]["name"]
            kube.patch(
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
                doc,
                kind=PATCH_APPLY,
                fieldManager="mlkube-dev",
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


def operator_importable() -> bool:
    try:
        return importlib.util.find_spec(OPERATOR_MODULE) is not None
    except (ImportError, ValueError):
        return False


def _operator_env(state: StateDir) -> dict[str, str]:
    env = dict(os.environ)
    env["KUBECONFIG"] = str(state.kubeconfig)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_operator(state_dir: Path | str | None = None) -> procs.ProcessRecord | None:
    """Start `kopf run -m mlkube_operator.handlers` against the cluster, unless it runs already.

    Returns None (with a warning) when the handlers module does not exist yet.
    """
    state = StateDir(state_dir)
    existing = procs.running(state.pid_file("operator"))
    if existing is not None:
        return existing
    if not operator_importable():
        log.warning("Not starting the operator: module %s cannot be imported", OPERATOR_MODULE)
        return None
    cfg = state.load_config()
    return procs.start(
        "operator",
        _argv("operator", Path(), state, cfg, Pki(state.pki), ""),
        log_file=state.log_file("operator"),
        pid_file=state.pid_file("operator"),
        env=_operator_env(state),
        cwd=state.root,
    )


def stop_operator(state_dir: Path | str | None = None) -> bool:
    state = StateDir(state_dir)
    record = procs.running(state.pid_file("operator"))
    if record is None:
        return False
    procs.stop(record, timeout=15)
    state.pid_file("operator").unlink(missing_ok=True)
    return True


def up(
    state_dir: Path | str | None = None,
    *,
    operator: bool = True,
    crds_dir: Path | None = None,
    timeout: float = 90.0,
) -> UpResult:
    """Start whatever part of the cluster is not running; return once it can run Pods."""
    t_start = time.monotonic()
    state = StateDir(state_dir)
    state.ensure()
    with _locked(state):
        cfg = state.load_or_create_config()
        if not any(procs.running(state.pid_file(n)) for n in COMPONENTS):
            before = cfg.ports
            cfg = state.repick_ports_if_taken(cfg)
            if cfg.ports != before:
                log.warning("Some of this cluster's ports were taken by other programs: picked new ones")
        pki = ensure_pki(state.pki, cfg.node_name)
        write_kubeconfig(state, cfg, pki)
        kube = Kube.admin(cfg.apiserver_url, pki)
        result = UpResult(state_dir=state.root, kubeconfig=state.kubeconfig)
        bins: Path | None = None
        version = k8s_version()

        def ensure(name: str, env: dict[str, str] | None = None) -> bool:
            nonlocal bins
            if procs.running(state.pid_file(name)) is not None:
                result.already_running.append(name)
                return False
            if bins is None and name not in ("kubelet", "operator"):
                bins = find_binaries()
            procs.start(
                name,
                _argv(name, bins or Path(), state, cfg, pki, version),
                log_file=state.log_file(name),
                pid_file=state.pid_file(name),
                env=env,
                cwd=state.root,
            )
            result.started.append(name)
            return True

        ensure("etcd")
        etcd_url = f"http://127.0.0.1:{cfg.ports.etcd_client}/health"
        result.timings["etcd"] = _wait("etcd health", lambda: _http_ok(etcd_url), timeout, state, "etcd")
        ensure("kube-apiserver")
        result.timings["kube-apiserver"] = _wait(
            "kube-apiserver /readyz", kube.ready, timeout, state, "kube-apiserver"
        )
        result.timings["api_ready"] = time.monotonic() - t_start
        log.info("API server ready at %s (%.1fs)", cfg.apiserver_url, result.timings["api_ready"])
        ensure("kube-controller-manager")
        ensure("kube-scheduler")
        ensure("kubelet")
        node = cfg.node_name
        result.timings["node_ready"] = _wait(
            f"node {node} to be Ready",
            lambda: _kubelet_ready(state) and _node_ready(kube, node),
            timeout,
            state,
            "kubelet",
        )
        for name, port in (
            ("kube-controller-manager", cfg.ports.controller_manager),
            ("kube-scheduler", cfg.ports.scheduler),
        ):
            url = f"https://127.0.0.1:{port}/healthz"
            result.timings[name] = _wait(f"{name} /healthz", lambda u=url: _http_ok(u), timeout, state, name)  # type: ignore[misc]

        crds = crds_dir if crds_dir is not None else default_crds_dir()
        crds_ok = True
        if crds is not None and crds.is_dir():
            try:
                names = apply_crds(kube, crds)
            except (ApiError, DevClusterError, yaml.YAMLError) as exc:
                crds_ok = False
                log.error("Applying CustomResourceDefinitions from %s failed: %s", crds, exc)
                result.warnings.append(f"CRDs from {crds} not applied: {exc}")
                result.failed = True
            else:
                if names:
                    log.info("Applied %d CustomResourceDefinitions from %s", len(names), crds)
        if operator and not crds_ok:
            result.warnings.append("operator not started because the CRDs could not be applied")
        elif operator:
            if procs.running(state.pid_file("operator")) is not None:
                result.already_running.append("operator")
            elif start_operator(state.root) is not None:
                result.started.append("operator")
            else:
                result.warnings.append(f"operator not started: {OPERATOR_MODULE} cannot be imported")
        result.timings["total"] = time.monotonic() - t_start
        return result


def down(state_dir: Path | str | None = None, *, purge: bool = False) -> list[str]:
    """Stop every process the cluster started (pods included); optionally delete the state."""
    state = StateDir(state_dir)
    stopped: list[str] = []
    if not state.root.exists():
        return stopped
    with _locked(state):
        for name in reversed(COMPONENTS):
            record = procs.read_record(state.pid_file(name))
            if record is not None and procs.stop(record, timeout=30 if name == "kubelet" else 10):
                stopped.append(name)
            state.pid_file(name).unlink(missing_ok=True)
        # Pod processes the kubelet could not stop (e.g. it was killed with SIGKILL).
        for pid_file in state.pods.glob("*/containers/*/process.json"):
            record = procs.read_record(pid_file)
            if record is not None and procs.stop(record, timeout=5):
                stopped.append(f"pod process {record.name}")
        if purge:
            state.release()
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
    cfg = state.load_config()
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
        state_txt = f"running (pid {c.pid})" if c.pid else "stopped"
        lines.append(f"{c.name:<24}{state_txt:<22}log {c.log_file}")
    lines.append(f"API server  {st.api_url} ({'ready' if st.api_ready else 'not ready'})")
    if st.node_ready is not None:
        lines.append(f"node        {'Ready' if st.node_ready else 'NotReady'}")
    lines.append(f"kubeconfig  {st.kubeconfig}")
    return "\n".join(lines)
