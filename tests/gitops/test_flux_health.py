"""Flux health checks (manifests/flux/mlkube-health.yaml) evaluated by Flux's own code.

kustomize-controller evaluates `healthCheckExprs` with github.com/fluxcd/pkg/runtime/cel;
tests/gitops/fluxcel is a small Go program around that evaluator. It is built here (Go
is needed for the control plane anyway) and run on the objects recorded from the dev
cluster in tests/data/argocd/. Each must get the kstatus Flux would give it: Current
where Argo CD says Healthy (or Suspended: a rolled-back model serves), Failed where it
says Degraded, InProgress where it says Progressing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .harness import EXPECTED, FIXTURES_DIR, ROOT

FLUXCEL = Path(__file__).resolve().parent / "fluxcel"
HEALTH = ROOT / "manifests" / "flux" / "mlkube-health.yaml"
KSTATUS = {"Healthy": "Current", "Suspended": "Current", "Degraded": "Failed", "Progressing": "InProgress"}


@pytest.fixture(scope="module")
def fluxcel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.fail("go not found: Go >= 1.25 is needed (it builds the control plane too)")
    out = tmp_path_factory.mktemp("fluxcel") / "fluxcel"
    build = subprocess.run(
        [go, "build", "-o", str(out), "."],
        cwd=FLUXCEL,
        capture_output=True,
        text=True,
        timeout=1700,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    return out


def evaluate(binary: Path, exprs: dict[str, str], objects: list[dict[str, Any]]) -> list[str]:
    body = json.dumps({"exprs": exprs, "objects": objects}, default=str)
    run = subprocess.run([str(binary)], input=body, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    return run.stdout.split("\n")[: len(objects)]


def checks() -> dict[str, dict[str, str]]:
    spec = yaml.safe_load(HEALTH.read_text())["spec"]
    out = {}
    for check in spec["healthCheckExprs"]:
        assert check["apiVersion"] == "mlkube.io/v1alpha1"
        out[check["kind"]] = {k: v for k, v in check.items() if k in ("current", "failed", "inProgress")}
    return out


@pytest.mark.timeout(1800)  # the first build downloads and compiles Flux's evaluator
def test_flux_status_of_every_recorded_object(fluxcel: Path) -> None:
    exprs = checks()
    assert set(exprs) == {"Dataset", "TrainingRun", "ModelDeployment", "ModelGrant"}
    names = sorted(EXPECTED)
    objects = [yaml.safe_load((FIXTURES_DIR / f"{n}.yaml").read_text()) for n in names]
    got = {}
    for kind, kind_exprs in exprs.items():
        mine = [(n, o) for n, o in zip(names, objects, strict=True) if o["kind"] == kind]
        for (name, _), status in zip(mine, evaluate(fluxcel, kind_exprs, [o for _, o in mine]), strict=True):
            got[name] = status
    want = {name: KSTATUS[EXPECTED[name][0]] for name in names}
    assert got == want


@pytest.mark.timeout(1800)
def test_the_evaluator_is_flux_s_and_tells_states_apart(fluxcel: Path) -> None:
    """The harness is not a rubber stamp: a wrong expression gives a different status."""
    obj = yaml.safe_load((FIXTURES_DIR / "trainingrun-trained.yaml").read_text())
    right = checks()["TrainingRun"]
    wrong = {**right, "current": right["current"].replace("'True'", "'False'")}
    assert evaluate(fluxcel, right, [obj]) == ["Current"]
    assert evaluate(fluxcel, wrong, [obj]) == ["InProgress"]
    stale = {**obj, "status": {**obj["status"], "observedGeneration": obj["metadata"]["generation"] - 1}}
    assert evaluate(fluxcel, right, [stale]) == ["InProgress"]  # Flux checks observedGeneration first
