"""The profile Job entrypoint: sources, validation rules, canonical hashing, profile.json.

Most cases call the CLI's `main()` in-process (fast, same code path as the pod); a few
run `python -m mlkube_operator.training` in a subprocess, exactly as the Job does.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlkube_operator.training import contract
from mlkube_operator.training.canonical import canonical_csv
from mlkube_operator.training.cli import main
from mlkube_operator.training.profiling import build_profile, infer_task, numeric_profile
from mlkube_operator.training.sources import parse_csv
from mlkube_operator.training.termination import encode

# sha256 of iris' canonical CSV (4 features + target renamed to species). Pinned so that a
# change of the canonical form, on any machine or library version, is noticed.
IRIS_HASH = "b6354ddc844092af7f63edb9e8be69cbbdbda3cc3fc80760b6483102df0ab9f2"
IRIS = {"source": {"builtin": "iris"}, "target": "species"}
CSV = b"colour,size,weight,label\nred,1.5,10,yes\nblue,2.0,11,no\nred,2.5,12,yes\ngreen,3.0,13,no\n"


def profile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: dict[str, Any], *extra: str, name: str = "ds"
) -> tuple[int, dict[str, Any]]:
    log = tmp_path / "termination-log"
    argv = ["profile", "--spec-json", json.dumps(spec), "--namespace", "ns", "--name", name]
    argv += ["--artifact-root", str(tmp_path / "artifacts"), "--termination-log", str(log), *extra]
    code = main(argv)
    text = log.read_text()
    assert capsys.readouterr().out.strip().splitlines()[-1] == text
    assert len(text.encode()) < contract.TERMINATION_MESSAGE_MAX_BYTES
    result: dict[str, Any] = json.loads(text)
    return code, result


def write_source(tmp_path: Path, data: bytes, name: str = "data/source.csv") -> dict[str, Any]:
    path = tmp_path / "artifacts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"path": name}


def failure(code: int, result: dict[str, Any], reason: str, exit_code: int = contract.EXIT_PERMANENT) -> str:
    assert (code, result["ok"], result["reason"]) == (exit_code, False, reason), result
    message: str = result["message"]
    return message


def test_iris_in_a_subprocess_as_the_job_runs_it(tmp_path: Path) -> None:
    log = tmp_path / "tl"
    cmd = [sys.executable, "-m", "mlkube_operator.training", "profile", "--spec-json", json.dumps(IRIS)]
    cmd += ["--namespace", "default", "--name", "iris", "--artifact-root", str(tmp_path / "a")]
    proc = subprocess.run([*cmd, "--termination-log", str(log)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(log.read_text())
    assert proc.stdout.strip().splitlines()[-1] == log.read_text()
    assert result["ok"] is True
    assert (result["rows"], result["columns"], result["contentHash"]) == (150, 5, IRIS_HASH)
    assert (result["task"], result["target"]) == ("classification", "species")
    assert result["features"] == [
        "sepal length (cm)",
        "sepal width (cm)",
        "petal length (cm)",
        "petal width (cm)",
    ]
    assert result["schema"][0] == {"name": "sepal length (cm)", "dtype": "numeric"}
    directory = tmp_path / "a" / "datasets" / "default" / "iris" / IRIS_HASH
    assert result["dataUri"] == (directory / "data.csv").as_uri()
    assert result["profileUri"] == (directory / "profile.json").as_uri()
    prof = json.loads((directory / "profile.json").read_text())
    assert prof["contentHash"] == IRIS_HASH and prof["rows"] == 150 and prof["columns"] == 5
    assert prof["task"] == "classification" and prof["target"] == "species"
    for feature in prof["features"]:
        assert feature["kind"] == "numeric" and feature["missing"] == 0
        assert len(feature["binEdges"]) == len(feature["fractions"]) + 1 <= 11
        assert feature["binEdges"] == sorted(set(feature["binEdges"]))
        assert sum(feature["fractions"]) == pytest.approx(1.0)
        assert {"mean", "std"} <= feature.keys()
    target = prof["targetProfile"]
    assert target["kind"] == "categorical"
    assert target["levels"] == pytest.approx({"0": 1 / 3, "1": 1 / 3, "2": 1 / 3})
    assert not list(directory.glob(".*"))  # no temporary files left behind


def test_content_hash_is_stable_across_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    first = profile(capsys, tmp_path / "one", IRIS)[1]
    second = profile(capsys, tmp_path / "two", IRIS)[1]
    assert first["contentHash"] == second["contentHash"] == IRIS_HASH
    one = tmp_path / "one" / "artifacts" / "datasets" / "ns" / "ds" / IRIS_HASH
    two = tmp_path / "two" / "artifacts" / "datasets" / "ns" / "ds" / IRIS_HASH
    assert (one / "data.csv").read_bytes() == (two / "data.csv").read_bytes()
    assert (one / "profile.json").read_bytes() == (two / "profile.json").read_bytes()


def test_hash_ignores_source_formatting_and_unused_columns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plain = b"a,b,label\n1.5,x,0\n2.0,y,1\n"
    noisy = b'\xef\xbb\xbfb,unused,a,label\r\n"x",9,1.50,0\r\n\r\ny,9,2.0,1\r\n'
    spec = {"target": "label", "features": ["a", "b"]}
    one = profile(capsys, tmp_path / "one", {**spec, "source": write_source(tmp_path / "one", plain)})[1]
    two = profile(capsys, tmp_path / "two", {**spec, "source": write_source(tmp_path / "two", noisy)})[1]
    assert one["ok"] and two["ok"]
    assert one["contentHash"] == two["contentHash"]


def test_canonical_form_round_trips() -> None:
    frame = pd.DataFrame(
        {
            "f": [0.1 + 0.2, np.nan, 1e-300, 3.0],
            "i": [1, 2, 3, 4],
            "s": ['he said "hi"', "a,b", None, "line\nbreak"],
            "t": ["x", "y", "x", "y"],
        }
    )
    data = canonical_csv(frame, ["f", "i", "s", "t"])
    assert data.startswith(b'f,i,s,t\n0.30000000000000004,1,"he said ""hi""",x\n,2,"a,b",y\n1e-300,3,,x\n')
    again = parse_csv(data, "test")
    assert canonical_csv(again, list(again.columns)) == data


