"""What docs/install.md tells a user to apply renders as it says.

The overlays in docs/install.md are taken from the page itself (the yaml block after each
`tested by` marker), so the documented snippets are the tested ones. The NetworkPolicies
are checked statically against the labels and port names the operator's builders put on
predictor pods and the manifests put on the operator's pods; what they admit and deny on
a network that enforces them is shown by tests/integration/test_networkpolicy_e2e.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from mlkube_operator import constants as C
from mlkube_operator.api.dataset import DatasetSpec
from mlkube_operator.api.modeldeployment import ModelDeploymentSpec, ServedModel
from mlkube_operator.reconcile.dataset import build_profile_job
from mlkube_operator.reconcile.modeldeployment import CANARY, STABLE, build_predictor
from mlkube_operator.settings import Settings

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- tested by tests/unit/test_install.py"


def kustomize(path: Path) -> list[JSON]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def documented_overlays() -> list[str]:
    """The yaml blocks that follow the test markers in docs/install.md, in order."""
    text = (ROOT / "docs" / "install.md").read_text()
    blocks = []
    for part in text.split(MARKER)[1:]:
        found = re.search(r"```yaml\n(.*?)```", part, re.DOTALL)
        assert found is not None
        blocks.append(found.group(1))
    return blocks


def render_overlay(tmp_path: Path, block: str, base: str) -> list[JSON]:
    """The documented overlay, with its `../mlkube/<base>` pointing at this checkout."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    assert f"../mlkube/{base}" in block
    (overlay / "kustomization.yaml").write_text(
        block.replace(f"../mlkube/{base}", os.path.relpath(ROOT / base, overlay))
    )
    return kustomize(overlay)


def by_name(docs: list[JSON], kind: str) -> dict[str, JSON]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def subset(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def predictor_pods() -> list[JSON]:
    spec = ModelDeploymentSpec.model_validate(
        {"model": {"trainingRunRef": {"name": "r"}}, "serving": {"port": 9000}}
    )
    md = {
        "apiVersion": C.API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u"},
        "spec": {},
    }
    model = ServedModel(training_run="r", uri="file:///var/lib/mlkube/artifacts/m.joblib", sha256="a" * 64)
    return [
        build_predictor(md, spec, model, Settings(), track=t)["spec"]["template"] for t in (STABLE, CANARY)
    ]


def operator_pod() -> tuple[str, JSON]:
    deployment = next(d for d in kustomize(ROOT / "manifests") if d["kind"] == "Deployment")
    return deployment["metadata"]["namespace"], deployment["spec"]["template"]


def port_names(pod: JSON) -> set[str]:
    return {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}


def test_release_label_overlay_labels_the_monitors_and_rules_not_their_selectors(tmp_path: Path) -> None:
    base = kustomize(ROOT / "manifests" / "monitoring")
    assert all("release" not in (d["metadata"].get("labels") or {}) for d in base)
    rendered = render_overlay(tmp_path, documented_overlays()[0], "manifests/monitoring")
    monitors = by_name(rendered, "PodMonitor")
    assert set(monitors) == {"mlkube-predictors", "mlkube-operator"}
    for obj in [*monitors.values(), *by_name(rendered, "PrometheusRule").values()]:
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for name, monitor in by_name(base, "PodMonitor").items():
        assert monitors[name]["spec"]["selector"] == monitor["spec"]["selector"]


def test_policies_are_valid_network_policies() -> None:
    docs = kustomize(ROOT / "manifests" / "networkpolicy") + kustomize(
        ROOT / "manifests" / "networkpolicy" / "predictors"
    )
    assert {d["kind"] for d in docs} == {"NetworkPolicy"}
    for doc in docs:
        typed = kubernetes.client.V1NetworkPolicy.model_validate(doc)
        assert kubernetes.client.ApiClient().sanitize_for_serialization(typed) == doc


def test_predictor_policies_select_predictors_on_their_serving_port_only() -> None:
    policies = by_name(kustomize(ROOT / "manifests" / "networkpolicy" / "predictors"), "NetworkPolicy")
    assert set(policies) == {"mlkube-predictors", "mlkube-predictors-prometheus"}
    pods = predictor_pods()
    job = build_profile_job(
        {
            "apiVersion": C.API_VERSION,
            "kind": "Dataset",
            "metadata": {"name": "d", "namespace": "ml", "uid": "u", "generation": 1},
        },
        DatasetSpec.model_validate({"source": {"builtin": "iris"}, "target": "target"}),
        Settings(),
    )["spec"]["template"]
    for policy in policies.values():
        assert "namespace" not in policy["metadata"]  # applied with -n in each namespace
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        selector = spec["podSelector"]["matchLabels"]
        assert all(subset(selector, pod["metadata"]["labels"]) for pod in pods)
        assert not subset(selector, job["metadata"]["labels"])
        for rule in spec["ingress"]:
            # A named port: the container port the builder names, whatever number spec.serving.port gives it.
            assert rule["ports"] == [{"port": C.SERVING_PORT_NAME, "protocol": "TCP"}]
            assert all(port_names(pod) == {C.SERVING_PORT_NAME} for pod in pods)


def test_predictors_admit_their_namespace_the_operator_and_prometheus() -> None:
    policies = by_name(kustomize(ROOT / "manifests" / "networkpolicy" / "predictors"), "NetworkPolicy")
    namespace, pod = operator_pod()
    (rule,) = policies["mlkube-predictors"]["spec"]["ingress"]
    same_namespace, operator = rule["from"]
    assert same_namespace == {"podSelector": {}}
    assert operator["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": namespace}
    assert subset(operator["podSelector"]["matchLabels"], pod["metadata"]["labels"])
    assert operator["podSelector"]["matchLabels"][C.LABEL_COMPONENT] == "operator"
    (rule,) = policies["mlkube-predictors-prometheus"]["spec"]["ingress"]
    assert rule["from"] == [prometheus_peer()]


def prometheus_peer() -> JSON:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }


