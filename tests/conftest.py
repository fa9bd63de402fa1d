"""Session-wide test harness: the dev cluster, one namespace per test.

Tests marked `cluster` run against the cluster `mlkube dev up` starts: a real control
plane, a real kubelet with containerd, kube-proxy and cluster DNS, and the operator
installed in-cluster from manifests/ with images built from this checkout. One node runs
per machine (kube-proxy's iptables chains are machine-wide), so the tests share the
developer's cluster (MLKUBE_TEST_DEV_DIR or MLKUBE_DEV_DIR name another state directory)
and isolate themselves by namespace. A cluster the session started is stopped at the end
(`down`, which keeps its data and images for the next run); one that was running is left
running.

Under pytest-xdist (`make test` runs `-n 3`), the workers build and bring up the cluster
one at a time (a file lock), no worker stops it, and the controller stops it at the end
if it was not running when the run began. With MLKUBE_TEST_KEEP_CLUSTER=1 no session
stops it (scripts/test.sh runs several sessions on one cluster and stops it itself).
Tests marked `host_operator` run their own operators and pause the in-cluster one, and
tests marked `exclusive` stop the operator or the node for everyone: scripts/test.sh runs
them in later passes (see there).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mlkube_devcluster import cluster, images
from mlkube_devcluster.binaries import BinariesNotFound, find_binaries
from mlkube_devcluster.node import node_ip
from mlkube_devcluster.state import StateDir
from mlkube_devcluster.testing import DevClusterHandle, wait_for
from servers import PostgresServer, S3Server, ServerUnavailable, postgres_server, s3_server, weed_binary

_BINARIES_ERROR = pytest.StashKey[str]()
_S3_ERROR = pytest.StashKey[str]()
_WAS_RUNNING = pytest.StashKey[bool]()


def _xdist_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


def _xdist_controller(config: pytest.Config) -> bool:
    return not _xdist_worker() and bool(getattr(config.option, "numprocesses", None))


def _keep_cluster() -> bool:
    return os.environ.get("MLKUBE_TEST_KEEP_CLUSTER") == "1"


def _test_state() -> StateDir:
    chosen = os.environ.get("MLKUBE_TEST_DEV_DIR")
    return StateDir(Path(chosen) if chosen else None)


@contextmanager
def _machine_lock(name: str) -> Iterator[None]:
    """One holder at a time on this machine (xdist workers building or starting the cluster)."""
    path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlkube" / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pytest_configure(config: pytest.Config) -> None:
    if _xdist_controller(config):
        config.stash[_WAS_RUNNING] = cluster.status(_test_state().root).running


def pytest_unconfigure(config: pytest.Config) -> None:
    """The xdist controller stops the cluster its workers started (none of them does)."""
    if _xdist_controller(config) and not config.stash.get(_WAS_RUNNING, True) and not _keep_cluster():
        state = _test_state()
        if cluster.status(state.root).running:
            cluster.down(state.root)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build (or find) the cluster's binaries and the S3 server before any test's timeout starts ticking."""
    if any("s3" in getattr(item, "fixturenames", ()) for item in session.items):
        try:
            os.environ["MLKUBE_WEED"] = weed_binary()
        except ServerUnavailable as exc:
            session.config.stash[_S3_ERROR] = str(exc)
    if session.config.option.collectonly or not any(
        item.get_closest_marker("cluster") for item in session.items
    ):
        return
    try:
        with _machine_lock("test-build"):
            find_binaries(build=True)
            # The images and node tools too: building them can take minutes, which must not
            # count against the first cluster test's timeout.
            images.build_mlkube_images()
            images.node_images(images.node_tools_dir())
    except (BinariesNotFound, images.ImageError) as exc:
        session.config.stash[_BINARIES_ERROR] = str(exc)


@pytest.fixture(scope="session")
def dev_cluster(request: pytest.FixtureRequest) -> Iterator[DevClusterHandle]:
    """The dev cluster: `.kubeconfig` (str path), `.api_client`, `.kubectl()`, `.node_ip`."""
    import kubernetes

    error = request.config.stash.get(_BINARIES_ERROR, None)
    if error:
        pytest.fail(f"dev cluster unavailable: {error}", pytrace=False)
    state = _test_state()
    try:
        with _machine_lock("test-cluster-up"):
            was_running = cluster.status(state.root).running
            result = cluster.up(state.root, operator="cluster", timeout=300)
    except Exception as exc:
        pytest.fail(f"mlkube dev up failed for {state.root}: {exc}", pytrace=False)
    bins = find_binaries(build=False)
    os.environ["PATH"] = f"{bins}{os.pathsep}{os.environ.get('PATH', '')}"
    if shutil.which("kubectl") is None:
        pytest.fail(f"kubectl is neither on PATH nor in {bins}", pytrace=False)
    api = kubernetes.config.new_client_from_config(config_file=str(result.kubeconfig))  # type: ignore[no-untyped-call]
    handle = DevClusterHandle(
        state_dir=state.root,
        kubeconfig=str(result.kubeconfig),
        api_client=api,
        timings=result.timings,
        node_ip=node_ip(),
    )
    try:
        yield handle
    finally:
        api.close()
        if not was_running and not _xdist_worker() and not _keep_cluster():
            cluster.down(state.root)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40].strip("-") or "test"


@pytest.fixture
def namespace(dev_cluster: DevClusterHandle, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (its default ServiceAccount exists); deleted afterwards."""
    import kubernetes

    if not cluster.status(dev_cluster.state_dir).running:
        # A test that stopped or broke the cluster (down/up, killed components) must not
        # take the rest of the session with it.
        with _machine_lock("test-cluster-up"):
            cluster.up(dev_cluster.state_dir, operator="cluster", timeout=300)
    core = kubernetes.client.CoreV1Api(dev_cluster.api_client)
    name = f"{_slug(request.node.name)}-{uuid.uuid4().hex[:5]}"
    meta = kubernetes.client.V1ObjectMeta(name=name, labels={"mlkube.io/test": "true"})
    core.create_namespace(kubernetes.client.V1Namespace(metadata=meta))

    def default_sa() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except kubernetes.client.exceptions.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    wait_for(default_sa, 60, f"the default ServiceAccount in namespace {name}")
    yield name
    try:
        core.delete_namespace(name)
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture(scope="session")
def s3(request: pytest.FixtureRequest) -> Iterator[S3Server]:
    """A real S3-compatible server (SeaweedFS) on 127.0.0.1 with one identity (tests/servers.py)."""
    error = request.config.stash.get(_S3_ERROR, None)
    if error:
        pytest.fail(f"S3 server unavailable: {error}", pytrace=False)
    try:
        with s3_server() as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(f"S3 server unavailable: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL (Debian's package) on 127.0.0.1 in a temporary data directory."""
    try:
        with postgres_server() as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(f"PostgreSQL unavailable: {exc}", pytrace=False)
