"""A missing RBAC rule shows in the object's status and as an Event, and clears when restored.

The operator runs as a separate process with a kubeconfig for a ServiceAccount bound
to a copy of the project's ClusterRole (manifests/rbac.yaml) from which one rule is
taken away: `create` on Jobs, which a server-side apply that creates a Job needs. It
watches only this test's namespace, so it does not meet the session's operator.
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from mlkube_operator import constants as C

from .helpers import apply_docs, condition, event_reasons, get_cr, wait_for
from .operator_proc import OperatorProcess

pytestmark = [pytest.mark.cluster, pytest.mark.host_operator]

ROOT = Path(__file__).resolve().parents[2]
SA = "mlkube-operator"


def project_rules() -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()) if d]
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    return list(role["rules"])


def without(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> list[dict[str, Any]]:
    out = copy.deepcopy(rules)
    for rule in out:
        if group in rule.get("apiGroups", []) and resource in rule.get("resources", []):
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return out


def service_account_kubeconfig(dev_cluster: Any, namespace: str, path: Path) -> str:
    """A kubeconfig that authenticates as the ServiceAccount (a bound token from TokenRequest)."""
    core = kubernetes.client.CoreV1Api(dev_cluster.api_client)
    request = {"spec": {"audiences": [], "expirationSeconds": 3600}}
    token = json.loads(
        core.create_namespaced_service_account_token(SA, namespace, request, _preload_content=False).data
    )["status"]["token"]
    admin = yaml.safe_load(Path(dev_cluster.kubeconfig).read_text())
    cluster = dict(admin["clusters"][0]["cluster"])
    if "certificate-authority" in cluster:
        ca = Path(cluster.pop("certificate-authority"))
        cluster["certificate-authority"] = str(
            ca if ca.is_absolute() else Path(dev_cluster.kubeconfig).parent / ca
        )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dev", "cluster": cluster}],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "dev", "user": SA, "namespace": namespace}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


@contextlib.contextmanager
def restricted(
    dev_cluster: Any, namespace: str, tmp_path: Path, group: str, resource: str, verb: str
) -> Iterator[tuple[OperatorProcess, str]]:
    """The operator as the ServiceAccount, its ClusterRole lacking `verb` on `resource`; yields (process, role)."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(dev_cluster.api_client)
    core = kubernetes.client.CoreV1Api(dev_cluster.api_client)
    role = f"mlkube-operator-{namespace}"
    core.create_namespaced_service_account(namespace, {"metadata": {"name": SA}})
    rbac.create_cluster_role(
        {"metadata": {"name": role}, "rules": without(project_rules(), group, resource, verb)}
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": namespace}],
        }
    )
    kubeconfig = service_account_kubeconfig(dev_cluster, namespace, tmp_path / "sa.kubeconfig")
    kopf = str(Path(sys.executable).with_name("kopf"))
    argv = [kopf, "run", "-m", "mlkube_operator.handlers", f"--namespace={namespace}", "--standalone"]
    # Retries back off to 2 s at most instead of 30 s, so the tenth attempt comes within 20 s.
    proc = OperatorProcess(kubeconfig, tmp_path, argv=argv, env={"MLKUBE_API_RETRY_MAX_SECONDS": "2"})
    proc.start()
    try:
        yield proc, role
    finally:
        proc.stop()
        rbac.delete_cluster_role_binding(role)
        rbac.delete_cluster_role(role)


@pytest.fixture
def restricted_operator(
    dev_cluster: Any, namespace: str, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, str]]:
    """The operator lacking `create` on Jobs."""
    with restricted(dev_cluster, namespace, tmp_path, "batch", "jobs", "create") as out:
        yield out


def test_forbidden_call_shows_in_status_and_clears_when_rbac_is_restored(
    dev_cluster: Any, namespace: str, restricted_operator: tuple[OperatorProcess, str]
) -> None:
    proc, role = restricted_operator
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    dataset = {
        "apiVersion": C.API_VERSION,
        "kind": "Dataset",
        "metadata": {"name": "iris"},
        "spec": {"source": {"builtin": "iris"}, "target": "target"},
    }
    apply_docs(kc, namespace, dataset)

    def failing() -> dict[str, Any] | None:
        cond = condition(get_cr(api, "datasets", namespace, "iris"), C.RECONCILED)
        return cond if cond and cond["status"] == "False" else None

    cond = wait_for(failing, 90, "Reconciled=False on the Dataset", interval=0.5)
    assert cond["reason"] == C.REASON_FORBIDDEN, cond
    assert cond["message"].startswith(f"apply jobs.batch {namespace}/iris-profile-1: HTTP 403: "), cond
    assert 'cannot create resource "jobs"' in cond["message"], cond
    assert C.REASON_FORBIDDEN in event_reasons(kc, namespace, "Dataset")
    assert proc.proc is not None and proc.proc.poll() is None, "the operator keeps running"

    # The resync hits the same 403 and is retried (kopf's TemporaryError), not stopped.
    wait_for(
        lambda: "Resync 'dataset_resync' failed temporarily" in proc.logs() or None,
        60,
        "the resync timer to fail and be retried",
        interval=0.5,
    )
    assert "failed permanently" not in proc.logs()
    still = condition(get_cr(api, "datasets", namespace, "iris"), C.RECONCILED)
    assert still is not None and (still["status"], still["reason"]) == ("False", C.REASON_FORBIDDEN)

    # Restore the rule: the timer's next retry (with backoff, at most a minute apart) succeeds and clears it.
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    rbac.patch_cluster_role(role, {"rules": project_rules()})

    def cleared() -> dict[str, Any] | None:
        obj = get_cr(api, "datasets", namespace, "iris")
        done = condition(obj, C.RECONCILED)
        return obj if done and done["status"] == "True" else None

    obj = wait_for(cleared, 150, "Reconciled=True once the rule is back", interval=1)
    done = condition(obj, C.RECONCILED)
    assert done is not None and done["reason"] == C.REASON_RECONCILE_SUCCEEDED
    ready = condition(obj, C.READY)
    assert ready is not None and ready["reason"] in (C.REASON_PROFILING, C.REASON_PROFILED), ready
    batch = kubernetes.client.BatchV1Api(api)
    assert batch.read_namespaced_job("iris-profile-1", namespace).metadata.name == "iris-profile-1"
    assert C.REASON_RECONCILE_SUCCEEDED in event_reasons(kc, namespace, "Dataset")


