"""Hyperparameter search as one Indexed Job, then a refit: pure builders and views.

A TrainingRun with `spec.search` goes Searching -> Refitting -> Trained (or
QualityGateFailed / TrainingFailed), or ends SearchFailed / InvalidSpec:

- **Searching**: one Indexed Job, `completions` = trials, `parallelism` pods at a
  time; pod i runs trial i (JOB_COMPLETION_INDEX). `backoffLimitPerIndex` retries a
  crashed trial alone, and the podFailurePolicy fails one index on exit 4 (this
  trial's parameters failed: FailIndex) but the whole Job on exit 3 (a problem all
  trials share, such as an unknown parameter: FailJob).
- **Refitting**: once the Job has finished and at least one trial reported a score,
  the best trial's parameters are merged into `estimator.params` and the ordinary
  training Job fits them on the training split and evaluates on the held-out split,
  with the quality gate as for any run. The refit also collates the trial files
  into the trial table (trials.json, trials.csv).

Each trial's result comes back in its pod's termination message (TrialResult, the
model shared with the trial pod), so the choice of the best trial needs nothing but
the Job's pods, and a restarted operator makes the same choice.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .. import artifacts
from .. import constants as C
from ..api.search import Direction, Search, SearchStatus, TrialFailure, TrialSummary
from ..api.trainingrun import TrainingRunSpec
from ..training.search_contract import EXIT_TRIAL_FAILED, TRIALS_CSV, TRIALS_JSON, TrialResult, search_dir
from .jobs import JobPhase, parse_termination_message
from .naming import child_name

JSON = dict[str, Any]
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
TOP = 5
MAX_FAILURES = 3
_MESSAGE_CHARS = 300


def search_job_name(name: str, generation: int, follow_round: int = 0) -> str:
    suffix = f"search-{generation}" if follow_round == 0 else f"search-{generation}-f{follow_round}"
    return child_name(name, suffix)


def build_search_job(training_job: JSON, name: str, search: Search, retries_per_index: int) -> JSON:
    """The Indexed Job of a search, from the training Job the run would otherwise get (pure).

    Derived from the training Job so that a trial reads the same data, mounts the
    same artifact store and runs under the same security settings as the refit;
    only the command (`trial`), the name, the component and the completion settings
    differ.
    """
    job = copy.deepcopy(training_job)
    meta, spec = job["metadata"], job["spec"]
    meta["name"] = name
    for labels in (meta["labels"], spec["template"]["metadata"]["labels"]):
        labels[C.LABEL_COMPONENT] = COMPONENT_SEARCH
    container = spec["template"]["spec"]["containers"][0]
    container["args"] = ["trial", *container["args"][1:]]
    trials = search.resolved_trials()
    spec.pop("backoffLimit", None)  # replaced by backoffLimitPerIndex: one trial's crashes are its own
    spec.update(
        {
            "completionMode": "Indexed",
            "completions": trials,
            "parallelism": min(search.parallelism, trials),
            "backoffLimitPerIndex": retries_per_index,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": container["name"],
                            "operator": "In",
                            "values": [C.EXIT_PERMANENT],
                        },
                    },
                    {
                        "action": "FailIndex",
                        "onExitCodes": {
                            "containerName": container["name"],
                            "operator": "In",
                            "values": [EXIT_TRIAL_FAILED],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
        }
    )
    return job


COMPONENT_SEARCH = "search-trial"


def refit_spec(spec: TrainingRunSpec, best: TrialResult) -> TrainingRunSpec:
    """The run's spec with the best trial's parameters merged over `estimator.params`."""
    estimator = spec.estimator.model_copy(update={"params": {**spec.estimator.params, **best.params}})
    return spec.model_copy(update={"estimator": estimator})


@dataclass(frozen=True)
class SearchView:
    """The search Job as the planner needs it: phase, per-index results, counts."""

    phase: JobPhase
    results: dict[int, TrialResult] = field(default_factory=dict)
    exit_codes: dict[int, int] = field(default_factory=dict)
    completed: int = 0
    failed: int = 0
    failure_reason: str = ""
    failure_message: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    def shared_failure(self) -> TrialResult | None:
        """A result that failed the whole search (exit 3): a problem every trial has."""
        for index in sorted(self.exit_codes):
            if self.exit_codes[index] == C.EXIT_PERMANENT and index in self.results:
                return self.results[index]
        return None


def _count(indexes: str | None) -> int:
    """How many indexes "0-3,5" names."""
    total = 0
    for part in (indexes or "").split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


def _pod_index(pod: JSON) -> int | None:
    meta = pod.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(COMPLETION_INDEX) or (meta.get("labels") or {}).get(
        COMPLETION_INDEX
    )
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return None


def _terminated(pod: JSON) -> JSON | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = (cs.get("state") or {}).get("terminated")
        if state:
            return dict(state)
    return None


def view_search(job: JSON | None, pods: list[JSON]) -> SearchView:
    """Summarise the Indexed Job and its pods' termination messages (pure)."""
    if job is None:
        return SearchView(JobPhase.MISSING)
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    results: dict[int, TrialResult] = {}
    codes: dict[int, int] = {}
    finished = sorted(
        ((t.get("finishedAt") or "", i, t) for p in pods
         if (i := _pod_index(p)) is not None and (t := _terminated(p)) is not None),
        key=lambda item: item[0],
    )  # fmt: skip
    for _, index, term in finished:
        code = int(term.get("exitCode") or 0)
        if codes.get(index) == 0:
            continue  # a success of this index stands
        parsed = parse_termination_message(term.get("message"))
        result = TrialResult.decode(parsed)
        if result is None or result.index != index:
            data = parsed or {}
            result = TrialResult(
                ok=False,
                index=index,
                reason=str(data.get("reason") or term.get("reason") or "Error"),
                message=str(data.get("message") or f"exited {code} without a trial result"),
            )
        if code != 0 and result.ok:
            result = result.model_copy(update={"ok": False, "reason": result.reason or "Error"})
        results[index], codes[index] = result, code
    if "Complete" in conditions:
        phase = JobPhase.SUCCEEDED
    elif "Failed" in conditions:
        phase = JobPhase.FAILED
    else:
        phase = JobPhase.RUNNING
    failed = conditions.get("Failed") or {}
    return SearchView(
        phase=phase,
        results=results,
        exit_codes=codes,
        completed=_count(status.get("completedIndexes")),
        failed=_count(status.get("failedIndexes")),
        failure_reason=str(failed.get("reason") or ""),
        failure_message=str(failed.get("message") or ""),
        annotations=dict((job.get("metadata") or {}).get("annotations") or {}),
    )


