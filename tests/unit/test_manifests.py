"""The kustomize base renders and grants the operator what its adapters use."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mlkube_operator import constants as C
from mlkube_operator.adapters.kube import APPLIED
from mlkube_operator.reconcile.dataset import plan_dataset
from mlkube_operator.reconcile.jobs import JobPhase, JobView
from mlkube_operator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def render() -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests")], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r.get("verbs", [])
        for r in rules
    )


def test_base_renders_crds_rbac_and_operator() -> None:
    docs = render()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for plural in ("datasets", "trainingruns", "modeldeployments", "modelgrants"):
        assert ("CustomResourceDefinition", f"{plural}.mlkube.io") in kinds
    assert ("Deployment", "mlkube-operator") in kinds
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "mlkube-system"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == C.OPERATOR_IMAGE
    # One `images:` entry per image rewrites the operator's environment too.
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLKUBE_TRAINER_IMAGE"] == C.TRAINER_IMAGE
    assert env["MLKUBE_SERVER_IMAGE"] == C.SERVER_IMAGE


def test_images_set_in_one_place_rewrite_container_and_environment(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(ROOT / "manifests", overlay)],
                "images": [
                    {
                        "name": f"ghcr.io/mlkube/mlkube-{t}",
                        "newName": f"registry.example/ml/mlkube-{t}",
                        "newTag": "9.9",
                    }
                    for t in ("operator", "trainer", "server")
                ],
            }
        )
    )
    out = subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor=LoadRestrictionsNone", str(overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    deployment = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == "registry.example/ml/mlkube-operator:9.9"
    assert env["MLKUBE_TRAINER_IMAGE"] == "registry.example/ml/mlkube-trainer:9.9"
    assert env["MLKUBE_SERVER_IMAGE"] == "registry.example/ml/mlkube-server:9.9"
    assert container["command"] == ["mlkube", "operator"]


def test_operator_runs_two_replicas_one_leader_with_a_disruption_budget() -> None:
    docs = render()
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = spec["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    settings = Settings()
    assert ports == {"health": settings.health_port, "metrics": settings.metrics_port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert pdb["metadata"]["namespace"] == deployment["metadata"]["namespace"]


def test_leases_only_in_the_operators_namespace() -> None:
    docs = render()
    role = next(d for d in docs if d["kind"] == "Role")
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "mlkube-system"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == "mlkube-operator"
    rules = role["rules"]
    for verb in ("create", "get", "update"):
        assert allowed(rules, "coordination.k8s.io", "leases", verb)
    named = [r for r in rules if "get" in r["verbs"]]
    assert all(r.get("resourceNames") == [Settings().leader_lease_name] for r in named)
    cluster_rules = next(d for d in docs if d["kind"] == "ClusterRole")["rules"]
    assert not any("coordination.k8s.io" in r.get("apiGroups", []) for r in cluster_rules)


def test_rbac_covers_every_call_of_the_adapters() -> None:
    rules = next(d for d in render() if d["kind"] == "ClusterRole")["rules"]
    needed = [
        ("mlkube.io", "datasets", "watch"),
        ("mlkube.io", "trainingruns", "list"),
        ("mlkube.io", "datasets/status", "patch"),
        ("mlkube.io", "trainingruns/status", "patch"),
        ("batch", "jobs", "get"),
        ("batch", "jobs", "watch"),
        ("apps", "deployments", "get"),
        ("apps", "deployments", "watch"),
        ("apps", "deployments", "delete"),
        ("", "pods", "list"),
        ("", "persistentvolumeclaims", "get"),
        ("", "events", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        # ModelGrants: listed per namespace, watched, their status written; a
        # namespaceSelector reads the consumer Namespace's labels.
        ("mlkube.io", "modelgrants", "list"),
        ("mlkube.io", "modelgrants", "watch"),
        ("mlkube.io", "modelgrants/status", "patch"),
        ("", "namespaces", "get"),
        # The Secrets a Job or predictor would read are checked before it is created.
        ("", "secrets", "get"),
    ]
    # Server-side apply is a PATCH, and one that creates the object is authorized as a create too.
    for group, plural in APPLIED.values():
        needed += [(group, plural, "patch"), (group, plural, "create")]
    missing = [n for n in needed if not allowed(rules, *n)]
    assert missing == []


def test_image_user_matches_job_security_context() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"^USER (\d+):", dockerfile, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE) == [f"{uid}:{uid}"] * 3
    obj = {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d", "namespace": "n", "uid": "u", "generation": 1},
        "spec": {"source": {"builtin": "iris"}, "target": "target"},
    }
    job = plan_dataset(obj, JobView(JobPhase.MISSING), datetime.now(UTC), Settings()).create
    assert job is not None
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