def test_rejected_child_shows_in_status_and_clears_after_the_fix(
    dev_cluster: Any, namespace: str, tmp_path: Path
) -> None:
    """A 422 for a child (here the artifact PVC, from a misconfigured storage class) is shown
    as Rejected, naming the call and the API server's answer; fixing the configuration and
    restarting the operator clears it."""
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    kopf = str(Path(sys.executable).with_name("kopf"))
    argv = [kopf, "run", "-m", "mlkube_operator.handlers", f"--namespace={namespace}", "--standalone"]
    proc = OperatorProcess(kc, tmp_path, env={"MLKUBE_ARTIFACT_STORAGE_CLASS": "Fast_SSD"}, argv=argv)
    proc.start()
    try:
        dataset = {
            "apiVersion": C.API_VERSION,
            "kind": "Dataset",
            "metadata": {"name": "iris"},
            "spec": {"source": {"builtin": "iris"}, "target": "target"},
        }
        apply_docs(kc, namespace, dataset)

        def failing() -> dict[str, Any] | None:
            cond = condition(get_cr(api, "datasets", namespace, "iris"), C.RECONCILED)
            return cond if cond and cond["status"] == "False" else None

        cond = wait_for(failing, 90, "Reconciled=False on the Dataset", interval=0.5)
        assert cond["reason"] == C.REASON_REJECTED, cond
        assert cond["message"].startswith(
            f"apply persistentvolumeclaims {namespace}/mlkube-artifacts: HTTP 422: "
        ), cond
        assert "storageClassName" in cond["message"] and "Fast_SSD" in cond["message"], cond
        assert C.REASON_REJECTED in event_reasons(kc, namespace, "Dataset")
        batch = kubernetes.client.BatchV1Api(api)
        assert batch.list_namespaced_job(namespace).items == [], "no Job without its artifact store"

        proc.stop()
        proc.extra_env = {}
        proc.start()

        def cleared() -> dict[str, Any] | None:
            obj = get_cr(api, "datasets", namespace, "iris")
            done = condition(obj, C.RECONCILED)
            return obj if done and done["status"] == "True" else None

        wait_for(cleared, 90, "Reconciled=True after the fix", interval=1)
        assert batch.read_namespaced_job("iris-profile-1", namespace).metadata.name == "iris-profile-1"
    finally:
        proc.stop()


def test_a_watch_that_lost_its_permission_resumes_when_it_is_granted_again(
    dev_cluster: Any, namespace: str, tmp_path: Path
) -> None:
    """kopf would give up a watch after its request backoffs (9 attempts, about a minute) and
    never watch that kind again; the operator's backoffs never run out, so the watch of
    Datasets keeps retrying, logged each time, and resumes once `list` is granted again."""
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    with restricted(dev_cluster, namespace, tmp_path, "mlkube.io", "datasets", "list") as (proc, role):
        dataset = {
            "apiVersion": C.API_VERSION,
            "kind": "Dataset",
            "metadata": {"name": "iris"},
            "spec": {"source": {"builtin": "iris"}, "target": "target"},
        }
        apply_docs(kc, namespace, dataset)
        wait_for(
            lambda: "Request attempt #10 failed; will retry: GET" in proc.logs() or None,
            90,
            "the Dataset watch to retry beyond kopf's default nine attempts",
            interval=1,
        )
        assert "datasets" in proc.logs() and "APIForbiddenError" in proc.logs()
        obj = get_cr(api, "datasets", namespace, "iris")
        assert obj is not None and not (obj.get("status") or {}).get("conditions"), "not seen yet"

        kubernetes.client.RbacAuthorizationV1Api(api).patch_cluster_role(role, {"rules": project_rules()})

        def reconciled() -> dict[str, Any] | None:
            cond = condition(get_cr(api, "datasets", namespace, "iris"), C.READY)
            return cond if cond and cond["reason"] in (C.REASON_PROFILING, C.REASON_PROFILED) else None

        wait_for(reconciled, 90, "the operator to see and reconcile the Dataset", interval=1)
