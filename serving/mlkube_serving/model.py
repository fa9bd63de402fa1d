"""The loaded estimator plus everything the server derives from it once, not per request.

Per-request work is the protocol parsing and one slice of a batched prediction; anything
that can be known at load time (output datatype, class labels as metric label values,
whether ``predict`` can be derived from ``predict_proba``, the cost of a predict call)
is computed here so the hot path only indexes into it.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import fastpath
from .artifacts import LoadRefused, ModelMetadata, ReferenceProfile
from .codec import Matrix
from .schema import InputSchema


@dataclass(frozen=True)
class Prediction:
    values: npt.NDArray[Any]  # what predict() returns: class labels or regression values
    class_index: npt.NDArray[np.intp] | None  # index into classes, for classifiers
    proba: npt.NDArray[np.float64] | None


def _classes_datatype(classes: npt.NDArray[Any]) -> str:
    kind = classes.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    return "BYTES"


def label_text(value: Any) -> str:
    """How a class label or category is spelt in metric labels and compared in feedback."""
    # Spelt exactly as the dataset profiler spells levels, so feature levels and class
    # labels match the reference profile's keys.
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _allow_nan(estimator: Any) -> bool:
    try:
        return bool(estimator.__sklearn_tags__().input_tags.allow_nan)
    except Exception:
        return False


def _encoder_levels(transformer: Any) -> list[Any] | None:
    """``categories_`` of a fitted encoder, alone or inside a Pipeline (e.g. imputer + encoder)."""
    categories = getattr(transformer, "categories_", None)
    if categories is not None:
        return list(categories)
    for _, step in getattr(transformer, "steps", None) or []:
        found = _encoder_levels(step)
        if found is not None:
            return found
    return None


def fitted_levels(estimator: Any) -> dict[str, list[Any]]:
    """Per input column selected by name, the levels a fitted encoder learnt (what values the
    model was trained on: strings, booleans or numbers), found in a Pipeline's
    ColumnTransformer. Columns with no encoder, or estimators of another shape: absent."""
    out: dict[str, list[Any]] = {}
    for _, step in getattr(estimator, "steps", None) or []:
        out.update(fitted_levels(step))
    for entry in getattr(estimator, "transformers_", None) or []:
        if not isinstance(entry, tuple) or len(entry) != 3:
            continue
        _, transformer, columns = entry
        if not isinstance(columns, list | tuple) or not all(isinstance(c, str) for c in columns):
            continue
        levels = _encoder_levels(transformer)
        if levels is not None and len(levels) == len(columns):
            for column, cats in zip(columns, levels, strict=True):
                out[column] = list(np.asarray(cats, dtype=object).tolist())
    return out


def _proba_gives_predict(estimator: Any) -> bool:
    """True where sklearn's predict() is literally ``classes_[argmax(predict_proba())]``."""
    try:
        from sklearn.ensemble import (
            ExtraTreesClassifier,
            HistGradientBoostingClassifier,
            RandomForestClassifier,
        )
        from sklearn.tree import DecisionTreeClassifier
    except ImportError:  # pragma: no cover - sklearn is a dependency
        return False
    kinds = (
        RandomForestClassifier,
        ExtraTreesClassifier,
        DecisionTreeClassifier,
        HistGradientBoostingClassifier,
    )
    return isinstance(estimator, kinds) and getattr(estimator, "n_outputs_", 1) == 1


def model_version(meta: ModelMetadata, sha256: str) -> str:
    """The version a client sees (V2 ``versions``, ``model_version``, ``mlkube_model_info``):
    what identifies this model, not the library that fitted it. ``metadata.json``'s
    ``version`` if set; else ``g<TrainingRun generation>-<sha256 prefix>``; else the prefix."""
    if meta.version:
        return meta.version
    generation = (meta.training_run or {}).get("generation")
    prefix = sha256[:12]
    if isinstance(generation, int) and not isinstance(generation, bool):
        return f"g{generation}-{prefix}"
    return prefix


