"""The ModelGrant resource: a namespace lets other namespaces serve its models.

A ModelDeployment's `trainingRunRef` may name a TrainingRun in another namespace only
where that namespace says so, in the spirit of Gateway API's ReferenceGrant: the grant
lives in the namespace that owns the model (its owners decide who may use it), names
the consumer namespaces (by name or by label selector) and the TrainingRuns it covers.
A grant is a permission, never a copy: no Secret, model or object crosses namespaces;
the consumer's predictors read the model from object storage with the consumer's own
credentials (docs/operator.md, "Serving another namespace's model").
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from .common import ApiModel, Conditions, K8sName, StatusModel

# A namespace name (RFC 1123 label).
NamespaceName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=317)]
LabelValue = Annotated[str, StringConstraints(max_length=63)]


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(ApiModel):
    key: LabelKey
    operator: SelectorOperator
    values: list[LabelValue] = Field(
        default_factory=list, description="Required for In and NotIn, empty for Exists and DoesNotExist."
    )

    @model_validator(mode="after")
    def _values(self) -> Self:
        needs = self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
        if needs and not self.values:
            raise ValueError(f"values must not be empty for operator {self.operator.value}")
        if not needs and self.values:
            raise ValueError(f"values must be empty for operator {self.operator.value}")
        return self


class LabelSelector(ApiModel):
    """A Kubernetes label selector (metav1.LabelSelector): all requirements must hold."""

    match_labels: dict[str, LabelValue] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_everything(self) -> Self:
        if not self.match_labels and not self.match_expressions:
            raise ValueError("an empty selector would grant every namespace; name them or select by label")
        return self


class GrantFrom(ApiModel):
    """Consumer namespaces: exactly one of a name or a label selector on Namespaces."""

    namespace: NamespaceName | None = Field(default=None, description="A namespace allowed to refer.")
    namespace_selector: LabelSelector | None = Field(
        default=None, description="Namespaces whose labels match are allowed to refer."
    )

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.namespace is None) == (self.namespace_selector is None):
            raise ValueError("exactly one of namespace or namespaceSelector must be set")
        return self


class ModelGrantSpec(ApiModel):
    from_: list[GrantFrom] = Field(
        alias="from",
        min_length=1,
        max_length=64,
        description="Namespaces whose ModelDeployments may serve the models of this namespace's TrainingRuns.",
    )
    training_runs: list[K8sName] = Field(
        default_factory=list,
        max_length=256,
        description="TrainingRuns (in this namespace) the grant covers; or set allTrainingRuns.",
    )
    all_training_runs: bool = Field(
        default=False, description="Cover every TrainingRun of this namespace, present and future."
    )

    @model_validator(mode="after")
    def _which_runs(self) -> Self:
        if self.all_training_runs == bool(self.training_runs):
            raise ValueError("exactly one of trainingRuns (non-empty) or allTrainingRuns: true must be set")
        return self


class ModelGrantStatus(StatusModel):
    observed_generation: int | None = None
    conditions: Conditions
    summary: str | None = Field(default=None, description="Who may serve what, in one line (for kubectl).")
