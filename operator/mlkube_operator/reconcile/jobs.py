"""What a Job and its pods say, and the Job mlkube creates for heavy work.

Results travel back in the pod's termination message (compact JSON), so workloads
need no API access and the operator needs no shared database: reading the Job's
pods is enough, which also makes a restarted operator see exactly what happened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .. import constants as C
from ..api.common import Resources
from ..settings import Settings

JSON = dict[str, Any]


class JobPhase(StrEnum):
    MISSING = "Missing"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobView:
    phase: JobPhase
    result: JSON | None = None
    failure_reason: str = ""
    failure_message: str = ""
    start_time: str | None = None
    completion_time: str | None = None
    failed_pods: int = 0
    annotations: dict[str, str] = field(default_factory=dict)
    # Why a pod of a running Job cannot start its container (an image the node cannot
    # pull), for a condition that says so instead of a silent "Profiling"/"Training".
    image_problem: str = ""


# Waiting reasons of a container whose image the node does not have and cannot get.
IMAGE_WAIT_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"})


def image_problem(pods: list[JSON]) -> str:
    """A message naming the image a pod waits for in vain, and what to do; "" when none does (pure)."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason in IMAGE_WAIT_REASONS:
                detail = str(waiting.get("message") or "").strip()
                return (
                    f"pod {(pod.get('metadata') or {}).get('name')} cannot start: image {cs.get('image')} "
                    f"is not available to its node ({reason}{': ' + detail[:300] if detail else ''}); "
                    "build and push it (`make image`, docs/install.md) or point the operator at an image "
                    "that exists (MLKUBE_TRAINER_IMAGE / MLKUBE_SERVER_IMAGE)"
                )
    return ""


def _condition(job: JSON, type_: str) -> JSON | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def _terminated(pod: JSON) -> JSON | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if state:
            return dict(state)
    return None