class ServedModel:
    """A verified, loaded estimator ready to predict batches."""

    def __init__(
        self,
        estimator: Any,
        *,
        name: str,
        sha256: str,
        metadata: ModelMetadata | None,
        profile: ReferenceProfile | None,
    ) -> None:
        self.estimator = estimator
        self.name = name
        self.sha256 = sha256
        self.metadata = metadata or ModelMetadata()
        self.profile = profile
        meta = self.metadata
        if not hasattr(estimator, "predict"):
            raise LoadRefused(
                "LoadFailed", f"the unpickled object ({type(estimator).__name__}) has no predict()"
            )

        classes = getattr(estimator, "classes_", None)
        task = meta.task or ("classification" if classes is not None else "regression")
        if task == "classification" and classes is None:
            raise LoadRefused(
                "MetadataInvalid", "metadata says classification but the estimator has no classes_"
            )
        self.task: str = task

        n_in = getattr(estimator, "n_features_in_", None)
        names = meta.feature_names
        if names is None:
            fitted = getattr(estimator, "feature_names_in_", None)
            if fitted is not None:
                names = [str(n) for n in fitted]
            elif n_in is not None:
                names = [f"x{i}" for i in range(int(n_in))]
            else:
                raise LoadRefused(
                    "MetadataInvalid", "no featureNames in metadata and none known to the estimator"
                )
        if n_in is not None and len(names) != int(n_in):
            raise LoadRefused(
                "MetadataInvalid",
                f"metadata lists {len(names)} featureNames but the estimator takes {int(n_in)} features",
            )
        if len(set(names)) != len(names):
            raise LoadRefused("MetadataInvalid", "featureNames has duplicates")
        self.schema = InputSchema.build(
            list(names), meta, profile, _allow_nan(estimator), fitted_levels(estimator)
        )
        fitted_names = getattr(estimator, "feature_names_in_", None)
        # Fitted on a DataFrame (mlkube's training pipelines are): give it one, columns by name.
        self._frame_columns: list[str] | None = (
            [str(n) for n in fitted_names] if fitted_names is not None else None
        )
        if self._frame_columns is not None and sorted(self._frame_columns) != sorted(names):
            raise LoadRefused(
                "MetadataInvalid", "metadata featureNames differ from the columns the model was fitted on"
            )

        self.version: str = model_version(meta, sha256)
        self.has_proba = task == "classification" and hasattr(estimator, "predict_proba")
        self._proba_gives_predict = task == "classification" and _proba_gives_predict(estimator)
        if task == "classification":
            cls = np.asarray(classes)
            self.classes: npt.NDArray[Any] | None = cls
            self.class_labels: list[str] = [label_text(c) for c in cls]
            self.predict_datatype = _classes_datatype(cls)
            self._sorted_classes = bool(cls.dtype.kind in "iufb" and np.all(cls[:-1] <= cls[1:]))
            self._class_lookup = {label: i for i, label in enumerate(self.class_labels)}
            if meta.classes is not None and [label_text(c) for c in meta.classes] != self.class_labels:
                self.metadata_classes_mismatch = True
            else:
                self.metadata_classes_mismatch = False
        else:
            self.classes = None
            self.class_labels = []
            self.predict_datatype = "FP64"
            self._sorted_classes = False
            self._class_lookup = {}
            self.metadata_classes_mismatch = False
        self._fast: fastpath.FastPath | None = None
        self.fast_path: str | None = None
        # Predict cost model, fitted at warm-up: seconds = fixed + per_row * rows.
        self.cost_fixed_s = 0.0
        self.cost_per_row_s = 0.0

    # -- prediction -------------------------------------------------------------------------

    def _model_input(self, x: Matrix) -> Any:
        if self._frame_columns is None:
            return x
        import pandas as pd

        names = self.schema.feature_names
        if x.dtype == np.float64:
            frame = pd.DataFrame(x, columns=list(names), copy=False)
        else:
            frame = pd.DataFrame(
                {
                    name: x[:, j] if categorical else x[:, j].astype(np.float64)
                    for j, (name, categorical) in enumerate(zip(names, self.schema.categorical, strict=True))
                }
            )
        return frame[self._frame_columns] if list(names) != self._frame_columns else frame

    def class_index_of(self, values: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
        assert self.classes is not None
        if self._sorted_classes:
            idx = np.searchsorted(self.classes, values)
            np.clip(idx, 0, len(self.classes) - 1, out=idx)
            if np.array_equal(self.classes[idx], values):
                return idx
        lookup = self._class_lookup
        return np.fromiter((lookup.get(label_text(v), -1) for v in values), dtype=np.intp, count=len(values))

    def predict(self, x: Matrix, want_proba: bool) -> Prediction:
        """One predict (and predict_proba if asked) over a whole batch. Runs on any thread."""
        fast = self._fast
        if fast is not None and (x.dtype == np.float64 or fast.takes_objects):
            return Prediction(*fast.predict(x, want_proba))
        data = self._model_input(x)
        est = self.estimator
        if self.task != "classification":
            values = np.asarray(est.predict(data), dtype=np.float64).reshape(len(x), -1)
            return Prediction(values[:, 0] if values.shape[1] == 1 else values, None, None)
        proba: npt.NDArray[np.float64] | None = None
        if want_proba and self.has_proba:
            proba = np.ascontiguousarray(est.predict_proba(data), dtype=np.float64)
        if proba is not None and self._proba_gives_predict:
            assert self.classes is not None
            index = np.argmax(proba, axis=1)
            return Prediction(self.classes.take(index), index, proba)
        # The class index is worked out later, in bulk, by whoever needs it (metrics).
        return Prediction(np.asarray(est.predict(data)), None, proba)

    @staticmethod
    def prepare_thread() -> None:
        """Per predicting thread: the server has already rejected inf (and NaN where the model
        cannot take it), so sklearn need not scan every input again (about 10 us a call)."""
        try:
            import sklearn

            sklearn.set_config(assume_finite=True)
        except ImportError:  # pragma: no cover
            pass

    def expected_cost_s(self, rows: int) -> float:
        return self.cost_fixed_s + self.cost_per_row_s * rows

    def warm_up(self, rows: int = 64, fast_path: bool = True) -> None:
        """Predict on representative rows (raising what the model raises) and fit the cost model."""
        import sklearn

        one = self.sample_rows(1)
        many = self.sample_rows(max(rows, 2))
        # Checks on: the probe must see sklearn reject NaN, whatever this thread was set to.
        with sklearn.config_context(assume_finite=False):
            self.predict(one, want_proba=self.has_proba)
            if not self.schema.allow_nan:
                self._probe_missing(one)
            if fast_path:
                self._try_fast_path()

        def best(x: Matrix, repeat: int = 3) -> float:
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                self.predict(x, want_proba=False)
                times.append(time.perf_counter() - t0)
            return min(times)

        t1 = best(one)
        tn = best(many)
        self.cost_per_row_s = max(0.0, (tn - t1) / (len(many) - 1))
        self.cost_fixed_s = max(0.0, t1 - self.cost_per_row_s)

    def _probe_missing(self, row: Matrix) -> None:
        """Models that impute (mlkube's pipelines do) take NaN although their tags do not say so."""
        probe = row.copy()
        probe[:, :] = np.nan
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.predict(probe, want_proba=False)
        except Exception:
            return
        self.schema = self.schema.with_allow_nan(True)

    def check_rows(self, n: int = 256, seed: int = 0, levels: dict[int, list[Any]] | None = None) -> Matrix:
        """Varied rows for checking a fast path: numbers spread over each feature's reference
        range (or a wide normal), with some values outside it and, if the model takes them,
        NaNs; categories drawn from ``levels`` (the fitted ones), the profile's levels, a level
        never seen, and missing."""
        rng = np.random.default_rng(seed)
        cols: list[npt.NDArray[Any]] = []
        for j, (name, categorical) in enumerate(
            zip(self.schema.feature_names, self.schema.categorical, strict=True)
        ):
            column = self.profile.feature(name) if self.profile is not None else None
            if categorical:
                known = list((levels or {}).get(j, []))
                if column is not None and column.levels:
                    known += list(column.levels)
                choices = np.empty(len(known) + 2, dtype=object)
                choices[:] = [*known, "__mlkube_unseen_level__", np.nan]
                cols.append(choices[rng.integers(0, len(choices), n)])
            elif column is not None and column.bin_edges:
                lo, hi = float(column.bin_edges[0]), float(column.bin_edges[-1])
                span = (hi - lo) or 1.0
                cols.append(rng.uniform(lo - 0.2 * span, hi + 0.2 * span, n))
            else:
                cols.append(rng.normal(0.0, 3.0, n))
        numeric = [j for j, categorical in enumerate(self.schema.categorical) if not categorical]
        if self.schema.all_numeric:
            x: Matrix = np.column_stack(cols).astype(np.float64)
            x = np.vstack([self.sample_rows(1).astype(np.float64), x])
        else:
            # Like the codec's object matrices: Python floats in numeric columns, raw categories.
            x = np.empty((n, self.schema.n_features), dtype=object)
            for j, col in enumerate(cols):
                x[:, j] = col if col.dtype == object else col.tolist()
            x = np.vstack([self.sample_rows(1), x])
        if self.schema.allow_nan and numeric:
            mask = rng.random((x.shape[0], len(numeric))) < 0.05
            mask[-1, :] = True  # one row missing every number
            for k, j in enumerate(numeric):
                x[mask[:, k], j] = np.nan
        return x

    def _try_fast_path(self) -> None:
        names = list(self.schema.feature_names)
        path = fastpath.build(self.estimator, names, self.schema.categorical)
        if path is None:
            return
        if not path.takes_objects and (
            not self.schema.all_numeric or (self._frame_columns is not None and self._frame_columns != names)
        ):
            return  # a bare estimator's path takes the server's float64 matrix as it is
        with warnings.catch_warnings():
            # An imputer warns about columns that were all missing in training, on every call.
            warnings.simplefilter("ignore", UserWarning)
            same = fastpath.verify(path, self.check_rows(levels=path.probe_levels()), self._model_input)
        if same:
            self._fast = path
            self.fast_path = path.name

    def sample_rows(self, n: int) -> Matrix:
        """Rows at the reference profile's centre (mean / most common level), else zeros."""
        row: list[Any] = []
        for name, categorical in zip(self.schema.feature_names, self.schema.categorical, strict=True):
            column = self.profile.feature(name) if self.profile is not None else None
            if categorical:
                levels = (column.levels if column is not None else None) or {"": 1.0}
                row.append(max(levels.items(), key=lambda kv: kv[1])[0])
            elif column is not None and column.mean is not None:
                row.append(float(column.mean))
            elif column is not None and column.bin_edges:
                row.append(float(np.median(column.bin_edges)))
            else:
                row.append(0.0)
        dtype: Any = np.float64 if self.schema.all_numeric else object
        return np.array([row] * n, dtype=dtype)

    def describe(self) -> dict[str, Any]:
        """Fields for logs and the V2 model metadata ``parameters``."""
        return {
            "task": self.task,
            "estimator": self.metadata.estimator
            or f"{type(self.estimator).__module__}.{type(self.estimator).__name__}",
            "sha256": self.sha256,
            "version": self.version,
            "trainingRun": self.metadata.training_run,
            "sklearnVersion": self.metadata.sklearn_version,
            "featureNames": list(self.schema.feature_names),
            "classes": self.class_labels if self.task == "classification" else None,
            "datasetHash": self.metadata.dataset_hash,
            "allowMissing": self.schema.allow_nan,
            "fastPath": self.fast_path,
        }
