"""Operator configuration, read once from the environment (the Deployment sets it).

Typed so that a typo in a manifest fails at start-up with the variable's name rather
than at the first reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import constants as C


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    image: str = Field(default=C.IMAGE, description="Image of Jobs and serving pods (MLKUBE_IMAGE).")
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
    allowed_estimator_prefixes: tuple[str, ...] = Field(default=("sklearn.",))
    profile_backoff_limit: int = Field(default=2, ge=0)
    profile_deadline_seconds: int = Field(default=900, ge=10)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        raw: dict[str, object] = {}
        for field in cls.model_fields:
            key = f"MLKUBE_{field.upper()}"
            if key in env:
                value: object = env[key]
                if field == "allowed_estimator_prefixes":
                    value = tuple(p.strip() for p in env[key].split(",") if p.strip())
                raw[field] = value
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            names = ", ".join(f"MLKUBE_{str(e['loc'][0]).upper()}: {e['msg']}" for e in err.errors())
            raise SystemExit(f"mlkube operator: invalid configuration: {names}") from err
