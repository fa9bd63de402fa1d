"""Operator configuration, read once from the environment (the Deployment sets it).

Typed so that a typo in a manifest fails at start-up with the variable's name rather
than at the first reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import constants as C

QUANTITY_OR_EMPTY = r"^([0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?)?$"


class NamespaceSettingsError(ValueError):
    """A Namespace's mlkube.io/artifact-* annotation is invalid (the message names it)."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    trainer_image: str = Field(
        default=C.TRAINER_IMAGE, description="Image of profile and training Jobs (MLKUBE_TRAINER_IMAGE)."
    )
    server_image: str = Field(
        default=C.SERVER_IMAGE, description="Image of predictors (MLKUBE_SERVER_IMAGE)."
    )
    image_pull_policy: str = Field(default="IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")
    artifact_pvc: str = Field(
        default="mlkube-artifacts", description="Per-namespace PVC of the artifact store."
    )
    artifact_storage_class: str | None = Field(
        default=None, description="StorageClass of that PVC; cluster default when unset."
    )
    artifact_size: str = Field(default="5Gi")
    artifact_access_mode: str = Field(
        default="ReadWriteOnce", pattern="^(ReadWriteOnce|ReadWriteMany|ReadWriteOncePod)$"
    )
    artifact_store: str | None = Field(
        default=None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$",
        description="s3://bucket/prefix: artifacts in object storage instead of the per-namespace PVC.",
    )
    artifact_endpoint: str | None = Field(
        default=None, pattern=r"^https?://[^\s/]+/?$", description="Endpoint of an S3-compatible store."
    )
    artifact_region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,64}$")
    artifact_credentials_secret: str | None = Field(
        default=None,
        description="Secret (in each namespace) with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the store.",
    )
    # Requests of containers whose spec sets none, so that namespaces with a ResourceQuota on
    # requests.cpu/requests.memory admit them (a pod without requests is refused there).
    # An empty value adds no request for that resource.
    job_cpu_request: str = Field(
        default="100m",
        pattern=QUANTITY_OR_EMPTY,
        description="CPU request of profile, training and search Jobs.",
    )
    job_memory_request: str = Field(
        default="256Mi", pattern=QUANTITY_OR_EMPTY, description="Memory request of those Jobs."
    )
    predictor_cpu_request: str = Field(
        default="50m", pattern=QUANTITY_OR_EMPTY, description="CPU request of predictor containers."
    )
    predictor_memory_request: str = Field(
        default="128Mi", pattern=QUANTITY_OR_EMPTY, description="Memory request of predictor containers."
    )
    allowed_estimator_prefixes: tuple[str, ...] = Field(default=("sklearn.",))
    profile_backoff_limit: int = Field(default=2, ge=0)
    profile_deadline_seconds: int = Field(default=900, ge=10)

    # The operator process (`mlkube operator`): leader election, endpoints, logs.
    leader_election: bool = Field(
        default=True, description="Reconcile only while holding the leader Lease (MLKUBE_LEADER_ELECTION)."
    )
    leader_lease_name: str = Field(default="mlkube-operator", min_length=1)
    leader_lease_namespace: str | None = Field(
        default=None,
        description="Namespace of the Lease; the pod's own namespace in a cluster, else `default`.",
    )
    leader_lease_duration_seconds: float = Field(
        default=15.0, gt=0, description="How long a standby waits after the last renewal before taking over."
    )
    leader_renew_deadline_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long the leader keeps trying to renew before it gives up and exits.",
    )
    leader_retry_period_seconds: float = Field(
        default=2.0, gt=0, description="Time between two attempts to acquire or renew."
    )
    namespaces: tuple[str, ...] = Field(
        default=(), description="Namespaces to watch (comma-separated); all namespaces when empty."
    )
    api_retry_max_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Longest wait between two retries of a failing API call (a watch that lost "
        "its permission, a 5xx): the retries never stop, they back off 1, 1, 2, 3, 5, ... up to this.",
    )
    bind_address: str = Field(default="0.0.0.0", description="Address of the health and metrics endpoints.")
    health_port: int = Field(default=8080, ge=0, le=65535, description="/healthz, /readyz, /leader.")
    metrics_port: int = Field(default=8081, ge=0, le=65535, description="/metrics (Prometheus).")
    log_format: str = Field(default="text", pattern="^(text|json)$")

    @model_validator(mode="after")
    def _leader_timing(self) -> Self:
        if not self.leader_retry_period_seconds < self.leader_renew_deadline_seconds:
            raise ValueError("MLKUBE_LEADER_RETRY_PERIOD_SECONDS must be less than the renew deadline")
        if not self.leader_renew_deadline_seconds < self.leader_lease_duration_seconds:
            raise ValueError("MLKUBE_LEADER_RENEW_DEADLINE_SECONDS must be less than the lease duration")
        return self

    @property
    def object_store(self) -> bool:
        """Artifacts live in object storage (no PVC is created or mounted)."""
        return self.artifact_store is not None

    @property
    def artifact_root(self) -> str:
        """What Jobs are given as --artifact-root: the s3:// prefix or the PVC's mount path."""
        return self.artifact_store.rstrip("/") if self.artifact_store else C.ARTIFACT_MOUNT

    def for_namespace(self, annotations: Mapping[str, str]) -> Settings:
        """These settings with a Namespace's `mlkube.io/artifact-*` annotations applied.

        A namespace may keep its artifacts in its own bucket (or prefix, endpoint, region
        and credentials Secret), or on the PVC (`mlkube.io/artifact-store: pvc`) while the
        operator's default is object storage. Unset annotations keep the operator's
        values. An invalid value raises NamespaceSettingsError naming the annotation.
        """
        overrides: dict[str, object] = {}
        for key, field in _NAMESPACE_ANNOTATIONS.items():
            if key in annotations:
                value = annotations[key].strip()
                # `pvc` (the store) and empty (endpoint, Secret) mean "none"
                unset = value == C.ARTIFACT_STORE_PVC if field == "artifact_store" else not value
                overrides[field] = None if unset and field != "artifact_region" else value
        if not overrides:
            return self
        try:
            return self.model_validate({**self.model_dump(), **overrides})
        except ValidationError as err:
            fields = {f: k for k, f in _NAMESPACE_ANNOTATIONS.items()}
            problems = "; ".join(
                f"{fields.get(str(e['loc'][0]), str(e['loc'][0]))}: {e['msg']}" if e["loc"] else e["msg"]
                for e in err.errors()
            )
            raise NamespaceSettingsError(f"invalid namespace annotation {problems}") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        raw: dict[str, object] = {}
        for field in cls.model_fields:
            key = f"MLKUBE_{field.upper()}"
            if key in env:
                value: object = env[key]
                if field in ("allowed_estimator_prefixes", "namespaces"):
                    value = tuple(p.strip() for p in env[key].split(",") if p.strip())
                raw[field] = value
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            names = ", ".join(
                f"MLKUBE_{str(e['loc'][0]).upper()}: {e['msg']}" if e["loc"] else e["msg"]
                for e in err.errors()
            )
            raise SystemExit(f"mlkube operator: invalid configuration: {names}") from err


_NAMESPACE_ANNOTATIONS = {
    C.ANNOTATION_ARTIFACT_STORE: "artifact_store",
    C.ANNOTATION_ARTIFACT_ENDPOINT: "artifact_endpoint",
    C.ANNOTATION_ARTIFACT_REGION: "artifact_region",
    C.ANNOTATION_ARTIFACT_CREDENTIALS_SECRET: "artifact_credentials_secret",
}