def parse_termination_message(message: str | None) -> JSON | None:
    """The last JSON object line of the message (FallbackToLogsOnError may add log lines)."""
    if not message:
        return None
    for line in reversed(message.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def view_job(job: JSON | None, pods: list[JSON]) -> JobView:
    """Summarise a Job from its status and its pods' termination messages (pure)."""
    if job is None:
        return JobView(JobPhase.MISSING)
    status = job.get("status") or {}
    notes = dict((job.get("metadata") or {}).get("annotations") or {})
    start, done = status.get("startTime"), status.get("completionTime")
    finished = sorted(
        ((t.get("finishedAt") or "", t, p) for p in pods if (t := _terminated(p)) is not None),
        key=lambda item: item[0],
    )
    if _condition(job, "Complete"):
        ok = [t for _, t, _p in finished if t.get("exitCode") == 0]
        message = ok[-1].get("message") if ok else None
        return JobView(
            JobPhase.SUCCEEDED, parse_termination_message(message), start_time=start, completion_time=done
        )
    failed = _condition(job, "Failed")
    if failed:
        bad = [t for _, t, _p in finished if t.get("exitCode") != 0]
        last = bad[-1] if bad else None
        result = parse_termination_message(last.get("message")) if last else None
        message = str(failed.get("message") or failed.get("reason") or "Job failed")
        if result is None and last is not None:
            tail = (last.get("message") or "").strip()[-500:]
            message = f"{message}; last pod exited {last.get('exitCode')} ({last.get('reason', '')}): {tail}".rstrip(
                ": "
            )
        return JobView(
            JobPhase.FAILED,
            result,
            failure_reason=str(failed.get("reason") or "Failed"),
            failure_message=message,
            start_time=start,
            completion_time=status.get("completionTime") or failed.get("lastTransitionTime"),
            failed_pods=int(status.get("failed") or 0),
            annotations=notes,
        )
    return JobView(
        JobPhase.RUNNING,
        start_time=start,
        failed_pods=int(status.get("failed") or 0),
        annotations=notes,
        image_problem=image_problem(pods),
    )


def build_job(
    *,
    name: str,
    namespace: str,
    labels: dict[str, str],
    owner: dict[str, object],
    args: list[str],
    settings: Settings,
    backoff_limit: int,
    deadline_seconds: int,
    resources: Resources | None = None,
    config_map: str | None = None,
    annotations: dict[str, str] | None = None,
    env: list[JSON] | None = None,
) -> JSON:
    """A hardened batch/v1 Job running one mlkube entrypoint (pure)."""
    volumes: list[JSON] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[JSON] = [{"name": "tmp", "mountPath": "/tmp"}]
    if not settings.object_store:
        volumes.insert(
            0, {"name": "artifacts", "persistentVolumeClaim": {"claimName": settings.artifact_pvc}}
        )
        mounts.insert(0, {"name": "artifacts", "mountPath": C.ARTIFACT_MOUNT})
    if config_map:
        volumes.append({"name": "source", "configMap": {"name": config_map}})
        mounts.append({"name": "source", "mountPath": C.CONFIGMAP_MOUNT, "readOnly": True})
    container: JSON = {
        "name": "main",
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "mlkube_operator.training"],
        "args": args,
        "env": [
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "HOME", "value": "/tmp"},
            *artifact_store_env(settings),
            *(env or []),
        ],
        "volumeMounts": mounts,
        "terminationMessagePath": C.TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if wanted := with_default_requests(
        resources, cpu=settings.job_cpu_request, memory=settings.job_memory_request
    ):
        container["resources"] = wanted
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": dict(annotations or {}),
            "ownerReferences": [owner],
        },
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": deadline_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "main",
                            "operator": "In",
                            "values": [C.EXIT_PERMANENT],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def with_default_requests(resources: Resources | None, *, cpu: str, memory: str) -> JSON:
    """The container's resources, with a default request for cpu and memory the spec leaves out (pure).

    A namespace whose ResourceQuota covers requests.cpu/requests.memory refuses pods that
    request nothing. A resource with a limit but no request gets no default: Kubernetes then
    requests the limit, and a default above a small limit would be refused.
    """
    out: JSON = resources.model_dump(by_alias=True, exclude_none=True) if resources is not None else {}
    requests = dict(out.get("requests") or {})
    limits = out.get("limits") or {}
    for key, default in (("cpu", cpu), ("memory", memory)):
        if default and key not in requests and key not in limits:
            requests[key] = default
    if requests:
        out["requests"] = requests
    return out


def secret_env(name: str, secret: str, key: str) -> JSON:
    """An env var from a Secret key: the value never appears in the Job's spec or args."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def artifact_store_env(
    settings: Settings, credentials_secret: str | None = None, *, reads: str | None = None
) -> list[JSON]:
    """How Jobs and model servers reach an object-store artifact store (nothing for the PVC).

    `credentials_secret` (a Secret of the pod's own namespace) replaces the operator's
    default MLKUBE_ARTIFACT_CREDENTIALS_SECRET: a ModelDeployment's spec.model.credentialsSecret.
    `reads`: a URI the pod reads; an s3:// one needs the store's endpoint and credentials
    even where the namespace keeps its own artifacts on the PVC (a granted model of a
    namespace whose store is object storage).
    """
    if not settings.object_store and not (reads or "").startswith("s3://"):
        return []
    env: list[JSON] = [{"name": C.ENV_ARTIFACT_REGION, "value": settings.artifact_region}]
    if settings.object_store:
        env.insert(0, {"name": C.ENV_ARTIFACT_STORE, "value": settings.artifact_root})
    if settings.artifact_endpoint:
        env.append({"name": C.ENV_ARTIFACT_ENDPOINT, "value": settings.artifact_endpoint})
    if secret := credentials_secret or settings.artifact_credentials_secret:
        env += [
            secret_env(C.ENV_ARTIFACT_ACCESS_KEY_ID, secret, C.SECRET_KEY_ACCESS_KEY_ID),
            secret_env(C.ENV_ARTIFACT_SECRET_ACCESS_KEY, secret, C.SECRET_KEY_SECRET_ACCESS_KEY),
        ]
    return env
