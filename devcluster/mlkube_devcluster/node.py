"""The node: containerd, the CNI bridge, the kubelet, kube-proxy and kube-router, and what they change on the host.

A real kubelet is what users have, so pods here run in containers from the project's own
images (runc, non-root, read-only root filesystem), Services route through kube-proxy's
iptables rules and names resolve through cluster DNS. NetworkPolicies are enforced, as by
the network plugin of a real cluster, by kube-router's firewall controller (iptables rules
and ipsets). Every file these components read is
generated here from the state directory, so a node is fully described by that directory.

They change the machine, though: kube-proxy, kube-router and the CNI plugins add iptables
chains (kube-router also ipsets), the
bridge plugin creates a bridge and turns on IP forwarding, the kubelet and containerd
mount volumes and root filesystems under the state directory. Each change is recorded in
`host-changes.json` before it happens and `undo_host_changes` reverts exactly those, so
`mlkube dev down` leaves the machine as it found it, and `up` after a crash (processes gone,
mounts and chains left behind) starts from a clean node.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .pki import Pki
from .state import BRIDGE, CLUSTER_DOMAIN, DNS_SERVICE_IP, POD_CIDR, SERVICE_CIDR, ClusterConfig, StateDir

log = logging.getLogger("mlkube.devcluster")

CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
RUNC_CANDIDATES = ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc")
SANDBOX_IMAGE = "localhost/mlkube-pause:3.10"
# Chains of kube-proxy and kube-router (KUBE-*: KUBE-SERVICES, KUBE-ROUTER-*, KUBE-NWPLCY-*,
# KUBE-POD-FW-*) and of the CNI plugins (CNI-*): removed on down.
CHAIN_PREFIXES = ("KUBE-", "CNI-")
# The ipsets kube-router's firewall controller creates (its IPv6 sets carry "inet6:"):
# removed on down, after the chains whose rules reference them.
IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "inet6:KUBE-SRC-", "inet6:KUBE-DST-")
SYSCTLS = {
    # The bridge plugin routes pod traffic through the host.
    "net/ipv4/ip_forward": "1",
    # kube-proxy's rules must see traffic between pods on the same bridge (Service hairpin).
    "net/bridge/bridge-nf-call-iptables": "1",
}


class NodeError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeTools:
    containerd: str
    runc: str
    cni_bin: str
    iptables: str
    ipset: str


def find_tools() -> NodeTools:
    """The host programs the node needs; fail naming each one missing and its Debian package."""
    missing: list[str] = []
    containerd = shutil.which("containerd")
    if containerd is None:
        missing.append("containerd (apt-get install containerd)")
    runc = next((p for p in RUNC_CANDIDATES if os.access(p, os.X_OK)), None) or shutil.which("runc")
    if runc is None:
        missing.append("runc (apt-get install runc)")
    cni_bin = next((d for d in CNI_BIN_DIRS if os.access(f"{d}/bridge", os.X_OK)), None)
    if cni_bin is None:
        missing.append(
            "the CNI plugins bridge/host-local/portmap (apt-get install containernetworking-plugins)"
        )
    iptables = shutil.which("iptables")
    if iptables is None:
        missing.append("iptables (apt-get install iptables)")
    # kube-router, the NetworkPolicy enforcer, runs the ipset program (kernel: CONFIG_IP_SET).
    ipset = shutil.which("ipset")
    if ipset is None:
        missing.append("ipset (apt-get install ipset)")
    if missing:
        raise NodeError("the node cannot start; missing: " + "; ".join(missing))
    if os.geteuid() != 0:
        raise NodeError(
            "the node (containerd, kubelet, kube-proxy) must run as root: it mounts filesystems, "
            "creates network namespaces and iptables rules; run `mlkube dev up` with sudo"
        )
    assert containerd and runc and cni_bin and iptables and ipset
    probe = subprocess.run([iptables, "-t", "nat", "-S"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise NodeError(f"iptables does not work here ({probe.stderr.strip()}); kube-proxy needs it")
    probe = subprocess.run([ipset, "list", "-n"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise NodeError(
            f"ipset does not work here ({probe.stderr.strip()}); kube-router, which enforces "
            "NetworkPolicies, needs it (kernel CONFIG_IP_SET and CONFIG_NETFILTER_XT_SET)"
        )
    return NodeTools(containerd=containerd, runc=runc, cni_bin=cni_bin, iptables=iptables, ipset=ipset)


def node_ip() -> str:
    """The IPv4 address of the interface of the default route: pods reach the API server there."""
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "default"], capture_output=True, text=True)
    routes = json.loads(out.stdout or "[]") if out.returncode == 0 else []
    for route in routes:
        dev = route.get("dev")
        if not dev:
            continue
        addr = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", dev], capture_output=True, text=True)
        for link in json.loads(addr.stdout or "[]"):
            for info in link.get("addr_info", []):
                if info.get("family") == "inet" and not str(info.get("local", "")).startswith("127."):
                    return str(info["local"])
    raise NodeError(
        "no IPv4 address on the default route's interface: the node needs a non-loopback address "
        "that pods can reach the API server on"
    )


# -- configuration files --------------------------------------------------------------------


def containerd_config(state: StateDir, tools: NodeTools) -> str:
    c = state.containerd
    return f"""version = 2
