"""The source roots never shadow the standard library, and the console script exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_dir_is_a_source_root_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert (ROOT / "operator" / "mlkube_operator" / "__init__.py").exists()
    assert (ROOT / "serving" / "mlkube_serving" / "__init__.py").exists()


def test_stdlib_operator_imports_from_the_repo_root() -> None:
    code = "import collections, operator; assert operator.add(2, 3) == 5; print(operator.__file__)"
    for cwd in (ROOT, ROOT / "operator"):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
        )
        assert "mlkube" not in out.stdout


def test_console_script_runs() -> None:
    mlkube = Path(sys.executable).with_name("mlkube")
    out = subprocess.run([str(mlkube), "--help"], capture_output=True, text=True, check=True)
    assert "dev" in out.stdout and "validate" in out.stdout
