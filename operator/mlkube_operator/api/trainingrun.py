"""The TrainingRun resource: one scikit-learn fit on one Dataset, recorded for good.

Fitting happens in a Job; the status is the receipt: which dataset bytes went in
(datasetHash), which model bytes came out (sha256), and how good they are.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, StringConstraints, model_validator

from .common import ApiModel, Conditions, LocalObjectReference, Resources, StatusModel
from .metric import CLASSIFICATION_METRICS as CLASSIFICATION_METRICS
from .metric import LOWER_IS_BETTER as LOWER_IS_BETTER
from .metric import REGRESSION_METRICS as REGRESSION_METRICS
from .metric import Metric as Metric
from .search import Search, SearchStatus

DottedPath = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$", max_length=256),
]


class Estimator(ApiModel):
    class_name: DottedPath = Field(
        description="Dotted path of the estimator class; only sklearn.* unless the operator allows more."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Constructor parameters, validated by the estimator itself."
    )


class Split(ApiModel):
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0, description="Fraction held out for evaluation.")
    seed: int = Field(default=42, ge=0, description="Random seed of the split.")
    stratify: bool = Field(default=True, description="Stratify by the target (classification only).")


class QualityGate(ApiModel):
    """The run fails (QualityGateFailed) unless the metric clears the bound."""

    metric: Metric
    minimum: float | None = Field(
        default=None, description="Lowest acceptable value (higher-is-better metrics)."
    )
    maximum: float | None = Field(default=None, description="Highest acceptable value (rmse, mae).")

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if (self.minimum is None) == (self.maximum is None):
            raise ValueError("exactly one of minimum or maximum must be set")
        return self


class DatasetPolicy(StrEnum):
    """What a finished run does when its Dataset's content changes (a refresh read new data)."""

    PIN = "Pin"
    FOLLOW = "Follow"


class TrainingRunSpec(ApiModel):
    dataset_ref: LocalObjectReference = Field(description="The Dataset to train on (same namespace).")
    dataset_policy: DatasetPolicy = Field(
        default=DatasetPolicy.PIN,
        description="Pin: keep the model and set the Stale condition when the Dataset's contentHash moves; "
        "Follow: train again on the new data (the model is replaced once the new one is trained; "
        "with search, the search runs again).",
    )
    estimator: Estimator
    split: Split = Field(default_factory=Split)
    metrics: list[Metric] = Field(
        default_factory=list, description="Metrics to report; every one that applies when empty."
    )
    quality_gate: QualityGate | None = None
    resources: Resources | None = None
    backoff_limit: int = Field(default=1, ge=0, le=10, description="Retries of the training Job.")
    active_deadline_seconds: int = Field(default=3600, ge=10, le=7 * 24 * 3600, description="Job deadline.")
    search: Search | None = Field(
        default=None,
        description="Hyperparameter search: the best trial's parameters are refitted into the run's model.",
    )


class ModelArtifact(StatusModel):
    uri: str = Field(description="file:// URI of model.joblib on the artifact volume.")
    sha256: str = Field(description="sha256 of the model.joblib bytes.")
    size_bytes: int | None = None
    dataset_hash: str | None = Field(
        default=None, description="contentHash of the Dataset it was trained on."
    )
    metadata_uri: str | None = None


class TrainingRunStatus(StatusModel):
    observed_generation: int | None = None
    conditions: Conditions
    dataset_current_hash: str | None = Field(
        default=None, description="The Dataset's contentHash now (differs from model.datasetHash when Stale)."
    )
    follow_round: int = Field(
        default=0, description="Retrains of this generation that followed new Dataset contents (Follow)."
    )
    job_name: str | None = None
    dataset_hash: str | None = None
    task: str | None = Field(default=None, description="classification or regression.")
    metrics: dict[str, float] | None = None
    accuracy: float | None = Field(
        default=None, description="metrics.accuracy rounded to 4 decimals (for kubectl)."
    )
    r2: float | None = Field(default=None, description="metrics.r2 rounded to 4 decimals (for kubectl).")
    model: ModelArtifact | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    search: SearchStatus | None = None