def test_categorical_columns_are_profiled_by_level(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, result = profile(capsys, tmp_path, {"source": write_source(tmp_path, CSV), "target": "label"})
    assert code == 0 and result["features"] == ["colour", "size", "weight"]
    assert result["schema"] == [
        {"name": "colour", "dtype": "categorical"},
        {"name": "size", "dtype": "numeric"},
        {"name": "weight", "dtype": "numeric"},
        {"name": "label", "dtype": "categorical"},
    ]
    prof = json.loads(Path(result["profileUri"].removeprefix("file://")).read_text())
    assert prof["features"][0] == {
        "name": "colour",
        "kind": "categorical",
        "levels": {"red": 0.5, "blue": 0.25, "green": 0.25},
        "missing": 0,
    }
    assert prof["targetProfile"]["levels"] == {"no": 0.5, "yes": 0.5}
    assert prof["task"] == "classification"


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, b"not here"))
        self.send_response(status)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    _Handler.routes = {"/data.csv": (200, CSV), "/busy.csv": (503, b"try later")}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_url_source(capsys: pytest.CaptureFixture[str], tmp_path: Path, http_server: str) -> None:
    code, result = profile(
        capsys, tmp_path, {"source": {"url": f"{http_server}/data.csv"}, "target": "label"}
    )
    assert code == 0 and result["rows"] == 4


def test_url_404_is_permanent(capsys: pytest.CaptureFixture[str], tmp_path: Path, http_server: str) -> None:
    url = f"{http_server}/missing.csv"
    message = failure(
        *profile(capsys, tmp_path, {"source": {"url": url}, "target": "label"}), "SourceUnavailable"
    )
    assert url in message and "404" in message


def test_url_503_is_retried(capsys: pytest.CaptureFixture[str], tmp_path: Path, http_server: str) -> None:
    url = f"{http_server}/busy.csv"
    code, result = profile(capsys, tmp_path, {"source": {"url": url}, "target": "label"})
    message = failure(code, result, "SourceUnavailable", contract.EXIT_RETRYABLE)
    assert url in message and "503" in message


