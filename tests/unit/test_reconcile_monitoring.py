"""The ModelDeployment state table, planner-level: every transition and concurrent trigger.

A small `World` plays Kubernetes: it feeds the planner its own previous status, the
TrainingRuns and the Deployments the last plan asked for (rolled out at once unless told
otherwise), so a test reads as a story of triggers and checks what serves after each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mlkube_operator import constants as C
from mlkube_operator.analysis.canary import compare
from mlkube_operator.analysis.counts import Counts
from mlkube_operator.api.modeldeployment import (
    Analysis,
    AnalysisValues,
    AnalysisWindow,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Verdict,
)
from mlkube_operator.reconcile.modeldeployment import Judgement, Observed, ServingPlan, plan_model_deployment
from mlkube_operator.reconcile.monitoring import analysis_due, spec_digest
from mlkube_operator.reconcile.plan import Event
from mlkube_operator.settings import Settings

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
A, B, C3, D = "a" * 64, "b" * 64, "c" * 64, "d" * 64
DATA = "0" * 64
TEMPLATE = {
    "datasetRef": {"name": "iris"},
    "estimator": {"className": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.5}},
}


def training_run(
    name: str, sha: str | None, state: str = "True", spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [
            {
                "type": "Succeeded",
                "status": state,
                "reason": {"True": "Trained", "False": "TrainingFailed", "Unknown": "Training"}[state],
                "message": "boom" if state == "False" else "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ]
    }
    if sha is not None:
        status["model"] = {
            "uri": f"file:///m/{name}/{sha[:4]}/model.joblib",
            "sha256": sha,
            "datasetHash": DATA,
        }
    return {
        "metadata": {"name": name, "namespace": "ns", "generation": 1},
        "spec": spec
        or {
            "datasetRef": {"name": "iris"},
            "estimator": {"className": "sklearn.tree.DecisionTreeClassifier"},
        },
        "status": status,
    }


def rolled_out(desired: dict[str, Any] | None) -> dict[str, Any] | None:
    if desired is None:
        return None
    n = desired["spec"]["replicas"]
    return {
        "metadata": {"generation": 1, "annotations": desired["metadata"]["annotations"]},
        "status": {
            "observedGeneration": 1,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        },
    }


def analysis(verdict: Verdict, *reasons: str, samples: int = 500, at: datetime = NOW) -> Analysis:
    return Analysis(
        time=at,
        verdict=verdict,
        values=AnalysisValues(samples=samples, error_rate=0.2),
        reasons=list(reasons),
    )


@dataclass
class World:
    spec: dict[str, Any]
    run: dict[str, Any] | None = None
    retrained: dict[str, Any] | None = None
    stable: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None
    dataset: dict[str, Any] | None = field(default_factory=lambda: {"status": {"contentHash": DATA}})
    status: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    generation: int = 1
    now: datetime = NOW
    events: list[Event] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    settle: bool = True

    def obj(self) -> dict[str, Any]:
        return {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": "iris",
                "namespace": "ns",
                "uid": "u",
                "generation": self.generation,
                "annotations": dict(self.annotations),
            },
            "spec": self.spec,
            "status": self.status,
        }

    def reconcile(self, judgement: Judgement | None = None, seconds: float = 0) -> ServingPlan:
        self.now += timedelta(seconds=seconds)
        seen = Observed(self.run, self.retrained, self.stable, self.canary, self.dataset)
        plan = plan_model_deployment(self.obj(), seen, self.now, Settings(), judgement)
        self.status = plan.status
        self.events += plan.events
        if plan.create_run is not None:
            self.created.append(plan.create_run)
            self.retrained = {**plan.create_run, "status": {}}
        if self.settle:
            if plan.deployment is not None:
                self.stable = rolled_out(plan.deployment)
            if plan.canary is not None:
                self.canary = rolled_out(plan.canary)
            elif plan.delete_canary:
                self.canary = None
        return plan

    def converge(self) -> None:
        for _ in range(4):
            self.reconcile()

    def judge(
        self, verdict: Verdict, *reasons: str, seconds: float = 10, samples: int = 500, comparison: Any = None
    ) -> ServingPlan:
        st = ModelDeploymentStatus.model_validate(self.status)
        judged = st.candidate_model if st.canary and st.candidate_model else st.current_model
        assert judged is not None
        at = self.now + timedelta(seconds=seconds)
        return self.reconcile(
            Judgement(judged.sha256, analysis(verdict, *reasons, samples=samples, at=at), comparison), seconds
        )

    @property
    def state(self) -> str:
        return str(self.status.get("state"))

    def serving(self) -> str:
        return str(self.status["currentModel"]["sha256"])

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def rejected(self) -> dict[str, str]:
        return {r["sha256"]: r["reason"] for r in self.status.get("rejectedModels", [])}


def world(
    action: str = "Rollback",
    strategy: str = "Rolling",
    failure_limit: int = 1,
    cooldown: int = 0,
    **monitoring: Any,
) -> World:
    spec: dict[str, Any] = {
        "model": {"trainingRunRef": {"name": "iris-rf"}},
        "replicas": 2,
        "monitoring": {"intervalSeconds": 10, **monitoring},
        "onDegradation": {"action": action, "cooldownSeconds": cooldown, "failureLimit": failure_limit},
    }
    if strategy == "Canary":
        spec["strategy"] = {
            "type": "Canary",
            "steps": [{"weight": 50, "pauseSeconds": 30}, {"weight": 75, "pauseSeconds": 30}],
            "progressDeadlineSeconds": 300,
        }
    if action == "Retrain":
        spec["onDegradation"]["retrainTemplate"] = TEMPLATE
    return World(spec=spec)


def serving(w: World, *shas: str) -> World:
    """Serve the models `shas` one after another (Rolling), ending steady on the last."""
    strategy = w.spec.get("strategy")
    w.spec.pop("strategy", None)
    for sha in shas:
        w.run = training_run("iris-rf", sha)
        w.converge()
    if strategy is not None:
        w.spec["strategy"] = strategy
    assert w.state == "Steady" and w.serving() == shas[-1]
    return w


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


# -- rolling --------------------------------------------------------------------------------------
def test_first_model_rolls_out_then_is_steady() -> None:
    w = world()
    assert w.reconcile().status["state"] == "Pending"
    w.run = training_run("iris-rf", A)
    w.settle = False
    plan = w.reconcile()
    assert (
        w.state == "RollingOut" and plan.deployment is not None and w.status["candidateModel"]["sha256"] == A
    )
    w.settle = True
    w.converge()
    assert w.state == "Steady" and w.status["stateSummary"] == "Steady" and w.serving() == A
    assert w.status["currentModel"]["shortSha256"] == A[:12]


def test_new_model_rolls_and_keeps_the_previous() -> None:
    w = serving(world(), A, B)
    assert w.status["previousModel"]["sha256"] == A


# -- verdicts in a steady state -------------------------------------------------------------------
def test_an_action_needs_failure_limit_consecutive_failing_analyses() -> None:
    w = serving(world(failure_limit=3), A, B)
    w.judge(Verdict.DEGRADED, "errorRate 0.2 > maxErrorRate 0.05")
    w.judge(Verdict.DEGRADED, "errorRate 0.2 > maxErrorRate 0.05")
    assert w.status["degradedStreak"] == 2 and "rolledBackFrom" not in w.rejected().values()
    w.judge(Verdict.INSUFFICIENT_DATA, "samples 3 < minSamples 100", samples=3)  # not consecutive any more
    assert w.status["degradedStreak"] == 0
    for _ in range(2):
        w.judge(Verdict.DEGRADED, "x")
    assert w.serving() == B and C.REASON_ROLLED_BACK not in w.reasons()
    w.judge(Verdict.DEGRADED, "errorRate 0.2 > maxErrorRate 0.05")
    assert C.REASON_ROLLED_BACK in w.reasons() and w.status["rolledBackFrom"] == B
    assert w.status["degradedStreak"] == 0


def test_rollback_serves_the_previous_model_in_status_only_and_says_so_truthfully() -> None:
    w = serving(world(), A, B)
    w.settle = False
    w.judge(Verdict.DEGRADED, "errorRate 0.2 > maxErrorRate 0.05")
    assert w.state == "RollingOut" and w.status["lastAction"].startswith("Rolling back from iris-rf")
    assert w.rejected() == {B: "RolledBack"} and w.status["pinnedModel"]["sha256"] == A
    assert cond(w.status, C.DEGRADED)["status"] == "True"
    assert {"Degraded", "RolledBack"} <= set(w.reasons())
    w.settle = True
    w.converge()
    assert w.state == "RolledBack" and w.serving() == A and w.status["rollbacks"] == 1
    assert w.spec["model"] == {"trainingRunRef": {"name": "iris-rf"}}


def test_a_new_generation_while_rolled_back_is_served_and_clears_the_pin() -> None:
    w = serving(world(), A, B)
    w.judge(Verdict.DEGRADED, "x")
    w.converge()
    w.run = training_run("iris-rf", C3)
    w.converge()
    assert w.serving() == C3 and w.state == "Steady" and w.status["pinnedModel"] is None
    assert B in w.rejected()  # still never served again


def test_a_second_degradation_while_rolled_back_never_returns_to_the_rejected_model() -> None:
    w = serving(world(), A, B)
    w.judge(Verdict.DEGRADED, "x")
    w.converge()
    assert w.status["previousModel"]["sha256"] == B  # what served before A: rejected
    w.judge(Verdict.DEGRADED, "still bad")
    w.converge()
    assert w.serving() == A and C.REASON_ROLLBACK_IMPOSSIBLE in w.reasons()
    assert (
        "alerting instead" in w.status["lastAction"]
        and "was rejected" in cond(w.status, C.DEGRADED)["message"]
    )


def test_cooldown_limits_actions() -> None:
    w = serving(world(action="Alert", cooldown=300), A)
    w.judge(Verdict.DEGRADED, "x")
    w.judge(Verdict.DEGRADED, "x", seconds=60)
    assert w.reasons().count(C.REASON_MODEL_DEGRADED) == 1


def test_rollback_without_previous_model_falls_back_to_an_alert() -> None:
    w = serving(world(), A)
    w.judge(Verdict.DEGRADED, "x")
    assert w.status.get("rolledBackFrom") is None and C.REASON_ROLLBACK_IMPOSSIBLE in w.reasons()
    assert "no previous model" in cond(w.status, C.DEGRADED)["message"]


def test_alert_only_alerts_and_recovery_is_an_event() -> None:
    w = serving(world(action="Alert"), A, B)
    w.judge(Verdict.DEGRADED, "x")
    assert w.serving() == B and w.status["lastAction"].startswith("Alert")
    w.judge(Verdict.HEALTHY)
    assert w.reasons()[-1] == "Recovered" and cond(w.status, C.DEGRADED)["status"] == "False"


def test_no_action_while_a_rollout_is_under_way_and_stale_verdicts_are_ignored() -> None:
    w = serving(world(), A, B)
    w.settle = False
    w.run = training_run("iris-rf", C3)
    w.reconcile()
    assert w.state == "RollingOut"
    w.reconcile(Judgement(B, analysis(Verdict.DEGRADED, "x")))  # recorded, not acted on
    assert w.status["lastAnalysis"]["verdict"] == "Degraded" and w.rejected() == {}
    assert w.state == "RollingOut" and C.REASON_ROLLED_BACK not in w.reasons()
    w.reconcile(Judgement(A, analysis(Verdict.HEALTHY)))  # not the judged model at all: ignored
    assert w.status["lastAnalysis"]["verdict"] == "Degraded"


def test_unreadable_metrics_make_degraded_unknown_and_act_on_nothing() -> None:
    w = serving(world(), A, B)
    w.judge(Verdict.HEALTHY)
    before = w.status["lastAnalysis"]
    w.reconcile(Judgement(B, unavailable="Cannot query Prometheus at http://p:9090"))
    degraded = cond(w.status, C.DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("Unknown", "MetricsUnavailable")
    assert "http://p:9090" in degraded["message"] and w.status["lastAnalysis"] == before


def test_insufficient_data_is_unknown_with_the_reason() -> None:
    w = serving(world(), A)
    w.judge(Verdict.INSUFFICIENT_DATA, "samples 3 < minSamples 100", samples=3)
    degraded = cond(w.status, C.DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("Unknown", "InsufficientData")
    assert "samples 3" in degraded["message"]


def test_analysis_interval_and_no_analysis_while_pods_change() -> None:
    w = serving(world(), A)
    w.judge(Verdict.HEALTHY, seconds=0)
    spec = ModelDeploymentSpec.model_validate(w.spec, by_alias=True)
    status = ModelDeploymentStatus.model_validate(w.status)
    assert not analysis_due(status, spec, w.now + timedelta(seconds=5))
    assert analysis_due(status, spec, w.now + timedelta(seconds=10))
    w.settle = False
    w.run = training_run("iris-rf", B)
    w.reconcile()
    assert not analysis_due(ModelDeploymentStatus.model_validate(w.status), spec, w.now + timedelta(hours=1))


def test_losing_the_training_run_keeps_serving() -> None:
    w = serving(world(), A)
    w.run = None
    plan = w.reconcile()
    assert plan.deployment is None and not plan.delete_canary
    assert (
        cond(w.status, C.READY)["status"] == "True"
        and "still serving iris-rf" in cond(w.status, C.PROGRESSING)["message"]
    )


# -- canary ---------------------------------------------------------------------------------------
def canary_world(**kw: Any) -> World:
    w = serving(world(strategy="Canary", **kw), A)
    w.run = training_run("iris-rf", B)
    w.reconcile()
    assert w.state == "Canary" and w.status["stateSummary"] == "Canary 1/2" and w.canary is not None
    return w


def test_canary_advances_only_on_a_healthy_verdict_after_its_pause() -> None:
    w = canary_world()
    w.reconcile(seconds=60)  # the pause is long over, but no verdict: the step holds
    assert w.status["canary"]["step"] == 0
    w.judge(Verdict.INSUFFICIENT_DATA, "samples 3 < minSamples 100", samples=3)
    assert w.status["canary"]["step"] == 0 and "inconclusive" in w.status["canary"]["holdReason"]
    w.judge(Verdict.HEALTHY)
    assert w.status["canary"]["step"] == 1 and w.status["stateSummary"] == "Canary 2/2"
    w.judge(Verdict.HEALTHY, seconds=10)  # Healthy but the step's pause (30 s) is not over
    assert w.status["canary"]["step"] == 1 and "pausing" in w.status["canary"]["holdReason"]
    w.judge(Verdict.HEALTHY, seconds=25)
    assert w.state in ("Promoting", "Steady")
    w.converge()
    assert w.state == "Steady" and w.serving() == B and w.canary is None
    assert C.REASON_CANARY_PROMOTED in w.reasons()


def test_canary_without_traffic_aborts_at_the_progress_deadline() -> None:
    w = canary_world()
    for _ in range(5):
        w.judge(Verdict.INSUFFICIENT_DATA, "samples 0 < minSamples 100", samples=0, seconds=50)
    assert w.state == "Canary" and w.rejected() == {}  # 250 s: held, neither promoted nor aborted
    w.judge(Verdict.INSUFFICIENT_DATA, "samples 0 < minSamples 100", samples=0, seconds=50)
    assert w.serving() == A and w.rejected() == {B: C.REASON_CANARY_INCONCLUSIVE}
    assert "progressDeadlineSeconds 300" in w.status["lastAction"]
    w.converge()
    assert w.state == "RolledBack" and w.canary is None
    w.converge()
    assert w.reasons().count(C.REASON_CANARY) == 1  # not started again


def test_a_degraded_canary_is_aborted_after_failure_limit_whatever_the_action() -> None:
    w = canary_world(action="Alert", failure_limit=2)
    w.judge(Verdict.DEGRADED, "errorRate 0.5 > maxErrorRate 0.05")
    assert w.state == "Canary" and "1/2 failing" in w.status["canary"]["holdReason"]
    w.judge(Verdict.DEGRADED, "errorRate 0.5 > maxErrorRate 0.05")
    assert w.rejected() == {B: C.REASON_CANARY_ABORTED} and w.status["pinnedModel"]["sha256"] == A
    assert w.state in ("Aborting", "RolledBack")
    w.converge()
    assert w.state == "RolledBack" and w.serving() == A and w.canary is None


def counts(n: int, errors: int) -> Counts:
    return Counts(requests={"200": n - errors, "500": errors}, predictions={"0": n / 2, "1": n / 2})


def test_a_canary_worse_than_the_stable_pods_never_promotes() -> None:
    w = canary_world()
    worse = compare(counts(400, 40), counts(400, 2))
    assert worse.worse
    w.judge(Verdict.HEALTHY, comparison=worse)  # within the absolute bounds, but worse than stable
    assert w.rejected() == {B: C.REASON_CANARY_ABORTED} and "worse than stable" in w.status["lastAction"]
    w.converge()
    assert w.serving() == A


def test_a_healthy_canary_waits_until_the_stable_pods_can_be_compared() -> None:
    w = canary_world()
    w.reconcile(seconds=60)  # past the step's pause
    unasked = compare(counts(400, 0), Counts(requests={}, predictions={}))
    assert not unasked.enough and not unasked.worse
    w.judge(Verdict.HEALTHY, comparison=unasked)  # Healthy on its own, but the stable pods had no requests
    assert w.status["canary"]["step"] == 0
    assert "not yet compared with the stable pods" in w.status["canary"]["holdReason"]
    both = compare(counts(400, 0), counts(400, 0))
    assert both.enough and not both.worse
    w.judge(Verdict.HEALTHY, comparison=both)
    assert w.status["canary"]["step"] == 1


def test_a_rollback_during_a_canary_is_the_canarys_abort_not_the_stables_rollback() -> None:
    w = serving(world(strategy="Canary"), A, B)
    w.run = training_run("iris-rf", C3)
    w.reconcile()
    w.judge(Verdict.DEGRADED, "drift")
    w.converge()
    assert w.serving() == B and w.rejected() == {C3: C.REASON_CANARY_ABORTED}  # B was not rolled back


def test_finding_13_1_a_rollback_after_an_aborted_canary_never_serves_the_rejected_model() -> None:
    # Gen 3 (C3) canary aborted while serving gen 2 (B); then drift rolls B back to gen 1 (A).
    w = serving(world(strategy="Canary"), A, B)
    w.run = training_run("iris-rf", C3)
    w.reconcile()
    w.judge(Verdict.DEGRADED, "accuracy 0 < minAccuracy 0.6")
    w.converge()
    w.judge(Verdict.DEGRADED, "inputDriftPsi 3 > 0.25")
    for _ in range(6):
        w.reconcile(seconds=30)
        w.judge(Verdict.HEALTHY)
    assert w.serving() == A and w.state == "RolledBack" and w.canary is None
    assert w.rejected() == {C3: C.REASON_CANARY_ABORTED, B: C.REASON_ROLLED_BACK}
    assert w.reasons().count(C.REASON_CANARY) == 1  # the rejected gen 3 never started again
    assert w.status["lastAction"].startswith("Rolling back from iris-rf (sha256 bbbbbbbbbbbb) to")
    assert f"Serving iris-rf (sha256 {A[:12]})" in cond(w.status, C.READY)["message"]


def test_a_new_generation_during_a_canary_replaces_the_candidate() -> None:
    w = canary_world()
    w.run = training_run("iris-rf", C3)
    w.reconcile()
    assert w.status["candidateModel"]["sha256"] == C3 and w.status["canary"]["step"] == 0
    assert C.REASON_CANARY_SUPERSEDED in w.reasons() and w.rejected() == {}


def test_canary_with_monitoring_disabled_advances_on_its_pause() -> None:
    w = canary_world(enabled=False)
    w.reconcile(seconds=31)
    w.reconcile(seconds=31)
    w.converge()
    assert w.serving() == B


# -- manual control -------------------------------------------------------------------------------
def test_manual_promote_acts_once_per_request_id() -> None:
    w = canary_world()
    w.annotations = {C.ANNOTATION_ACTION: "promote", C.ANNOTATION_ACTION_ID: "1"}
    w.converge()
    assert w.serving() == B and w.status["manualAction"]["result"].startswith("promoting")
    assert C.REASON_MANUAL_ACTION in w.reasons()
    w.run = training_run("iris-rf", C3)
    w.reconcile()
    w.reconcile()
    assert w.state == "Canary"  # the old request does not promote the next canary
    w.annotations[C.ANNOTATION_ACTION_ID] = "2"
    w.converge()
    assert w.serving() == C3


def test_manual_abort_rejects_the_candidate_and_unpin_serves_it_again() -> None:
    w = canary_world()
    w.annotations = {C.ANNOTATION_ACTION: "abort", C.ANNOTATION_ACTION_ID: "1"}
    w.converge()
    assert w.serving() == A and w.rejected() == {B: C.REASON_ABORTED_BY_USER} and w.state == "RolledBack"
    w.annotations = {C.ANNOTATION_ACTION: "unpin", C.ANNOTATION_ACTION_ID: "2"}
    w.reconcile()
    assert w.rejected() == {} and w.state == "Canary" and w.status["candidateModel"]["sha256"] == B


def test_manual_request_that_does_not_apply_is_recorded_as_ignored() -> None:
    w = serving(world(), A)
    w.annotations = {C.ANNOTATION_ACTION: "promote", C.ANNOTATION_ACTION_ID: "x"}
    w.reconcile()
    assert w.status["manualAction"]["result"] == "no canary to promote"
    assert C.REASON_MANUAL_ACTION_IGNORED in w.reasons() and w.status.get("lastAction") is None


# -- retrain --------------------------------------------------------------------------------------
def test_retrain_creates_a_training_run_then_serves_its_model() -> None:
    w = serving(world(action="Retrain"), A)
    w.judge(Verdict.DEGRADED, "inputDriftPsi 3 > 0.25")
    assert len(w.created) == 1 and C.REASON_RETRAIN_SKIPPED not in w.reasons()
    run = w.created[0]
    assert run["metadata"]["name"] == "iris-retrain-1" == w.status["retrainRun"]
    assert run["metadata"]["ownerReferences"][0]["uid"] == "u" and run["spec"]["estimator"]["params"] == {
        "C": 0.5
    }
    assert w.state == "Retraining" and w.status["lastRetrain"]["result"] == "Training"
    w.retrained = training_run("iris-retrain-1", None, "Unknown", TEMPLATE)
    w.converge()
    assert w.state == "Retraining" and w.serving() == A
    w.retrained = training_run("iris-retrain-1", C3, spec=TEMPLATE)
    w.converge()
    assert w.serving() == C3 and w.status["currentModel"]["trainingRun"] == "iris-retrain-1"
    assert w.status["lastRetrain"]["result"] == "Served" and w.state == "Steady"
    # A spec change by the user drops the retrain: their TrainingRun is served again.
    w.generation = 2
    w.converge()
    assert w.status["retrainRun"] is None and w.serving() == A


def test_finding_13_2_retrain_on_unchanged_data_is_not_started() -> None:
    w = world(action="Retrain")
    w.run = training_run("iris-rf", A, spec=TEMPLATE)  # the served model came from the template already
    w.converge()
    w.judge(Verdict.DEGRADED, "inputDriftPsi 3 > 0.25")
    assert w.created == [] and C.REASON_RETRAIN_SKIPPED in w.reasons()
    assert "data has not changed" in w.status["lastAction"] and "alerting instead" in w.status["lastAction"]
    assert "Retrain not started" in cond(w.status, C.DEGRADED)["message"]
    # New data: the retrain starts.
    w.dataset = {"status": {"contentHash": "1" * 64}}
    w.judge(Verdict.DEGRADED, "inputDriftPsi 3 > 0.25")
    assert [r["metadata"]["name"] for r in w.created] == ["iris-retrain-1"]


def test_finding_13_2_a_retrain_producing_the_served_model_is_not_rolled_out_nor_repeated() -> None:
    w = serving(world(action="Retrain"), A)
    w.judge(Verdict.DEGRADED, "x")
    w.retrained = training_run("iris-retrain-1", A, spec=TEMPLATE)  # the identical model
    w.converge()
    assert w.serving() == A and w.state == "Steady" and w.status["lastRetrain"]["result"] == "Ineffective"
    assert C.REASON_RETRAIN_INEFFECTIVE in w.reasons() and w.status["retrainRun"] is None
    w.judge(Verdict.DEGRADED, "x")
    assert len(w.created) == 1 and "already retrained on the same data" in w.status["lastAction"]


def test_a_retrain_producing_a_rejected_model_is_not_served() -> None:
    w = serving(world(action="Rollback"), A, B)
    w.judge(Verdict.DEGRADED, "x")
    w.converge()  # RolledBack to A, B rejected
    w.spec["onDegradation"] = {
        "action": "Retrain",
        "cooldownSeconds": 0,
        "failureLimit": 1,
        "retrainTemplate": TEMPLATE,
    }
    w.generation = 2
    w.converge()
    w.judge(Verdict.DEGRADED, "x")  # a retrain during a rollback: allowed, from RolledBack
    assert w.state == "Retraining" and len(w.created) == 1
    w.retrained = training_run("iris-retrain-1", B, spec=TEMPLATE)
    w.converge()
    assert w.serving() == A and "was rejected" in w.status["lastAction"]


def test_a_failed_retrain_falls_back_to_an_alert() -> None:
    w = serving(world(action="Retrain"), A)
    w.judge(Verdict.DEGRADED, "x")
    w.retrained = training_run("iris-retrain-1", None, "False", TEMPLATE)
    w.converge()
    assert w.state == "Steady" and w.status["lastRetrain"]["result"] == "Failed"
    assert C.REASON_RETRAIN_FAILED in w.reasons() and "boom" in w.status["lastAction"]


def test_a_new_generation_during_a_retrain_wins() -> None:
    w = serving(world(action="Retrain"), A)
    w.judge(Verdict.DEGRADED, "x")
    w.run = training_run("iris-rf", B)
    w.converge()
    assert w.serving() == B and w.status["lastRetrain"]["result"] == "Superseded"
    assert C.REASON_RETRAIN_SUPERSEDED in w.reasons()


def test_no_second_action_while_retraining() -> None:
    w = serving(world(action="Retrain"), A)
    w.judge(Verdict.DEGRADED, "x")
    w.judge(Verdict.DEGRADED, "x")
    assert len(w.created) == 1 and w.state == "Retraining"


def test_spec_digest_fills_defaults() -> None:
    assert spec_digest(TEMPLATE) == spec_digest({**TEMPLATE, "backoffLimit": 1})
    assert spec_digest(TEMPLATE) != spec_digest({**TEMPLATE, "backoffLimit": 2})


def test_an_aborted_canary_is_aborting_until_the_stable_pods_are_back() -> None:
    w = canary_world()
    w.settle = False
    plan = w.judge(Verdict.DEGRADED, "x")
    assert w.state == "Aborting" and plan.canary is None and plan.delete_canary
    assert plan.deployment is not None and plan.deployment["spec"]["replicas"] == 2
    w.stable, w.canary = rolled_out(plan.deployment), None
    w.reconcile()
    assert w.state == "RolledBack" and w.serving() == A and w.status["candidateModel"] is None


def test_manual_abort_of_a_rolling_update_returns_to_the_current_model() -> None:
    w = serving(world(), A)
    w.settle = False
    w.run = training_run("iris-rf", B)
    w.reconcile()
    assert w.state == "RollingOut" and w.status["candidateModel"]["sha256"] == B
    w.annotations = {C.ANNOTATION_ACTION: "abort", C.ANNOTATION_ACTION_ID: "r1"}
    w.settle = True
    w.converge()
    assert w.serving() == A and w.rejected() == {B: C.REASON_ABORTED_BY_USER}
    assert w.status["lastAction"].startswith("By request (abort)")


def test_an_invalid_spec_changes_nothing_it_serves() -> None:
    w = serving(world(), A)
    w.spec["replicas"] = -1
    plan = w.reconcile()
    assert plan.deployment is None and cond(w.status, C.READY)["reason"] == C.REASON_INVALID_SPEC


def _window(sha: str, at: datetime, requests: int) -> AnalysisWindow:
    return AnalysisWindow(model=sha, start_time=NOW, checked_time=at, requests=requests)


def test_a_look_at_a_window_still_filling_keeps_the_verdict_and_the_streak() -> None:
    w = serving(world(failure_limit=3), A)
    w.judge(Verdict.DEGRADED, "drift")
    assert w.status["degradedStreak"] == 1
    last = w.status["lastAnalysis"]
    at = w.now + timedelta(seconds=10)
    w.reconcile(Judgement(A, window=_window(A, at, 120)), seconds=10)
    assert w.status["degradedStreak"] == 1 and w.status["lastAnalysis"] == last
    assert w.status["analysisWindow"]["requests"] == 120
    assert cond(w.status, C.DEGRADED)["status"] == "True"
    # The next look is an interval after this one, not after the last verdict.
    spec = ModelDeploymentSpec.model_validate(w.spec, by_alias=True)
    status = ModelDeploymentStatus.model_validate(w.status)
    assert not analysis_due(status, spec, at + timedelta(seconds=5))
    assert analysis_due(status, spec, at + timedelta(seconds=10))
    w.judge(Verdict.DEGRADED, "drift")
    assert w.status["degradedStreak"] == 2


def test_a_new_model_drops_the_open_window_and_its_evidence() -> None:
    w = serving(world(), A)
    w.reconcile(Judgement(A, window=_window(A, w.now, 50)), seconds=10)
    assert w.status["analysisWindow"]["model"] == A
    w.run = training_run("iris-rf", B)
    w.converge()
    assert w.serving() == B and w.status["analysisWindow"] is None


def test_unreadable_metrics_leave_the_window_as_it_was() -> None:
    w = serving(world(), A)
    w.reconcile(Judgement(A, window=_window(A, w.now, 50)), seconds=10)
    w.reconcile(Judgement(A, unavailable="boom", window=_window(A, w.now, 999)), seconds=10)
    assert w.status["analysisWindow"]["requests"] == 50


def test_disabling_monitoring_drops_the_window() -> None:
    w = serving(world(), A)
    w.reconcile(Judgement(A, window=_window(A, w.now, 50)), seconds=10)
    w.spec["monitoring"]["enabled"] = False
    w.generation += 1
    w.reconcile()
    assert w.status["analysisWindow"] is None
