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

from .common import ApiModel, Conditions, K8sName, LocalObjectReference, Resources, StatusModel
from .grant import NamespaceName
from .trainingrun import TrainingRunSpec


class TrainingRunReference(ApiModel):
    name: K8sName = Field(description="Name of the TrainingRun.")
    namespace: NamespaceName | None = Field(
        default=None,
        description=(
            "Namespace of the TrainingRun; default: the ModelDeployment's. Another namespace must grant it "
            "(a ModelGrant there) and its model must be in object storage (s3://)."
        ),
    )


class ModelSource(ApiModel):
    training_run_ref: TrainingRunReference = Field(
        description="A Succeeded TrainingRun whose model to serve."
    )
    credentials_secret: LocalObjectReference | None = Field(
        default=None,
        description=(
            "Secret in this namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY with which the predictors "
            "read the model from object storage; default: the operator's MLKUBE_ARTIFACT_CREDENTIALS_SECRET. "
            "Never copied from another namespace."
        ),
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
    progress_deadline_seconds: int = Field(
        default=900,
        ge=10,
        le=7 * 86400,
        description=(
            "Longest a canary step may wait for a conclusive Healthy verdict (enough requests on the "
            "canary's pods); after it the canary is aborted (CanaryInconclusive). Must exceed every pauseSeconds."
        ),
    )

    @model_validator(mode="after")
    def _canary_steps(self) -> Self:
        if self.type is StrategyType.CANARY:
            if not self.steps:
                raise ValueError("steps must list at least one step for the Canary strategy")
            weights = [s.weight for s in self.steps]
            if weights != sorted(set(weights)):
                raise ValueError("steps weights must strictly increase")
            longest = max(s.pause_seconds for s in self.steps)
            if self.progress_deadline_seconds <= longest:
                raise ValueError(
                    f"progressDeadlineSeconds {self.progress_deadline_seconds} must exceed every step's "
                    f"pauseSeconds (longest {longest})"
                )
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


DEFAULT_CUSUM_ALLOWANCE, DEFAULT_CUSUM_LIMIT = 0.5, 4.5  # benchmarks/drift.py


class ErrorRateCheck(ApiModel):
    """The share of 5xx responses, tested one-sided against ``max``."""

    enabled: bool = Field(default=True, description="Whether this check runs (false turns it off).")
    max: float = Field(
        default=0.05, gt=0.0, lt=1.0, description="Tolerated 5xx share; Degraded when significantly above it."
    )


class LatencyCheck(ApiModel):
    """The p99 request latency: Degraded when significantly more than 1 % of requests are slower."""

    enabled: bool = Field(default=True, description="Whether this check runs (false turns it off).")
    max_p99_ms: float = Field(default=500.0, gt=0.0, le=600000.0, description="Tolerated p99 latency, ms.")


class DriftCheck(ApiModel):
    """A binned distribution (inputs per feature, or predictions) against its reference."""

    enabled: bool = Field(default=True, description="Whether this check runs (false turns it off).")
    min_effect_size: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="Smallest drift acted on, as total variation distance: the share of rows that moved "
        "between bins or levels (a 0.25-sd mean shift is about 0.1). Significant smaller shifts are reported only.",
    )


class AccuracyCheck(ApiModel):
    """Fed-back accuracy against the model's own held-out accuracy (the TrainingRun's test split)."""

    enabled: bool = Field(default=True, description="Whether this check runs (false turns it off).")
    max_drop: float = Field(
        default=0.05,
        ge=0.0,
        lt=1.0,
        description="Tolerated drop below the held-out accuracy; Degraded when the drop is significantly larger.",
    )
    min_labels: int = Field(
        default=50,
        ge=1,
        le=1000000,
        description="Fewest labelled predictions in the window to test accuracy.",
    )


DEFAULT_WINDOW_REQUESTS = 150  # benchmarks/drift.py: 150-250 keep every target; 150 is the fastest


class CusumCheck(ApiModel):
    """A one-sided CUSUM per check over the windows' standardized statistics.

    Each judged window turns a check's p-value into ``z`` (the normal quantile, 0 on
    average without drift); ``S = max(0, S + z - allowance)`` and the check fails once
    ``S >= limit`` (and, for drift, this window's effect is at least minEffectSize).
    """

    enabled: bool = Field(
        default=True, description="Whether evidence is accumulated (false: each window alone)."
    )
    allowance: float = Field(
        default=DEFAULT_CUSUM_ALLOWANCE,
        gt=0.0,
        le=10.0,
        description="Slack subtracted from each window's z: evidence below it does not accumulate.",
    )
    limit: float = Field(
        default=DEFAULT_CUSUM_LIMIT,
        gt=0.0,
        le=100.0,
        description="Accumulated evidence at which a check fails (higher: fewer false alarms, later detection).",
    )