def test_url_connection_refused_is_retried(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.csv"
    code, result = profile(capsys, tmp_path, {"source": {"url": url}, "target": "label"})
    message = failure(code, result, "SourceUnavailable", contract.EXIT_RETRYABLE)
    assert url in message and "connection refused" in message


def test_configmap_source(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    mount = tmp_path / "cm"
    mount.mkdir()
    (mount / "train.csv").write_bytes(CSV)
    spec = {"source": {"configMap": {"name": "my-data", "key": "train.csv"}}, "target": "label"}
    code, result = profile(capsys, tmp_path, spec, "--configmap-dir", str(mount))
    assert code == 0 and result["rows"] == 4
    spec["source"] = {"configMap": {"name": "my-data", "key": "other.csv"}}
    message = failure(*profile(capsys, tmp_path, spec, "--configmap-dir", str(mount)), "SourceUnavailable")
    assert "my-data" in message and "'other.csv'" in message and "train.csv" in message


def test_missing_path_source(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    message = failure(
        *profile(capsys, tmp_path, {"source": {"path": "nope/x.csv"}, "target": "label"}), "SourceUnavailable"
    )
    assert "nope/x.csv" in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"a,b,label\n1,2,0\n1,2,3,4\n", "line 3 has 4"),
        (b"a,b,label\n1,2,0\n1,2\n", "line 3 has 2"),
        (b"a,b,label\n1,2,0\n5,6,1,\n7,8,0,\n", "ragged"),
        (b"a,a,label\n1,2,0\n", "duplicate column name(s) 'a'"),
        (b",a,label\n0,1,0\n", "no name"),
        (b"a,b,label\n1,\xff,0\n", "not UTF-8"),
        (b'a,b,label\n1,"unterminated,0\n', "malformed"),
    ],
)
def test_malformed_csv(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: bytes, expected: str
) -> None:
    spec = {"source": write_source(tmp_path, data), "target": "label"}
    message = failure(*profile(capsys, tmp_path, spec), "ValidationFailed")
    assert expected in message
    assert not (tmp_path / "artifacts" / "datasets").exists()


def test_missing_columns_are_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = write_source(tmp_path, CSV)
    message = failure(*profile(capsys, tmp_path, {"source": source, "target": "species"}), "ValidationFailed")
    assert "target column 'species' is missing" in message and "'colour'" in message
    spec = {
        "source": source,
        "target": "label",
        "features": ["colour", "height"],
        "validation": {"requiredColumns": ["size", "id"]},
    }
    message = failure(*profile(capsys, tmp_path, spec), "ValidationFailed")
    assert "required column(s) 'id' missing" in message and "feature column(s) 'height' missing" in message
    assert not (tmp_path / "artifacts" / "datasets").exists()


