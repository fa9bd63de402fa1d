"""Real servers for the tests: an S3-compatible object store (SeaweedFS) and PostgreSQL.

No mocking library: SeaweedFS's `weed` is built from its Go module by
scripts/build-s3-server.sh (cached in ~/.cache/mlkube), PostgreSQL comes from Debian's
`postgresql` package. Both listen on 127.0.0.1 on free ports, keep their data in a
temporary directory and are stopped (and waited for) when the session ends.
PostgreSQL refuses to run as root, so under root it runs as the `postgres` user the
Debian package creates (or `nobody`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class ServerUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(
    check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[Any], log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise ServerUnavailable(f"{what} not ready within {timeout:g} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --- S3 ---------------------------------------------------------------------------------


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def filesystem(self, *, access_key: str | None = None, secret_key: str | None = None) -> Any:
        from pyarrow import fs as pafs

        return pafs.S3FileSystem(
            access_key=access_key or self.access_key,
            secret_key=secret_key or self.secret_key,
            region=self.region,
            endpoint_override=self.endpoint.removeprefix("http://"),
            scheme="http",
            force_virtual_addressing=False,
            connect_timeout=5,
            request_timeout=30,
            allow_bucket_creation=True,
            allow_bucket_deletion=True,
        )

    def make_bucket(self, name: str) -> str:
        self.filesystem().create_dir(name)
        return name

    def put(self, path: str, data: bytes) -> str:
        """Write bucket/key; returns its s3:// URI."""
        with self.filesystem().open_output_stream(path) as out:
            out.write(data)
        return f"s3://{path}"

    def get(self, path: str) -> bytes:
        with self.filesystem().open_input_stream(path) as stream:
            data: bytes = stream.read()
        return data

    def listing(self, path: str) -> list[str]:
        from pyarrow import fs as pafs

        infos = self.filesystem().get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def env(self, prefix: str) -> dict[str, str]:
        """The credentials as a Job would see them, e.g. prefix MLKUBE_SOURCE_."""
        return {
            f"{prefix}AWS_ACCESS_KEY_ID": self.access_key,
            f"{prefix}AWS_SECRET_ACCESS_KEY": self.secret_key,
        }


def weed_binary() -> str:
    env = os.environ.get("MLKUBE_WEED")
    if env and os.access(env, os.X_OK):
        return env
    try:
        out = subprocess.run(
            ["bash", str(REPO / "scripts" / "build-s3-server.sh")],
            check=True,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        raise ServerUnavailable(f"cannot build SeaweedFS: {getattr(err, 'stderr', '')[-2000:]}") from err
    return out.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def s3_server(host: str = "127.0.0.1") -> Iterator[S3Server]:
    """SeaweedFS (master, volume, filer, S3 gateway in one process) with one identity.

    `host` is where it listens: 127.0.0.1, or the dev cluster's node address for pods.
    """
    import json

    binary = weed_binary()
    work = Path(tempfile.mkdtemp(prefix="mlkube-s3-"))
    access, secret = "mlkube" + secrets.token_hex(4), secrets.token_hex(20)
    config = {
        "identities": [
            {
                "name": "mlkube",
                "credentials": [{"accessKey": access, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (work / "s3.json").write_text(json.dumps(config))
    (work / "data").mkdir()
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ports}
    s3_port = ports["s3"]
    log = work / "weed.log"
    cmd = [
        binary,
        "server",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-dir={work / 'data'}",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
        "-master.volumeSizeLimitMB=64",
        "-volume.max=20",
        "-filer",
        "-s3",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={work / 's3.json'}",
        "-metricsPort=0",
    ]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=work, start_new_session=True)
    server = S3Server(f"http://{host}:{s3_port}", access, secret)
    try:

        def ready() -> bool:
            bucket = "ready-" + secrets.token_hex(3)
            fs = server.filesystem()
            fs.create_dir(bucket)
            fs.delete_dir(bucket)
            return True

        _wait(ready, 90, "SeaweedFS", proc, log)
        yield server
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


# --- PostgreSQL -------------------------------------------------------------------------


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str = "postgres"

    def url(self, *, password: str | None = None, database: str | None = None) -> str:
        return (
            f"postgresql://{self.user}:{password if password is not None else self.password}"
            f"@{self.host}:{self.port}/{database or self.database}"
        )

    def execute(self, sql: str, params: Any = None) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode("utf-8") if params is None else sql, params)  # type: ignore[arg-type]

    def copy_frame(self, table: str, frame: Any, types: dict[str, str]) -> None:
        """CREATE TABLE `table` (columns typed by `types`) and load `frame`'s rows."""
        import psycopg
        from psycopg import sql

        cols = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(str(c)), sql.SQL(types[str(c)])) for c in frame.columns
        )
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table), cols))
            names = sql.SQL(", ").join(sql.Identifier(str(c)) for c in frame.columns)
            with conn.cursor().copy(
                sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), names)
            ) as copy:
                for row in frame.itertuples(index=False):
                    copy.write_row([None if v != v else v for v in row])


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServerUnavailable("PostgreSQL is not installed (Debian package 'postgresql')")


def _run_as() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise ServerUnavailable("running as root and neither a 'postgres' nor a 'nobody' user exists")


@contextlib.contextmanager
def postgres_server(host: str = "127.0.0.1") -> Iterator[PostgresServer]:
    """PostgreSQL listening on `host` (127.0.0.1, or the dev cluster's node address for pods)."""
    bindir = postgres_bin()
    ids = _run_as()
    work = Path(tempfile.mkdtemp(prefix="mlkube-pg-"))
    password = secrets.token_hex(16)
    (work / "pw").write_text(password)
    if ids is not None:
        os.chown(work, *ids)
        os.chown(work / "pw", *ids)
    user_kwargs: dict[str, Any] = {} if ids is None else {"user": ids[0], "group": ids[1], "extra_groups": []}
    port = free_port()
    log = work / "postgres.log"
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(work / "data"),
            "-U",
            "mlkube",
            "--pwfile",
            str(work / "pw"),
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        cwd=work,
        timeout=120,
        **user_kwargs,
    )
    if host != "127.0.0.1":
        # Pods connect from their own addresses: password authentication from anywhere.
        with (work / "data" / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
    with log.open("wb") as fh:
        if ids is not None:
            os.chown(log, *ids)
        proc = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(work / "data"),
                "-p",
                str(port),
                "-c",
                f"listen_addresses={host}",
                "-c",
                f"unix_socket_directories={work}",
                "-c",
                "fsync=off",
                "-c",
                "shared_buffers=32MB",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=work,
            start_new_session=True,
            **user_kwargs,
        )
    server = PostgresServer(host, port, "mlkube", password)
    try:

        def ready() -> bool:
            import psycopg

            with psycopg.connect(server.url(), connect_timeout=2):
                return True

        _wait(ready, 60, "PostgreSQL", proc, log)
        yield server
    finally:
        _stop(proc, signal.SIGINT)  # fast shutdown
        shutil.rmtree(work, ignore_errors=True)
