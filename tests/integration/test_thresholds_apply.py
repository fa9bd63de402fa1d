"""What the analysis checks is what `kubectl get -o yaml` shows, and `enabled: false` stays off.

Issue 13, finding 4: unset bounds were silently defaulted, and `null` (the old way to
turn a check off) is dropped by a client-side `kubectl apply`, so the default came
back. Every check now has an explicit `enabled` flag and every default is in the CRD
schema; this applies ModelDeployments through the real API server with client-side
and server-side apply and reads back what was stored.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from mlkube_operator.api.modeldeployment import Thresholds

from .helpers import apply_docs, kubectl

pytestmark = pytest.mark.cluster
DEFAULTS: dict[str, Any] = Thresholds().model_dump(mode="json", by_alias=True)


def _doc(name: str, thresholds: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"trainingRunRef": {"name": "not-trained-yet"}},
            "replicas": replicas,
            "monitoring": {"thresholds": thresholds},
        },
    }


def _stored(kc: str, namespace: str, name: str) -> dict[str, Any]:
    out = kubectl(kc, "-n", namespace, "get", "modeldeployment", name, "-o", "json")
    thresholds: dict[str, Any] = json.loads(out)["spec"]["monitoring"]["thresholds"]
    return thresholds


def _expected(**changes: dict[str, Any]) -> dict[str, Any]:
    want = copy.deepcopy(DEFAULTS)
    for key, value in changes.items():
        want[key] = {**want[key], **value}
    return want


def test_every_default_is_stored_and_visible(dev_cluster: Any, namespace: str) -> None:
    kc = dev_cluster.kubeconfig
    apply_docs(kc, namespace, _doc("partial", {"errorRate": {"max": 0.1}}))
    assert _stored(kc, namespace, "partial") == _expected(errorRate={"max": 0.1})
    # Nothing set at all: still every check, with its default, in the object.
    doc = _doc("bare", {})
    del doc["spec"]["monitoring"]
    apply_docs(kc, namespace, doc)
    assert _stored(kc, namespace, "bare") == DEFAULTS


@pytest.mark.parametrize("mode", ["client-side", "server-side"])
def test_a_check_turned_off_stays_off(dev_cluster: Any, namespace: str, mode: str) -> None:
    kc = dev_cluster.kubeconfig
    flags = ["--server-side", "--field-manager=gitops"] if mode == "server-side" else []
    name = f"off-{mode}"
    off = {"inputDrift": {"enabled": False}, "latency": {"enabled": False}}
    kubectl(kc, "-n", namespace, "apply", *flags, "-f", "-", stdin=yaml.safe_dump(_doc(name, off)))
    want = _expected(inputDrift={"enabled": False}, latency={"enabled": False})
    assert _stored(kc, namespace, name) == want
    # Applying the same file again with another change (what a GitOps sync does) keeps it off.
    kubectl(
        kc, "-n", namespace, "apply", *flags, "-f", "-", stdin=yaml.safe_dump(_doc(name, off, replicas=2))
    )
    assert _stored(kc, namespace, name) == want
    # Turning it back on is an explicit `enabled: true` (or deleting the line: the default).
    back = {"inputDrift": {"enabled": True}, "latency": {"enabled": False}}
    kubectl(kc, "-n", namespace, "apply", *flags, "-f", "-", stdin=yaml.safe_dump(_doc(name, back)))
    assert _stored(kc, namespace, name) == _expected(latency={"enabled": False})


def test_null_is_not_an_off_switch(dev_cluster: Any, namespace: str) -> None:
    """Why `enabled: false` exists: a null is dropped and the check comes back with its default."""
    kc = dev_cluster.kubeconfig
    apply_docs(kc, namespace, _doc("nulled", {"latency": None}))
    assert _stored(kc, namespace, "nulled")["latency"] == DEFAULTS["latency"]
