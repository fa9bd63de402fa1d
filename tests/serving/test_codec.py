"""Protocol parsing: every malformed body is a RequestError naming the problem; good ones decode exactly."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest

from mlkube_serving.codec import numeric_array, parse_feedback, parse_v1, parse_v2
from mlkube_serving.errors import RequestError
from mlkube_serving.schema import InputSchema

NUM = InputSchema(("a", "b", "c"), (False, False, False), allow_nan=False)
NUM_NAN = InputSchema(("a", "b", "c"), (False, False, False), allow_nan=True)
MIXED = InputSchema(("size", "colour"), (False, True), allow_nan=True)


def error_of(fn: Any, *args: Any) -> str:
    with pytest.raises(RequestError) as info:
        fn(*args)
    assert info.value.status == 400
    return info.value.message


def test_v1_rows_and_objects() -> None:
    x, rid = parse_v1({"instances": [[1, 2, 3], [4.5, 5, 6]]}, NUM)
    assert x.dtype == np.float64 and x.tolist() == [[1, 2, 3], [4.5, 5, 6]] and rid is None
    x, rid = parse_v1({"instances": [{"c": 3, "a": 1, "b": 2}], "id": "x"}, NUM)
    assert x.tolist() == [[1, 2, 3]] and rid == "x"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": [[1, 2]]}, "expected 3 features per row, got 2"),
        ({"instances": [[1, 2, True, "3"]]}, "instances[0][3] is the string '3'"),
        ({"instances": [[1, 2, {"x": 1}]]}, "instances[0][2] is an object"),
        ({"instances": [[1, 2, 3], [1, 2]]}, "row 0 has 3 values, row 1 has 2"),
        ({"instances": [[1, None, 3]]}, "feature 'b' is missing (null/NaN)"),
        ({"instances": [[1, 1e308 * 10, 3]]}, "feature 'b' is infinite"),
        ({"instances": []}, "empty"),
        ({"instances": [{"a": 1, "b": 2}]}, "missing feature(s) 'c'"),
        ({"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]}, "unknown feature(s) 'd'"),
        ({"instances": [[1, 2, 3]], "id": ""}, '"id" must be a non-empty string'),
        ("text", "JSON object"),
    ],
)
def test_v1_errors(body: Any, message: str) -> None:
    assert message in error_of(parse_v1, body, NUM)


def test_nan_allowed_when_the_model_takes_it() -> None:
    x, _ = parse_v1({"instances": [[1, None, 3]]}, NUM_NAN)
    assert math.isnan(x[0, 1])
    assert "infinite" in error_of(parse_v1, {"instances": [[1, float("inf"), 3]]}, NUM_NAN)


def test_numeric_array_never_coerces_strings() -> None:
    assert "is the string '1.5'" in error_of(numeric_array, [["1.5"]], "x")
    assert numeric_array([[1, 2**70]], "x").dtype == np.float64


def test_mixed_rows_keep_categories_raw() -> None:
    x, _ = parse_v1({"instances": [[1.5, "red"], [None, None]]}, MIXED)
    assert x.dtype == object
    assert x[0].tolist() == [1.5, "red"]
    assert math.isnan(x[1, 0]) and math.isnan(x[1, 1])
    assert "expected a number" in error_of(parse_v1, {"instances": [["big", "red"]]}, MIXED)


def v2(data: Any, shape: list[int], datatype: str = "FP64", **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "t", "shape": shape, "datatype": datatype, "data": data}], **extra}


def test_v2_matrix_and_outputs() -> None:
    req = parse_v2(
        v2([1, 2, 3, 4, 5, 6], [2, 3], "INT32", id="r", outputs=[{"name": "predict_proba"}]), NUM, True
    )
    assert req.x.tolist() == [[1, 2, 3], [4, 5, 6]] and req.request_id == "r" and req.wants_proba
    req = parse_v2(v2([[0.1, 0.2, 0.3]], [1, 3], "FP32"), NUM, True)
    assert req.x[0, 0] == float(np.float32(0.1))
    assert [o.name for o in req.outputs] == ["predict"] and not req.outputs[0].binary
    req = parse_v2({**v2([1, 2, 3], [3]), "parameters": {"binary_data_output": True}}, NUM, True)
    assert req.x.shape == (1, 3) and req.outputs[0].binary


def test_v2_binary_inputs() -> None:
    raw = np.array([[1, 2, 3]], dtype="<f4").tobytes()
    body = {
        "inputs": [{"name": "t", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]
    }
    assert parse_v2(body, NUM, False, memoryview(raw)).x.tolist() == [[1, 2, 3]]
    assert "4 bytes not claimed" in error_of(parse_v2, body, NUM, False, memoryview(raw + b"\0" * 4))
    body["inputs"][0]["parameters"]["binary_data_size"] = 16
    assert "does not match shape" in error_of(parse_v2, body, NUM, False, memoryview(raw + b"\0" * 4))
    words = [b"red", b"blue"]
    blob = b"".join(struct.pack("<I", len(w)) + w for w in words)
    cols = {
        "inputs": [
            {"name": "size", "shape": [2], "datatype": "FP64", "data": [1, 2]},
            {
                "name": "colour",
                "shape": [2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(blob)},
            },
        ]
    }
    x = parse_v2(cols, MIXED, True, memoryview(blob)).x
    assert x.tolist() == [[1.0, "red"], [2.0, "blue"]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (v2([1, 2], [1, 3]), "has 2 values but shape [1, 3] needs 3"),
        (v2([1, 2, 3], [1, 3], "BF16"), "datatype 'BF16' is not supported"),
        (v2(["a", "b", "c"], [1, 3], "BYTES"), "datatype BYTES but this model takes numbers"),
        (v2([1, 2, 3.5], [1, 3], "INT64"), "non-integer"),
        (v2([1, 2, 300], [1, 3], "UINT8"), "out of range for UINT8"),
        (v2([1, 2, 1e39], [1, 3], "FP32"), "out of range for FP32"),
        (v2([1, 2, 3], [1, 3, 1]), "expected shape [N, 3]"),
        (v2([1, 2, 3, 4], [4]), "expected shape [N, 3] (or [3] for one row)"),
        (v2([1, 2, 3], [1, 3], outputs=[]), '"outputs" must be a non-empty list'),
        (v2([1, 2, 3], [1, 3], outputs=[{"name": "predict_proba"}]), "unknown output 'predict_proba'"),
        ({"inputs": [{"shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}, '"name" must be a string'),
        ({"inputs": "x"}, '"inputs" list'),
        (
            {
                "inputs": [
                    {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
                    {"name": "b", "shape": [2], "datatype": "FP64", "data": [1, 2]},
                    {"name": "c", "shape": [1], "datatype": "FP64", "data": [1]},
                ]
            },
            "has 2 rows but other inputs have 1",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]},
            "missing feature input(s) 'b', 'c'",
        ),
    ],
)
def test_v2_errors(body: Any, message: str) -> None:
    assert message in error_of(parse_v2, body, NUM, False)


def test_feedback_parsing() -> None:
    assert parse_feedback({"feedback": [{"id": "a", "label": 1}]}) == [("a", 1)]
    assert "non-empty string" in error_of(parse_feedback, {"feedback": [{"id": 3, "label": 1}]})
    assert 'has no "label"' in error_of(parse_feedback, {"feedback": [{"id": "a"}]})
