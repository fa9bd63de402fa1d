"""Turning KServe V1 and Open Inference Protocol V2 request bodies into a feature matrix.

Every malformed input must come back as a 400 that says exactly what is wrong (which
row, which feature, which tensor), because the people sending it are debugging a client,
and because numpy is permissive in ways that would silently corrupt predictions: it
turns ``"1.5"`` into 1.5, ``null`` into NaN and ragged rows into object arrays.  The fast
path is a single ``np.asarray`` over the parsed JSON; only when its dtype is not numeric
do we walk the data to find and name the offending value.

Numeric-only models get a C-contiguous float64 matrix.  Models with categorical columns
(per the reference profile) get an object matrix whose numeric columns hold floats and
whose categorical columns hold strings, with NaN for missing values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import RequestError, bad_request
from .schema import BOOL, NUMBER, InputSchema, describe_kinds, level_kind

Matrix = npt.NDArray[Any]

# V2 tensor datatypes -> numpy dtypes (little-endian for the binary extension).
V2_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
KNOWN_OUTPUTS = ("predict", "predict_proba")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _first_non_number(values: Any, path: tuple[int, ...] = ()) -> tuple[tuple[int, ...], Any] | None:
    """Where the first element that is not a number (or null) sits in nested lists."""
    if isinstance(values, list):
        for i, item in enumerate(values):
            found = _first_non_number(item, (*path, i))
            if found is not None:
                return found
        return None
    if values is None or isinstance(values, int | float):
        return None
    return path, values


def _nesting_problem(values: list[Any]) -> str:
    """Explain why a list of rows is not rectangular."""
    lengths: dict[int, int] = {}
    for i, row in enumerate(values):
        if not isinstance(row, list):
            return f"row {i} is {_describe(row)}, not a list"
        lengths.setdefault(len(row), i)
    if len(lengths) > 1:
        (la, ia), (lb, ib) = sorted(lengths.items(), key=lambda kv: kv[1])[:2]
        return f"rows have different lengths (row {ia} has {la} values, row {ib} has {lb})"
    return "rows are nested unevenly"


def numeric_array(
    values: Any,
    what: str,
    allow_null: bool = True,
    features: tuple[str, ...] | None = None,
    flat_rows: bool = False,
) -> npt.NDArray[np.float64]:
    """Nested JSON lists of numbers -> float64 array; anything else is a 400 naming the element
    (and its feature, for rows of ``features``, nested or, with ``flat_rows``, row-major flat)."""
    try:
        arr = np.asarray(values)
    except ValueError:
        raise bad_request(
            f"{what}: {_nesting_problem(values) if isinstance(values, list) else 'not an array'}"
        ) from None
    kind = arr.dtype.kind
    if kind == "f":
        return arr.astype(np.float64, copy=False)
    if kind in "iub":
        return arr.astype(np.float64)
    found = _first_non_number(values)
    if found is not None:
        path, value = found
        where = "".join(f"[{i}]" for i in path)
        feature = ""
        if features is not None and len(path) == 2 and path[1] < len(features):
            feature = f" (feature {features[path[1]]!r})"
        elif (
            features is not None
            and len(path) == 1
            and flat_rows
            and not any(isinstance(v, list) for v in values)
        ):
            feature = f" (feature {features[path[0] % len(features)]!r})"
        raise bad_request(f"{what}{where} is {_describe(value)}{feature}; expected a number")
    if not allow_null:
        raise bad_request(f"{what} contains null; expected numbers")
    try:
        # Only numbers and nulls are left (nulls become NaN; huge ints become floats).
        return np.array(values, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise bad_request(
            f"{what}: {_nesting_problem(values) if isinstance(values, list) else 'not an array'}"
        ) from None


def _category(value: Any, where: str) -> Any:
    """A categorical cell, kept as sent (the model saw raw values in training); null is missing."""
    if value is None:
        return math.nan
    if isinstance(value, str | bool | int | float):
        return value
    raise bad_request(f"{where} is {_describe(value)}; expected a string or a number")


def _wrong_level_kind(schema: InputSchema, j: int, value: Any, where: str) -> RequestError:
    name = schema.feature_names[j]
    return bad_request(
        f"{where} is {_describe(value)}; feature {name!r} is categorical and was trained on "
        f"{describe_kinds(schema.kinds_of(j), plural=True)}: send {describe_kinds(schema.kinds_of(j))}"
    )


def _checked_category(schema: InputSchema, j: int, value: Any, where: str) -> Any:
    """A categorical cell whose JSON kind is one the feature was trained on (a number sent
    for a text feature would silently become an unseen level)."""
    cell = _category(value, where)
    kind = level_kind(cell)
    if kind is not None and not schema.accepts(j, kind):
        raise _wrong_level_kind(schema, j, value, where)
    return cell


def _mixed_matrix(rows: list[list[Any]], schema: InputSchema, what: str) -> Matrix:
    """Rows with categorical columns -> object matrix (floats in numeric columns, strings in categorical)."""
    out = np.empty((len(rows), schema.n_features), dtype=object)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            where = f"{what}[{i}][{j}] ({schema.feature_names[j]!r})"
            if schema.categorical[j]:
                out[i, j] = _checked_category(schema, j, value, where)
            elif value is None:
                out[i, j] = math.nan
            elif isinstance(value, int | float):
                out[i, j] = float(value)
            else:
                raise bad_request(f"{where} is {_describe(value)}; expected a number")
    return out


def check_matrix(x: Matrix, schema: InputSchema, what: str) -> Matrix:
    """Shape, emptiness and NaN/inf checks shared by every protocol."""
    if x.ndim != 2:
        raise bad_request(
            f"{what}: expected rows of {schema.n_features} features, got an array of shape {x.shape}"
        )
    rows, cols = x.shape
    if rows == 0:
        raise bad_request(f"{what}: empty batch; send at least one row")
    if cols != schema.n_features:
        raise bad_request(
            f"{what}: expected {schema.n_features} features per row, got {cols}"
            + (f" (features: {', '.join(schema.feature_names)})" if schema.n_features <= 30 else "")
        )
    if x.dtype == np.float64:
        numeric = x
    else:
        cols_numeric = [j for j, cat in enumerate(schema.categorical) if not cat]
        numeric = x[:, cols_numeric].astype(np.float64) if cols_numeric else np.zeros((rows, 0))
    if not np.isfinite(numeric).all():
        bad = ~np.isfinite(numeric)
        inf = np.isinf(numeric)
        if inf.any():
            i, j = map(int, np.argwhere(inf)[0])
            col = j if x.dtype == np.float64 else [k for k, c in enumerate(schema.categorical) if not c][j]
            raise bad_request(f"{what}: row {i}, feature {schema.feature_names[col]!r} is infinite")
        if not schema.allow_nan:
            i, j = map(int, np.argwhere(bad)[0])
            col = j if x.dtype == np.float64 else [k for k, c in enumerate(schema.categorical) if not c][j]
            raise bad_request(
                f"{what}: row {i}, feature {schema.feature_names[col]!r} is missing (null/NaN) "
                "and this model cannot take missing values"
            )
    return x


def rows_to_matrix(rows: list[Any], schema: InputSchema, what: str) -> Matrix:
    """A list of rows (lists of values) -> checked matrix."""
    if schema.all_numeric:
        x = numeric_array(rows, what, features=schema.feature_names)
        if x.ndim == 1 and len(rows) > 0:
            raise bad_request(
                f"{what}: each row must be a list of {schema.n_features} features, got a flat list of values"
            )
        return check_matrix(x, schema, what)
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise bad_request(
                f"{what}[{i}] is {_describe(row)}; expected a list of {schema.n_features} features"
            )
        if len(row) != schema.n_features:
            raise bad_request(f"{what}[{i}]: expected {schema.n_features} features, got {len(row)}")
    if not rows:
        raise bad_request(f"{what}: empty batch; send at least one row")
    return check_matrix(_mixed_matrix(rows, schema, what), schema, what)


def objects_to_rows(instances: list[Any], schema: InputSchema, what: str) -> list[list[Any]]:
    """Rows given as objects keyed by feature name -> rows in the model's feature order."""
    names = schema.feature_names
    known = set(names)
    rows: list[list[Any]] = []
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise bad_request(f"{what}[{i}] is {_describe(inst)}; all instances must be objects or all lists")
        if len(inst) != len(names) or not known.issuperset(inst):
            missing = [n for n in names if n not in inst]
            extra = sorted(k for k in inst if k not in known)
            parts = []
            if missing:
                parts.append("missing feature(s) " + ", ".join(repr(m) for m in missing[:10]))
            if extra:
                parts.append("unknown feature(s) " + ", ".join(repr(e) for e in extra[:10]))
            raise bad_request(f"{what}[{i}]: " + "; ".join(parts))
        rows.append([inst[n] for n in names])
    return rows


