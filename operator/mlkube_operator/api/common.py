"""Pieces every mlkube resource shares: the camelCase base model, conditions, references.

The pydantic models are the single source of truth for the API: the CRD schemas are
generated from them (crdgen), handlers parse specs with them and status is written
through them, so a field cannot mean one thing in the schema and another in code.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

# A Kubernetes object name (RFC 1123 subdomain, as most resources use).
K8sName = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    ),
]
# A resource quantity such as "500m", "1Gi" or 2.
Quantity = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")]


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
    )


class StatusModel(BaseModel):
    """Status is written by the operator; tolerate fields a newer operator may have added."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """The standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(description="Condition type, e.g. Ready, Succeeded, Progressing, Degraded.")
    status: ConditionStatus
    reason: str = Field(description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(default=None, description="Generation the condition was set for.")


class LocalObjectReference(ApiModel):
    name: K8sName = Field(description="Name of an object in the same namespace.")


class ConfigMapKeyReference(ApiModel):
    name: K8sName = Field(description="ConfigMap name, in the resource's namespace.")
    key: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        description="Key of the ConfigMap holding the CSV text."
    )


class SecretKeyReference(ApiModel):
    name: K8sName = Field(description="Secret name, in the resource's namespace.")
    key: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = (
        Field(description="Key of the Secret.")
    )


class Resources(ApiModel):
    """Compute resources for the Job or serving containers (requests and limits)."""

    requests: dict[str, Quantity] | None = Field(default=None, description="e.g. {cpu: 500m, memory: 512Mi}.")
    limits: dict[str, Quantity] | None = Field(default=None, description="e.g. {cpu: '2', memory: 2Gi}.")


Conditions = Annotated[
    list[Condition],
    Field(default_factory=list, description="Latest observations of the resource's state."),
]
