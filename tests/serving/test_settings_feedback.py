"""Settings from flags and MLKUBE_* variables; feedback memory and scoring."""

from __future__ import annotations

import numpy as np
import pytest

from mlkube_serving.errors import RequestError
from mlkube_serving.feedback import PredictionMemory, score_feedback
from mlkube_serving.metrics import ServingMetrics
from mlkube_serving.settings import load_settings


def test_flags_win_over_environment() -> None:
    env = {
        "MLKUBE_PORT": "9000",
        "MLKUBE_MODEL_NAME": "env-name",
        "MLKUBE_MAX_BATCH_WAIT_MS": "0.5",
        "MLKUBE_ACCESS_LOG": "true",
        "MLKUBE_REFERENCE_PROFILE": "",
    }
    s = load_settings(["--port", "9100"], env)
    assert s.port == 9100 and s.model_name == "env-name" and s.max_batch_wait_ms == 0.5 and s.access_log
    assert s.reference_profile is None
    s = load_settings(["--name", "flag", "--no-access-log", "--no-fast-path"], env)
    assert s.model_name == "flag" and not s.access_log and not s.fast_path
    assert load_settings([], {}).host == "0.0.0.0"


@pytest.mark.parametrize(
    "argv", [["--port", "70000"], ["--port", "http"], ["--name", "a/b"], ["--max-batch-size", "0"]]
)
def test_invalid_settings_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load_settings(argv, {})
    assert info.value.code == 2
    assert "--" in capsys.readouterr().err


def test_memory_is_bounded_lru() -> None:
    mem = PredictionMemory(2)
    mem.remember("a", np.array([0]))
    mem.remember("b", np.array([1]))
    mem.remember("a", np.array([2]))  # refresh a
    mem.remember("c", np.array([1]))  # evicts b
    assert mem.peek("b") is None and mem.peek("a") is not None and len(mem) == 2
    assert len(PredictionMemory(0)) == 0


def test_scoring_validates_before_counting() -> None:
    metrics = ServingMetrics("m", with_process=False)
    mem = PredictionMemory(10)
    mem.remember("r1", np.array([0, 1]))
    mem.remember("r2", np.array([1]))
    with pytest.raises(RequestError):
        score_feedback([("r2", 1), ("r1", [0])], mem, "classification", metrics)
    assert metrics.feedback.series == {}  # nothing counted for a rejected call
    result = score_feedback([("r1", ["0", 0]), ("r2", 1.0), ("zz", 1)], mem, "classification", metrics)
    assert (result.accepted, result.unknown_ids, result.rows) == (2, ["zz"], 3)
    assert metrics.feedback.series == {
        ("m", "correct"): 2.0,
        ("m", "incorrect"): 1.0,
        ("m", "unknown_id"): 1.0,
    }
    with pytest.raises(RequestError):
        score_feedback([("a", 1), ("a", 1)], mem, "classification", metrics)


def test_regression_labels_must_be_numbers() -> None:
    metrics = ServingMetrics("m", with_process=False)
    mem = PredictionMemory(10)
    mem.remember("r", np.array([1.5]))
    with pytest.raises(RequestError):
        score_feedback([("r", "big")], mem, "regression", metrics)
    score_feedback([("r", 2.0)], mem, "regression", metrics)
    assert metrics.sq_error == [1, 0.25]
