"""`mlkube validate` accepts the examples and names the field of each invalid spec."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlkube_operator.kubeyaml import go_scalar
from mlkube_operator.validate import exit_code, validate

ROOT = Path(__file__).resolve().parents[2]


def test_examples_are_valid() -> None:
    out = io.StringIO()
    assert validate([ROOT / "examples"], out) == 0
    docs = [d for p in (ROOT / "examples").rglob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    count = sum(1 for d in docs if str(d.get("apiVersion", "")).startswith("mlkube.io/"))
    assert count >= 4
    assert f"{count} mlkube resource(s) checked, 0 invalid" in out.getvalue()


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


DATASET = "apiVersion: {api}\nkind: Dataset\nmetadata: {{name: {name}}}\nspec:\n  source: {{builtin: iris}}\n  target: {target}\n"


def _run(tmp_path: Path, **files: str) -> tuple[int, str]:
    paths = []
    for name, text in files.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        paths.append(path)
    out = io.StringIO()
    return validate(paths, out), out.getvalue()


def test_an_unknown_version_of_our_group_is_an_error(tmp_path: Path) -> None:
    bad, text = _run(
        tmp_path,
        beta=DATASET.format(api="mlkube.io/v1beta1", name="beta", target="target"),
        bare=DATASET.format(api="mlkube.io", name="bare", target="target"),
        other=DATASET.format(api="example.com/v1", name="other", target="target"),
        good=DATASET.format(api="mlkube.io/v1alpha1", name="good", target="target"),
    )
    assert bad == 2
    assert "Dataset/beta: apiVersion 'mlkube.io/v1beta1' is not served by this mlkube" in text
    assert "only mlkube.io/v1alpha1" in text
    assert "Dataset/bare: apiVersion 'mlkube.io' is not served" in text
    assert "other" not in text  # another group's resources are not ours to judge
    assert "3 mlkube resource(s) checked, 2 invalid" in text


@pytest.mark.parametrize(
    ("plain", "reading"),
    [
        ("y", "true"),
        ("Y", "true"),
        ("yes", "true"),
        ("on", "true"),
        ("n", "false"),
        ("no", "false"),
        ("OFF", "false"),
    ],
)
def test_yaml_11_booleans_are_read_as_the_api_server_reads_them(
    tmp_path: Path, plain: str, reading: str
) -> None:
    bad, text = _run(tmp_path, ds=DATASET.format(api="mlkube.io/v1alpha1", name="ds", target=plain))
    assert bad == 1, text
    assert "Dataset/ds: spec.target: Input should be a valid string" in text
    assert f"the unquoted {plain} is read as {reading} by the Kubernetes API server" in text
    assert f'write "{plain}"' in text
    # Quoted, it is the text the user meant.
    bad, text = _run(tmp_path, ds=DATASET.format(api="mlkube.io/v1alpha1", name="ds", target=f'"{plain}"'))
    assert bad == 0, text


def test_a_boolean_where_a_boolean_belongs_is_fine(tmp_path: Path) -> None:
    run = (
        "apiVersion: mlkube.io/v1alpha1\nkind: TrainingRun\nmetadata: {name: r}\nspec:\n"
        "  datasetRef: {name: iris}\n  estimator: {className: sklearn.tree.DecisionTreeClassifier}\n"
        "  split: {stratify: no, testFraction: 25e-2}\n"
    )
    bad, text = _run(tmp_path, run=run)
    assert bad == 0, text


def test_a_surprising_key_and_name_are_named(tmp_path: Path) -> None:
    doc = DATASET.format(api="mlkube.io/v1alpha1", name="yes", target="target") + "  on: 1\n"
    bad, text = _run(tmp_path, ds=doc)
    assert bad == 1
    assert "metadata.name: must be a string (the unquoted yes is read as true" in text
    doc = DATASET.format(api="mlkube.io/v1alpha1", name="k", target="target") + "  on: 1\n"
    bad, text = _run(tmp_path, ds=doc)
    assert bad == 1
    assert "spec.true: Extra inputs are not permitted (the unquoted key on is read as true" in text


def test_go_yaml_scalar_table() -> None:
    # go-yaml v2 resolve(): what sigs.k8s.io/yaml hands the API server for plain scalars.
    cases = {
        "y": True,
        "NO": False,
        "true": True,
        "~": None,
        "null": None,
        "1e3": 1000.0,  # a string to PyYAML
        "0o17": 15,  # a string to PyYAML
        "017": 15,
        "0x1F": 31,
        "1_000": 1000,
        "08": 8.0,  # not octal, so a float
        "1:30": "1:30",  # 90 to PyYAML (sexagesimal)
        "2024-01-02": "2024-01-02",
        ".5": 0.5,
        "-.inf": float("-inf"),
        "+1": 1,
        "iris": "iris",
    }
    assert {text: go_scalar(text) for text in cases} == cases


def test_exit_code_is_the_number_of_invalid_resources(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"bad{i}.yaml").write_text(
            DATASET.format(api="mlkube.io/v1alpha1", name=f"b{i}", target="y")
        )
    (tmp_path / "good.yaml").write_text(DATASET.format(api="mlkube.io/v1alpha1", name="g", target="target"))
    result = subprocess.run(
        [sys.executable, "-m", "mlkube_operator.cli", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 5, result.stdout + result.stderr
    assert "6 mlkube resource(s) checked, 5 invalid" in result.stdout
    assert exit_code(0) == 0 and exit_code(300) == 125