root = "{c / "root"}"
state = "{c / "state"}"
[grpc]
  address = "{state.containerd_socket}"
[ttrpc]
  address = "{state.containerd_socket}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{tools.runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{tools.cni_bin}"
    conf_dir = "{state.cni / "net.d"}"
"""


def cni_config(state: StateDir) -> str:
    conf = {
        "cniVersion": "0.4.0",
        "name": "mlkube",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(state.cni / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def kubelet_config(state: StateDir, cfg: ClusterConfig, pki: Pki, ip: str) -> str:
    sock = f"unix://{state.containerd_socket}"
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 and hybrid hosts are still common on CI machines: kubelet >= 1.35 refuses
# them unless told otherwise. cgroupfs, as containerd is configured.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: {sock}
imageServiceEndpoint: {sock}
address: {ip}
port: {cfg.ports.kubelet}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {cfg.ports.kubelet_healthz}
tlsCertFile: {pki.kubelet_cert}
tlsPrivateKeyFile: {pki.kubelet_key}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {pki.ca_cert}}}
authorization:
  mode: Webhook
clusterDNS: [{DNS_SERVICE_IP}]
clusterDomain: {CLUSTER_DOMAIN}
podLogsDir: {state.kubelet / "pod-logs"}
failSwapOn: false
resolvConf: /etc/resolv.conf
# Images are built and imported locally; nothing could pull them again, so never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}}
registerNode: true
serializeImagePulls: false
shutdownGracePeriod: 0s
"""


def kube_proxy_config(state: StateDir, cfg: ClusterConfig) -> str:
    return f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {state.kubeconfig}}}
