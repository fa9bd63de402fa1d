"""The ModelDeployment resource: a trained model served, watched and acted upon.

The spec says what should serve and what "healthy" means in numbers; the operator
closes the loop (analysis verdict -> canary promotion, rollback, alert, retrain) and
records every decision in status so a GitOps tool sees no drift it did not cause.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from .common import ApiModel, Conditions, LocalObjectReference, Resources, StatusModel
from .trainingrun import TrainingRunSpec


class ModelSource(ApiModel):
    training_run_ref: LocalObjectReference = Field(
        description="A Succeeded TrainingRun whose model to serve."
    )


class StrategyType(StrEnum):
    ROLLING = "Rolling"
    CANARY = "Canary"


class CanaryStep(ApiModel):
    weight: int = Field(ge=1, le=100, description="Percent of replicas running the new model at this step.")
    pause_seconds: int = Field(
        default=60, ge=0, le=86400, description="Observation time before the next step."
    )


class Strategy(ApiModel):
    type: StrategyType = Field(default=StrategyType.ROLLING)
    steps: list[CanaryStep] = Field(
        default_factory=list, description="Canary steps, increasing weights; required for Canary."
    )

    @model_validator(mode="after")
    def _canary_steps(self) -> Self:
        if self.type is StrategyType.CANARY:
            if not self.steps:
                raise ValueError("steps must list at least one step for the Canary strategy")
            weights = [s.weight for s in self.steps]
            if weights != sorted(set(weights)):
                raise ValueError("steps weights must strictly increase")
        return self


class MetricsSourceType(StrEnum):
    PROMETHEUS = "Prometheus"
    POD_SCRAPE = "PodScrape"


class MetricsSource(ApiModel):
    type: MetricsSourceType = Field(default=MetricsSourceType.POD_SCRAPE)
    prometheus_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")] | None = Field(
        default=None, description="Prometheus base URL; required when type is Prometheus."
    )

    @model_validator(mode="after")
    def _url_for_prometheus(self) -> Self:
        if self.type is MetricsSourceType.PROMETHEUS and not self.prometheus_url:
            raise ValueError("prometheusUrl is required when type is Prometheus")
        return self


class Thresholds(ApiModel):
    """Bounds beyond which the deployment is Degraded; an unset bound is not checked."""

    max_error_rate: float | None = Field(default=0.05, ge=0.0, le=1.0, description="5xx share of requests.")
    max_latency_p99_ms: float | None = Field(default=500.0, gt=0.0, description="p99 request latency, ms.")
    max_input_drift_psi: float | None = Field(default=0.25, gt=0.0, description="Largest per-feature PSI.")
    max_prediction_drift_psi: float | None = Field(default=0.25, gt=0.0, description="PSI of predictions.")
    min_accuracy: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Accuracy from feedback labels."
    )


class Monitoring(ApiModel):
    enabled: bool = True
    source: MetricsSource = Field(default_factory=MetricsSource)
    interval_seconds: int = Field(default=30, ge=5, le=3600, description="How often the analysis runs.")
    window_seconds: int = Field(default=300, ge=10, le=86400, description="Look-back window of the analysis.")
    min_samples: int = Field(default=100, ge=1, description="Fewest requests before a verdict is given.")
    thresholds: Thresholds = Field(default_factory=Thresholds)


class DegradationAction(StrEnum):
    ALERT = "Alert"
    ROLLBACK = "Rollback"
    RETRAIN = "Retrain"


class OnDegradation(ApiModel):
    action: DegradationAction = Field(default=DegradationAction.ALERT)
    cooldown_seconds: int = Field(default=600, ge=0, le=7 * 86400, description="Least time between actions.")
    retrain_template: TrainingRunSpec | None = Field(
        default=None, description="Spec of the TrainingRun created by the Retrain action."
    )

    @model_validator(mode="after")
    def _template_for_retrain(self) -> Self:
        if self.action is DegradationAction.RETRAIN and self.retrain_template is None:
            raise ValueError("retrainTemplate is required when action is Retrain")
        return self


class ServingOptions(ApiModel):
    port: int = Field(default=8080, ge=1024, le=65535, description="Container port of the model server.")
    max_batch_size: int = Field(default=64, ge=1, le=4096, description="Largest coalesced predict batch.")


class ModelDeploymentSpec(ApiModel):
    model: ModelSource
    replicas: int = Field(default=1, ge=0, le=100)
    resources: Resources | None = None
    strategy: Strategy = Field(default_factory=Strategy)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    on_degradation: OnDegradation = Field(default_factory=OnDegradation)
    serving: ServingOptions = Field(default_factory=ServingOptions)


class ServedModel(StatusModel):
    training_run: str
    uri: str
    sha256: str
    dataset_hash: str | None = None


class Verdict(StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    INSUFFICIENT_DATA = "InsufficientData"


class AnalysisValues(StatusModel):
    samples: int | None = None
    error_rate: float | None = None
    latency_p99_ms: float | None = None
    input_drift_psi: float | None = None
    input_drift_feature: str | None = None
    prediction_drift_psi: float | None = None
    accuracy: float | None = None


class Analysis(StatusModel):
    time: datetime
    verdict: Verdict
    values: AnalysisValues = Field(default_factory=AnalysisValues)
    reasons: list[str] = Field(
        default_factory=list, description="Which thresholds were crossed, with values."
    )


class CanaryStatus(StatusModel):
    step: int
    weight: int
    step_started_time: datetime | None = None


class ModelDeploymentStatus(StatusModel):
    observed_generation: int | None = None
    conditions: Conditions
    current_model: ServedModel | None = None
    previous_model: ServedModel | None = None
    candidate_model: ServedModel | None = Field(
        default=None, description="The model a canary is rolling out."
    )
    canary: CanaryStatus | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    last_analysis: Analysis | None = None
    last_action: str | None = Field(
        default=None, description="The last action taken on degradation, and why."
    )
    last_action_time: datetime | None = None
    rollbacks: int = 0
    rolled_back_from: str | None = Field(
        default=None,
        description="sha256 of a model rolled back from: while the TrainingRun still offers it, pinnedModel is served.",
    )
    pinned_model: ServedModel | None = Field(default=None, description="The model a rollback returned to.")
    retrain_run: str | None = Field(
        default=None,
        description="TrainingRun created by the Retrain action; its model is served once it has one.",
    )
    retrains: int = 0
