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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from .contract import CATEGORICAL, NUMERIC

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


# Rows serialised at a time: the per-cell strings of one chunk (tens of MB) are
# freed before the next, so a million-row table does not hold ten million Python
# strings at once.
CHUNK_ROWS = 50_000


def canonical_chunks(frame: pd.DataFrame, columns: Sequence[str], rows: int = CHUNK_ROWS) -> Iterator[bytes]:
    """The canonical serialisation of `frame[columns]`, the header first, then `rows` rows at a time."""
    yield (",".join(_field(str(name)) for name in columns) + "\n").encode("utf-8")
    for start in range(0, len(frame), rows):
        part = frame.iloc[start : start + rows]
        cells = [_cells(part[name]) for name in columns]
        yield ("\n".join(map(",".join, zip(*cells, strict=True))) + "\n").encode("utf-8")


def canonical_csv(frame: pd.DataFrame, columns: Sequence[str]) -> bytes:
    """The canonical serialisation of `frame[columns]` (see the module docstring)."""
    return b"".join(canonical_chunks(frame, columns))
