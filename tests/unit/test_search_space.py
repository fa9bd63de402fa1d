"""spec.search: what the API accepts, and the trial list it describes (grid, seeded random).

The trial list must be a pure function of the spec (every pod of the Indexed Job
computes it and takes its own index) and must be scikit-learn's own, so that the
same space and seed give the same candidates as GridSearchCV / RandomizedSearchCV.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
from sklearn.model_selection import ParameterGrid, ParameterSampler

from mlkube_operator.api.search import Direction, Search, grid_size
from mlkube_operator.api.trainingrun import TrainingRunSpec
from mlkube_operator.api.validation import InvalidSpecError, parse_model
from mlkube_operator.training import space
from mlkube_operator.training.contract import TERMINATION_MESSAGE_MAX_BYTES
from mlkube_operator.training.search_contract import TrialResult

BASE = {"datasetRef": {"name": "iris"}, "estimator": {"className": "sklearn.ensemble.RandomForestClassifier"}}


def search(**body: Any) -> Search:
    spec = parse_model(TrainingRunSpec, {**BASE, "search": {"metric": "accuracy", **body}})
    assert spec.search is not None
    return spec.search


def rejected(**body: Any) -> InvalidSpecError:
    with pytest.raises(InvalidSpecError) as caught:
        search(**body)
    return caught.value


MIXED = {
    "C": {"type": "float", "low": 1e-3, "high": 100.0, "log": True},
    "alpha": {"type": "float", "low": 0.0, "high": 1.0},
    "depth": {"type": "int", "low": 2, "high": 9},
    "leaves": {"type": "int", "low": 1, "high": 1000, "log": True},
    "kind": {"values": ["gini", "entropy", None]},
}


class TestValidation:
    def test_empty_space(self) -> None:
        err = rejected(space={})
        assert err.fields == ["spec.search.space"]

    def test_low_not_below_high_names_high(self) -> None:
        err = rejected(space={"x": {"type": "float", "low": 1.0, "high": 1.0}})
        assert err.fields == ["spec.search.space.x.high"]
        assert "greater than low" in err.message

    def test_log_scale_needs_positive_low(self) -> None:
        err = rejected(space={"x": {"type": "float", "low": 0, "high": 1, "log": True}})
        assert err.fields == ["spec.search.space.x.low"]
        assert "log scale" in err.message

    def test_trials_beyond_the_grid_says_the_grid_size(self) -> None:
        err = rejected(type="Grid", trials=7, space={"a": {"values": [1, 2, 3]}, "b": {"values": [1, 2]}})
        assert err.fields == ["spec.search.trials"]
        assert "6 combination" in err.message

    def test_random_over_lists_only_is_bounded_by_the_grid_too(self) -> None:
        err = rejected(trials=3, space={"a": {"values": [1, 2]}})
        assert "2 combination" in err.message
        assert search(trials=50, space={"a": {"type": "int", "low": 1, "high": 2}}).resolved_trials() == 50

    def test_values_or_range_not_both(self) -> None:
        err = rejected(space={"x": {"values": [1], "type": "int", "low": 0, "high": 3}})
        assert err.fields == ["spec.search.space.x"]
        err = rejected(space={"x": {"type": "int", "low": 0}})
        assert "needs both low and high" in err.message
        err = rejected(space={"x": {"type": "int", "low": 0.5, "high": 3}})
        assert "integer" in err.message

    def test_grid_float_range_needs_num(self) -> None:
        err = rejected(type="Grid", space={"x": {"type": "float", "low": 0.1, "high": 1}})
        assert err.fields == ["spec.search.space"] and "'x'" in err.message and "num" in err.message

    def test_direction_must_fit_the_metric(self) -> None:
        assert search(space={"x": {"values": [1]}}).resolved_direction() is Direction.MAXIMIZE
        assert search(metric="rmse", space={"x": {"values": [1]}}).resolved_direction() is Direction.MINIMIZE
        err = rejected(metric="rmse", direction="maximize", space={"x": {"values": [1]}})
        assert err.fields == ["spec.search.direction"]

    def test_unknown_metric_and_bad_values(self) -> None:
        assert rejected(metric="precision", space={"x": {"values": [1]}}).fields == ["spec.search.metric"]
        err = rejected(space={"x": {"values": [{"nested": 1}]}})
        assert err.fields == ["spec.search.space.x.values"]
        assert rejected(space={"x-y": {"values": [1]}}).fields == ["spec.search.space"]


class TestGrid:
    def test_grid_is_parameter_grid_order_and_size(self) -> None:
        s = search(
            type="Grid",
            space={
                "b": {"values": [1, 2, 3]},
                "a": {"type": "float", "low": 0.01, "high": 1.0, "num": 3, "log": True},
                "c": {"type": "int", "low": 4, "high": 6},
            },
        )
        trials = space.trials(s)
        expected = list(ParameterGrid({n: s.space[n].grid_values() for n in s.space}))
        assert trials == expected
        assert len(trials) == grid_size(s.space) == 27 == s.resolved_trials()

    def test_log_grid_points_are_geometric_with_exact_ends(self) -> None:
        s = search(
            type="Grid", space={"lr": {"type": "float", "low": 1e-4, "high": 1.0, "num": 5, "log": True}}
        )
        points = [t["lr"] for t in space.trials(s)]
        assert points[0] == 1e-4 and points[-1] == 1.0
        assert [round(math.log10(float(p)), 9) for p in points] == [-4, -3, -2, -1, 0]

    def test_int_log_grid_is_rounded_and_deduplicated(self) -> None:
        s = search(type="Grid", space={"n": {"type": "int", "low": 1, "high": 8, "num": 7, "log": True}})
        values = [t["n"] for t in space.trials(s)]
        assert values == sorted(set(values)) and values[0] == 1 and values[-1] == 8
        assert all(isinstance(v, int) for v in values)

    def test_fewer_trials_take_the_head_of_the_grid(self) -> None:
        s = search(type="Grid", trials=2, space={"a": {"values": [1, 2, 3]}})
        assert space.trials(s) == [{"a": 1}, {"a": 2}]


class TestRandom:
    def test_seeded_and_deterministic(self) -> None:
        s = search(trials=20, seed=7, space=MIXED)
        first = space.trials(s)
        assert first == space.trials(s)
        assert first != space.trials(search(trials=20, seed=8, space=MIXED))
        assert len({json.dumps(t, sort_keys=True) for t in first}) == 20

    def test_same_in_another_process(self) -> None:
        s = search(trials=8, seed=3, space=MIXED)
        code = (
            "import json,sys;from mlkube_operator.api.search import Search;"
            "from mlkube_operator.training import space;"
            "print(json.dumps(space.trials(Search.model_validate_json(sys.argv[1]))))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, s.model_dump_json()], capture_output=True, text=True, check=True
        )
        assert json.loads(out.stdout) == space.trials(s)

    def test_is_scikit_learns_parameter_sampler(self) -> None:
        s = search(trials=12, seed=11, space=MIXED)
        theirs = list(ParameterSampler(space.distributions(s.space), n_iter=12, random_state=11))
        assert space.trials(s) == [{k: space.plain(v) for k, v in t.items()} for t in theirs]

    def test_ranges_and_types(self) -> None:
        trials = space.trials(search(trials=400, seed=1, space=MIXED))
        assert all(1e-3 <= float(t["C"]) <= 100 for t in trials)  # type: ignore[arg-type]
        assert all(0 <= float(t["alpha"]) <= 1 for t in trials)  # type: ignore[arg-type]
        assert {t["depth"] for t in trials} == set(range(2, 10))
        assert all(isinstance(t["leaves"], int) and 1 <= t["leaves"] <= 1000 for t in trials)
        assert {t["kind"] for t in trials} == {"gini", "entropy", None}

    def test_log_scale_spreads_over_decades(self) -> None:
        trials = space.trials(search(trials=400, seed=2, space=MIXED))
        decades = [math.floor(math.log10(float(t["C"]))) for t in trials]  # type: ignore[arg-type]
        # 1e-3..1e2 is 5 decades: a log-uniform draw puts ~20% in each, a uniform one ~90% in the last.
        for decade in range(-3, 2):
            assert 40 <= decades.count(decade) <= 120, (decade, decades.count(decade))
        leaves = [t["leaves"] for t in trials]
        assert sum(1 for v in leaves if v < 32) > 150  # log-uniform on 1..1000: about half below 32

    def test_lists_only_sample_without_replacement(self) -> None:
        s = search(trials=6, seed=0, space={"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y"]}})
        trials = space.trials(s)
        assert sorted(json.dumps(t, sort_keys=True) for t in trials) == sorted(
            json.dumps(t, sort_keys=True) for t in ParameterGrid({"a": [1, 2, 3], "b": ["x", "y"]})
        )


def test_trial_result_fits_a_termination_message_at_the_api_bounds() -> None:
    params = {f"p{i:02d}_{'x' * 58}": "v" * 128 for i in range(12)}
    result = TrialResult(
        ok=False, index=999, params=params, metric="balanced_accuracy", score=0.123456789,
        fold_scores=[0.1234567890123] * 20, fit_seconds=1234.567, reason="InvalidParameters",
        message="m" * 5000,
    )  # fmt: skip
    text = result.encode()
    assert len(text.encode()) < TERMINATION_MESSAGE_MAX_BYTES
    back = TrialResult.decode(json.loads(text))
    assert back is not None and back.params == params and back.index == 999
    assert back.truncated is not None and "foldScores" in back.truncated
    small = TrialResult(ok=True, index=1, params={"a": 0.1}, score=0.5, fold_scores=[0.4, 0.6])
    assert TrialResult.decode(json.loads(small.encode())) == small
