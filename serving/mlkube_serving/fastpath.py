"""Exact, cheaper ``predict`` for the estimator families mlkube trains most.

For the small batches a model server sees, scikit-learn's ``predict`` is dominated by
work around the arithmetic, not by the arithmetic:

* forests dispatch each tree through joblib even with one job: about 4 ms of a 4.5 ms
  single-row predict for 100 trees goes to dispatch, not to walking trees;
* linear models re-validate the input on every call (array-API namespace detection,
  dataframe sniffing, finiteness and feature-name checks): about 100 us around a
  one-microsecond matrix product.

The server has already validated its input (shape, dtype, finiteness), so each fast path
below makes the same numerical calls sklearn makes, in the same order, minus that
overhead.  None is trusted on faith: ``verify`` compares it bit for bit with the
estimator's own ``predict`` (and ``predict_proba`` where it produces it) on varied rows
at warm-up, and the server falls back to plain sklearn on any difference, for any
estimator type not listed here (subclasses included), and with ``--no-fast-path``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


class FastPath:
    """predict(x) -> (values, class index or None, probabilities or None)."""

    name = "none"

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

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


def build(estimator: Any) -> FastPath | None:
    """A fast path for exactly this estimator type (not subclasses), single-output only."""
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


def verify(path: FastPath, x: npt.NDArray[np.float64]) -> bool:
    """True only if the fast path reproduces sklearn's outputs bit for bit on x."""
    est = path.estimator
    try:
        values, index, proba = path.predict(x, want_proba=isinstance(path, ForestClassifierPath))
        expected = np.asarray(est.predict(x))
        if values.dtype.kind == "f" or expected.dtype.kind == "f":
            same = np.array_equal(
                np.asarray(values, dtype=np.float64), np.asarray(expected, dtype=np.float64)
            )
        else:
            same = np.array_equal(values, expected)
        if same and proba is not None:
            same = np.array_equal(proba, np.asarray(est.predict_proba(x), dtype=np.float64), equal_nan=True)
        if same and index is not None:
            classes = np.asarray(est.classes_)
            same = bool(np.array_equal(classes.take(index), expected))
        return bool(same)
    except Exception:
        return False
