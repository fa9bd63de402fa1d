"""How fast the embedded dev cluster is: `dev up` to API ready, and pod creation to Running.

Targets (issue 3): under 15 s from `dev up` (binaries cached) to a ready API server, under
2 s from creating a Pod to it Running. Every run uses fresh state directories under the
temp dir and removes them; the binaries must already be built (`make control-plane`).

    .venv/bin/python benchmarks/devcluster.py [--repeat 3] [--pods 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from mlkube_operator.constants import IMAGE
from mlkube_operator.devcluster import cluster
from mlkube_operator.devcluster.binaries import find_binaries
from mlkube_operator.devcluster.kube import Kube, ns_path
from mlkube_operator.devcluster.pki import Pki
from mlkube_operator.devcluster.state import StateDir


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
                {"name": "main", "image": IMAGE, "command": ["python", "-c", "import time; time.sleep(600)"]}
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
    print(f"control-plane binaries    {bins} ({size})")

    api_ready: list[float] = []
    node_ready: list[float] = []
    idempotent: list[float] = []
    restart: list[float] = []
    down_times: list[float] = []
    running: list[float] = []
    for i in range(args.repeat):
        state_dir = Path(tempfile.mkdtemp(prefix="mlkube-bench-"))
        try:
            result = cluster.up(state_dir, operator=False, crds_dir=state_dir / "no-crds")
            api_ready.append(result.timings["api_ready"])
            node_ready.append(result.timings["total"])
            t = time.monotonic()
            cluster.up(state_dir, operator=False, crds_dir=state_dir / "no-crds")
            idempotent.append(time.monotonic() - t)
            if i == 0:
                state = StateDir(state_dir)
                kube = Kube.admin(state.load_config().apiserver_url, Pki(state.pki))
                # The namespace's default ServiceAccount must exist before pods are admitted.
                deadline = time.monotonic() + 60
                while kube.get_or_none(ns_path("default", "serviceaccounts", "default")) is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError("no default ServiceAccount after 60s")
                    time.sleep(0.1)
                for n in range(args.pods):
                    running.append(pod_to_running(kube, "default", f"bench-{n}"))
                for n in range(args.pods):
                    kube.delete(ns_path("default", "pods", f"bench-{n}"))
            t = time.monotonic()
            cluster.down(state_dir)
            down_times.append(time.monotonic() - t)
            result = cluster.up(state_dir, operator=False, crds_dir=state_dir / "no-crds")
            restart.append(result.timings["api_ready"])
        finally:
            cluster.down(state_dir, purge=True)

    print(f"dev up, fresh state -> API ready       {_stats(api_ready)}")
    print(f"dev up, fresh state -> all ready      {_stats(node_ready)}")
    print(f"dev up when already up                 {_stats(idempotent)}")
    print(f"dev up after down (state kept) -> API  {_stats(restart)}")
    print(f"dev down                               {_stats(down_times)}")
    print(f"pod creation -> Running                {_stats(running)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
