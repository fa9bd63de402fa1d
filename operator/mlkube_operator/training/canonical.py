"""One byte sequence per dataset, so that its sha256 can stand for the data.

The content hash is the lineage anchor (Dataset -> TrainingRun -> served model), so
it must not depend on the source's formatting (quoting, line endings, `5.10` versus
`5.1`, column order, unused columns) nor on the library versions of the Job that
computed it. The canonical form is therefore written by this module, not by
`DataFrame.to_csv`: the selected columns (features in spec order, then the target),
a header row, `,` separators, `\\n` line endings, UTF-8, floats as Python's
shortest round-tripping repr (`5.1`, `0.30000000000000004`), integers in decimal,
missing values as empty fields, and a field quoted (with `""` for a quote) only
when it contains `,`, `"`, `\\r` or `\\n`. Parsing the canonical bytes again gives
the same values and the same bytes, which is what the training Job relies on.

`_cells` below is the definition, one Python string per cell. Formatting a million
floats with `repr` and joining ten million cells in Python took most of a profile
Job's time, so the common column types (float, integer and boolean columns without
missing integers/booleans, string columns) take a vectorised path that writes the
same bytes: orjson formats float64 arrays in C with the same shortest round-tripping
digits and, for 1e-4 <= |x| and zero, the same notation as `repr` (checked over
millions of values in tests/unit/test_canonical.py, and at import against the values
where the notations switch; if a future orjson disagrees, repr is used); the few
cells orjson writes differently (|x| < 1e-4, NaN, infinities) are written by `repr`;
quoting and joining happen in pyarrow's compute kernels. Any other column (dates,
mixed objects, nullable integers with missing values) goes through `_cells`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from .contract import CATEGORICAL, NUMERIC

if TYPE_CHECKING:
    import pyarrow as pa

_SPECIAL = frozenset(',"\r\n')


def column_kind(series: pd.Series) -> str:
    """numeric for int/float columns; categorical for everything else (strings, booleans)."""
    if ptypes.is_bool_dtype(series.dtype):
        return CATEGORICAL
    return NUMERIC if ptypes.is_numeric_dtype(series.dtype) else CATEGORICAL


def _field(text: str) -> str:
    if _SPECIAL.isdisjoint(text):
        return text
    return '"' + text.replace('"', '""') + '"'


def _cells(series: pd.Series) -> list[str]:
    dtype = series.dtype
    if ptypes.is_float_dtype(dtype):
        return ["" if v != v else repr(v) for v in series.astype("float64").tolist()]
    if ptypes.is_integer_dtype(dtype) and not series.isna().any():
        return [str(v) for v in series.astype("int64").tolist()]
    if ptypes.is_bool_dtype(dtype) and not series.isna().any():
        return ["True" if v else "False" for v in series.tolist()]
    out: list[str] = []
    missing = series.isna().tolist()
    for value, absent in zip(series.astype(object).tolist(), missing, strict=True):
        if absent:
            out.append("")
        elif isinstance(value, float):
            out.append(repr(value))
        elif isinstance(value, np.generic):
            out.append(_scalar(value.item()))
        else:
            out.append(_field(_scalar(value)))
    return out


def _scalar(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# Rows serialised at a time: one chunk's cells (a few MB as Arrow arrays; tens of MB
# when a column takes the per-cell path) are freed before the next, so a
# million-row table never holds all its cells at once.
CHUNK_ROWS = 100_000

# orjson writes |x| >= 1e-4 (and 0) as repr does: positional below 1e16, `1e+16` above.
# Below 1e-4 it stays positional (`0.00001`) where repr switches to `1e-05`, and it
# writes NaN and infinities as `null`; those cells are written by repr.
_SMALLEST_POSITIONAL = 1e-4
_PROBES = (
    0.0, -0.0, 1.0, -2.5, 0.1, 0.30000000000000004, 1e-4, 0.00012345, 123456.789, 5e15,
    9999999999999998.0, 1e16, 1.2345e16, 1e22, 1.7976931348623157e308, 2.0**53, 2.0**53 + 2,
)  # fmt: skip


def _orjson_matches_repr() -> bool:
    try:
        import orjson
    except ImportError:
        return False
    probes = np.array(_PROBES, dtype="float64")
    written = orjson.dumps(probes, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    return written == [repr(v).encode() for v in _PROBES]


_FAST_FLOATS = _orjson_matches_repr()


def _large(text: str) -> pa.Scalar[Any]:
    import pyarrow as pa

    return pa.scalar(text, type=pa.large_string())


def _stops(body: bytes, end: str) -> np.ndarray[Any, Any]:
    return np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == ord(end))


def _cells_ending(body: bytes, stops: np.ndarray[Any, Any], count: int) -> pa.Array:
    """`body`, cells each ending at one of `stops` (the positions of their `end`), as an Arrow string array."""
    import pyarrow as pa

    if len(stops) != count:  # cannot happen for numbers; a wrong split must never reach a hash
        raise ValueError(f"expected {count} cells, found {len(stops)}")
    offsets = np.zeros(count + 1, dtype=np.int64)
    offsets[1:] = stops + 1
    return pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(body))


def _numbers(values: np.ndarray[Any, Any], end: str) -> bytes:
    """orjson's text of a numeric array, each number followed by `end`."""
    import orjson

    # A column of a frame built from a 2-D array is a strided view; orjson needs C order.
    body = orjson.dumps(np.ascontiguousarray(values), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    if end != ",":
        body = body.replace(b",", end.encode())
    return body + end.encode()


def _float_cells(values: np.ndarray[Any, Any], end: str) -> pa.Array:
    """repr of each float64 (NaN as an empty field) followed by `end`."""
    import pyarrow as pa

    if not _FAST_FLOATS or not len(values):
        return pa.array([("" if v != v else repr(v)) + end for v in values.tolist()], type=pa.large_string())
    body = _numbers(values, end)
    stops = _stops(body, end)
    other = np.flatnonzero(~np.isfinite(values) | ((np.abs(values) < _SMALLEST_POSITIONAL) & (values != 0)))
    if len(other) and len(stops) == len(values):
        # Splice repr's text into the few cells orjson writes differently, moving the
        # later cells' stops by the change in length.
        pieces, done = [], 0
        shift = np.zeros(len(values), dtype=np.int64)
        for row, value in zip(other.tolist(), values[other].tolist(), strict=True):
            start = int(stops[row - 1]) + 1 if row else 0
            text = ("" if value != value else repr(value)).encode()
            pieces += [body[done:start], text]
            shift[row] = len(text) - (int(stops[row]) - start)
            done = int(stops[row])
        pieces.append(body[done:])
        body = b"".join(pieces)
        stops = stops + np.cumsum(shift)
    return _cells_ending(body, stops, len(values))


def _int_cells(values: np.ndarray[Any, Any], end: str) -> pa.Array:
    """Each int64 in decimal followed by `end` (orjson writes integers as str does)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not _FAST_FLOATS or not len(values):  # no orjson: Arrow's cast writes the same digits
        return pc.binary_join_element_wise(
            pa.array(values, pa.int64()).cast(pa.large_string()), _large(""), _large(end)
        )
    body = _numbers(values, end)
    return _cells_ending(body, _stops(body, end), len(values))


def _string_cells(values: pa.Array, end: str) -> pa.Array:
    """`_field` of each string (missing values as empty fields) followed by `end`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = values.cast(pa.large_string())
    special = pc.match_substring_regex(values, '[,"\r\n]')
    if pc.any(special).as_py():
        quote = _large('"')
        quoted = pc.binary_join_element_wise(
            quote, pc.replace_substring(values, '"', '""'), quote, _large("")
        )
        values = pc.if_else(special, quoted, values)
    return pc.binary_join_element_wise(values.fill_null(""), _large(""), _large(end))


def _column_cells(series: pd.Series, end: str) -> Callable[[int, int], pa.Array]:
    """A function of (start, stop) giving the column's cells in rows [start, stop), each followed by `end`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    dtype = series.dtype
    if ptypes.is_float_dtype(dtype):
        floats = series.astype("float64").to_numpy()
        return lambda start, stop: _float_cells(floats[start:stop], end)
    if ptypes.is_integer_dtype(dtype) and not series.isna().any():
        ints = series.astype("int64").to_numpy()
        return lambda start, stop: _int_cells(ints[start:stop], end)
    if ptypes.is_bool_dtype(dtype) and not series.isna().any():
        flags = pa.array(series.astype(bool).to_numpy())
        true, false = _large("True" + end), _large("False" + end)
        return lambda start, stop: pc.if_else(flags.slice(start, stop - start), true, false)
    if not ptypes.is_bool_dtype(dtype) and ptypes.infer_dtype(series, skipna=True) in ("string", "empty"):
        strings = pa.array(series, type=pa.large_string(), from_pandas=True)
        if isinstance(strings, pa.ChunkedArray):  # an Arrow-backed pandas column
            strings = strings.combine_chunks()
        return lambda start, stop: _string_cells(strings.slice(start, stop - start), end)
    return lambda start, stop: pa.array(
        [cell + end for cell in _cells(series.iloc[start:stop])], type=pa.large_string()
    )


def _joined(array: pa.Array) -> memoryview:
    """The concatenated values of a large_string array without nulls (no copy)."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    return memoryview(b"" if data is None else data[int(offsets[0]) : int(offsets[-1])])


def canonical_chunks(
    frame: pd.DataFrame, columns: Sequence[str], rows: int = CHUNK_ROWS, pool: Executor | None = None
) -> Iterator[bytes | memoryview]:
    """The canonical serialisation of `frame[columns]`, the header first, then `rows` rows at a time.

    With `pool`, chunks are written on its threads (Arrow's kernels and numpy release
    the GIL) and yielded in order; the bytes do not depend on it.
    """
    import pyarrow.compute as pc

    yield (",".join(_field(str(name)) for name in columns) + "\n").encode("utf-8")
    # Each cell carries its separator (`,`, or `\n` in the last column): a row is its
    # cells concatenated, one kernel call per chunk.
    ends = [","] * (len(columns) - 1) + ["\n"]
    cells = [_column_cells(frame[name], end) for name, end in zip(columns, ends, strict=True)]

    def chunk(start: int) -> memoryview:
        stop = min(start + rows, len(frame))
        return _joined(pc.binary_join_element_wise(*(column(start, stop) for column in cells), _large("")))

    yield from (pool.map if pool is not None else map)(chunk, range(0, len(frame), rows))


def reference_chunks(frame: pd.DataFrame, columns: Sequence[str], rows: int = CHUNK_ROWS) -> Iterator[bytes]:
    """canonical_chunks written cell by cell by `_cells`: the definition the fast path is checked against."""
    yield (",".join(_field(str(name)) for name in columns) + "\n").encode("utf-8")
    for start in range(0, len(frame), rows):
        part = frame.iloc[start : start + rows]
        cells = [_cells(part[name]) for name in columns]
        yield ("\n".join(map(",".join, zip(*cells, strict=True))) + "\n").encode("utf-8")


def canonical_csv(frame: pd.DataFrame, columns: Sequence[str], pool: Executor | None = None) -> bytes:
    """The canonical serialisation of `frame[columns]` (see the module docstring)."""
    return b"".join(canonical_chunks(frame, columns, pool=pool))