def parse_v1(body: Any, schema: InputSchema) -> tuple[Matrix, str | None]:
    """KServe V1 ``{"instances": [...], "id"?: str}`` -> (matrix, client request id)."""
    if not isinstance(body, dict):
        raise bad_request('request body must be a JSON object with an "instances" list')
    instances = body.get("instances")
    if instances is None:
        raise bad_request('request body has no "instances" list')
    if not isinstance(instances, list):
        raise bad_request(f'"instances" must be a list, got {_describe(instances)}')
    if not instances:
        raise bad_request('"instances" is empty; send at least one row')
    rid = _request_id(body.get("id"))
    if isinstance(instances[0], dict):
        rows = objects_to_rows(instances, schema, "instances")
        return rows_to_matrix(rows, schema, "instances"), rid
    return rows_to_matrix(instances, schema, "instances"), rid


def _request_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and 0 < len(value) <= 256:
        return value
    raise bad_request('"id" must be a non-empty string of at most 256 characters')


@dataclass(frozen=True)
class OutputRequest:
    name: str
    binary: bool


@dataclass(frozen=True)
class V2Request:
    x: Matrix
    request_id: str | None
    outputs: tuple[OutputRequest, ...]

    @property
    def wants_proba(self) -> bool:
        return any(o.name == "predict_proba" for o in self.outputs)


