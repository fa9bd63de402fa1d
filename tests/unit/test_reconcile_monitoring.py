"""What a verdict does to a ModelDeployment: Degraded condition, Events, rollback, cooldown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mlkube_operator import constants as C
from mlkube_operator.api.modeldeployment import (
    Analysis,
    AnalysisValues,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Verdict,
)
from mlkube_operator.reconcile.modeldeployment import plan_model_deployment
from mlkube_operator.reconcile.monitoring import analysis_due, plan_monitoring, unsupported_source
from mlkube_operator.settings import Settings

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
A, B = "a" * 64, "b" * 64


def served(sha: str, run: str = "iris-rf") -> dict[str, Any]:
    return {
        "trainingRun": run,
        "uri": f"file:///m/{sha[:4]}/model.joblib",
        "sha256": sha,
        "datasetHash": "d" * 64,
    }


def md(action: str = "Rollback", status: dict[str, Any] | None = None, **monitoring: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {
            "model": {"trainingRunRef": {"name": "iris-rf"}},
            "monitoring": {"intervalSeconds": 10, **monitoring},
            "onDegradation": {"action": action, "cooldownSeconds": 300},
        },
        "status": status if status is not None else {"currentModel": served(B), "previousModel": served(A)},
    }


def spec_of(obj: dict[str, Any]) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(obj["spec"], by_alias=True)


def verdict(kind: Verdict, *reasons: str, samples: int = 500) -> Analysis:
    return Analysis(
        time=NOW, verdict=kind, values=AnalysisValues(samples=samples, error_rate=0.2), reasons=list(reasons)
    )


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_healthy_records_the_analysis() -> None:
    obj = md()
    plan = plan_monitoring(obj, spec_of(obj), verdict(Verdict.HEALTHY), NOW)
    assert cond(plan.status, C.DEGRADED)["status"] == "False"
    assert plan.status["lastAnalysis"]["verdict"] == "Healthy"
    assert plan.status["lastAnalysis"]["values"]["errorRate"] == 0.2
    assert plan.events == []


def test_insufficient_data_is_unknown() -> None:
    obj = md()
    plan = plan_monitoring(obj, spec_of(obj), verdict(Verdict.INSUFFICIENT_DATA, samples=3), NOW)
    degraded = cond(plan.status, C.DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("Unknown", "InsufficientData")
    assert "3 requests" in degraded["message"]


def test_degraded_rolls_back_to_the_previous_model_in_status_only() -> None:
    obj = md()
    plan = plan_monitoring(
        obj, spec_of(obj), verdict(Verdict.DEGRADED, "errorRate 0.2 > maxErrorRate 0.05"), NOW
    )
    s = plan.status
    assert cond(s, C.DEGRADED)["status"] == "True" and "errorRate 0.2" in cond(s, C.DEGRADED)["message"]
    assert s["rolledBackFrom"] == B and s["pinnedModel"]["sha256"] == A and s["rollbacks"] == 1
    assert {e.reason for e in plan.events} == {"Degraded", "RolledBack"}
    # The serving planner now serves the pinned model although the TrainingRun still offers B.
    run = {
        "metadata": {"name": "iris-rf", "namespace": "ns"},
        "spec": {"datasetRef": {"name": "iris"}},
        "status": {"model": {"uri": served(B)["uri"], "sha256": B, "datasetHash": "d" * 64}},
    }
    serving = plan_model_deployment(md(status=s), run, None, NOW, Settings())
    assert serving.deployment is not None
    args = serving.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model-sha256") + 1] == A
    # A new model from the TrainingRun supersedes the rollback.
    run["status"]["model"]["sha256"] = "c" * 64
    newer = plan_model_deployment(md(status=s), run, None, NOW, Settings())
    assert newer.status["rolledBackFrom"] is None and newer.status["pinnedModel"] is None


def test_cooldown_limits_actions() -> None:
    obj = md()
    first = plan_monitoring(obj, spec_of(obj), verdict(Verdict.DEGRADED, "x"), NOW)
    again = md(status=first.status)
    soon = plan_monitoring(again, spec_of(again), verdict(Verdict.DEGRADED, "x"), NOW + timedelta(seconds=60))
    assert soon.status["rollbacks"] == 1 and soon.events == []


def test_rollback_without_previous_model_says_so() -> None:
    obj = md(status={"currentModel": served(B)})
    plan = plan_monitoring(obj, spec_of(obj), verdict(Verdict.DEGRADED, "x"), NOW)
    assert plan.status.get("rolledBackFrom") is None
    assert "RollbackImpossible" in {e.reason for e in plan.events}


def test_alert_action_only_alerts_and_recovery_is_an_event() -> None:
    obj = md(action="Alert")
    bad = plan_monitoring(obj, spec_of(obj), verdict(Verdict.DEGRADED, "x"), NOW)
    assert bad.status.get("rolledBackFrom") is None and bad.status["lastAction"].startswith("Alert")
    later = md(action="Alert", status=bad.status)
    good = plan_monitoring(later, spec_of(later), verdict(Verdict.HEALTHY), NOW + timedelta(minutes=1))
    assert [e.reason for e in good.events] == ["Recovered"]


def test_prometheus_source_is_supported() -> None:
    obj = md(source={"type": "Prometheus", "prometheusUrl": "http://prom:9090"})
    assert unsupported_source(spec_of(obj)) is None
    plan = plan_monitoring(obj, spec_of(obj), verdict(Verdict.HEALTHY), NOW)
    assert cond(plan.status, C.DEGRADED)["reason"] == "Healthy"


def test_a_degraded_canary_is_aborted_whatever_the_action() -> None:
    status = {"currentModel": served(A), "candidateModel": served(B), "canary": {"step": 0, "weight": 50}}
    obj = md(action="Alert", status=status)
    plan = plan_monitoring(
        obj, spec_of(obj), verdict(Verdict.DEGRADED, "errorRate 0.5 > maxErrorRate 0.05"), NOW
    )
    assert plan.status["rolledBackFrom"] == B and plan.status["pinnedModel"]["sha256"] == A
    assert "CanaryAborted" in {e.reason for e in plan.events}


def test_analysis_interval() -> None:
    obj = md()
    spec = spec_of(obj)
    plan = plan_monitoring(obj, spec, verdict(Verdict.HEALTHY), NOW)
    status = ModelDeploymentStatus.model_validate(plan.status)
    assert not analysis_due(status, spec, NOW + timedelta(seconds=5))
    assert analysis_due(status, spec, NOW + timedelta(seconds=10))


def test_retrain_creates_a_training_run_from_the_template_then_serves_it() -> None:
    obj = md(action="Retrain")
    obj["spec"]["onDegradation"]["retrainTemplate"] = {
        "datasetRef": {"name": "iris"},
        "estimator": {"className": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.5}},
    }
    plan = plan_monitoring(obj, spec_of(obj), verdict(Verdict.DEGRADED, "inputDriftPsi 3 > 0.25"), NOW)
    run = plan.create_run
    assert run is not None and run["kind"] == "TrainingRun"
    assert run["metadata"]["name"] == "iris-retrain-1" == plan.status["retrainRun"]
    assert run["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert run["spec"]["estimator"]["params"] == {"C": 0.5}
    assert plan.status["retrains"] == 1 and "Retraining" in {e.reason for e in plan.events}
    # Until the new run has a model the spec's run is served; then the retrained model.
    spec_run = {
        "metadata": {"name": "iris-rf", "namespace": "ns"},
        "spec": {"datasetRef": {"name": "iris"}},
        "status": {"model": {"uri": served(B)["uri"], "sha256": B}},
    }
    retrained = {"metadata": {"name": "iris-retrain-1", "namespace": "ns"}, "spec": run["spec"], "status": {}}
    waiting = plan_model_deployment(md(status=plan.status), spec_run, None, NOW, Settings(), retrained)
    assert waiting.deployment is not None
    args = waiting.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model-sha256") + 1] == B
    retrained["status"] = {"model": {"uri": served("c" * 64)["uri"], "sha256": "c" * 64}}
    serving = plan_model_deployment(md(status=plan.status), spec_run, None, NOW, Settings(), retrained)
    assert serving.deployment is not None
    args = serving.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model-sha256") + 1] == "c" * 64
    # A spec change by the user drops the retrain: their TrainingRun is served again.
    changed = md(status=serving.status)
    changed["metadata"]["generation"] = 2
    mine = plan_model_deployment(changed, spec_run, None, NOW, Settings(), retrained)
    assert mine.status["retrainRun"] is None


def test_unreadable_metrics_make_degraded_unknown_and_act_on_nothing() -> None:
    obj = md()
    healthy = plan_monitoring(obj, spec_of(obj), verdict(Verdict.HEALTHY), NOW)
    later = md(status=healthy.status)
    plan = plan_monitoring(
        later, spec_of(later), None, NOW, unavailable="Cannot query Prometheus at http://p:9090"
    )
    degraded = cond(plan.status, C.DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("Unknown", "MetricsUnavailable")
    assert "http://p:9090" in degraded["message"]
    assert plan.status["lastAnalysis"] == healthy.status["lastAnalysis"] and plan.events == []
