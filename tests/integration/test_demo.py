"""`mlkube demo --json`, the story `make demo` tells, run end to end on the dev cluster.

examples/iris is trained and served, a second generation is promoted through its canary
on its own traffic through the Service, then the traffic drifts until the operator rolls
back. The summary is what the operator recorded, so this checks the closed loop itself:
two models, the second promoted then rejected, the first served again, drift judged
within a bounded number of requests after its onset, and no failed request.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .helpers import event_reasons, kubectl

pytestmark = pytest.mark.cluster


@pytest.mark.timeout(1500)
def test_demo_json_tells_canary_drift_and_rollback(dev_cluster: Any, namespace: str) -> None:
    mlkube = str(Path(sys.executable).parent / "mlkube")
    proc = subprocess.run(
        [mlkube, "demo", "--json", "--namespace", namespace],
        capture_output=True,
        text=True,
        timeout=1400,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout)

    assert summary["dataset"]["rows"] == 150 and len(summary["dataset"]["contentHash"]) == 64
    first, second = summary["trainingRuns"]
    assert first["sha256"] and second["sha256"] and first["sha256"] != second["sha256"]
    assert first["metrics"]["accuracy"] > 0.8 and second["metrics"]["accuracy"] > 0.8

    deployment = summary["deployment"]
    assert deployment["state"] == "RolledBack"
    assert deployment["servedModel"] == first["sha256"]
    assert second["sha256"] in deployment["rejectedModels"]
    assert {"CanaryPromoted", "RolledBack"} <= set(deployment["events"])
    assert {"CanaryPromoted", "RolledBack"} <= event_reasons(
        dev_cluster.kubeconfig, namespace, "ModelDeployment"
    )

    drift = summary["drift"]
    assert drift["onsetRequest"] > 0
    # Judged Degraded after the onset, and acted on no earlier than judged.
    assert 0 < drift["requestsToDetect"] <= drift["requestsToAction"]
    # At 20 requests a second with 15 s analyses over 150 s windows and failureLimit 3,
    # a drift this large is caught within a few windows, not left to the 30-minute cap.
    assert drift["requestsToAction"] < 6000
    assert summary["traffic"]["errors"] == 0 and summary["traffic"]["requests"] > drift["actionRequest"] - 1
    assert summary["action"]["rollbacks"] == 1

    steps = [step["what"] for step in summary["timeline"]]
    assert steps.index("canary promoted") < steps.index("rolled back")
    assert any(s == "analysis: Degraded" for s in steps)

    # The Service still answers, from the model served again.
    svc = json.loads(kubectl(dev_cluster.kubeconfig, "-n", namespace, "get", "service", "iris", "-o", "json"))
    assert deployment["service"].startswith(f"http://{svc['spec']['clusterIP']}:")
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
    req = urllib.request.Request(deployment["service"], body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["predictions"] == [0]