def test_min_rows(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = {"source": write_source(tmp_path, CSV), "target": "label", "validation": {"minRows": 10}}
    message = failure(*profile(capsys, tmp_path, spec), "ValidationFailed")
    assert "4 rows" in message and "minRows 10" in message
    header_only = {"source": write_source(tmp_path, b"a,label\n", "h.csv"), "target": "label"}
    assert "0 rows" in failure(*profile(capsys, tmp_path, header_only), "ValidationFailed")


def test_max_missing_fraction(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = b"a,b,label\n1,,0\n2,,1\n3,5,0\n,6,1\n"
    spec: dict[str, Any] = {
        "source": write_source(tmp_path, data),
        "target": "label",
        "validation": {"maxMissingFraction": 0},
    }
    message = failure(*profile(capsys, tmp_path, spec), "ValidationFailed")
    assert "column 'a' has 1 missing of 4 rows (fraction 0.25)" in message
    assert "column 'b' has 2 missing of 4 rows (fraction 0.5)" in message
    spec["validation"] = {"maxMissingFraction": 0.3}
    message = failure(*profile(capsys, tmp_path, spec), "ValidationFailed")
    assert "'b'" in message and "'a'" not in message and "maxMissingFraction 0.3" in message
    spec["validation"] = {"maxMissingFraction": 0.5}
    code, result = profile(capsys, tmp_path, spec)
    assert code == 0
    prof = json.loads(Path(result["profileUri"].removeprefix("file://")).read_text())
    assert prof["features"][1]["missing"] == 2 and sum(prof["features"][1]["fractions"]) == pytest.approx(1)


def test_default_missing_fraction_allows_what_training_imputes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # 40 rows, 2 missing in 'a' (5 %): training imputes them, so the default lets them through.
    lines = [f"{'' if i in (3, 17) else i},{i % 7},{i % 2}" for i in range(40)]
    data = ("a,b,label\n" + "\n".join(lines) + "\n").encode()
    spec: dict[str, Any] = {"source": write_source(tmp_path, data), "target": "label"}
    code, result = profile(capsys, tmp_path, spec)
    assert code == 0, result
    prof = json.loads(Path(result["profileUri"].removeprefix("file://")).read_text())
    assert prof["features"][0]["missing"] == 2
    # The default is 0.5: a column mostly empty still fails, naming the default bound.
    mostly_empty = [f"{i if i % 3 == 0 else ''},{i % 7},{i % 2}" for i in range(40)]
    data = ("a,b,label\n" + "\n".join(mostly_empty) + "\n").encode()
    spec = {"source": write_source(tmp_path, data, "empty.csv"), "target": "label"}
    message = failure(*profile(capsys, tmp_path, spec), "ValidationFailed")
    assert "column 'a' has 26 missing of 40 rows" in message and "maxMissingFraction 0.5" in message


def test_infinite_values_are_rejected(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = {"source": write_source(tmp_path, b"a,label\n1,0\ninf,1\n"), "target": "label"}
    assert "'a' has 1 infinite" in failure(*profile(capsys, tmp_path, spec), "ValidationFailed")


def test_invalid_spec_and_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = {"source": {"builtin": "iris", "url": "http://x/y.csv"}, "target": "species"}
    assert "exactly one of" in failure(*profile(capsys, tmp_path, spec), "InvalidSpec")
    log = tmp_path / "tl"
    assert main(["profile", "--namespace", "ns", "--termination-log", str(log)]) == contract.EXIT_PERMANENT
    result = json.loads(log.read_text())
    assert result["reason"] == "InvalidSpec" and "--spec-json" in result["message"]
    capsys.readouterr()


def test_quantile_bins() -> None:
    few = numeric_profile(pd.Series([1.0] * 50 + [2.0] * 30 + [3.0] * 20), bins=10)
    # Duplicate quantiles removed; the inner edge lies between the tied values 1 and 2, so
    # noise of a few hundredths on them moves nothing between bins.
    assert few["binEdges"] == [1.0, 1.5, 3.0]
    assert few["fractions"] == pytest.approx([0.5, 0.5])  # [1, 1.5) and [1.5, 3] (last bin closed)
    constant = numeric_profile(pd.Series([7.0, 7.0, np.nan]), bins=4)
    assert constant["binEdges"] == [7.0, 7.0] and constant["fractions"] == [1.0] and constant["missing"] == 1
    empty = numeric_profile(pd.Series([np.nan, np.nan]), bins=4)
    assert empty["binEdges"] is None and empty["fractions"] is None and empty["missing"] == 2
    spread = numeric_profile(pd.Series(np.arange(1000, dtype=float)), bins=4)
    assert spread["binEdges"] == [0.0, 248.5, 498.5, 748.5, 999.0]  # halfway to the next lower value
    assert spread["fractions"] == [0.249, 0.25, 0.25, 0.251]
    assert spread["mean"] == 499.5


def test_task_inference() -> None:
    assert infer_task(pd.Series([0, 1, 2, 1])) == "classification"
    assert infer_task(pd.Series([0.0, 1.0, np.nan])) == "classification"
    assert infer_task(pd.Series(["a", "b"])) == "classification"
    assert infer_task(pd.Series([True, False])) == "classification"
    assert infer_task(pd.Series(range(21))) == "regression"
    assert infer_task(pd.Series([0.5, 1.0, 2.0])) == "regression"
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [151.5, 75.25]})
    assert build_profile(frame, ["x"], "y", 10, "h")["targetProfile"]["kind"] == "numeric"


def test_termination_message_fits_with_2000_columns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    names = [f"feature_with_a_long_name_{i:04d}" for i in range(2000)]
    rows = [",".join(str((r * 7 + c) % 13) for c in range(2000)) + f",{r % 2}" for r in range(20)]
    data = (",".join([*names, "label"]) + "\n" + "\n".join(rows) + "\n").encode()
    code, result = profile(capsys, tmp_path, {"source": write_source(tmp_path, data), "target": "label"})
    assert code == 0 and result["ok"] is True
    assert result["rows"] == 20 and result["columns"] == 2001 and len(result["contentHash"]) == 64
    assert "schema" not in result and "features" not in result
    assert result["truncated"] == ["schema", "features"]
    prof = json.loads(Path(result["profileUri"].removeprefix("file://")).read_text())
    assert len(prof["features"]) == 2000


def test_encode_truncates_long_messages() -> None:
    text = encode({"ok": False, "reason": "ValidationFailed", "message": "é" * 10000, "schema": [1] * 100})
    assert len(text.encode()) < 4096
    result = json.loads(text)
    assert result["reason"] == "ValidationFailed" and result["message"].endswith("[truncated]")
    assert json.loads(encode({"ok": True, "x": float("nan")})) == {"ok": True, "x": None}


def _edges_by_definition(values: np.ndarray, bins: int) -> list[float]:
    """The module docstring's edges, from the distinct values (no shared sort)."""
    quantiles = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1), method="inverted_cdf"))
    if len(quantiles) == 1:
        return [float(quantiles[0])] * 2
    if len(quantiles) == 2:
        return [float(q) for q in quantiles]
    distinct = sorted(set(values.tolist()))
    inner = [(max(d for d in distinct if d < q) + q) / 2.0 for q in quantiles[1:-1]]
    return [float(quantiles[0]), *inner, float(quantiles[-1])]


