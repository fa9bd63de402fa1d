"""The PrometheusRule is valid for Prometheus and its alerts fire when, and only when, they should.

Checked with the real Prometheus rule engine (`promtool` from Debian's `prometheus`
package, installed by `.ci/run`), not by reading the YAML.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (.ci/run and `make test` do)")
    return found


@pytest.fixture()
def rules_dir(tmp_path: Path) -> Path:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    shutil.copy(ROOT / "tests" / "data" / "prometheus" / "rules_test.yml", tmp_path / "rules_test.yml")
    return tmp_path


def test_rules_pass_promtool_check(rules_dir: Path) -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(rules_dir / "rules.yml")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_alerts_fire_as_specified(rules_dir: Path) -> None:
    out = subprocess.run(
        [promtool(), "test", "rules", "rules_test.yml"], cwd=rules_dir, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_rule_tests_can_fail(rules_dir: Path) -> None:
    """A broken threshold makes the promtool tests fail, so the test above is not vacuous."""
    rules = (rules_dir / "rules.yml").read_text().replace("> 0.05", "> 0.5")
    (rules_dir / "rules.yml").write_text(rules)
    out = subprocess.run(
        [promtool(), "test", "rules", "rules_test.yml"], cwd=rules_dir, capture_output=True, text=True
    )
    assert out.returncode != 0 and "MlkubeModelErrorRateHigh" in out.stdout + out.stderr


def test_podmonitor_selects_what_the_operator_labels() -> None:
    from mlkube_operator import constants as C

    monitor = yaml.safe_load((MONITORING / "podmonitor.yaml").read_text())
    assert monitor["spec"]["selector"]["matchLabels"] == {
        C.LABEL_COMPONENT: C.COMPONENT_PREDICTOR,
        C.LABEL_MANAGED_BY: C.MANAGED_BY,
    }
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == C.SERVING_PORT_NAME
