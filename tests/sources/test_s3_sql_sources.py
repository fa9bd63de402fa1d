"""Dataset sources in object storage and PostgreSQL, against real servers.

The S3 server is SeaweedFS and the database is PostgreSQL (tests/servers.py); the
profile entrypoint runs in-process through the CLI's `main()` (the code path of the
Job's pod) with the credentials in its environment, as the Job passes them from
Secrets.
"""

from __future__ import annotations

import http.server
import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlkube_operator import constants as C
from mlkube_operator.training import contract
from mlkube_operator.training.cli import main
from servers import PostgresServer, S3Server, free_port

TABLE = pd.DataFrame(
    {
        "plan": ["basic", "pro", "basic", None, "team", "pro", "basic", "team"],
        "tenure": [1, 5, 12, 3, 7, 24, 2, 9],
        "spend": [10.5, 99.0, 12.25, None, 45.0, 120.1, 9.99, 60.0],
        "churned": ["yes", "no", "no", "yes", "no", "no", "yes", "no"],
    }
)
SQL_TYPES = {"plan": "text", "tenure": "bigint", "spend": "numeric(10,2)", "churned": "text"}
RULES = {"maxMissingFraction": 0.2}


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    return buf.getvalue()


def run_profile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: dict[str, Any], *extra: str
) -> tuple[int, dict[str, Any]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "termination-log"
    argv = ["profile", "--spec-json", json.dumps(spec), "--namespace", "ns", "--name", "ds"]
    argv += [
        "--artifact-root",
        str(tmp_path / "artifacts"),
        "--termination-log",
        str(log),
        "--source-timeout",
        "10",
        *extra,
    ]
    code = main(argv)
    capsys.readouterr()
    result: dict[str, Any] = json.loads(log.read_text())
    return code, result


def written(tmp_path: Path) -> list[Path]:
    root = tmp_path / "artifacts"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def s3_spec(s3: S3Server, uri: str, fmt: str = "parquet", **extra: Any) -> dict[str, Any]:
    source = {"uri": uri, "format": fmt, "endpoint": s3.endpoint, "credentialsSecret": {"name": "s3-creds"}}
    return {"source": {"s3": source}, "target": "churned", "validation": RULES, **extra}


def sql_spec(query: str) -> dict[str, Any]:
    return {
        "source": {"sql": {"query": query, "connectionSecret": {"name": "pg", "key": "url"}}},
        "target": "churned",
        "validation": RULES,
    }


@pytest.fixture
def creds(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for key, value in s3.env("MLKUBE_SOURCE_").items():
        monkeypatch.setenv(key, value)
    return s3


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    name = s3.make_bucket("datasets")
    s3.put(f"{name}/churn/one.parquet", _parquet_bytes(TABLE))
    s3.put(f"{name}/churn/one.csv", _csv_bytes(TABLE))
    # A directory of parts (and a marker file a writer such as Spark leaves behind).
    s3.put(f"{name}/churn/parts/part-0.parquet", _parquet_bytes(TABLE.iloc[:5]))
    s3.put(f"{name}/churn/parts/part-1.parquet", _parquet_bytes(TABLE.iloc[5:].reset_index(drop=True)))
    s3.put(f"{name}/churn/parts/_SUCCESS", b"")
    s3.put(f"{name}/churn/csvparts/a.csv", _csv_bytes(TABLE.iloc[:4]))
    s3.put(f"{name}/churn/csvparts/b.csv", _csv_bytes(TABLE.iloc[4:]))
    # Hive-partitioned by plan=...: the partition column comes back as a plain column.
    for plan, part in TABLE.groupby("plan"):
        s3.put(f"{name}/churn/hive/plan={plan}/data.parquet", _parquet_bytes(part.drop(columns="plan")))
    s3.put(f"{name}/other/wrong-schema.parquet", _parquet_bytes(TABLE.rename(columns={"churned": "label"})))
    return name


@pytest.fixture(scope="module")
def churn_table(postgres: PostgresServer) -> str:
    postgres.copy_frame("churn", TABLE, SQL_TYPES)
    postgres.execute("CREATE TABLE empty_churn (LIKE churn)")
    return "churn"


@pytest.fixture
def pg_url(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    monkeypatch.setenv(C.ENV_SOURCE_SQL_URL, postgres.url())
    return postgres


@pytest.fixture(scope="module")
def http_csv() -> Iterator[str]:
    body = _csv_bytes(TABLE)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/churn.csv"
    server.shutdown()
    server.server_close()


def test_same_table_same_hash_from_http_csv_s3_parquet_and_sql(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    creds: S3Server,
    bucket: str,
    pg_url: PostgresServer,
    churn_table: str,
    http_csv: str,
) -> None:
    specs = {
        "http csv": {"source": {"url": http_csv}, "target": "churned", "validation": RULES},
        "s3 parquet": s3_spec(creds, f"s3://{bucket}/churn/one.parquet"),
        "s3 csv": s3_spec(creds, f"s3://{bucket}/churn/one.csv", "csv"),
        "s3 parquet parts": s3_spec(creds, f"s3://{bucket}/churn/parts/"),
        "s3 csv parts": s3_spec(creds, f"s3://{bucket}/churn/csvparts", "csv"),
        "sql": sql_spec("SELECT plan, tenure, spend, churned FROM churn ORDER BY ctid"),
    }
    hashes = {}
    for what, spec in specs.items():
        code, result = run_profile(capsys, tmp_path / what.replace(" ", "-"), spec)
        assert (code, result["ok"]) == (0, True), (what, result)
        assert (result["rows"], result["columns"]) == (8, 4), what
        hashes[what] = result["contentHash"]
        schema = {c["name"]: c["dtype"] for c in result["schema"]}
        assert schema == {
            "plan": "categorical",
            "tenure": "numeric",
            "spend": "numeric",
            "churned": "categorical",
        }
    assert len(set(hashes.values())) == 1, hashes


def test_hive_partitions_become_columns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, creds: S3Server, bucket: str
) -> None:
    spec = s3_spec(creds, f"s3://{bucket}/churn/hive", features=["plan", "tenure", "spend"])
    spec["validation"] = {"maxMissingFraction": 0.0}
    code, result = run_profile(capsys, tmp_path, spec)
    assert (code, result["ok"], result["rows"]) == (0, True, 7), (
        result
    )  # the row without a plan has no partition
    assert {c["name"]: c["dtype"] for c in result["schema"]}["plan"] == "categorical"


def test_wrong_credentials_name_the_problem_not_the_secret(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    s3: S3Server,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = "WrongSecretValue0123456789"
    monkeypatch.setenv(C.ENV_SOURCE_ACCESS_KEY_ID, s3.access_key)
    monkeypatch.setenv(C.ENV_SOURCE_SECRET_ACCESS_KEY, wrong)
    code, result = run_profile(capsys, tmp_path, s3_spec(s3, f"s3://{bucket}/churn/one.parquet"))
    assert (code, result["reason"]) == (contract.EXIT_PERMANENT, "SourceUnavailable"), result
    assert "access denied" in result["message"] and f"s3://{bucket}/churn/one.parquet" in result["message"]
    assert wrong not in json.dumps(result) and s3.secret_key not in json.dumps(result)
    assert written(tmp_path) == []


def test_missing_bucket_and_missing_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, creds: S3Server, bucket: str
) -> None:
    code, result = run_profile(capsys, tmp_path / "a", s3_spec(creds, "s3://no-such-bucket/x.parquet"))
    assert (code, result["reason"]) == (contract.EXIT_PERMANENT, "SourceUnavailable"), result
    assert "bucket 'no-such-bucket' does not exist" in result["message"]
    code, result = run_profile(capsys, tmp_path / "b", s3_spec(creds, f"s3://{bucket}/churn/nothing.parquet"))
    assert (code, result["reason"]) == (contract.EXIT_PERMANENT, "SourceUnavailable"), result
    assert f"s3://{bucket}/churn/nothing.parquet" in result["message"] and "no such key" in result["message"]
    code, result = run_profile(capsys, tmp_path / "c", s3_spec(creds, f"s3://{bucket}/churn/parts/", "csv"))
    assert (code, result["reason"]) == (contract.EXIT_PERMANENT, "SourceUnavailable"), result
    assert "no .csv/.csv.gz files under this prefix" in result["message"]
    assert written(tmp_path) == []


def test_unreachable_endpoint_is_retryable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, creds: S3Server
) -> None:
    spec = s3_spec(creds, "s3://datasets/churn/one.parquet")
    endpoint = f"http://127.0.0.1:{free_port()}"
    spec["source"]["s3"]["endpoint"] = endpoint
    code, result = run_profile(capsys, tmp_path, spec)
    assert (code, result["reason"]) == (contract.EXIT_RETRYABLE, "SourceUnavailable"), result
    assert "cannot connect to the endpoint" in result["message"] and endpoint in result["message"]
    assert written(tmp_path) == []


def test_parquet_schema_that_breaks_the_rules(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, creds: S3Server, bucket: str
) -> None:
    spec = s3_spec(creds, f"s3://{bucket}/other/wrong-schema.parquet")
    code, result = run_profile(capsys, tmp_path, spec)
    assert (code, result["ok"]) == (contract.EXIT_PERMANENT, False), result
    assert result["reason"] in ("ValidationFailed", "InvalidSpec")
    assert "churned" in result["message"], result
    assert written(tmp_path) == []


def test_sql_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: PostgresServer, churn_table: str
) -> None:
    code, result = run_profile(capsys, tmp_path / "a", sql_spec("SELEC plan FROM churn"))
    assert (code, result["reason"]) == (contract.EXIT_PERMANENT, "InvalidSpec"), result
    assert "spec.source.sql.query" in result["message"] and "syntax error" in result["message"]
    code, result = run_profile(capsys, tmp_path / "b", sql_spec("SELECT * FROM empty_churn"))
    assert (code, result["reason"]) == (contract.EXIT_PERMANENT, "ValidationFailed"), result
    assert "returned no rows" in result["message"]
    code, result = run_profile(capsys, tmp_path / "c", sql_spec("SELECT * FROM no_such_table"))
    assert (code, result["reason"]) == (contract.EXIT_PERMANENT, "InvalidSpec"), result
    assert "no_such_table" in result["message"]
    code, result = run_profile(capsys, tmp_path / "d", sql_spec("DELETE FROM churn RETURNING *"))
    assert (code, result["reason"]) == (contract.EXIT_PERMANENT, "InvalidSpec"), result
    assert "read-only" in result["message"]
    assert written(tmp_path) == []


def test_sql_wrong_password_and_unreachable_server(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    postgres: PostgresServer,
    churn_table: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = "NotThePassword42xyz"
    monkeypatch.setenv(C.ENV_SOURCE_SQL_URL, postgres.url(password=wrong))
    code, result = run_profile(capsys, tmp_path / "a", sql_spec("SELECT * FROM churn"))
    assert (code, result["reason"]) == (contract.EXIT_PERMANENT, "SourceUnavailable"), result
    assert "access denied" in result["message"] and f"127.0.0.1:{postgres.port}" in result["message"]
    assert wrong not in json.dumps(result) and postgres.password not in json.dumps(result)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(C.ENV_SOURCE_SQL_URL, f"postgresql://mlkube:{wrong}@127.0.0.1:{port}/postgres")
    code, result = run_profile(capsys, tmp_path / "b", sql_spec("SELECT * FROM churn"))
    assert (code, result["reason"]) == (contract.EXIT_RETRYABLE, "SourceUnavailable"), result
    assert wrong not in json.dumps(result)
    assert written(tmp_path) == []
