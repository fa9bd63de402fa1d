"""The operator's object-state series: every watched object counted by its conditions."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from mlkube_operator import observability as obs


def obj(name: str, *conditions: tuple[str, str, str], canary: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [{"type": t, "status": s, "reason": r, "message": ""} for t, s, r in conditions]
    }
    if canary is not None:
        status["canary"] = {"step": 0, "weight": canary}
    return {"metadata": {"namespace": "ns", "name": name}, "status": status}


def samples(states: obs.ObjectStates) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(states)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_objects_are_counted_by_condition_and_forgotten_on_delete() -> None:
    states = obs.ObjectStates()
    states.observe(obs.KIND_DATASET, None, obj("a", ("Ready", "True", "Profiled")))
    states.observe(obs.KIND_DATASET, "ADDED", obj("b", ("Ready", "Unknown", "Profiling")))
    states.observe(obs.KIND_DATASET, "MODIFIED", obj("b", ("Ready", "True", "Profiled")))  # replaces
    states.observe(obs.KIND_DATASET, "ADDED", obj("c"))  # no status yet
    states.observe(
        obs.KIND_MODEL_DEPLOYMENT,
        "MODIFIED",
        obj("m", ("Ready", "True", "Serving"), ("Progressing", "True", "Canary"), canary=50),
    )
    got = samples(states)

    def cond(kind: str, c: str, s: str, r: str) -> float:
        labels = (("condition", c), ("kind", kind), ("reason", r), ("status", s))
        return got.get((obs.OBJECT_CONDITIONS, labels), 0.0)

    assert got[(obs.OBJECTS, (("kind", "Dataset"),))] == 3
    assert got[(obs.OBJECTS, (("kind", "TrainingRun"),))] == 0  # present at zero: no "no data"
    assert cond("Dataset", "Ready", "True", "Profiled") == 2
    assert cond("Dataset", "Ready", "Unknown", "Profiling") == 0
    assert cond("ModelDeployment", "Progressing", "True", "Canary") == 1
    assert got[(obs.CANARY_WEIGHT, (("modeldeployment", "m"), ("namespace", "ns")))] == 50

    states.observe(obs.KIND_DATASET, "DELETED", obj("a", ("Ready", "True", "Profiled")))
    states.observe(obs.KIND_MODEL_DEPLOYMENT, "MODIFIED", obj("m", ("Ready", "True", "Serving")))
    got = samples(states)
    assert got[(obs.OBJECTS, (("kind", "Dataset"),))] == 2
    assert cond("Dataset", "Ready", "True", "Profiled") == 1
    assert got[(obs.CANARY_WEIGHT, (("modeldeployment", "m"), ("namespace", "ns")))] == 0  # canary over
    states.observe(obs.KIND_MODEL_DEPLOYMENT, "DELETED", obj("m"))
    assert not [k for k in samples(states) if k[0] == obs.CANARY_WEIGHT]


def test_the_operator_registry_exports_them() -> None:
    text = generate_latest(obs.REGISTRY).decode()
    assert f"# TYPE {obs.OBJECTS} gauge" in text
    assert f"# TYPE {obs.OBJECT_CONDITIONS} gauge" in text
    assert f"# TYPE {obs.CANARY_WEIGHT} gauge" in text