class Thresholds(ApiModel):
    """What the analysis checks, every default spelt out (``kubectl get -o yaml`` shows them all).

    Each check is a statistical test sized to the window; together they share the
    false-alarm budget ``alpha`` (Holm correction). A check is turned off with
    ``enabled: false``, never with null (a client-side ``kubectl apply`` drops nulls).
    """

    alpha: float = Field(
        default=0.001,
        gt=0.0,
        lt=1.0,
        description="False-alarm budget of one analysis: the chance that a window without any change is "
        "judged Degraded, shared by all checks (Holm).",
    )
    min_expected_count: float = Field(
        default=5.0,
        ge=1.0,
        le=1000.0,
        description="Fewest expected rows per bin; sparser bins and levels are folded into their neighbours.",
    )
    error_rate: ErrorRateCheck = Field(default_factory=ErrorRateCheck)
    latency: LatencyCheck = Field(default_factory=LatencyCheck)
    input_drift: DriftCheck = Field(
        default_factory=DriftCheck, description="Each input feature against the Dataset's reference profile."
    )
    prediction_drift: DriftCheck = Field(
        default_factory=DriftCheck,
        description="Predicted classes, scores (predict_proba) or values against the model's own predictions "
        "on its held-out rows.",
    )
    accuracy: AccuracyCheck = Field(default_factory=AccuracyCheck)
    cusum: CusumCheck = Field(
        default_factory=CusumCheck,
        description="Evidence accumulated across windows (CUSUM) for input drift, prediction drift and accuracy.",
    )


class Monitoring(ApiModel):
    enabled: bool = True
    source: MetricsSource = Field(default_factory=MetricsSource)
    interval_seconds: int = Field(
        default=30, ge=5, le=3600, description="How often the operator looks at the open window."
    )
    window_requests: int = Field(
        default=DEFAULT_WINDOW_REQUESTS,
        ge=1,
        le=10_000_000,
        description="A window is judged once it holds this many prediction requests; the next one starts "
        "where it ended (windows do not overlap), so every window holds the same evidence at any traffic.",
    )
    window_seconds: int = Field(
        default=300,
        ge=10,
        le=86400,
        description="Longest a window stays open: after it, the window is judged on what it holds if that is "
        "at least minSamples requests (else InsufficientData, and the window stays open).",
    )
    min_samples: int = Field(
        default=DEFAULT_WINDOW_REQUESTS,
        ge=1,
        description="Fewest requests in a window before a verdict is given (at most windowRequests).",
    )
    thresholds: Thresholds = Field(default_factory=Thresholds)

    @model_validator(mode="after")
    def _window_holds_min_samples(self) -> Self:
        if self.window_requests < self.min_samples:
            raise ValueError(
                f"windowRequests {self.window_requests} must be at least minSamples {self.min_samples}"
            )
        return self


class DegradationAction(StrEnum):
    ALERT = "Alert"
    ROLLBACK = "Rollback"
    RETRAIN = "Retrain"


class OnDegradation(ApiModel):
    action: DegradationAction = Field(default=DegradationAction.ALERT)
    cooldown_seconds: int = Field(default=600, ge=0, le=7 * 86400, description="Least time between actions.")
    failure_limit: int = Field(
        default=3,
        ge=1,
        le=100,
        description=(
            "Consecutive failing analyses (Degraded, or a canary worse than the stable pods) before the "
            "action is taken or a canary is aborted."
        ),
    )
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
    short_sha256: str | None = Field(default=None, description="First 12 hex digits of sha256 (for kubectl).")
    reference_profile: str | None = Field(
        default=None, description="profile.json of the data it was trained on (drift reference)."
    )

    @model_validator(mode="after")
    def _short(self) -> Self:
        self.short_sha256 = self.sha256[:12]
        return self


