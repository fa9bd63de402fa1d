"""The operator under test: the in-cluster Deployment `mlkube dev up` installed."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .operator_proc import ClusterOperator


@pytest.fixture(scope="session")
def mlkube_operator(dev_cluster: Any) -> Iterator[ClusterOperator]:
    handle = ClusterOperator(str(dev_cluster.kubeconfig))
    yield handle
    # A test that killed it and failed before starting it again leaves it scaled down.
    handle.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the tail of the operator's log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "mlkube_operator" in getattr(item, "fixturenames", ()):
        proc = item.funcargs.get("mlkube_operator")  # type: ignore[attr-defined]
        if isinstance(proc, ClusterOperator):
            report.sections.append(("operator log (tail)", proc.logs()[-6000:]))


@pytest.fixture(autouse=True, scope="module")
def _pause_cluster_operator(request: pytest.FixtureRequest) -> Iterator[None]:
    """Modules marked `host_operator` run operators as host processes: the in-cluster one
    is scaled to zero meanwhile, so it neither reconciles their objects nor holds a Lease."""
    if request.node.get_closest_marker("host_operator") is None:
        yield
        return
    dev_cluster = request.getfixturevalue("dev_cluster")
    handle = ClusterOperator(str(dev_cluster.kubeconfig))
    handle.stop()
    yield
    handle.start()


@pytest.fixture()
def data_dir(tmp_path: Path, dev_cluster: Any) -> Iterator[tuple[str, Path]]:
    """An HTTP server of the test's own on the node's address (pods reach the machine there)."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer((dev_cluster.node_ip, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{dev_cluster.node_ip}:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()
