"""`mlkube validate` accepts the examples and names the field of each invalid spec."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from mlkube_operator.validate import validate

ROOT = Path(__file__).resolve().parents[2]


def test_examples_are_valid() -> None:
    out = io.StringIO()
    assert validate([ROOT / "examples"], out) == 0
    assert "3 mlkube resource(s) checked, 0 invalid" in out.getvalue()


def test_invalid_specs_are_reported_with_their_field() -> None:
    out = io.StringIO()
    invalid = sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))
    assert validate(invalid, out) == len(invalid)
    text = out.getvalue()
    assert "TrainingRun/test-fraction: spec.split.testFraction:" in text
    assert "Dataset/two-sources: spec.source: exactly one of" in text


def test_command_line_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: mlkube.io/v1alpha1\nkind: Dataset\nmetadata: {name: x}\nspec: {target: y}\n")
    result = subprocess.run(
        [sys.executable, "-m", "mlkube_operator.cli", "validate", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Dataset/x: spec.source: Field required" in result.stdout