def _fractions_by_definition(values: np.ndarray, edges: list[float]) -> list[float]:
    """Each value in bin [e_i, e_i+1) (the last closed), values outside clipped to the ends, row by row."""
    counts = [0] * (len(edges) - 1)
    for v in values.tolist():
        i = sum(1 for e in edges if e <= v) - 1
        counts[min(max(i, 0), len(counts) - 1)] += 1
    return [c / len(values) for c in counts]


@pytest.mark.parametrize("seed", range(6))
def test_numeric_profile_matches_its_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    values = [
        rng.normal(size=n),
        np.round(rng.exponential(size=n), 1),
        rng.integers(0, 4, size=n).astype(float),
    ][seed % 3]
    for bins in (1, 3, 10):
        prof = numeric_profile(pd.Series(values), bins)
        edges = _edges_by_definition(values, bins)
        assert prof["binEdges"] == edges
        assert prof["fractions"] == _fractions_by_definition(values, edges)
        assert prof["mean"] == float(values.mean()) and prof["std"] == float(values.std(ddof=0))


def test_categorical_levels_are_named_per_value() -> None:
    from mlkube_operator.training.profiling import categorical_profile

    # True == 1 and 1.0 == 1 in Python, but they are different levels ("True", "1"): a
    # mixed object column is named row by row, never merged by equality first.
    mixed = pd.Series([True, 1, 1.0, "1", True, None], dtype=object)
    assert categorical_profile(mixed) == {
        "kind": "categorical",
        "levels": {"1": 0.6, "True": 0.4},
        "missing": 1,
    }
    labels = pd.Series([2, 0, 2, 1, 2, 0])
    assert categorical_profile(labels)["levels"] == {
        "2": 0.5,
        "0": pytest.approx(1 / 3),
        "1": pytest.approx(1 / 6),
    }
    floats = pd.Series([0.0, -0.0, 2.0, 2.5, np.nan])
    assert categorical_profile(floats)["levels"] == {"0": 0.5, "2": 0.25, "2.5": 0.25}
    unused = pd.Series(pd.Categorical(["b", "a", "b"], categories=["a", "b", "c"]))
    assert categorical_profile(unused)["levels"] == {"b": pytest.approx(2 / 3), "a": pytest.approx(1 / 3)}
