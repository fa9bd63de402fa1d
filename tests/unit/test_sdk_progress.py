"""The progress of `.wait()`: the steps counted from an object's status, and what is drawn.

On a terminal tqdm draws a bar redrawn in place (carriage returns); into a file or a pipe
the display is one plain line per change of phase. The steps come from the status alone
(`specs.wait_step`), so they are tested on status dicts as the operator writes them.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from mlkube import specs
from mlkube.progress import Progress


def _cond(type_: str, status: str, reason: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": ""}


def _obj(spec: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": 1}, "spec": spec or {}, "status": status}


def test_dataset_steps_go_from_unseen_to_profiling_to_ready() -> None:
    assert specs.wait_step("Dataset", _obj()) == (0, 3)
    seen = _obj(conditions=[_cond("Ready", "Unknown", "Pending")])
    assert specs.wait_step("Dataset", seen) == (1, 3)
    profiling = _obj(conditions=[_cond("Ready", "Unknown", "Profiling")], jobName="iris-profile-1")
    assert specs.wait_step("Dataset", profiling) == (2, 3)
    ready = _obj(conditions=[_cond("Ready", "True", "Profiled")], jobName="iris-profile-1")
    assert specs.wait_step("Dataset", ready) == (3, 3)


def test_run_steps_wait_for_the_dataset_then_the_job() -> None:
    waiting = _obj(conditions=[_cond("Succeeded", "Unknown", "DatasetNotReady")])
    assert specs.wait_step("TrainingRun", waiting) == (1, 4)
    pending = _obj(conditions=[_cond("Succeeded", "Unknown", "Pending")])
    assert specs.wait_step("TrainingRun", pending) == (2, 4)
    training = _obj(conditions=[_cond("Succeeded", "Unknown", "Training")], jobName="r-train-1")
    assert specs.wait_step("TrainingRun", training) == (3, 4)
    searching = _obj(conditions=[_cond("Succeeded", "Unknown", "Searching")], search={"jobName": "r-s"})
    assert specs.wait_step("TrainingRun", searching) == (3, 4)
    done = _obj(conditions=[_cond("Succeeded", "True", "Trained")], jobName="r-train-1")
    assert specs.wait_step("TrainingRun", done) == (4, 4)


def test_deployment_steps_count_ready_replicas_then_ready() -> None:
    rolling = _obj({"replicas": 3}, conditions=[_cond("Ready", "False", "RollingOut")], readyReplicas=2)
    assert specs.wait_step("ModelDeployment", rolling) == (2, 4)
    ready = _obj({"replicas": 3}, conditions=[_cond("Ready", "True", "Serving")], readyReplicas=3)
    assert specs.wait_step("ModelDeployment", ready) == (4, 4)
    # More ready pods than wanted (old and new during a rollout) never overflow the bar.
    surge = _obj({"replicas": 1}, conditions=[_cond("Ready", "False", "RollingOut")], readyReplicas=2)
    assert specs.wait_step("ModelDeployment", surge) == (1, 2)


def test_unknown_kind_has_no_steps() -> None:
    with pytest.raises(ValueError):
        specs.wait_step("Secret", _obj())


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_tqdm_draws_a_bar_redrawn_in_place() -> None:
    out = _Tty()
    bar = Progress("TrainingRun/r1", stream=out)
    assert bar.mode == "bar"
    bar.update(1, 4, "DatasetNotReady: waiting", 0.0)
    bar.update(3, 4, "Training | Job r1-train-1: active 1", 3.0)
    bar.close(4, 4, "Trained", 5.0)
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    final = text.split("\r")[-1]
    assert final.startswith("TrainingRun/r1: ") and "4/4" in final and "Trained" in final
    assert "3/4" in text and "Job r1-train-1: active 1" in text
    bar_text = final.split(": ", 1)[1].split(" 4/4")[0]
    assert bar_text and set(bar_text) <= {"#", "█"}  # tqdm's bar (ASCII on a plain stream), full at the end


def test_into_a_file_one_plain_line_per_change_and_no_carriage_returns() -> None:
    out = io.StringIO()
    bar = Progress("Dataset/iris", stream=out)
    assert bar.mode == "lines"
    bar.update(1, 3, "Pending", 0.0)
    bar.update(1, 3, "Pending", 1.0)  # same phase: no new line
    bar.update(2, 3, "Profiling", 2.0)
    bar.close(3, 3, "Profiled", 3.0)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "step 1/3: Pending",
        "step 2/3: Profiling",
        "step 3/3: Profiled",
    ]
