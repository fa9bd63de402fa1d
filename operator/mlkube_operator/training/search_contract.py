"""What a search trial pod and the operator agree on: its result, exit codes and files.

One pydantic model, `TrialResult`, is both what the trial pod writes into its
termination message and what the operator parses out of it, so neither side can
drift from the other. Its encoding is kept under the kubelet's 4 KiB limit: the
parameters are bounded by the API (at most 12, strings of at most 128 characters),
and when a result would still be too large the fold scores and then the message are
dropped (`truncated` says so); the full result is in the trial's JSON file in the
artifact store either way.

Imports only pydantic and the API models (no pandas or scikit-learn), so the operator
can import it.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from .. import artifacts
from .contract import TERMINATION_MESSAGE_MAX_BYTES

# Exit code of a trial whose own parameters failed (sklearn rejected a value, the fit
# raised): the Indexed Job's podFailurePolicy marks that index failed (FailIndex) and
# the other trials go on. EXIT_PERMANENT (3) still fails the whole Job (FailJob): a
# problem every trial shares (unknown parameter, bad estimator, wrong metric, data).
EXIT_TRIAL_FAILED: Final = 4

BUDGET_BYTES: Final = TERMINATION_MESSAGE_MAX_BYTES - 96
_MESSAGE_CUT = 512

SEARCH_DIR: Final = "search"
TRIALS_DIR: Final = "trials"
TRIALS_JSON: Final = "trials.json"
TRIALS_CSV: Final = "trials.csv"


class TrialResult(BaseModel):
    """One trial's outcome: `ok` with a `score`, or a `reason` and `message`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    ok: bool
    index: int
    params: dict[str, Any] = {}
    metric: str | None = None
    score: float | None = None
    fold_scores: list[float] | None = None
    fit_seconds: float | None = None
    reason: str | None = None
    message: str | None = None
    truncated: list[str] | None = None

    def encode(self, budget: int = BUDGET_BYTES) -> str:
        """Compact JSON of at most `budget` bytes (fold scores, then the message, give way first)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        dropped: list[str] = []

        def size() -> int:
            return len(_dumps({**data, "truncated": dropped} if dropped else data).encode())

        if size() > budget and "foldScores" in data:
            del data["foldScores"]
            dropped.append("foldScores")
        if size() > budget and "message" in data:
            data["message"] = data["message"][:_MESSAGE_CUT] + "…[truncated]"
        if size() > budget and "message" in data:
            del data["message"]
            dropped.append("message")
        if dropped:
            data["truncated"] = dropped
        return _dumps(data)

    @classmethod
    def decode(cls, data: dict[str, Any] | None) -> TrialResult | None:
        """The result in a parsed termination message, or None if it is not one."""
        if data is None:
            return None
        try:
            return cls.model_validate(data)
        except ValidationError:
            return None


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def search_dir(namespace: str, name: str, uid: str, generation: int, follow_round: int = 0) -> PurePosixPath:
    """Next to the run's model: the trial table belongs to the model it chose (a Follow
    round searches again, next to that round's model)."""
    return artifacts.model_dir(namespace, name, uid, generation, follow_round) / SEARCH_DIR


def trial_file(
    namespace: str, name: str, uid: str, generation: int, index: int, follow_round: int = 0
) -> PurePosixPath:
    return search_dir(namespace, name, uid, generation, follow_round) / TRIALS_DIR / f"{index}.json"
