"""The operator under test: the in-cluster Deployment `mlkube dev up` installed."""

from __future__ import annotations

import fcntl
import http.server
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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


def _holders_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlkube"
    return cache / ".host-operator-modules"


@contextmanager
def _holders() -> Iterator[Path]:
    """The directory of running host_operator modules (one file per pid), under a file lock."""
    folder = _holders_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder.parent / ".host-operator-modules.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for entry in folder.iterdir():  # left by a killed run
                if not Path(f"/proc/{entry.name}").exists():
                    entry.unlink(missing_ok=True)
            yield folder
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(autouse=True, scope="module")
def _pause_cluster_operator(request: pytest.FixtureRequest) -> Iterator[None]:
    """Modules marked `host_operator` run operators as host processes, each scoped to its
    own namespaces with its Lease there: the in-cluster one is scaled to zero meanwhile, so
    it neither reconciles their objects nor holds a Lease. Several such modules may run at
    once (xdist workers): the first to start pauses it, the last to finish resumes it."""
    if request.node.get_closest_marker("host_operator") is None:
        yield
        return
    dev_cluster = request.getfixturevalue("dev_cluster")
    handle = ClusterOperator(str(dev_cluster.kubeconfig))
    me = str(os.getpid())
    with _holders() as folder:
        if not any(folder.iterdir()):
            handle.stop()
        (folder / me).touch()
    try:
        yield
    finally:
        with _holders() as folder:
            (folder / me).unlink(missing_ok=True)
            if not any(folder.iterdir()):
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