def test_operator_policy_allows_its_scrapes_the_api_server_and_prometheus() -> None:
    (policy,) = kustomize(ROOT / "manifests" / "networkpolicy")
    namespace, pod = operator_pod()
    spec = policy["spec"]
    assert policy["metadata"]["namespace"] == namespace
    assert subset(spec["podSelector"]["matchLabels"], pod["metadata"]["labels"])
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert ingress["from"] == [prometheus_peer()]
    assert [p["port"] for p in ingress["ports"]] == ["metrics"]
    assert "metrics" in port_names(pod)
    api, predictors, prometheus, dns = spec["egress"]
    assert "to" not in api and {p["port"] for p in api["ports"]} == {443, 6443}
    (peer,) = predictors["to"]
    assert peer["namespaceSelector"] == {}
    assert all(subset(peer["podSelector"]["matchLabels"], p["metadata"]["labels"]) for p in predictor_pods())
    assert predictors["ports"] == [{"port": C.SERVING_PORT_NAME, "protocol": "TCP"}]
    assert prometheus["to"] == [prometheus_peer()]
    # By number and by the names DNS pods give their ports (they may listen elsewhere than 53).
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {
        (53, "UDP"),
        (53, "TCP"),
        ("dns", "UDP"),
        ("dns-tcp", "TCP"),
    }


def test_prometheus_overlay_moves_only_the_prometheus_peer(tmp_path: Path) -> None:
    base = by_name(kustomize(ROOT / "manifests" / "networkpolicy" / "predictors"), "NetworkPolicy")
    rendered = by_name(
        render_overlay(tmp_path, documented_overlays()[1], "manifests/networkpolicy/predictors"),
        "NetworkPolicy",
    )
    assert rendered["mlkube-predictors"] == base["mlkube-predictors"]
    (rule,) = rendered["mlkube-predictors-prometheus"]["spec"]["ingress"]
    assert rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "observability"
    }
    assert rule["from"][0]["podSelector"] == prometheus_peer()["podSelector"]