def _decode_bytes_tensor(raw: bytes, count: int, what: str) -> list[str]:
    """The binary extension's BYTES encoding: 4-byte little-endian length, then the bytes."""
    out: list[str] = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(raw):
            raise bad_request(f"{what}: binary BYTES data is shorter than its shape says")
        n = int.from_bytes(raw[pos : pos + 4], "little")
        pos += 4
        if pos + n > len(raw):
            raise bad_request(f"{what}: binary BYTES element overruns the data")
        try:
            out.append(raw[pos : pos + n].decode())
        except UnicodeDecodeError:
            raise bad_request(f"{what}: BYTES element is not UTF-8") from None
        pos += n
    if pos != len(raw):
        raise bad_request(f"{what}: binary BYTES data is longer than its shape says")
    return out


def _shape(tensor: dict[str, Any], what: str) -> tuple[int, ...]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise bad_request(f'{what}: "shape" must be a list of integers')
    if any(d < 0 for d in shape):
        raise bad_request(f'{what}: "shape" {shape} has a negative dimension')
    return tuple(shape)


def _tensor_values(
    tensor: dict[str, Any],
    what: str,
    binary: memoryview | None,
    offset: int,
    features: tuple[str, ...] | None = None,
) -> tuple[npt.NDArray[Any] | list[str], tuple[int, ...], str, int]:
    """One V2 input tensor -> (values, shape, datatype, bytes of binary data consumed)."""
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str):
        raise bad_request(f'{what}: "datatype" must be a string such as "FP32"')
    shape = _shape(tensor, what)
    count = math.prod(shape)
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad_request(f'{what}: "parameters" must be an object')
    size = params.get("binary_data_size")
    if datatype == "BYTES":
        if size is not None:
            if binary is None or not isinstance(size, int) or offset + size > len(binary):
                raise bad_request(f"{what}: binary_data_size {size!r} does not fit the binary body")
            return (
                _decode_bytes_tensor(bytes(binary[offset : offset + size]), count, what),
                shape,
                datatype,
                size,
            )
        data = tensor.get("data")
        flat = np.asarray(data, dtype=object).ravel() if isinstance(data, list) else None
        if flat is None or flat.size != count:
            raise bad_request(f'{what}: "data" must hold {count} values for shape {list(shape)}')
        return [v if isinstance(v, str) else _category(v, what) for v in flat.tolist()], shape, datatype, 0
    dtype = V2_DTYPES.get(datatype)
    if dtype is None:
        raise bad_request(
            f"{what}: datatype {datatype!r} is not supported; use one of {', '.join(V2_DTYPES)} (or BYTES)"
        )
    if size is not None:
        if binary is None or not isinstance(size, int) or offset + size > len(binary):
            raise bad_request(f"{what}: binary_data_size {size!r} does not fit the binary body")
        if size != count * dtype.itemsize:
            raise bad_request(
                f"{what}: binary_data_size {size} does not match shape {list(shape)} of {datatype} "
                f"({count * dtype.itemsize} bytes)"
            )
        arr = np.frombuffer(binary, dtype=dtype, count=count, offset=offset)
        return arr.reshape(shape).astype(np.float64), shape, datatype, size
    if "data" not in tensor:
        raise bad_request(f'{what}: no "data" (and no binary_data_size parameter)')
    # A [N, F] (or [F]) tensor over the model's features: say which feature a bad value is.
    row_features = features if features and shape and shape[-1] == len(features) else None
    arr = numeric_array(tensor["data"], f"{what} data", features=row_features, flat_rows=True)
    if arr.size != count:
        raise bad_request(f'{what}: "data" has {arr.size} values but shape {list(shape)} needs {count}')
    if dtype.kind in "iub":
        raw = np.asarray(tensor["data"])
        if raw.dtype.kind not in ("b" if dtype.kind == "b" else "iu"):
            raise bad_request(f'{what}: datatype {datatype} but "data" holds non-integer values')
        if dtype.kind in "iu" and raw.size:
            info = np.iinfo(dtype)
            if raw.min() < info.min or raw.max() > info.max:
                raise bad_request(f"{what}: a value is out of range for {datatype}")
    elif dtype.itemsize < 8:
        with np.errstate(over="ignore"):
            narrowed = arr.astype(dtype)
        if np.isinf(narrowed).any() and not np.isinf(arr).any():
            raise bad_request(f"{what}: a value is out of range for {datatype}")
        arr = narrowed.astype(np.float64)
    return arr.reshape(shape), shape, datatype, 0


