"""The operator at 1,000 Datasets, 1,000 TrainingRuns and 50 ModelDeployments: its cost at rest
and how fast a spec change reaches status.

Against a dev control plane (`--kubeconfig`, default $KUBECONFIG; start one with
`mlkube dev up --no-operator`), in a fresh namespace:

* 1,000 Datasets whose source never became ready: created with `status` already saying
  `Ready=False SourceUnavailable` for generation 1 (what the operator records when the
  profile Job finds the source unreachable), written before the operator starts, so no
  profile Job runs;
* 1,000 TrainingRuns referencing them: they wait (`Succeeded=Unknown DatasetNotReady`),
  no training Job;
* 50 ModelDeployments serving TrainingRuns without a model (`ModelNotReady`), no pods.

Then it starts the operator (`python -m mlkube_operator`, a host process, scoped to the
namespace) and measures:

* catch-up: start until every TrainingRun and ModelDeployment has a status;
* steady state over `--steady` seconds: CPU (utime+stime from /proc/<pid>/stat, in % of
  one core), resident memory (VmRSS), API requests per second (the operator's own
  `mlkube_operator_api_requests_total`; the API server's `apiserver_request_total` over
  all clients for comparison), and log lines written;
* spec -> status: `--changes` spec edits (TrainingRun estimator params, ModelDeployment
  replicas) one at a time; for each, the time from sending the PATCH until a watch
  shows `status.observedGeneration` equal to the new generation; p50, p99, max.

Targets (issue 10): idle CPU < 5 % of a core, memory < 300 MB, spec -> status p99 < 2 s.

    .venv/bin/python benchmarks/operator_scale.py --kubeconfig /path/kubeconfig [--datasets 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes

GROUP, VERSION = "mlkube.io", "v1alpha1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def scrape_series(url: str, name: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {
        line.rsplit(" ", 1)[0][len(name) :]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{")
    }


def apiserver_requests(api: Any) -> float:
    headers: dict[str, str] = {}
    api.update_params_for_auth(headers, [], ["BearerToken"], "/metrics", "GET", None)
    response = api.call_api("GET", f"{api.configuration.host}/metrics", header_params=headers)
    response.read()
    text = response.data.decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{")
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def create_objects(api: Any, ns: str, datasets: int, deployments: int) -> float:
    custom = kubernetes.client.CustomObjectsApi(api)
    t0 = time.monotonic()

    def dataset(i: int) -> None:
        name = f"ds-{i:04d}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Dataset",
            "metadata": {"name": name},
            "spec": {"source": {"url": f"http://127.0.0.1:9/never-{i}.csv"}, "target": "y"},
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "datasets", body)
        status = {
            "status": {
                "observedGeneration": 1,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "SourceUnavailable",
                        "message": f"GET http://127.0.0.1:9/never-{i}.csv: connection refused",
                        "lastTransitionTime": now_iso(),
                        "observedGeneration": 1,
                    }
                ],
            }
        }
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "datasets", name, status)

    def run(i: int) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingRun",
            "metadata": {"name": f"tr-{i:04d}"},
            "spec": {
                "datasetRef": {"name": f"ds-{i:04d}"},
                "estimator": {"className": "sklearn.linear_model.LogisticRegression", "params": {"C": 1.0}},
            },
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingruns", body)

    def deployment(i: int) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": f"md-{i:03d}"},
            "spec": {"model": {"trainingRunRef": {"name": f"tr-{i:04d}"}}, "replicas": 1},
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(dataset, range(datasets)))
        list(pool.map(run, range(datasets)))
        list(pool.map(deployment, range(deployments)))
    return time.monotonic() - t0


class StatusWatch:
    """Watches one plural in the namespace; records when each (name, observedGeneration) first shows."""

    def __init__(self, api: Any, ns: str, plural: str) -> None:
        self.api, self.ns, self.plural = api, ns, plural
        self.seen: dict[tuple[str, int], float] = {}
        self.statused: set[str] = set()
        self.cv = threading.Condition()
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        custom = kubernetes.client.CustomObjectsApi(self.api)
        while not self.stop:
            watch = kubernetes.watch.Watch()
            try:
                for ev in watch.stream(
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.ns,
                    self.plural,
                    timeout_seconds=60,
                ):
                    obj = ev["object"]
                    status = obj.get("status") or {}
                    t = time.monotonic()
                    with self.cv:
                        if status.get("conditions"):
                            self.statused.add(obj["metadata"]["name"])
                        gen = status.get("observedGeneration")
                        if isinstance(gen, int):
                            self.seen.setdefault((obj["metadata"]["name"], gen), t)
                        self.cv.notify_all()
                    if self.stop:
                        break
            except Exception as err:  # a dropped watch: start again
                print(f"watch {self.plural}: {err}", file=sys.stderr)
                time.sleep(0.5)

    def wait(self, key: tuple[str, int], timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.cv:
            while key not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)
            return self.seen[key]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    parser.add_argument("--datasets", type=int, default=1000, help="Datasets, and as many TrainingRuns")
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--steady", type=float, default=60.0, help="seconds of steady state to measure")
    parser.add_argument(
        "--settle",
        type=float,
        default=300.0,
        help="most seconds to wait for reconciles to quiet down after catch-up",
    )
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the namespace")
    parser.add_argument("--json", action="store_true", help="also print the numbers as one JSON line")
    args = parser.parse_args()
    if not args.kubeconfig:
        parser.error("--kubeconfig (or $KUBECONFIG) is required; `mlkube dev up --no-operator` prints one")
    api = kubernetes.config.new_client_from_config(config_file=args.kubeconfig)
    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    ns = f"mlkube-scale-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    results: dict[str, Any] = {
        "datasets": args.datasets,
        "trainingRuns": args.datasets,
        "deployments": args.deployments,
    }
    proc: subprocess.Popen[bytes] | None = None
    log_path = Path(tempfile.mkdtemp(prefix="mlkube-scale-")) / "operator.log"
    try:
        results["createSeconds"] = round(create_objects(api, ns, args.datasets, args.deployments), 1)
        print(
            f"created {args.datasets} Datasets + {args.datasets} TrainingRuns + {args.deployments} ModelDeployments "
            f"in {results['createSeconds']}s (namespace {ns})",
            file=sys.stderr,
        )
        runs, mds = StatusWatch(api, ns, "trainingruns"), StatusWatch(api, ns, "modeldeployments")
        metrics_port, health_port = free_port(), free_port()
        env = {
            **os.environ,
            "KUBECONFIG": args.kubeconfig,
            "MLKUBE_NAMESPACES": ns,
            "MLKUBE_LEADER_LEASE_NAMESPACE": ns,
            "MLKUBE_BIND_ADDRESS": "127.0.0.1",
            "MLKUBE_METRICS_PORT": str(metrics_port),
            "MLKUBE_HEALTH_PORT": str(health_port),
        }
        env.pop("KUBERNETES_SERVICE_HOST", None)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        with log_path.open("wb") as log:
            started = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlkube_operator"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = started + 1800
        while len(runs.statused) < args.datasets or len(mds.statused) < args.deployments:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(
                    f"catch-up did not finish (runs {len(runs.statused)}, deployments "
                    f"{len(mds.statused)}); log: {log_path}"
                )
            time.sleep(0.5)
        results["catchUpSeconds"] = round(time.monotonic() - started, 1)
        print(f"catch-up: every object has a status after {results['catchUpSeconds']}s", file=sys.stderr)
        # The watch events of the catch-up may still be queued: wait until reconciles quiet down to
        # about twice what the resyncs alone cause (waiting runs every 300 s, deployments every 30 s),
        # at most --settle seconds.
        quiet = 10 * 2 * max(1.0, args.datasets / 300 + args.deployments / 30)
        settle_end = time.monotonic() + args.settle
        last = sum(scrape_series(metrics_url, "mlkube_operator_reconciliations_total").values())
        while time.monotonic() < settle_end:
            time.sleep(10)
            now_total = sum(scrape_series(metrics_url, "mlkube_operator_reconciliations_total").values())
            if now_total - last < quiet:
                break
            last = now_total
        results["settledAfterSeconds"] = round(time.monotonic() - started, 1)

        # Steady state.
        lines0 = log_path.read_bytes().count(b"\n")
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        ops0, srv0 = scrape_series(metrics_url, "mlkube_operator_api_requests_total"), apiserver_requests(api)
        rss: list[float] = []
        while time.monotonic() - t0 < args.steady:
            rss.append(rss_mb(proc.pid))
            time.sleep(1)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        ops1 = scrape_series(metrics_url, "mlkube_operator_api_requests_total")
        by_call = {k: v - ops0.get(k, 0.0) for k, v in ops1.items() if v - ops0.get(k, 0.0) > 0}
        ops = sum(by_call.values())
        results["operatorApiRequestsByCall"] = {
            k: round(v / (time.monotonic() - t0), 2)
            for k, v in sorted(by_call.items(), key=lambda kv: -kv[1])[:8]
        }
        srv = apiserver_requests(api) - srv0
        lines = log_path.read_bytes().count(b"\n") - lines0
        results.update(
            idleCpuPercentOfCore=round(100 * cpu / elapsed, 2),
            rssMbMax=round(max(rss), 1),
            rssMbEnd=round(rss[-1], 1),
            operatorApiRequestsPerSecond=round(ops / elapsed, 2),
            apiserverRequestsPerSecondAllClients=round(srv / elapsed, 2),
            steadyLogLines=lines,
            steadySeconds=round(elapsed, 1),
        )

        # spec -> status.
        rng = random.Random(0)
        latencies: dict[str, list[float]] = {"TrainingRun": [], "ModelDeployment": []}
        missed = 0
        for i in range(args.changes):
            if i % 5 == 4:
                kind, plural, watch = "ModelDeployment", "modeldeployments", mds
                name = f"md-{rng.randrange(args.deployments):03d}"
                patch: dict[str, Any] = {"spec": {"replicas": 1 + (i // 5) % 3}}
            else:
                kind, plural, watch = "TrainingRun", "trainingruns", runs
                name = f"tr-{rng.randrange(args.datasets):04d}"
                patch = {"spec": {"estimator": {"params": {"C": 1.0 + i}}}}
            sent = time.monotonic()  # from the request, its round trip included
            obj = custom.patch_namespaced_custom_object(GROUP, VERSION, ns, plural, name, patch)
            seen = watch.wait((name, int(obj["metadata"]["generation"])), timeout=60)
            if seen is None:
                missed += 1
            else:
                latencies[kind].append(seen - sent)
            time.sleep(0.1)
        all_lat = latencies["TrainingRun"] + latencies["ModelDeployment"]
        if all_lat:
            results.update(
                specToStatusP50Seconds=round(statistics.median(all_lat), 3),
                specToStatusP99Seconds=round(pct(all_lat, 0.99), 3),
                specToStatusMaxSeconds=round(max(all_lat), 3),
                specToStatusTrainingRunP50=round(statistics.median(latencies["TrainingRun"]), 3)
                if latencies["TrainingRun"]
                else None,
                specToStatusModelDeploymentP50=round(statistics.median(latencies["ModelDeployment"]), 3)
                if latencies["ModelDeployment"]
                else None,
            )
        results["specChangesWithoutStatus"] = missed
        runs.stop = mds.stop = True
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if not args.keep:
            core.delete_namespace(ns)
    print(
        f"""
operator at {args.datasets} Datasets + {args.datasets} TrainingRuns + {args.deployments} ModelDeployments
  catch-up after start        {results.get("catchUpSeconds")} s
  idle CPU                    {results.get("idleCpuPercentOfCore")} % of a core   (target < 5 %)
  memory (RSS, max)           {results.get("rssMbMax")} MB        (target < 300 MB)
  API requests/s (operator)   {results.get("operatorApiRequestsPerSecond")}
  busiest calls (per second)  {results.get("operatorApiRequestsByCall")}
  API requests/s (apiserver, all clients) {results.get("apiserverRequestsPerSecondAllClients")}
  log lines in steady state   {results.get("steadyLogLines")} in {results.get("steadySeconds")} s
  spec -> status p50 / p99 / max  {results.get("specToStatusP50Seconds")} / {results.get("specToStatusP99Seconds")} / {results.get("specToStatusMaxSeconds")} s   (target p99 < 2 s)
  changes without status      {results.get("specChangesWithoutStatus")}
operator log: {log_path}"""
    )
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
