"""Argo CD health checks (manifests/argocd/*.lua) on objects recorded from the dev cluster.

The fixtures in tests/data/argocd/ are live objects the real operator produced
(tests/integration/test_argocd_health.py records them and checks the same health
on the cluster); here a real Lua interpreter runs the scripts on them as Argo CD
does, without a cluster. The shipped argocd-cm patch and kustomize Component must
carry exactly these scripts.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube_operator.api.dataset import DatasetStatus
from mlkube_operator.api.grant import ModelGrantStatus
from mlkube_operator.api.modeldeployment import ModelDeploymentStatus
from mlkube_operator.api.trainingrun import TrainingRunStatus
from mlkube_operator.reconcile.grants import plan_grant_status

from .harness import ARGOCD, EXPECTED, FIXTURES_DIR, ROOT, SCRIPTS, STATUSES, health

STATUS_MODELS: dict[str, Any] = {
    "Dataset": DatasetStatus,
    "TrainingRun": TrainingRunStatus,
    "ModelDeployment": ModelDeploymentStatus,
    "ModelGrant": ModelGrantStatus,
}


def fixture(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((FIXTURES_DIR / f"{name}.yaml").read_text())
    return obj


def test_every_recorded_object_is_expected_and_every_expectation_recorded() -> None:
    assert {p.stem for p in FIXTURES_DIR.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_health_of_recorded_object(name: str, tmp_path: Path) -> None:
    obj = fixture(name)
    assert obj["apiVersion"] == "mlkube.io/v1alpha1" and obj["kind"] in SCRIPTS
    STATUS_MODELS[obj["kind"]].model_validate(obj.get("status") or {})  # a status the operator writes
    want_status, want_fragment = EXPECTED[name]
    got = health(obj, tmp_path)
    assert got["status"] in STATUSES
    assert got["status"] == want_status, got
    assert want_fragment in (got["message"] or ""), got


def test_each_kind_reaches_each_of_its_health_states() -> None:
    reached: dict[str, set[str]] = {}
    for name, (status, _) in EXPECTED.items():
        reached.setdefault(fixture(name)["kind"], set()).add(status)
    assert reached == {
        "Dataset": {"Healthy", "Progressing", "Degraded"},
        "TrainingRun": {"Healthy", "Progressing", "Degraded"},
        "ModelDeployment": {"Healthy", "Progressing", "Degraded", "Suspended"},
        # A grant the API server admits is valid (its CRD carries the cross-field rules):
        # Degraded and Progressing are checked below on states derived from the recorded one.
        "ModelGrant": {"Healthy"},
    }


def test_an_object_without_status_is_progressing(tmp_path: Path) -> None:
    for name in ("dataset-profiled", "trainingrun-trained", "modeldeployment-serving", "modelgrant-accepted"):
        obj = fixture(name)
        del obj["status"]
        got = health(obj, tmp_path)
        assert got["status"] == "Progressing" and "Waiting for the mlkube operator" in (got["message"] or "")


def test_a_grant_the_operator_rejects_or_has_not_seen(tmp_path: Path) -> None:
    """The recorded grant with a newer spec (not observed yet), and with a spec the operator
    refuses, its status written by the operator's own planner (an older CRD without the
    cross-field rules admits it)."""
    obj = fixture("modelgrant-accepted")
    obj["metadata"]["generation"] += 1
    got = health(obj, tmp_path)
    assert got["status"] == "Progressing" and "observe generation" in (got["message"] or ""), got
    obj["spec"]["allTrainingRuns"] = True  # and trainingRuns: exactly one of them may be set
    obj["status"], _ = plan_grant_status(obj, datetime.now(UTC))
    got = health(obj, tmp_path)
    assert got["status"] == "Degraded" and "InvalidSpec" in (got["message"] or ""), got


def test_a_revoked_reference_is_suspended_while_the_model_serves_and_degraded_before_it_ever_did(
    tmp_path: Path,
) -> None:
    obj = fixture("modeldeployment-reference-revoked")
    got = health(obj, tmp_path)
    assert "granting it again resumes" in (got["message"] or ""), got
    # The same refusal for an unreachable artifact (a file:// model) pauses it the same way.
    progressing = next(c for c in obj["status"]["conditions"] if c["type"] == "Progressing")
    progressing["reason"] = "ArtifactNotReachable"
    assert health(obj, tmp_path)["status"] == "Suspended"
    # Nothing served yet and the reference refused: nothing will serve until someone acts.
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    ready.update(status="False", reason="ReferenceNotPermitted")
    assert health(obj, tmp_path)["status"] == "Degraded"


def test_the_harness_rejects_what_argo_cd_would(tmp_path: Path) -> None:
    """No os/io in Argo CD's Lua sandbox, and the script must return a table."""
    obj = fixture("dataset-profiled")
    uses_os = tmp_path / "os.lua"
    uses_os.write_text('return {status = "Healthy", message = tostring(os.time())}\n')
    with pytest.raises(AssertionError, match="os"):
        health(obj, tmp_path, uses_os)
    no_table = tmp_path / "string.lua"
    no_table.write_text('return "Healthy"\n')
    with pytest.raises(AssertionError, match="not a table"):
        health(obj, tmp_path, no_table)


def _patch_script() -> Any:
    spec = importlib.util.spec_from_file_location("argocd_cm_patch", ROOT / "scripts" / "argocd_cm_patch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_argocd_cm_patch_carries_exactly_the_scripts() -> None:
    text = (ARGOCD / "argocd-cm-patch.yaml").read_text()
    assert text == _patch_script().render(), "run: python scripts/argocd_cm_patch.py --write"
    data = yaml.safe_load(text)["data"]
    assert data == {
        f"resource.customizations.health.mlkube.io_{kind}": path.read_text() for kind, path in SCRIPTS.items()
    }


def test_kustomize_component_merges_the_scripts_into_argocd_cm(tmp_path: Path) -> None:
    """As a user's Argo CD kustomization would: install.yaml's argocd-cm plus the Component."""
    (tmp_path / "argocd-cm.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "argocd-cm", "labels": {"app.kubernetes.io/part-of": "argocd"}},
                "data": {"url": "https://argocd.example"},
            }
        )
    )
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "namespace": "argocd",
                "resources": ["argocd-cm.yaml"],
                "components": [os.path.relpath(ARGOCD, tmp_path)],
            }
        )
    )
    out = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    [cm] = [d for d in yaml.safe_load_all(out) if d]
    assert cm["metadata"]["name"] == "argocd-cm" and cm["metadata"]["namespace"] == "argocd"
    assert cm["data"].pop("url") == "https://argocd.example"
    assert cm["data"] == yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())["data"]
