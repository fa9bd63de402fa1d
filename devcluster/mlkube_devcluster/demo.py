"""`mlkube demo`: the whole closed loop on the dev cluster, told as a timeline.

It applies `examples/iris` (Dataset, TrainingRun, ModelDeployment), waits until the model
serves, trains a second model generation and sends it realistic traffic through the
Service while it runs as a canary (so it is judged and promoted on its own requests),
then shifts the traffic (the flowers' petals get larger: covariate drift on the feature
the model relies on) and watches the operator judge the windows, turn the deployment
Degraded and roll back to the previous model. Every request goes to the Service's
ClusterIP on this machine; every loop is bounded in requests and time.

The timeline is what the operator recorded (status and Events), not what the demo
assumes; `--json` prints it as one summary object.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .binaries import find_binaries, repo_root
from .state import StateDir
from .testing import service_answers, wait_for

RATE = 20.0  # requests per second through the Service
# Iris rows by class (sepal length, sepal width, petal length, petal width): means and sds.
CLASSES = (
    ((5.01, 3.43, 1.46, 0.25), (0.35, 0.38, 0.17, 0.11)),
    ((5.94, 2.77, 4.26, 1.33), (0.52, 0.31, 0.47, 0.20)),
    ((6.59, 2.97, 5.55, 2.03), (0.64, 0.32, 0.55, 0.27)),
)


@dataclass
class Step:
    t: float
    what: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Story:
    timeline: list[Step] = field(default_factory=list)
    start: float = field(default_factory=time.monotonic)
    summary: dict[str, Any] = field(default_factory=dict)

    def add(self, what: str, quiet: bool, **detail: Any) -> None:
        step = Step(round(time.monotonic() - self.start, 1), what, detail)
        self.timeline.append(step)
        if not quiet:
            extra = "  ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, "", [], {}))
            print(f"[{step.t:7.1f}s] {what}  {extra}".rstrip(), flush=True)


class Kubectl:
    def __init__(self, kubeconfig: Path, bins: Path, namespace: str) -> None:
        self.namespace = namespace
        self.base = [str(bins / "kubectl"), "--kubeconfig", str(kubeconfig), "-n", namespace]

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [*self.base, *args], input=stdin, capture_output=True, text=True, timeout=600, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def obj(self, kind: str, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self("get", kind, name, "-o", "json"))
        return data


class Traffic:
    """Requests at RATE per second to the Service, from a fixed seed; drift shifts the petals."""

    def __init__(self, url: str, seed: int = 7) -> None:
        self.url = url
        self.rng = random.Random(seed)
        self.sent = 0
        self.errors = 0
        self.error_kinds: Counter[str] = Counter()
        self.drifted = False
        self.onset: int | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def row(self) -> list[float]:
        means, sds = CLASSES[self.rng.randrange(3)]
        values = [round(self.rng.gauss(m, s), 2) for m, s in zip(means, sds, strict=True)]
        if self.drifted:  # larger petals than the model ever saw
            values[2] = round(values[2] + 1.2, 2)
            values[3] = round(values[3] + 0.6, 2)
        return values

    def start_drift(self) -> None:
        self.onset = self.sent
        self.drifted = True

    def _run(self) -> None:
        deadline = time.monotonic() + 1800  # never longer than 30 minutes
        while not self.stop.is_set() and time.monotonic() < deadline and self.sent < 40000:
            body = json.dumps({"instances": [self.row()]}).encode()
            req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    resp.read()
            except urllib.error.HTTPError as exc:
                self.errors += 1
                self.error_kinds[f"HTTP {exc.code}"] += 1
            except OSError as exc:
                self.errors += 1
                self.error_kinds[type(getattr(exc, "reason", exc)).__name__] += 1
            self.sent += 1
            time.sleep(1.0 / RATE)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


def _wait(k: Kubectl, what: str, timeout: int) -> None:
    k("wait", f"--for=condition={what.split('/')[0]}", what.split("/", 1)[1], f"--timeout={timeout}s")


def _cond(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return {}


def _watch(
    k: Kubectl, story: Story, traffic: Traffic, quiet: bool, until: Any, timeout: float
) -> dict[str, Any]:
    """Record every change of verdict, state, Degraded and last action until `until(md)`."""
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    md: dict[str, Any] = {}
    while time.monotonic() < deadline:
        md = k.obj("modeldeployment", "iris")
        st = md.get("status", {})
        analysis = st.get("lastAnalysis") or {}
        now = {
            "verdict": (analysis.get("time"), analysis.get("verdict")),
            "state": st.get("stateSummary") or st.get("state"),
            "degraded": _cond(md, "Degraded").get("status"),
            "action": st.get("lastAction"),
            "model": (st.get("currentModel") or {}).get("sha256", "")[:12],
        }
        if now["verdict"] != seen.get("verdict") and analysis:
            values = analysis.get("values") or {}
            story.add(
                f"analysis: {analysis.get('verdict')}",
                quiet,
                requests_sent=traffic.sent,
                samples=values.get("samples"),
                reasons="; ".join(analysis.get("reasons") or [])[:300],
            )
        if now["state"] != seen.get("state"):
            story.add(f"state: {now['state']}", quiet, model=now["model"])
        if now["degraded"] != seen.get("degraded") and now["degraded"]:
            story.add(f"Degraded={now['degraded']}", quiet, reason=_cond(md, "Degraded").get("reason"))
        if now["action"] != seen.get("action") and now["action"]:
            story.add("action", quiet, lastAction=now["action"])
        seen = now
        if until(md):
            return md
        time.sleep(2)
    raise RuntimeError(
        f"timed out after {timeout:.0f}s; last status: {json.dumps(md.get('status', {}))[:1500]}"
    )


def run(quiet: bool, namespace: str) -> dict[str, Any]:
    root = repo_root()
    if root is None:
        raise RuntimeError("mlkube demo runs from the mlkube source checkout (it applies examples/iris)")
    from . import cluster

    story = Story()
    result = cluster.up(None)
    story.add("cluster up", quiet, seconds=round(result.timings.get("total", 0.0), 1))
    k = Kubectl(StateDir(None).kubeconfig, find_binaries(build=False), namespace)
    subprocess.run(
        [*k.base[:3], "create", "namespace", namespace],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    for kind, name in (("modeldeployment", "iris"), ("trainingrun", "iris-rf"), ("dataset", "iris")):
        k("delete", kind, name, "--ignore-not-found", "--wait=true")
    k("apply", "-f", str(root / "examples" / "iris"))
    story.add("applied examples/iris", quiet)
    _wait(k, "Ready/dataset/iris", 300)
    ds = k.obj("dataset", "iris")["status"]
    story.add("Dataset Ready", quiet, rows=ds.get("rows"), contentHash=ds.get("contentHash", "")[:12])
    _wait(k, "Succeeded/trainingrun/iris-rf", 600)
    runs = [k.obj("trainingrun", "iris-rf")["status"]]
    story.add("TrainingRun Succeeded", quiet, accuracy=runs[0].get("metrics", {}).get("accuracy"))
    _wait(k, "Ready/modeldeployment/iris", 300)
    svc = k.obj("service", "iris")["spec"]
    url = f"http://{svc['clusterIP']}:{svc['ports'][0]['port']}/v1/models/iris:predict"
    first = k.obj("modeldeployment", "iris")["status"]["currentModel"]["sha256"]
    base = url.rsplit("/v1/", 1)[0]
    wait_for(lambda: service_answers(base), 60, f"{base} to answer through kube-proxy")
    story.add("serving through the Service", quiet, url=url, model=first[:12])

    with Traffic(url) as traffic:
        # A second generation of the model: a canary on half the pods, judged on its own traffic.
        k(
            "patch",
            "trainingrun",
            "iris-rf",
            "--type=merge",
            "-p",
            '{"spec":{"estimator":{"params":{"max_depth":4}}}}',
        )
        story.add("TrainingRun iris-rf changed (max_depth 5 -> 4): generation 2 trains", quiet)

        def promoted(md: dict[str, Any]) -> bool:
            run = k.obj("trainingrun", "iris-rf")
            done = _cond(run, "Succeeded")
            if (
                done.get("status") == "False"
                and done.get("observedGeneration") == run["metadata"]["generation"]
            ):
                raise RuntimeError(
                    f"generation 2 of iris-rf failed: {done.get('reason')}: {done.get('message')}"
                )
            st = md.get("status", {})
            cur = (st.get("currentModel") or {}).get("sha256")
            return bool(cur and cur != first and st.get("state") == "Steady")

        md = _watch(k, story, traffic, quiet, promoted, 900)
        second = md["status"]["currentModel"]["sha256"]
        runs.append(k.obj("trainingrun", "iris-rf")["status"])
        story.add("canary promoted", quiet, model=second[:12], requests_sent=traffic.sent)

        time.sleep(20)  # a few healthy windows on the promoted model
        traffic.start_drift()
        story.add("drift starts: petals 1.2 cm longer and 0.6 cm wider", quiet, requests_sent=traffic.sent)
        detected: dict[str, int] = {}

        def rolled_back(md: dict[str, Any]) -> bool:
            st = md.get("status", {})
            if "degraded" not in detected and (st.get("lastAnalysis") or {}).get("verdict") == "Degraded":
                detected["degraded"] = traffic.sent
            return bool(st.get("state") == "RolledBack")

        md = _watch(k, story, traffic, quiet, rolled_back, 600)
        detected["action"] = traffic.sent
        st = md["status"]
        story.add("rolled back", quiet, model=(st.get("currentModel") or {}).get("sha256", "")[:12])

    onset = traffic.onset or 0
    events = k("get", "events", "--field-selector=involvedObject.name=iris", "-o", "json")
    reasons = [e.get("reason") for e in json.loads(events).get("items", [])]
    story.summary = {
        "dataset": {"name": "iris", "rows": ds.get("rows"), "contentHash": ds.get("contentHash")},
        "trainingRuns": [
            {"generation": i + 1, "metrics": r.get("metrics"), "sha256": (r.get("model") or {}).get("sha256")}
            for i, r in enumerate(runs)
        ],
        "deployment": {
            "name": "iris",
            "service": url,
            "state": st.get("state"),
            "servedModel": (st.get("currentModel") or {}).get("sha256"),
            "rolledBackFrom": st.get("rolledBackFrom"),
            "rejectedModels": [m.get("sha256") for m in st.get("rejectedModels") or []],
            "events": sorted({r for r in reasons if r}),
        },
        "traffic": {
            "requests": traffic.sent,
            "errors": traffic.errors,
            "errorKinds": dict(traffic.error_kinds),
            "ratePerSecond": RATE,
        },
        "drift": {
            "onsetRequest": onset,
            "firstDegradedVerdictRequest": detected.get("degraded"),
            "requestsToDetect": None if "degraded" not in detected else detected["degraded"] - onset,
            "actionRequest": detected["action"],
            "requestsToAction": detected["action"] - onset,
        },
        "action": {"lastAction": st.get("lastAction"), "rollbacks": st.get("rollbacks")},
        "durationSeconds": round(time.monotonic() - story.start, 1),
        "timeline": [asdict(s) for s in story.timeline],
    }
    return story.summary


def main(args: argparse.Namespace) -> int:
    try:
        summary = run(quiet=args.json, namespace=args.namespace)
    except Exception as exc:
        print(f"mlkube demo: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    d = summary["drift"]
    print()
    print(
        f"Drift began at request {d['onsetRequest']}; the first Degraded verdict came "
        f"{d['requestsToDetect']} requests later and the rollback {d['requestsToAction']} requests after the onset."
    )
    print(
        f"Served now: {summary['deployment']['servedModel']}; rejected: {summary['deployment']['rejectedModels']}"
    )
    print(
        f"{summary['traffic']['requests']} requests, {summary['traffic']['errors']} errors, "
        f"in {summary['durationSeconds']}s."
    )
    print(
        f"Query it yourself: curl -X POST {summary['deployment']['service']} -H 'Content-Type: application/json' "
        "-d '{\"instances\": [[5.1, 3.5, 1.4, 0.2]]}'"
    )
    print(f"Undo the rollback pin with: mlkube rollout unpin iris -n {args.namespace}")
    return 0
