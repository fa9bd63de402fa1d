"""Turn `spec.estimator` into a scikit-learn estimator, refusing anything else.

The class path comes from a user's YAML and the Job imports it, so the path is
checked against the operator's allowed prefixes *before* anything is imported
(`os.system` must never be importable by a TrainingRun), and the result must be a
real scikit-learn estimator class with fit and predict. Parameters are validated by
scikit-learn itself (set_params plus the estimator's declared constraints), so the
message a user sees is scikit-learn's, and it arrives before any data is touched.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any

# scikit-learn's own exception for a parameter outside its declared constraints (>= 1.2).
from sklearn.utils._param_validation import InvalidParameterError

from .contract import CLASSIFICATION, Reason
from .errors import JobFailure

__all__ = ["InvalidParameterError", "build_estimator", "check_task", "json_params", "resolve_class"]


def resolve_class(path: str, allowed_prefixes: Sequence[str]) -> type[Any]:
    """The estimator class at dotted `path`, or InvalidEstimator saying why not."""
    if not any(path.startswith(prefix) for prefix in allowed_prefixes):
        allowed = ", ".join(f"{p}*" for p in allowed_prefixes)
        raise JobFailure(Reason.INVALID_ESTIMATOR, f"estimator {path!r} is not allowed (allowed: {allowed})")
    parts = path.split(".")
    module: Any = None
    attrs: list[str] = []
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and not module_name.startswith(err.name) and err.name != module_name:
                raise JobFailure(
                    Reason.INVALID_ESTIMATOR, f"estimator {path!r}: importing {module_name} failed: {err}"
                ) from err
            continue
        except Exception as err:
            raise JobFailure(
                Reason.INVALID_ESTIMATOR,
                f"estimator {path!r}: importing {module_name} failed: {type(err).__name__}: {err}",
            ) from err
        attrs = parts[cut:]
        break
    if module is None:
        raise JobFailure(Reason.INVALID_ESTIMATOR, f"estimator {path!r}: no module {parts[0]!r} found")
    obj: Any = module
    for i, attr in enumerate(attrs):
        if not hasattr(obj, attr):
            owner = ".".join(parts[: len(parts) - len(attrs) + i])
            what = "module" if inspect.ismodule(obj) else "object"
            raise JobFailure(
                Reason.INVALID_ESTIMATOR, f"estimator {path!r} not found: {what} {owner} has no {attr!r}"
            )
        obj = getattr(obj, attr)
    from sklearn.base import BaseEstimator

    if not inspect.isclass(obj):
        raise JobFailure(
            Reason.INVALID_ESTIMATOR, f"estimator {path!r} is a {type(obj).__name__}, not an estimator class"
        )
    if not issubclass(obj, BaseEstimator):
        raise JobFailure(
            Reason.INVALID_ESTIMATOR,
            f"estimator {path!r} is not a scikit-learn estimator (not a BaseEstimator)",
        )
    missing = [m for m in ("fit", "predict") if not callable(getattr(obj, m, None))]
    if missing:
        raise JobFailure(
            Reason.INVALID_ESTIMATOR,
            f"estimator {path!r} has no {' or '.join(missing)} method (a transformer, not a predictor?)",
        )
    return obj


def build_estimator(cls: type[Any], params: Mapping[str, Any], seed: int) -> Any:
    """An instance with `params`, validated by scikit-learn; `random_state` defaults to the split seed."""
    name = cls.__name__
    try:
        try:
            estimator = cls()
        except TypeError:  # a constructor with required arguments (meta-estimators)
            estimator = cls(**params)
        else:
            estimator.set_params(**params)
    except (TypeError, ValueError) as err:
        raise JobFailure(Reason.INVALID_PARAMETERS, f"{name}: {err}") from err
    if "random_state" in estimator.get_params(deep=False) and "random_state" not in params:
        estimator.set_params(random_state=seed)
    validate = getattr(estimator, "_validate_params", None)
    if callable(validate):
        try:
            validate()
        except InvalidParameterError as err:
            raise JobFailure(Reason.INVALID_PARAMETERS, str(err)) from err
    return estimator


def check_task(estimator: Any, path: str, task: str) -> None:
    """A classifier for a classification target, a regressor for a regression one."""
    from sklearn.base import is_classifier, is_regressor

    if task == CLASSIFICATION and not is_classifier(estimator):
        kind = "a regressor" if is_regressor(estimator) else "not a classifier"
        raise JobFailure(
            Reason.INVALID_ESTIMATOR, f"estimator {path!r} is {kind}, but the dataset's task is {task}"
        )
    if task != CLASSIFICATION and not is_regressor(estimator):
        kind = "a classifier" if is_classifier(estimator) else "not a regressor"
        raise JobFailure(
            Reason.INVALID_ESTIMATOR, f"estimator {path!r} is {kind}, but the dataset's task is {task}"
        )


def json_params(estimator: Any) -> dict[str, Any]:
    """get_params(deep=False) as JSON: plain values kept, anything else by its repr."""
    out: dict[str, Any] = {}
    for key, value in sorted(estimator.get_params(deep=False).items()):
        out[key] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value
