"""Exact, cheaper ``predict`` for the estimator families mlkube trains most.

For the small batches a model server sees, scikit-learn's ``predict`` is dominated by
work around the arithmetic, not by the arithmetic:

* forests dispatch each tree through joblib even with one job: about 4 ms of a 4.5 ms
  single-row predict for 100 trees goes to dispatch, not to walking trees;
* linear models re-validate the input on every call (array-API namespace detection,
  dataframe sniffing, finiteness and feature-name checks): about 100 us around a
  one-microsecond matrix product;
* mlkube's training pipelines (``Pipeline([ColumnTransformer, estimator])``, built by
  ``mlkube_operator/training/pipeline.py``) add a pandas DataFrame, per-column validation
  and the ColumnTransformer's bookkeeping: about 1.6 ms for one row of 20 numeric
  features, around 4 us of imputing and scaling.

The server has already validated its input (shape, dtype, finiteness), so each fast path
below makes the same numerical calls sklearn makes, in the same order, minus that
overhead.  None is trusted on faith: ``verify`` compares it bit for bit with the
estimator's own ``predict`` (and ``predict_proba`` where it produces it) on varied rows
at warm-up, and the server falls back to plain sklearn on any difference, for any
estimator type not listed here (subclasses included), and with ``--no-fast-path``.

Pipelines are recognised only in exactly the shape mlkube's training builds (see
``_build_pipeline`` and docs/serving.md): ``Pipeline([ColumnTransformer, estimator])`` whose
entries are SimpleImputer/StandardScaler chains over numeric columns or a OneHotEncoder
ignoring unknown levels over categorical ones.  For them ``verify`` also compares the
preprocessed matrix (values, dtype, memory layout) with the ColumnTransformer's output.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


class FastPath:
    """predict(x) -> (values, class index or None, probabilities or None)."""

    name = "none"
    # True if predict() also takes the object matrices of models with categorical columns.
    takes_objects = False

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def probe_levels(self) -> dict[int, list[Any]]:
        """Per input column, category values worth probing at warm-up (known levels)."""
        return {}

    def predict(self, x: Array, want_proba: bool) -> tuple[Array, npt.NDArray[np.intp] | None, Array | None]:
        raise NotImplementedError


class ForestClassifierPath(FastPath):
    name = "forest"

    def __init__(self, estimator: Any) -> None:
        super().__init__(estimator)
        self.calls = [tree.predict_proba for tree in estimator.estimators_]
        self.n_classes = int(estimator.n_classes_)
        self.classes = np.asarray(estimator.classes_)

    def proba(self, x: Array) -> npt.NDArray[np.float64]:
        # sklearn: float32 input, float64 zeros, each tree's predict_proba(check_input=False)
        # added in estimator order, then divided by the number of trees.
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros((x32.shape[0], self.n_classes), dtype=np.float64)
        for call in self.calls:
            out += call(x32, check_input=False)
        out /= len(self.calls)
        return out

    def predict(self, x: Array, want_proba: bool) -> tuple[Array, npt.NDArray[np.intp] | None, Array | None]:
        proba = self.proba(x)
        index = np.argmax(proba, axis=1)
        return self.classes.take(index), index, proba if want_proba else None


class ForestRegressorPath(FastPath):
    name = "forest"

    def __init__(self, estimator: Any) -> None:
        super().__init__(estimator)
        self.calls = [tree.predict for tree in estimator.estimators_]

    def predict(self, x: Array, want_proba: bool) -> tuple[Array, npt.NDArray[np.intp] | None, Array | None]:
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros(x32.shape[0], dtype=np.float64)
        for call in self.calls:
            out += call(x32, check_input=False)
        out /= len(self.calls)
        return out, None, None


class LinearClassifierPath(FastPath):
    name = "linear"

    def __init__(self, estimator: Any) -> None:
        super().__init__(estimator)
        self.coef = estimator.coef_
        self.intercept = estimator.intercept_
        self.classes = np.asarray(estimator.classes_)

    def predict(self, x: Array, want_proba: bool) -> tuple[Array, npt.NDArray[np.intp] | None, Array | None]:
        # LinearClassifierMixin: scores = X @ coef_.T + intercept_; binary -> scores > 0, else argmax.
        scores = x @ self.coef.T + self.intercept
        if scores.shape[1] == 1:
            index = (scores.reshape(-1) > 0).astype(np.intp)
        else:
            index = np.argmax(scores, axis=1)
        proba = np.asarray(self.estimator.predict_proba(x), dtype=np.float64) if want_proba else None
        return self.classes.take(index), index, proba


class LinearRegressorPath(FastPath):
    name = "linear"

    def __init__(self, estimator: Any) -> None:
        super().__init__(estimator)
        self.coef = estimator.coef_
        self.intercept = estimator.intercept_

    def predict(self, x: Array, want_proba: bool) -> tuple[Array, npt.NDArray[np.intp] | None, Array | None]:
        values = np.asarray(x @ self.coef.T + self.intercept, dtype=np.float64)
        return values.reshape(x.shape[0]) if values.ndim > 1 and values.shape[1] == 1 else values, None, None


def _is_scalar_nan(value: Any) -> bool:
    # sklearn.utils._missing.is_scalar_nan: what OneHotEncoder counts as a NaN category value.
    return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isnan(value)


class _Impute:
    """SimpleImputer.transform on a float64 block: drop all-missing-in-training columns,
    then put ``statistics_`` where the input is NaN (an assignment: no arithmetic)."""

    def __init__(self, statistics: npt.NDArray[np.float64], keep: npt.NDArray[np.intp] | None) -> None:
        self.statistics = statistics
        self.keep = keep

    def apply(self, z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.keep is not None:
            z = z[:, self.keep]
        mask = np.isnan(z)
        if mask.any():
            np.copyto(z, self.statistics, where=mask)
        return z


class _Scale:
    """StandardScaler.transform on a float64 block: ``X -= mean_`` then ``X /= scale_``, in place."""

    def __init__(self, mean: npt.NDArray[np.float64] | None, scale: npt.NDArray[np.float64] | None) -> None:
        self.mean = mean
        self.scale = scale

    def apply(self, z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.mean is not None:
            z -= self.mean
        if self.scale is not None:
            z /= self.scale
        return z


_Step = _Impute | _Scale


class _NumericBlock:
    """A ColumnTransformer entry of SimpleImputer/StandardScaler steps over numeric columns."""

    def __init__(self, columns: npt.NDArray[np.intp], steps: list[_Step], start: int, stop: int) -> None:
        self.columns = columns
        self.steps = steps
        self.start, self.stop = start, stop

    def apply(self, x: Array) -> npt.NDArray[np.float64]:
        # A fresh C-contiguous copy (fancy indexing copies), so the steps work in place without
        # touching the request's matrix; an object matrix's numeric cells are Python floats,
        # converted as the generic path converts them.
        z = x[:, self.columns]
        z = np.ascontiguousarray(z if z.dtype == np.float64 else z.astype(np.float64))
        for step in self.steps:
            z = step.apply(z)
        return z


class _OneHotBlock:
    """OneHotEncoder(handle_unknown="ignore", dense float64, no drop, no infrequent categories).

    sklearn encodes object columns with Python set/dict membership (``_check_unknown``,
    ``_map_to_integer``), any scalar NaN matching a NaN category; so does this, with one
    dict per column.  A value that is not a category is all zeros."""

    def __init__(self, columns: list[int], categories: list[list[Any]], start: int) -> None:
        self.columns = columns
        self.categories = categories
        self.lookups: list[dict[Any, int]] = []
        self.nan_index: list[int] = []
        offset = 0
        for cats in categories:
            lookup: dict[Any, int] = {}
            nan_at = -1
            for i, value in enumerate(cats):
                if _is_scalar_nan(value):
                    nan_at = offset + i
                else:
                    lookup[value] = offset + i
            self.lookups.append(lookup)
            self.nan_index.append(nan_at)
            offset += len(cats)
        self.start, self.stop = start, start + offset

    def fill(self, x: Array, out: npt.NDArray[np.float64]) -> None:
        block = out[:, self.start : self.stop]
        block[:] = 0.0
        for col, lookup, nan_at in zip(self.columns, self.lookups, self.nan_index, strict=True):
            for i, value in enumerate(x[:, col]):
                at = lookup.get(value, -1)
                if at < 0 and nan_at >= 0 and _is_scalar_nan(value):
                    at = nan_at
                if at >= 0:
                    block[i, at] = 1.0


class PipelinePath(FastPath):
    """mlkube's training pipeline: ColumnTransformer (numeric: imputer + scaler; categorical:
    one-hot) then an estimator with its own fast path, on the server's matrix directly
    instead of through a pandas DataFrame."""

    takes_objects = True

    def __init__(
        self,
        pipeline: Any,
        inner: FastPath,
        numeric: list[_NumericBlock],
        onehot: list[_OneHotBlock],
        width: int,
    ) -> None:
        super().__init__(pipeline)
        self.inner = inner
        self.name = f"pipeline+{inner.name}"
        self.numeric = numeric
        self.onehot = onehot
        self.width = width
        # All-numeric with a single block covering the output: no assembly needed.
        self.single = (
            numeric[0]
            if len(numeric) == 1 and not onehot and numeric[0].stop - numeric[0].start == width
            else None
        )

    def probe_levels(self) -> dict[int, list[Any]]:
        return {c: list(cats) for b in self.onehot for c, cats in zip(b.columns, b.categories, strict=True)}

    def transform(self, x: Array) -> npt.NDArray[np.float64]:
        """What the pipeline's ColumnTransformer gives its final estimator: float64, C-contiguous
        like the ``np.hstack`` it ends with (the memory layout matters: a linear model's
        ``X @ coef_`` can round differently on another layout; ``verify`` checks it)."""
        if self.single is not None:
            return np.ascontiguousarray(self.single.apply(x))
        out = np.empty((x.shape[0], self.width), dtype=np.float64)
        for block in self.numeric:
            out[:, block.start : block.stop] = block.apply(x)
        for one in self.onehot:
            one.fill(x, out)
        return out

    def predict(self, x: Array, want_proba: bool) -> tuple[Array, npt.NDArray[np.intp] | None, Array | None]:
        return self.inner.predict(self.transform(x), want_proba)


def _types() -> dict[type, type[FastPath]]:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import (
        ElasticNet,
        Lasso,
        LinearRegression,
        LogisticRegression,
        Ridge,
        RidgeClassifier,
        SGDClassifier,
    )

    return {
        RandomForestClassifier: ForestClassifierPath,
        ExtraTreesClassifier: ForestClassifierPath,
        RandomForestRegressor: ForestRegressorPath,
        ExtraTreesRegressor: ForestRegressorPath,
        LogisticRegression: LinearClassifierPath,
        RidgeClassifier: LinearClassifierPath,
        SGDClassifier: LinearClassifierPath,
        LinearRegression: LinearRegressorPath,
        Ridge: LinearRegressorPath,
        Lasso: LinearRegressorPath,
        ElasticNet: LinearRegressorPath,
    }


def _build_estimator(estimator: Any) -> FastPath | None:
    try:
        path_type = _types().get(type(estimator))
    except ImportError:  # pragma: no cover - sklearn is a dependency
        return None
    if path_type is None or getattr(estimator, "n_outputs_", 1) != 1:
        return None
    if path_type in (LinearClassifierPath, LinearRegressorPath):
        coef = getattr(estimator, "coef_", None)
        if not isinstance(coef, np.ndarray) or coef.dtype != np.float64:
            return None  # sparse or float32 coefficients: leave it to sklearn
        if path_type is LinearRegressorPath and coef.ndim != 1:
            return None  # multi-target regression
    try:
        return path_type(estimator)
    except (AttributeError, TypeError, ValueError):
        return None


class _Unsupported(Exception):
    """A pipeline step or setting the fast path does not reproduce: use plain sklearn."""


def _default_output(obj: Any) -> None:
    config = getattr(obj, "_sklearn_output_config", None) or {}
    if config.get("transform", "default") != "default":
        raise _Unsupported("set_output")


def _float_vector(value: Any, n: int) -> npt.NDArray[np.float64]:
    if not isinstance(value, np.ndarray) or value.dtype != np.float64 or value.shape != (n,):
        raise _Unsupported("fitted attribute")
    return value


def _numeric_steps(transformer: Any, n_in: int) -> tuple[list[_Step], int]:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if type(transformer) is Pipeline:
        _default_output(transformer)
        parts = [step for _, step in transformer.steps]
    else:
        parts = [transformer]
    steps: list[_Step] = []
    n = n_in
    for part in parts:
        _default_output(part)
        if type(part) is SimpleImputer:
            if not _is_scalar_nan(part.missing_values) or part.add_indicator:
                raise _Unsupported("imputer settings")
            # sklearn casts statistics_ to the dtype seen in fit before filling them in.
            if getattr(part, "_fill_dtype", np.float64) != np.float64:
                raise _Unsupported("imputer fitted on non-float64 data")
            stats = _float_vector(part.statistics_, n)
            keep: npt.NDArray[np.intp] | None = None
            if not part.keep_empty_features and np.isnan(stats).any():
                keep = np.flatnonzero(~np.isnan(stats)).astype(np.intp)
                stats = stats[keep]
                n = len(keep)
            steps.append(_Impute(stats, keep))
        elif type(part) is StandardScaler:
            mean = _float_vector(part.mean_, n) if part.with_mean else None
            scale = _float_vector(part.scale_, n) if part.with_std else None
            steps.append(_Scale(mean, scale))
        else:
            raise _Unsupported(type(part).__name__)
    return steps, n


def _onehot_categories(encoder: Any, n_in: int) -> list[list[Any]]:
    from sklearn.preprocessing import OneHotEncoder

    if type(encoder) is not OneHotEncoder:
        raise _Unsupported(type(encoder).__name__)
    _default_output(encoder)
    if (
        encoder.handle_unknown != "ignore"
        or encoder.drop is not None
        or getattr(encoder, "_drop_idx_after_grouping", None) is not None
        or getattr(encoder, "_infrequent_enabled", True)
        or encoder.sparse_output
        or np.dtype(encoder.dtype) != np.float64
    ):
        raise _Unsupported("one-hot settings")
    categories = encoder.categories_
    if len(categories) != n_in:
        raise _Unsupported("one-hot categories")
    out = []
    for cats in categories:
        # Object categories: sklearn's dict/set encoding, which the lookup above reproduces.
        if not isinstance(cats, np.ndarray) or cats.dtype != object or cats.ndim != 1:
            raise _Unsupported("non-object categories")
        out.append(cats.tolist())
    return out


def _build_pipeline(
    pipeline: Any, feature_names: Sequence[str], categorical: Sequence[bool]
) -> FastPath | None:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if type(pipeline) is not Pipeline or len(pipeline.steps) != 2:
        return None
    ct = pipeline.steps[0][1]
    inner = _build_estimator(pipeline.steps[-1][1])
    if type(ct) is not ColumnTransformer or inner is None:
        return None
    index = {name: j for j, name in enumerate(feature_names)}
    try:
        _default_output(pipeline)
        _default_output(ct)
        if ct.sparse_output_ or getattr(ct, "feature_names_in_", None) is None:
            raise _Unsupported("sparse output or fitted without column names")
        numeric: list[_NumericBlock] = []
        onehot: list[_OneHotBlock] = []
        width = 0
        for name, transformer, columns in ct.transformers_:
            if isinstance(transformer, str) and transformer == "drop":
                continue
            if not isinstance(columns, list | np.ndarray) or not all(isinstance(c, str) for c in columns):
                raise _Unsupported("columns not selected by name")
            if len(columns) == 0:
                continue  # sklearn skips transformers with no columns
            if any(c not in index for c in columns):
                raise _Unsupported("unknown column")
            cols = [index[c] for c in columns]
            if isinstance(transformer, str):
                raise _Unsupported(transformer)  # "passthrough"
            placed = ct.output_indices_.get(name)
            if any(categorical[c] for c in cols):
                if not all(categorical[c] for c in cols):
                    raise _Unsupported("numeric and categorical columns in one transformer")
                block = _OneHotBlock(cols, _onehot_categories(transformer, len(cols)), width)
                onehot.append(block)
                start, stop = block.start, block.stop
            else:
                steps, n_out = _numeric_steps(transformer, len(cols))
                start, stop = width, width + n_out
                numeric.append(_NumericBlock(np.asarray(cols, dtype=np.intp), steps, start, stop))
            if placed != slice(start, stop):
                raise _Unsupported("output layout")
            width = stop
        n_in = getattr(inner.estimator, "n_features_in_", None)
        if width == 0 or n_in is None or int(n_in) != width:
            raise _Unsupported("output width")
    except (_Unsupported, AttributeError, TypeError, ValueError, KeyError, ImportError):
        return None
    return PipelinePath(pipeline, inner, numeric, onehot, width)


def build(
    estimator: Any,
    feature_names: Sequence[str] | None = None,
    categorical: Sequence[bool] | None = None,
) -> FastPath | None:
    """A fast path for exactly this estimator type (not subclasses), single-output only; or for
    exactly the pipeline shape mlkube's training builds (then the server's feature names and
    which of them are categorical are needed) around such an estimator."""
    if feature_names is not None:
        try:
            from sklearn.pipeline import Pipeline
        except ImportError:  # pragma: no cover - sklearn is a dependency
            return None
        if type(estimator) is Pipeline:
            flags = list(categorical) if categorical is not None else [False] * len(feature_names)
            return _build_pipeline(estimator, feature_names, flags)
    return _build_estimator(estimator)


def verify(
    path: FastPath,
    x: Array,
    as_input: Callable[[Array], Any] | None = None,
) -> bool:
    """True only if the fast path reproduces sklearn's outputs bit for bit on x.

    ``as_input`` turns x into what the server's generic path gives the model (a DataFrame for
    pipelines); for a pipeline the preprocessed matrix is compared as well."""
    est = path.estimator
    try:
        data = as_input(x) if as_input is not None else x
        if isinstance(path, PipelinePath):
            # The preprocessed matrix: same values, dtype and memory layout, for the whole probe
            # and for one row (the layout of a one-row matrix is both C and F).
            for rows in (x, x[:1]):
                mine = path.transform(rows)
                theirs = est.steps[0][1].transform(as_input(rows) if as_input is not None else rows)
                if not (
                    isinstance(theirs, np.ndarray)
                    and theirs.dtype == mine.dtype
                    and theirs.flags.c_contiguous == mine.flags.c_contiguous
                    and theirs.flags.f_contiguous == mine.flags.f_contiguous
                    and np.array_equal(mine, theirs, equal_nan=True)
                ):
                    return False
        want_proba = hasattr(est, "predict_proba") and getattr(est, "classes_", None) is not None
        values, index, proba = path.predict(x, want_proba=want_proba)
        expected = np.asarray(est.predict(data))
        if values.dtype.kind == "f" or expected.dtype.kind == "f":
            same = np.array_equal(
                np.asarray(values, dtype=np.float64), np.asarray(expected, dtype=np.float64)
            )
        else:
            same = np.array_equal(values, expected)
        if same and want_proba:
            same = proba is not None and np.array_equal(
                proba, np.asarray(est.predict_proba(data), dtype=np.float64), equal_nan=True
            )
        if same and index is not None:
            classes = np.asarray(est.classes_)
            same = bool(np.array_equal(classes.take(index), expected))
        return bool(same)
    except Exception:
        return False