class Verdict(StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    INSUFFICIENT_DATA = "InsufficientData"


class DriftTest(StatusModel):
    """One binned distribution tested against its reference (a feature, or the predictions)."""

    name: str = Field(description="Feature name, or predictions / predictionScores.")
    rows: int
    bins: int = Field(description="Bins (levels) after folding sparse ones.")
    p_value: float = Field(description="Smaller of chi-square and (ordered bins) rank-sum p, doubled.")
    effect: float = Field(description="Total variation distance: share of rows that moved between bins.")
    psi: float = Field(description="PSI on the folded bins, for humans.")
    cramers_v: float
    significant: bool = Field(description="Rejected after the Holm correction.")


class Evidence(StatusModel):
    """One check's CUSUM after a judged window (``thresholds.cusum``)."""

    name: str = Field(
        description="input:<feature>, prediction:predictions, prediction:predictionScores or accuracy."
    )
    statistic: str = Field(
        default="p",
        description="What is accumulated: p (the check's p-value), or up / down (the shift of its "
        "values, signed rank-sum z; numeric features and scores).",
    )
    cusum: float = Field(
        description="Accumulated evidence S after this window; the check fails at thresholds.cusum.limit."
    )
    z: float = Field(description="This window's standardized statistic (normal quantile of its p-value).")
    allowance: float = Field(description="What was subtracted from z: allowance plus the reference's share.")
    windows: int = Field(default=0, description="Windows since S was last 0.")


class AnalysisValues(StatusModel):
    samples: int | None = None
    error_rate: float | None = None
    error_rate_p_value: float | None = None
    latency_p99_ms: float | None = None
    latency_p_value: float | None = None
    input_drift_psi: float | None = Field(
        default=None, description="PSI of the feature with the largest effect."
    )
    input_drift_feature: str | None = None
    input_drift: list[DriftTest] = Field(
        default_factory=list, description="The most drifted features (at most 5), by p-value."
    )
    prediction_drift_psi: float | None = None
    prediction_drift: list[DriftTest] = Field(default_factory=list)
    accuracy: float | None = None
    labels: int | None = Field(default=None, description="Fed-back labels counted in the window.")
    reference_accuracy: float | None = Field(default=None, description="The model's held-out accuracy.")
    accuracy_p_value: float | None = None
    alpha: float | None = None
    tests: int | None = Field(default=None, description="Tests the Holm correction was applied over.")
    evidence: list[Evidence] = Field(
        default_factory=list, description="Checks with accumulated evidence (CUSUM above 0), largest first."
    )


class Analysis(StatusModel):
    time: datetime
    verdict: Verdict
    values: AnalysisValues = Field(default_factory=AnalysisValues)
    reasons: list[str] = Field(
        default_factory=list,
        description="Why the verdict: the checks that failed with their values and p-values, or why there is none.",
    )
    skipped: list[str] = Field(
        default_factory=list, description="Checks not decided in this window, and why."
    )


class PodBaseline(StatusModel):
    """A predictor pod's cumulative counters when the open window started (or when first seen in it)."""

    pod: str = Field(description="Pod uid.")
    start_time: float | None = Field(default=None, description="The pod's process_start_time_seconds.")
    counters: dict[str, float] = Field(
        default_factory=dict, description="Cumulative series, keyed '<quantity>/<label>[/<label>]'."
    )


class AnalysisWindow(StatusModel):
    """The open (not yet judged) window of a Steady model and the evidence carried across windows.

    Kept in status, not in operator memory, so an operator restart or a new leader
    continues the same window and the same CUSUM.
    """

    model: str = Field(description="sha256 of the model the window and the evidence belong to.")
    start_time: datetime = Field(description="When the open window started (the previous one ended).")
    checked_time: datetime | None = Field(default=None, description="When the operator last looked at it.")
    requests: int = Field(default=0, description="Prediction requests in the open window so far.")
    judged: int = Field(default=0, description="Windows judged for this model.")
    baseline: list[PodBaseline] = Field(
        default_factory=list, description="PodScrape: each pod's counters at the window's start."
    )
    cusum: list[Evidence] = Field(default_factory=list, description="Evidence carried into the next window.")


class RolloutState(StrEnum):
    """Where a ModelDeployment is in its control loop (docs/operator.md has the transition table)."""

    PENDING = "Pending"  # no model to serve yet
    ROLLING_OUT = "RollingOut"  # the stable Deployment rolls to the target model on all replicas
    CANARY = "Canary"  # a canary Deployment runs the candidate beside the stable pods
    PROMOTING = "Promoting"  # the canary passed: the stable Deployment rolls to the candidate
    ABORTING = "Aborting"  # the candidate was rejected: the canary goes, the stable scales back
    STEADY = "Steady"  # every replica serves the target model
    ROLLED_BACK = "RolledBack"  # steady on a pinned model because the offered one was rejected
    RETRAINING = "Retraining"  # steady while the Retrain action's TrainingRun trains


class CanaryStatus(StatusModel):
    step: int
    weight: int
    step_started_time: datetime | None = None
    verdict: str | None = Field(
        default=None,
        description="What the last analysis of this step decided (Healthy, Degraded, Worse, ...).",
    )
    hold_reason: str | None = Field(default=None, description="Why the step does not advance yet.")
    comparison: str | None = Field(
        default=None, description="The last comparison with the stable pods: each check's values and p-value."
    )


class RejectedModel(StatusModel):
    sha256: str
    training_run: str
    reason: str = Field(description="CanaryAborted, CanaryInconclusive, RolledBack or AbortedByUser.")
    message: str = ""
    time: datetime


class RetrainRecord(StatusModel):
    run: str
    dataset_hash: str | None = Field(
        default=None, description="Dataset contentHash when the retrain started."
    )
    spec_digest: str = Field(description="sha256 of the retrain template, to recognise a repeat.")
    offered_sha256: str | None = Field(
        default=None, description="The model the spec's TrainingRun offered when the retrain started."
    )
    time: datetime
    result: str = Field(description="Training, Served, Failed, Ineffective or Superseded.")
    message: str = ""


class ManualAction(StatusModel):
    action: str = Field(description="promote, abort or unpin (annotation mlkube.io/action).")
    request_id: str = Field(default="", description="mlkube.io/action-id: the same id acts once.")
    time: datetime
    result: str = Field(description="What the operator did about it, or why nothing.")


class ReferenceStatus(StatusModel):
    """Whether a TrainingRun of another namespace may be served here, and on whose grant."""

    training_run: str = Field(description="namespace/name of the referenced TrainingRun.")
    permitted: bool
    reason: str = Field(description="ReferenceGranted, ReferenceNotPermitted or ArtifactNotReachable.")
    message: str = ""
    grant: str | None = Field(
        default=None, description="The ModelGrant (in the TrainingRun's namespace) that permits it."
    )
    since: datetime


REJECTED_LIMIT = 10  # newest rejected models kept in status


class ModelDeploymentStatus(StatusModel):
    observed_generation: int | None = None
    conditions: Conditions
    state: RolloutState | None = Field(default=None, description="State of the control loop.")
    state_summary: str | None = Field(default=None, description="The state for kubectl, e.g. 'Canary 2/3'.")
    state_since: datetime | None = None
    current_model: ServedModel | None = None
    previous_model: ServedModel | None = None
    candidate_model: ServedModel | None = Field(
        default=None,
        description="The model rolling out (canary or rolling update) that does not serve everywhere yet.",
    )
    canary: CanaryStatus | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    last_analysis: Analysis | None = None
    analysis_window: AnalysisWindow | None = Field(
        default=None,
        description="The window being filled for the next verdict (Steady, RolledBack, Retraining).",
    )
    degraded_streak: int = Field(
        default=0,
        description="Consecutive failing analyses of the judged model; an action needs onDegradation.failureLimit.",
    )
    last_action: str | None = Field(
        default=None, description="The last action the operator took on its own or by request, and why."
    )
    last_action_time: datetime | None = None
    rollbacks: int = 0
    rolled_back_from: str | None = Field(
        default=None,
        description="sha256 of the model the last rollback rejected, while pinnedModel is served in its place.",
    )
    pinned_model: ServedModel | None = Field(
        default=None,
        description="The model a rollback returned to; served while the offered model is rejected.",
    )
    rejected_models: list[RejectedModel] = Field(
        default_factory=list,
        description="Models never served again unless a user asks (mlkube.io/action: unpin); newest last, at most 10.",
    )
    retrain_run: str | None = Field(
        default=None,
        description="TrainingRun created by the Retrain action; its model is served once it has one.",
    )
    retrains: int = 0
    last_retrain: RetrainRecord | None = None
    manual_action: ManualAction | None = Field(
        default=None, description="The last manual request and its result."
    )
    reference: ReferenceStatus | None = Field(
        default=None,
        description="Only for a trainingRunRef to another namespace: whether a ModelGrant permits it, and which.",
    )