def ranked(view: SearchView, direction: Direction) -> list[TrialResult]:
    """Scored trials, best first; ties go to the lower index (as scikit-learn's rank does)."""
    sign = -1.0 if direction is Direction.MAXIMIZE else 1.0
    scored = [r for r in view.results.values() if r.ok and r.score is not None and math.isfinite(r.score)]
    return sorted(scored, key=lambda r: (sign * (r.score or 0.0), r.index))


def summarize(view: SearchView, search: Search, job_name: str, where: JSON | None = None) -> SearchStatus:
    """status.search: counts, the best trial, the top few and the first failures (bounded)."""
    direction = search.resolved_direction()
    best = ranked(view, direction)
    failures = sorted((r for r in view.results.values() if not r.ok), key=lambda r: r.index)
    status = SearchStatus(
        job_name=job_name,
        trials=search.resolved_trials(),
        succeeded=max(view.completed, len(best)),
        failed=max(view.failed, len(failures)),
        metric=search.metric.value,
        direction=direction.value,
    )
    if best:
        status.best_index, status.best_score = best[0].index, best[0].score
        status.best_params = params_text(best[0].params)
        status.top = [
            TrialSummary(index=r.index, score=r.score or 0.0, params=params_text(r.params))
            for r in best[:TOP]
        ]
    if failures:
        status.failures = [
            TrialFailure(index=r.index, reason=r.reason or "Error", message=_cut(r.message or ""))
            for r in failures[:MAX_FAILURES]
        ]
    if where is not None:
        status.trials_uri, status.trials_csv_uri = where["json"], where["csv"]
    return status


def trial_table_uris(
    namespace: str, name: str, uid: str, generation: int, root: str = C.ARTIFACT_MOUNT, follow_round: int = 0
) -> JSON:
    base = search_dir(namespace, name, uid, generation, follow_round)
    return {"json": artifacts.uri(base / TRIALS_JSON, root), "csv": artifacts.uri(base / TRIALS_CSV, root)}


def params_text(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))


def _cut(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
