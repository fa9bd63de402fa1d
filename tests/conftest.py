"""Session-wide test harness: one real dev cluster per test session, one namespace per test.

Tests marked `cluster` run against the same control plane and local kubelet that
`mlkube dev up` starts, in a separate state directory under the temp dir (no operator),
so they never disturb a developer's own `mlkube dev` cluster. Set MLKUBE_TEST_DEV_DIR
to reuse a cluster across runs (it is then left running).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlkube_operator.devcluster import cluster
from mlkube_operator.devcluster.binaries import BinariesNotFound, find_binaries
from mlkube_operator.devcluster.testing import DevClusterHandle, wait_for
from servers import PostgresServer, S3Server, ServerUnavailable, postgres_server, s3_server, weed_binary

_BINARIES_ERROR = pytest.StashKey[str]()
_S3_ERROR = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build (or find) the control-plane binaries and the S3 server before any test's timeout starts ticking."""
    if any("s3" in getattr(item, "fixturenames", ()) for item in session.items):
        try:
            os.environ["MLKUBE_WEED"] = weed_binary()
        except ServerUnavailable as exc:
            session.config.stash[_S3_ERROR] = str(exc)
    if not any(item.get_closest_marker("cluster") for item in session.items):
        return
    try:
        find_binaries(build=True)
    except BinariesNotFound as exc:
        session.config.stash[_BINARIES_ERROR] = str(exc)


@pytest.fixture(scope="session")
def dev_cluster(request: pytest.FixtureRequest) -> Iterator[DevClusterHandle]:
    """The dev cluster for this session: `.kubeconfig` (str path), `.api_client`, `.kubectl()`."""
    import kubernetes

    error = request.config.stash.get(_BINARIES_ERROR, None)
    if error:
        pytest.fail(f"dev cluster unavailable: {error}", pytrace=False)
    reuse = os.environ.get("MLKUBE_TEST_DEV_DIR")
    state_dir = Path(reuse) if reuse else Path(tempfile.mkdtemp(prefix="mlkube-test-"))
    try:
        result = cluster.up(state_dir, operator=False)
    except Exception as exc:
        cluster.down(state_dir)
        pytest.fail(f"mlkube dev up failed for {state_dir}: {exc}", pytrace=False)
    # Prefer a kubectl built with the control plane (same version) over whatever is on PATH.
    bins = find_binaries(build=False)
    if (bins / "kubectl").is_file():
        os.environ["PATH"] = f"{bins}{os.pathsep}{os.environ.get('PATH', '')}"
    if shutil.which("kubectl") is None:
        cluster.down(state_dir, purge=not reuse)
        pytest.fail(f"kubectl is neither on PATH nor in {bins}", pytrace=False)
    crd_error = "; ".join(w for w in result.warnings if w.startswith("CRDs")) or None
    if crd_error:
        warnings.warn(f"dev cluster: {crd_error}", stacklevel=1)
    api = kubernetes.config.new_client_from_config(config_file=str(result.kubeconfig))  # type: ignore[no-untyped-call]
    handle = DevClusterHandle(
        state_dir=state_dir,
        kubeconfig=str(result.kubeconfig),
        api_client=api,
        timings=result.timings,
        crd_error=crd_error,
    )
    try:
        yield handle
    finally:
        api.close()
        if not reuse:
            failed = request.session.testsfailed > 0
            cluster.down(state_dir, purge=not failed)
            if failed:
                print(f"\ndev cluster state kept for inspection: {state_dir}", file=sys.stderr)
                shutil.rmtree(state_dir / "etcd", ignore_errors=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40].strip("-") or "test"


@pytest.fixture
def namespace(dev_cluster: DevClusterHandle, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (its default ServiceAccount exists); deleted afterwards."""
    import kubernetes

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
