"""The real API server applies the generated CRDs: examples pass, invalid specs are refused.

The unit tests check the schemas with a JSON-schema validator; only the API server
evaluates the CEL rules and applies structural defaults, so every invalid example is
also sent through `kubectl apply --dry-run=server`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import kubectl

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))


def _expect(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("# ") and ":" in line:
            key, _, value = line[2:].partition(":")
            out[key.strip()] = value.strip()
    return out


def test_examples_are_accepted_and_defaulted(dev_cluster: Any, namespace: str) -> None:
    out = kubectl(
        dev_cluster.kubeconfig,
        "-n",
        namespace,
        "apply",
        "--dry-run=server",
        "-o",
        "yaml",
        "-f",
        str(ROOT / "examples" / "iris"),
    )
    docs = yaml.safe_load(out)
    items = docs.get("items", [docs])
    run = next(d for d in items if d["kind"] == "TrainingRun")
    assert run["spec"]["split"]["stratify"] is True  # schema default filled in by the API server
    md = next(d for d in items if d["kind"] == "ModelDeployment")
    assert md["spec"]["serving"] == {"port": 8080, "maxBatchSize": 64}
    assert md["spec"]["monitoring"]["thresholds"]["errorRate"] == {"enabled": True, "max": 0.05}


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_specs_meet_the_api_server(dev_cluster: Any, namespace: str, path: Path) -> None:
    verdict = _expect(path)["schema"]
    out = kubectl(
        dev_cluster.kubeconfig, "-n", namespace, "apply", "--dry-run=server", "-f", str(path), check=False
    )
    if verdict == "accept":
        assert "created (server dry run)" in out, out
    else:
        assert "is invalid" in out or "Invalid value" in out or "Required value" in out, out
        if verdict == "cel":
            message = {
                "modeldeployment-canary-no-steps": "steps must list at least one step",
                "modeldeployment-prometheus-no-url": "prometheusUrl is required",
                "modeldeployment-retrain-no-template": "retrainTemplate is required",
                "trainingrun-search-low-not-below-high": "high must be greater than low",
                "trainingrun-search-log-nonpositive": "low must be greater than 0 on a log scale",
                "modelgrant-no-runs": "exactly one of trainingRuns (non-empty) or allTrainingRuns",
                "modelgrant-empty-selector": "an empty selector would grant every namespace",
            }[path.stem]
            assert message in out, out


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("target: y", "reject"),  # a YAML 1.1 boolean to kubectl and the API server; a string to PyYAML
        ("target: 'y'", "accept"),
        ("target: no", "reject"),
        ("target: target", "accept"),
    ],
)
def test_mlkube_validate_reads_yaml_as_the_api_server_does(
    dev_cluster: Any, namespace: str, tmp_path: Path, text: str, verdict: str
) -> None:
    """`mlkube validate` and `kubectl apply` agree on YAML 1.1 scalars (issue 13, finding 8)."""
    import io

    from mlkube_operator.validate import validate

    path = tmp_path / "ds.yaml"
    path.write_text(
        "apiVersion: mlkube.io/v1alpha1\nkind: Dataset\nmetadata: {name: yaml11}\n"
        f"spec:\n  source: {{builtin: iris}}\n  {text}\n"
    )
    out = kubectl(
        dev_cluster.kubeconfig, "-n", namespace, "apply", "--dry-run=server", "-f", str(path), check=False
    )
    report = io.StringIO()
    invalid = validate([path], report)
    if verdict == "accept":
        assert "created (server dry run)" in out, out
        assert invalid == 0, report.getvalue()
    else:
        assert "created" not in out and "spec.target" in out, out
        assert invalid == 1 and "spec.target" in report.getvalue(), report.getvalue()