def _outputs(body: dict[str, Any], has_proba: bool) -> tuple[OutputRequest, ...]:
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad_request('"parameters" must be an object')
    default_binary = params.get("binary_data_output") is True
    requested = body.get("outputs")
    if requested is None:
        return (OutputRequest("predict", default_binary),)
    if not isinstance(requested, list) or not requested:
        raise bad_request('"outputs" must be a non-empty list of {"name": ...} objects')
    available = KNOWN_OUTPUTS if has_proba else KNOWN_OUTPUTS[:1]
    seen: list[OutputRequest] = []
    for i, out in enumerate(requested):
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise bad_request(f'outputs[{i}] must be an object with a "name"')
        name = out["name"]
        if name not in available:
            raise bad_request(f"unknown output {name!r}; this model has outputs {', '.join(available)}")
        oparams = out.get("parameters") or {}
        binary = oparams.get("binary_data", default_binary) is True if isinstance(oparams, dict) else False
        if all(s.name != name for s in seen):
            seen.append(OutputRequest(name, binary))
    return tuple(seen)


def parse_v2(body: Any, schema: InputSchema, has_proba: bool, binary: memoryview | None = None) -> V2Request:
    """Open Inference Protocol V2 infer request (JSON header + optional binary tensors) -> V2Request."""
    if not isinstance(body, dict):
        raise bad_request('request body must be a JSON object with an "inputs" list')
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad_request('request body needs a non-empty "inputs" list of tensors')
    rid = _request_id(body.get("id"))
    outputs = _outputs(body, has_proba)
    offset = 0
    tensors: list[tuple[str, npt.NDArray[Any] | list[str], tuple[int, ...], str]] = []
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise bad_request(f"inputs[{i}] must be an object")
        name = tensor.get("name")
        what = f"input {name!r}" if isinstance(name, str) else f"inputs[{i}]"
        if not isinstance(name, str):
            raise bad_request(f'{what}: "name" must be a string')
        single = len(inputs) == 1 and name not in schema.feature_names
        values, shape, datatype, used = _tensor_values(
            tensor, what, binary, offset, schema.feature_names if single else None
        )
        offset += used
        tensors.append((name, values, shape, datatype))
    if binary is not None and offset != len(binary):
        raise bad_request(f"binary body has {len(binary) - offset} bytes not claimed by any input")

    names = schema.feature_names
    if len(tensors) == 1 and (tensors[0][0] not in names or schema.n_features == 1):
        name, values, shape, datatype = tensors[0]
        what = f"input {name!r}"
        if isinstance(values, list):
            if schema.all_numeric:
                raise bad_request(f"{what}: datatype BYTES but this model takes numbers; use FP32 or FP64")
            if len(shape) != 2:
                raise bad_request(f"{what}: expected shape [N, {schema.n_features}], got {list(shape)}")
            rows = [values[r * shape[1] : (r + 1) * shape[1]] for r in range(shape[0])]
            return V2Request(rows_to_matrix(rows, schema, what), rid, outputs)
        x = values
        if x.ndim == 1:
            if schema.n_features == 1:
                x = x.reshape(-1, 1)
            elif x.shape[0] == schema.n_features:
                x = x.reshape(1, -1)
            else:
                raise bad_request(
                    f"{what}: expected shape [N, {schema.n_features}] (or [{schema.n_features}] for one row), "
                    f"got {list(shape)}"
                )
        elif x.ndim != 2:
            raise bad_request(f"{what}: expected shape [N, {schema.n_features}], got {list(shape)}")
        if not schema.all_numeric:
            if not schema.numbers_fit_categories:
                j = next(
                    k for k, cat in enumerate(schema.categorical) if cat and not schema.accepts(k, NUMBER)
                )
                raise bad_request(
                    f"{what}: datatype {datatype} carries only numbers, but feature "
                    f"{names[j]!r} is categorical and was trained on "
                    f"{describe_kinds(schema.kinds_of(j), plural=True)}; send one input per feature "
                    "(BYTES for categorical ones), as GET /v2/models/{name} lists them"
                )
            x = x.astype(object)
        return V2Request(check_matrix(np.ascontiguousarray(x), schema, what), rid, outputs)

    # One tensor per feature, named after it (as MLServer's pandas codec sends them).
    by_name = {t[0]: t for t in tensors}
    unknown = [n for n in by_name if n not in set(names)]
    missing = [n for n in names if n not in by_name]
    if unknown or missing or len(by_name) != len(tensors):
        parts = []
        if unknown:
            parts.append("unknown input(s) " + ", ".join(repr(u) for u in unknown[:10]))
        if missing:
            parts.append("missing feature input(s) " + ", ".join(repr(m) for m in missing[:10]))
        if len(by_name) != len(tensors):
            parts.append("an input name is repeated")
        raise bad_request(
            f"expected one input of shape [N, {schema.n_features}] or one input per feature: "
            + "; ".join(parts)
        )
    columns: list[list[Any] | npt.NDArray[Any]] = []
    n_rows: int | None = None
    for j, feature in enumerate(names):
        _, values, shape, _datatype = by_name[feature]
        what = f"input {feature!r}"
        if len(shape) == 0 or len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise bad_request(f"{what}: a per-feature input must have shape [N] or [N, 1], got {list(shape)}")
        if n_rows is None:
            n_rows = shape[0]
        elif shape[0] != n_rows:
            raise bad_request(f"{what}: has {shape[0]} rows but other inputs have {n_rows}")
        if isinstance(values, list):
            if not schema.categorical[j]:
                raise bad_request(f"{what}: datatype BYTES but feature {feature!r} is numeric")
            columns.append([_checked_category(schema, j, v, f"{what}[{r}]") for r, v in enumerate(values)])
        elif _datatype == "BOOL" and schema.categorical[j] and schema.accepts(j, BOOL):
            columns.append([bool(v) for v in values.reshape(-1).tolist()])
        else:
            if schema.categorical[j] and not schema.accepts(j, NUMBER):
                raise bad_request(
                    f"{what}: datatype {_datatype} but feature {feature!r} is categorical and was trained on "
                    f"{describe_kinds(schema.kinds_of(j), plural=True)}; send it as BYTES"
                )
            columns.append(values.reshape(-1))
    assert n_rows is not None
    if schema.all_numeric:
        x = np.column_stack(columns).astype(np.float64) if n_rows else np.zeros((0, len(names)))
    else:
        x = np.empty((n_rows, len(names)), dtype=object)
        for j, col in enumerate(columns):
            x[:, j] = list(col) if not isinstance(col, list) else col
    return V2Request(check_matrix(x, schema, "inputs"), rid, outputs)


def parse_feedback(body: Any) -> list[tuple[str, Any]]:
    """``{"feedback": [{"id": ..., "label": ...}, ...]}`` -> [(id, label)]; labels checked later per task."""
    if not isinstance(body, dict) or not isinstance(body.get("feedback"), list):
        raise bad_request(
            'request body must be {"feedback": [{"id": "<request id>", "label": <truth>}, ...]}'
        )
    items = body["feedback"]
    if not items:
        raise bad_request('"feedback" is empty')
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad_request(f'feedback[{i}] must be an object with "id" and "label"')
        rid = item.get("id")
        if not isinstance(rid, str) or not rid:
            raise bad_request(f'feedback[{i}]: "id" must be a non-empty string')
        if "label" not in item:
            raise bad_request(f'feedback[{i}] (id {rid!r}) has no "label"')
        out.append((rid, item["label"]))
    return out


__all__ = [
    "V2_DTYPES",
    "Matrix",
    "OutputRequest",
    "RequestError",
    "V2Request",
    "check_matrix",
    "numeric_array",
    "parse_feedback",
    "parse_v1",
    "parse_v2",
]
