"""`TrainingRun.spec.search`: which parameter sets to try, how many at once, how to judge them.

A search is declared, not scripted: a parameter space (lists, integer and float
ranges, optionally on a log scale), a Grid or a seeded Random strategy, a trial
budget and the metric to optimise. The same spec and seed always give the same
trials, so a search can be re-run, audited and compared with scikit-learn's own
GridSearchCV / RandomizedSearchCV.

What can be checked without data is checked here, so the API server (CRD schema and
CEL rules) and the handler (pydantic) reject it naming the field: an empty space, a
range with low >= high, a log scale over non-positive numbers, a grid smaller than
`trials`. Whether a parameter exists is the estimator's business and is checked by
the trial Job against `get_params()` (InvalidSpec naming the parameter).
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Any, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .common import ApiModel, StatusModel
from .metric import LOWER_IS_BETTER, Metric

MAX_PARAMETERS = 12
MAX_VALUES = 64
MAX_STRING_VALUE = 128
MAX_TRIALS = 1000
DEFAULT_RANDOM_TRIALS = 10
# A grid dimension listed exhaustively (an integer range without `num`) stays small.
MAX_GRID_INTEGERS = 1000

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
Scalar = str | int | float | bool | None


class SearchType(StrEnum):
    GRID = "Grid"
    RANDOM = "Random"


class Direction(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class RangeType(StrEnum):
    INT = "int"
    FLOAT = "float"


class Parameter(ApiModel):
    """One dimension of the space: either `values`, or a `type` range from `low` to `high`."""

    values: list[Any] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_VALUES,
        description="The candidate values (strings, numbers, booleans or null).",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True, "nullable": True}},
    )
    type: RangeType | None = Field(default=None, description="int or float: a range from low to high.")
    log: bool = Field(default=False, description="Sample (or space grid points) on a log scale; low > 0.")
    low: float | None = Field(default=None, description="Lower bound of the range (inclusive).")
    high: float | None = Field(default=None, description="Upper bound of the range (inclusive).")
    num: int | None = Field(
        default=None,
        ge=2,
        le=100,
        description="Grid search: points of the range, evenly spaced (log-spaced with log). "
        "Required for a float range in a Grid search; an int range without it lists every integer.",
    )

    @field_validator("values")
    @classmethod
    def _scalars(cls, values: list[Any] | None) -> list[Any] | None:
        for i, value in enumerate(values or []):
            if isinstance(value, str) and len(value) > MAX_STRING_VALUE:
                raise ValueError(f"values[{i}] is longer than {MAX_STRING_VALUE} characters")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"values[{i}] is not a finite number")
            if not isinstance(value, str | int | float | bool | None):
                raise ValueError(f"values[{i}] must be a string, number, boolean or null")
        return values

    @field_validator("low")
    @classmethod
    def _positive_on_log(cls, low: float | None, info: ValidationInfo) -> float | None:
        if low is not None and info.data.get("log") and low <= 0:
            raise ValueError(f"must be greater than 0 on a log scale (got {low:g})")
        return low

    @field_validator("high")
    @classmethod
    def _above_low(cls, high: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("low")
        if high is not None and low is not None and high <= low:
            raise ValueError(f"must be greater than low ({high:g} <= {low:g})")
        return high

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.values is None) == (self.type is None):
            raise ValueError("set either values, or type with low and high")
        if self.values is not None:
            if self.log or self.low is not None or self.high is not None or self.num is not None:
                raise ValueError("values cannot be combined with log, low, high or num")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} range needs both low and high")
        if self.type is RangeType.INT and not (self.low.is_integer() and self.high.is_integer()):
            raise ValueError("an int range needs integer low and high")
        return self

    def grid_values(self) -> list[Scalar]:
        """The points this dimension contributes to a grid, in order (pure, stdlib only)."""
        if self.values is not None:
            return list(self.values)
        low, high = float(self.low or 0.0), float(self.high or 0.0)
        if self.type is RangeType.INT and self.num is None:
            return list(range(int(low), int(high) + 1))
        num = self.num or 0  # a float range without num is rejected before this is called
        points: list[float] = []
        for i in range(num):
            t = i / (num - 1)
            if self.log:
                points.append(math.exp(math.log(low) + t * (math.log(high) - math.log(low))))
            else:
                points.append(low + t * (high - low))
        points[0], points[-1] = low, high
        if self.type is RangeType.INT:
            return list(dict.fromkeys(round(p) for p in points))
        return list(points)

    def grid_count(self) -> int:
        """How many grid points, without listing a huge integer range."""
        if self.type is RangeType.INT and self.num is None and self.values is None:
            return int(self.high or 0) - int(self.low or 0) + 1
        return len(self.grid_values())

    @property
    def discrete(self) -> bool:
        return self.values is not None


def grid_size(space: dict[str, Parameter]) -> int:
    return math.prod(p.grid_count() for p in space.values())


class Search(ApiModel):
    """Hyperparameter search: one Indexed Job, one trial per completion index."""

    type: SearchType = Field(default=SearchType.RANDOM, description="Grid or Random (seeded).")
    space: dict[str, Parameter] = Field(
        min_length=1,
        max_length=MAX_PARAMETERS,
        description="Estimator parameter -> values or range; merged over estimator.params per trial.",
    )
    trials: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TRIALS,
        description=f"Number of trials. Grid: at most the grid size (default: all of it). "
        f"Random: default {DEFAULT_RANDOM_TRIALS}; at most the grid size when every parameter is a list.",
    )
    parallelism: int = Field(default=2, ge=1, le=100, description="Trials running at once (pods).")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of the Random sampler and the folds.")
    metric: Metric = Field(description="The metric to optimise, measured on the validation folds.")
    direction: Direction | None = Field(
        default=None, description="maximize or minimize; default: minimize for rmse and mae, else maximize."
    )
    cv: int | None = Field(
        default=None,
        ge=2,
        le=20,
        description="k-fold cross-validation on the training split; without it, one validation split.",
    )
    validation_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="Without cv: fraction of the training split each trial validates on.",
    )

    @field_validator("space")
    @classmethod
    def _names_and_grid(cls, space: dict[str, Parameter], info: ValidationInfo) -> dict[str, Parameter]:
        grid = info.data.get("type") is SearchType.GRID
        for name, p in space.items():
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a parameter name")
            if grid and p.type is RangeType.FLOAT and p.num is None:
                raise ValueError(f"{name!r} is a float range and needs num (grid points) in a Grid search")
            if grid and p.type is RangeType.INT and p.num is None and p.grid_count() > MAX_GRID_INTEGERS:
                raise ValueError(f"{name!r} spans {p.grid_count()} integers; set num to grid fewer points")
        return space

    @field_validator("trials")
    @classmethod
    def _within_grid(cls, trials: int | None, info: ValidationInfo) -> int | None:
        space: dict[str, Parameter] | None = info.data.get("space")
        kind = info.data.get("type")
        if trials is None or not space:
            return trials
        exhaustible = kind is SearchType.GRID or all(p.discrete for p in space.values())
        # A float range without num is no grid; the model validator says so.
        countable = all(p.type is not RangeType.FLOAT or p.num for p in space.values())
        if exhaustible and countable:
            size = grid_size(space)
            if trials > size:
                raise ValueError(
                    f"{trials} trials is more than the grid allows: the space has {size} combination(s)"
                )
        return trials

    @field_validator("direction")
    @classmethod
    def _direction_fits(cls, direction: Direction | None, info: ValidationInfo) -> Direction | None:
        metric = info.data.get("metric")
        if direction is None or metric is None:
            return direction
        natural = natural_direction(metric)
        if direction is not natural:
            raise ValueError(f"{metric.value} is optimised by {natural.value}, not {direction.value}")
        return direction

    def resolved_direction(self) -> Direction:
        return self.direction or natural_direction(self.metric)

    def resolved_trials(self) -> int:
        """The number of trials (completions of the Job)."""
        if self.trials is not None:
            return self.trials
        if self.type is SearchType.GRID:
            return grid_size(self.space)
        if all(p.discrete for p in self.space.values()):
            return min(DEFAULT_RANDOM_TRIALS, grid_size(self.space))
        return DEFAULT_RANDOM_TRIALS


def natural_direction(metric: Metric) -> Direction:
    return Direction.MINIMIZE if metric in LOWER_IS_BETTER else Direction.MAXIMIZE


# Parameters in status are JSON text: a status patch is a JSON merge patch, which
# would drop every null value (max_depth: null) from an object.
PARAMS_DESCRIPTION = "The parameters as a JSON object in a string, so that null values survive."


class TrialSummary(StatusModel):
    index: int
    score: float
    params: str = Field(default="{}", description=PARAMS_DESCRIPTION)


class TrialFailure(StatusModel):
    index: int
    reason: str
    message: str = ""


class SearchStatus(StatusModel):
    """A bounded summary; the full trial table is at `trialsUri` (JSON) and `trialsCsvUri`."""

    job_name: str | None = None
    trials: int = Field(default=0, description="Trials in the search.")
    succeeded: int = Field(default=0, description="Trials that reported a score.")
    failed: int = Field(default=0, description="Trials that failed (each fails alone).")
    metric: str | None = None
    direction: str | None = None
    best_index: int | None = None
    best_score: float | None = None
    best_params: str | None = Field(default=None, description=PARAMS_DESCRIPTION)
    top: list[TrialSummary] | None = Field(default=None, description="The best few trials, best first.")
    failures: list[TrialFailure] | None = Field(default=None, description="The first few failed trials.")
    trials_uri: str | None = None
    trials_csv_uri: str | None = None
