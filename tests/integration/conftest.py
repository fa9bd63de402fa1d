"""The operator under test: one real `kopf run` process for the test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .operator_proc import OperatorProcess


@pytest.fixture(scope="session")
def mlkube_operator(dev_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    log_dir: Path = tmp_path_factory.mktemp("operator")
    proc = OperatorProcess(str(dev_cluster.kubeconfig), log_dir)
    proc.start()
    yield proc
    proc.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the tail of the operator's log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "mlkube_operator" in getattr(item, "fixturenames", ()):
        proc = item.funcargs.get("mlkube_operator")  # type: ignore[attr-defined]
        if isinstance(proc, OperatorProcess):
            report.sections.append(("operator log (tail)", proc.logs()[-6000:]))
