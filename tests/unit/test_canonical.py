"""The canonical form's fast path writes exactly the bytes of its per-cell definition.

`canonical_chunks` (orjson + pyarrow kernels) must give the same bytes, and so the
same content hash, as `reference_chunks` (`repr`/`str` per cell, the definition in
canonical.py's docstring) for every column type a source can produce; a difference
would silently change what a Dataset's contentHash means.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import orjson
import pandas as pd
import pytest

from mlkube_operator.training import canonical
from mlkube_operator.training.canonical import canonical_chunks, canonical_csv, reference_chunks


def both(frame: pd.DataFrame, rows: int = canonical.CHUNK_ROWS) -> tuple[bytes, bytes]:
    columns = list(frame.columns)
    return b"".join(canonical_chunks(frame, columns, rows)), b"".join(reference_chunks(frame, columns, rows))


def awkward_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Every notation repr switches between: tiny, subnormal, around 1e-4 and 1e16, huge, signed zeros, non-finite."""
    bits = rng.integers(0, 2**64, size=n, dtype=np.uint64).view(np.float64)
    scaled = 10.0 ** rng.uniform(-8, 20, size=n) * rng.choice([-1.0, 1.0], size=n)
    special = np.array(
        [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-4, np.nextafter(1e-4, 0), 1e16, 9999999999999998.0, 5e-324]
    )
    return np.concatenate([bits, scaled, np.round(scaled, 2), special])


def test_orjson_writes_floats_as_repr_outside_the_small_range() -> None:
    rng = np.random.default_rng(7)
    values = awkward_floats(rng, 300_000)
    kept = values[np.isfinite(values) & ((np.abs(values) >= 1e-4) | (values == 0))]
    written = orjson.dumps(kept, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    assert written == [repr(v).encode() for v in kept.tolist()]
    assert canonical._FAST_FLOATS  # the import-time probe agrees, so the fast path is in use


def test_float_columns_match_the_definition() -> None:
    rng = np.random.default_rng(11)
    values = awkward_floats(rng, 50_000)
    rng.shuffle(values)
    with np.errstate(over="ignore", invalid="ignore"):
        narrow = values.astype(np.float32)
    frame = pd.DataFrame({"f": values, "f32": narrow, "t": np.arange(len(values))})
    fast, ref = both(frame, rows=7_919)
    assert fast == ref
    nan_row = int(np.flatnonzero(np.isnan(values))[0])
    assert fast.split(b"\n")[nan_row + 1].startswith(b",")  # NaN is an empty field


def test_every_column_type_matches_the_definition() -> None:
    n = 1_000
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "float": rng.normal(size=n),
            "int": rng.integers(-(2**62), 2**62, size=n),
            "uint8": rng.integers(0, 255, size=n).astype(np.uint8),
            "bool": rng.random(n) < 0.5,
            "text": rng.choice(
                np.array(["plain", 'he said "hi"', "a,b", "line\nbreak", "cr\rhere", "", "ünï"]), size=n
            ),
            "text_missing": pd.Series(rng.choice(np.array(["x", "y,z"]), size=n)).where(rng.random(n) < 0.7),
            "arrow_text": pd.Series(rng.choice(np.array(["p", 'q"r']), size=n), dtype="string[pyarrow]"),
            "nullable_int": pd.Series(rng.integers(0, 9, size=n), dtype="Int64").where(rng.random(n) < 0.9),
            "nullable_bool": pd.Series(rng.random(n) < 0.5, dtype="boolean").where(rng.random(n) < 0.9),
            "mixed": pd.Series(
                rng.choice(np.array([1, 2.5, "x", True, None], dtype=object), size=n), dtype=object
            ),
            "dates": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 10**6, size=n), unit="s"),
            "category": pd.Categorical(rng.choice(np.array(["lo", "hi,gh"]), size=n)),
            "all_missing": pd.Series([None] * n, dtype=object),
        }
    )
    fast, ref = both(frame, rows=333)
    assert fast == ref
    assert len(pd.read_csv(io.BytesIO(fast))) == n


def test_columns_of_a_two_dimensional_block_match_the_definition() -> None:
    block = np.random.default_rng(5).normal(size=(500, 4))  # one float block: strided column views
    frame = pd.DataFrame(block, columns=["a", "b", "c", "d"])
    fast, ref = both(frame, rows=64)
    assert fast == ref


def test_chunk_size_and_empty_tables_do_not_change_the_bytes() -> None:
    frame = pd.DataFrame({"a": [0.1, 2.0, np.nan], "b": ["x", None, "y"], "label": [1, 0, 1]})
    whole = canonical_csv(frame, ["a", "b", "label"])
    assert whole == b"a,b,label\n0.1,x,1\n2.0,,0\n,y,1\n"
    for rows in (1, 2, 3, 10):
        assert b"".join(canonical_chunks(frame, ["a", "b", "label"], rows)) == whole
    assert both(frame.iloc[:0]) == (b"a,b,label\n", b"a,b,label\n")
    assert both(frame[["b"]]) == (b"b\nx\n\ny\n",) * 2


def test_a_million_rows_hash_as_defined() -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "count": rng.integers(0, 1000, size=n),
            "plan": rng.choice(np.array(["basic", "pro", "team"]), size=n),
            "y": (rng.random(n) < 0.5).astype("int64"),
        }
    )
    fast, ref = both(frame)
    assert hashlib.sha256(fast).hexdigest() == hashlib.sha256(ref).hexdigest()


@pytest.mark.parametrize("value", [1e-5, -3.5e-7, 5e-324, 1e16, 1.5e300, np.inf])
def test_cells_orjson_would_write_differently_are_written_by_repr(value: float) -> None:
    frame = pd.DataFrame({"v": [value, 1.0]})
    assert canonical_csv(frame, ["v"]) == f"v\n{value!r}\n1.0\n".encode()


def test_integer_extremes_match_the_definition() -> None:
    ints = np.array([-(2**63), 2**63 - 1, 0, -1, 10**18, 7], dtype=np.int64)
    frame = pd.DataFrame({"i": ints, "u": np.array([2**64 - 1, 0, 1, 2, 3, 4], dtype=np.uint64)})
    fast, ref = both(frame, rows=4)
    assert fast == ref
    assert fast.split(b"\n")[1].startswith(b"-9223372036854775808,")


def test_chunks_written_on_threads_are_the_same_bytes_in_order() -> None:
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    frame = pd.DataFrame(
        {"x": awkward_floats(rng, 20_000)[:20_000], "s": rng.choice(np.array(["a", "b,c"]), 20_000)}
    )
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = b"".join(canonical_chunks(frame, ["x", "s"], 997, pool=pool))
    assert threaded == b"".join(reference_chunks(frame, ["x", "s"], 997))