mode: iptables
clusterCIDR: {POD_CIDR}
hostnameOverride: {cfg.node_name}
healthzBindAddress: 127.0.0.1:{cfg.ports.kube_proxy_healthz}
metricsBindAddress: 127.0.0.1:{cfg.ports.kube_proxy_metrics}
# Leave the machine's conntrack table size alone.
conntrack: {{maxPerCore: 0}}
"""


def write_node_files(state: StateDir, cfg: ClusterConfig, pki: Pki, tools: NodeTools, ip: str) -> None:
    files = {
        state.containerd / "config.toml": containerd_config(state, tools),
        state.cni / "net.d" / "10-mlkube.conflist": cni_config(state),
        state.kubelet / "config.yaml": kubelet_config(state, cfg, pki, ip),
        state.kube_proxy / "config.yaml": kube_proxy_config(state, cfg),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)


def node_argv(
    name: str, bins: Path, state: StateDir, cfg: ClusterConfig, tools: NodeTools, ip: str
) -> list[str]:
    if name == "containerd":
        return [tools.containerd, "--config", str(state.containerd / "config.toml")]
    if name == "kubelet":
        return [
            str(bins / "kubelet"),
            f"--config={state.kubelet / 'config.yaml'}",
            f"--kubeconfig={state.run / 'kubelet.kubeconfig'}",
            f"--root-dir={state.kubelet / 'root'}",
            f"--hostname-override={cfg.node_name}",
            f"--node-ip={ip}",
            "--v=1",
        ]
    if name == "kube-proxy":
        return [str(bins / "kube-proxy"), f"--config={state.kube_proxy / 'config.yaml'}", "--v=1"]
    raise ValueError(name)


def kube_router_argv(binary: Path, state: StateDir, cfg: ClusterConfig) -> list[str]:
    """kube-router as a NetworkPolicy enforcer only: no routing (the bridge routes), no proxy.

    Its health server would listen on every address, so it is off (`--health-port=0`); `up`
    waits for its top-level chain instead (`firewall_ready`). Metrics and pprof are off by
    default.
    """
    return [
        str(binary),
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        f"--kubeconfig={state.kubeconfig}",
        f"--hostname-override={cfg.node_name}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--health-port=0",
        "--metrics-port=0",
        "--v=1",
    ]


# kube-router's filter chain that FORWARD jumps to: present once its controller has set
# up the pod firewall (and removed by `down`).
KUBE_ROUTER_CHAIN = "KUBE-ROUTER-FORWARD"


def firewall_ready(iptables: str) -> bool:
    return KUBE_ROUTER_CHAIN in _chains(iptables, "filter")


# -- host changes ---------------------------------------------------------------------------


def _read_changes(state: StateDir) -> dict[str, object]:
    try:
        data = json.loads(state.host_changes.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_changes(state: StateDir, changes: dict[str, object]) -> None:
    tmp = state.host_changes.with_suffix(".tmp")
    tmp.write_text(json.dumps(changes, indent=2, sort_keys=True) + "\n")
    tmp.replace(state.host_changes)


_RECORDED = {"chains": list(CHAIN_PREFIXES), "ipsets": list(IPSET_PREFIXES)}


def prepare_host(state: StateDir) -> None:
    """Set the sysctls the node needs, recording each original value first."""
    changes = _read_changes(state)
    sysctls = dict(changes.get("sysctls") or {})  # type: ignore[call-overload]
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key
        if not path.exists():
            continue
        current = path.read_text().strip()
        if current == value:
            continue
        sysctls.setdefault(key, current)
        _write_changes(state, {**changes, "sysctls": sysctls, "bridge": BRIDGE, **_RECORDED})
        path.write_text(value)
        log.info("Set %s = %s (was %s)", key.replace("/", "."), value, current)
    changes.update({"sysctls": sysctls, "bridge": BRIDGE, **_RECORDED})
    _write_changes(state, changes)
    fence_service_range()


# Its name starts with a recorded prefix, so `undo_host_changes` removes it with kube-proxy's.
SERVICE_FENCE = "KUBE-MLKUBE-SERVICE-FENCE"


def fence_service_range(iptables: str = "iptables") -> None:
    """Refuse connections to ClusterIPs that kube-proxy has not programmed (yet).

    kube-proxy rewrites a Service's address to a pod's in its nat rules; an address it has
    no rule for (a Service created a moment ago, before kube-proxy's next sync) is routed
    like any other, out through the default route and off this machine. Here it is
    refused instead, as a Service without ready endpoints is. The chain is jumped to first
    in OUTPUT (the host) and FORWARD (pods, before the CNI's accept rules): packets that
    kube-proxy rewrote no longer carry a Service address, so only unprogrammed ones match."""

    def run(*args: str) -> bool:
        return subprocess.run([iptables, "-t", "filter", *args], capture_output=True).returncode == 0

    run("-N", SERVICE_FENCE)
    run("-F", SERVICE_FENCE)
    run("-A", SERVICE_FENCE, "-d", SERVICE_CIDR, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
    run("-A", SERVICE_FENCE, "-d", SERVICE_CIDR, "-j", "REJECT", "--reject-with", "icmp-port-unreachable")
    for hook in ("OUTPUT", "FORWARD"):
        if not run("-C", hook, "-j", SERVICE_FENCE):
            run("-I", hook, "1", "-j", SERVICE_FENCE)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (the order to unmount them in)."""
    prefix = str(root.resolve())
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_all(root: Path) -> int:
    count = 0
    for _ in range(3):  # a bind mount may hide another one below it
        points = mounts_under(root)
        if not points:
            break
        for point in points:
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
            count += 1
    return count


def _chains(iptables: str, table: str) -> list[str]:
    out = subprocess.run([iptables, "-t", table, "-S"], capture_output=True, text=True, check=False).stdout
    return [line.split()[1] for line in out.splitlines() if line.startswith("-N ")]


def remove_chains(iptables: str, prefixes: tuple[str, ...] = CHAIN_PREFIXES) -> int:
    """Delete the jump rules into chains with these prefixes, then the chains themselves."""
    removed = 0
    for table in ("nat", "filter", "mangle"):
        ours = [c for c in _chains(iptables, table) if c.startswith(prefixes)]
        if not ours:
            continue
        rules = subprocess.run([iptables, "-t", table, "-S"], capture_output=True, text=True).stdout
        for line in rules.splitlines():
            parts = shlex.split(line)  # comments are quoted and hold spaces
            if len(parts) > 2 and parts[0] == "-A" and parts[1] not in ours and "-j" in parts:
                target = parts[parts.index("-j") + 1]
                if target in ours:
                    subprocess.run([iptables, "-t", table, "-D", *parts[1:]], capture_output=True)
        for chain in ours:
            subprocess.run([iptables, "-t", table, "-F", chain], capture_output=True)
        for chain in ours:
            if subprocess.run([iptables, "-t", table, "-X", chain], capture_output=True).returncode == 0:
                removed += 1
    return removed


def remove_ipsets(ipset: str, prefixes: tuple[str, ...] = IPSET_PREFIXES) -> int:
    """Destroy the ipsets with these prefixes (once no iptables rule references them)."""
    out = subprocess.run([ipset, "list", "-n"], capture_output=True, text=True, check=False).stdout
    removed = 0
    for name in out.split():
        if (
            name.startswith(prefixes)
            and subprocess.run([ipset, "destroy", name], capture_output=True).returncode == 0
        ):
            removed += 1
    return removed


def undo_host_changes(state: StateDir) -> list[str]:
    """Revert what the node changed on the machine; safe to run when nothing was changed."""
    done: list[str] = []
    n = unmount_all(state.root)
    if n:
        done.append(f"unmounted {n} mounts under {state.root}")
    changes = _read_changes(state)
    bridge = str(changes.get("bridge") or "")
    if bridge and re.fullmatch(r"[a-z0-9]+", bridge) and Path(f"/sys/class/net/{bridge}").exists():
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
        done.append(f"deleted bridge {bridge}")
    # The node's chains are removed even when the record is gone (a previous `down` that
    # could not remove them): one node runs per machine, so KUBE-* and CNI-* are ours.
    chains = changes.get("chains")
    prefixes = tuple(str(p) for p in chains) if isinstance(chains, list) and chains else CHAIN_PREFIXES
    for iptables in ("iptables", "ip6tables"):
        if prefixes and shutil.which(iptables):
            removed = remove_chains(iptables, prefixes)
            if removed:
                done.append(f"removed {removed} {iptables} chains")
    # kube-router's ipsets, after the chains whose rules use them; as for the chains, they
    # are removed by prefix even without a record.
    recorded = changes.get("ipsets")
    set_prefixes = tuple(str(p) for p in recorded) if isinstance(recorded, list) else IPSET_PREFIXES
    ipset = shutil.which("ipset")
    if set_prefixes and ipset:
        removed = remove_ipsets(ipset, set_prefixes)
        if removed:
            done.append(f"destroyed {removed} ipsets")
    for key, value in dict(changes.get("sysctls") or {}).items():  # type: ignore[call-overload]
        path = Path("/proc/sys") / key
        with contextlib.suppress(OSError):
            path.write_text(str(value))
            done.append(f"restored {key.replace('/', '.')} = {value}")
    # Pod addresses handed out by host-local belong to sandboxes that no longer exist.
    shutil.rmtree(state.cni / "ipam", ignore_errors=True)
    state.host_changes.unlink(missing_ok=True)
    return done
