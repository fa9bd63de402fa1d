"""How fast the embedded dev cluster is, on its real kubelet.

Prints: the images' sizes; warm `mlkube dev up` (binaries and images built, cluster down)
to the in-cluster operator available (target under 30 s); `up` on a running cluster;
`down`; pod creation to Running through containerd (target p50 under 2 s). It uses the
default dev cluster (one node per machine) and leaves it running; the binaries and images
must already be built (`make demo` or `mlkube dev up` once).

    .venv/bin/python benchmarks/devcluster.py [--repeat 3] [--pods 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from typing import Any

from mlkube_devcluster import cluster, images
from mlkube_devcluster.binaries import find_binaries
from mlkube_devcluster.kube import Kube, ns_path
from mlkube_devcluster.pki import Pki
from mlkube_devcluster.state import StateDir


def _stats(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}s"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(values):.2f}s  min {ordered[0]:.2f}s  "
        f"p90 {p90:.2f}s  max {ordered[-1]:.2f}s  (n={len(values)})"
    )


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": images.mlkube_image("server"),
                    "command": ["python", "-c", "import time; time.sleep(600)"],
                }
            ],
        },
    }


def pod_to_running(kube: Kube, namespace: str, name: str, timeout: float = 60.0) -> float:
    """Seconds from the create call to the first watch event showing phase Running."""
    path = ns_path(namespace, "pods")
    start = time.monotonic()
    created = kube.create(path, _pod(name))
    rv = created["metadata"]["resourceVersion"]
    for event in kube.watch(path, rv, timeout_seconds=int(timeout), fieldSelector=f"metadata.name={name}"):
        if (event.get("object") or {}).get("status", {}).get("phase") == "Running":
            return time.monotonic() - start
    raise RuntimeError(f"pod {name} not Running within {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="fresh clusters to bring up")
    parser.add_argument("--pods", type=int, default=10, help="pods to create, one after the other")
    args = parser.parse_args()

    bins = find_binaries(build=False)
    size = subprocess.run(["du", "-sh", str(bins)], capture_output=True, text=True).stdout.split()[0]
    print(f"Kubernetes binaries               {bins} ({size})")
    for built in images.build_mlkube_images():
        print(f"image {built.image:<28} {built.size_bytes / 1e6:.0f} MB")

    state = StateDir(None)
    cluster.up(state.root)
    up_warm: list[float] = []
    idempotent: list[float] = []
    down_times: list[float] = []
    for _ in range(args.repeat):
        t = time.monotonic()
        cluster.down(state.root)
        down_times.append(time.monotonic() - t)
        result = cluster.up(state.root)
        up_warm.append(result.timings["total"] - result.timings.get("build", 0.0))
        t = time.monotonic()
        cluster.up(state.root)
        idempotent.append(time.monotonic() - t)

    kube = Kube.admin(state.load_config().apiserver_url, Pki(state.pki))
    running: list[float] = []
    namespace = "mlkube-bench"
    if kube.get_or_none(f"/api/v1/namespaces/{namespace}") is None:
        kube.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
    deadline = time.monotonic() + 60
    while kube.get_or_none(ns_path(namespace, "serviceaccounts", "default")) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("no default ServiceAccount after 60s")
        time.sleep(0.1)
    for n in range(args.pods):
        running.append(pod_to_running(kube, namespace, f"bench-{n}"))
    kube.delete(f"/api/v1/namespaces/{namespace}")

    print(f"dev up after down -> operator available (build check excluded)  {_stats(up_warm)}")
    print(f"dev up when already up                                          {_stats(idempotent)}")
    print(f"dev down                                                        {_stats(down_times)}")
    print(f"pod creation -> Running                                         {_stats(running)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
