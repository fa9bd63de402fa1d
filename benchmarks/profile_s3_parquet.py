"""Profile a 1-million-row Parquet Dataset from a real S3 server; print time and peak memory.

Starts SeaweedFS (tests/servers.py; built by scripts/build-s3-server.sh), writes a
table of N rows (default 1,000,000: 8 float features, an integer, a categorical
string column and a binary target) as 4 Parquet parts under one prefix, then runs, each
as its own process:

1. the profile entrypoint exactly as the profile Job runs it
   (`python -m mlkube_operator.training profile`, `source.s3`, local artifact root);
2. a plain pyarrow script: read the same prefix with pyarrow.dataset, serialise it as
   CSV with pyarrow.csv and sha256 it (reading and hashing, nothing else).

Both run --repeat times (default 3), alternating, so that load from other processes
falls on both; it prints each run and the medians of wall time and peak RSS (from
wait4) and their ratios. Targets (issue 11): profile peak memory < 1.5 GB, time
within 2x of the plain script.

    .venv/bin/python benchmarks/profile_s3_parquet.py [--rows N] [--repeat K]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from servers import s3_server  # noqa: E402

PLAIN = """
import hashlib, io, sys
import pyarrow.csv as pacsv, pyarrow.dataset as pads
from pyarrow import fs
s3 = fs.S3FileSystem(access_key=sys.argv[2], secret_key=sys.argv[3], endpoint_override=sys.argv[1],
                     scheme="http", force_virtual_addressing=False, region="us-east-1")
table = pads.dataset(sys.argv[4], filesystem=s3, format="parquet").to_table()
buf = io.BytesIO()
pacsv.write_csv(table, buf)
print(table.num_rows, hashlib.sha256(buf.getvalue()).hexdigest())
"""


def make_table(rows: int) -> object:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    cols = {f"x{i}": rng.normal(size=rows) for i in range(8)}
    cols["count"] = rng.integers(0, 1000, size=rows)
    cols["plan"] = rng.choice(np.array(["basic", "pro", "team", "enterprise"]), size=rows)
    cols["churned"] = (cols["x0"] + rng.normal(scale=0.5, size=rows) > 0).astype("int64")
    return pa.table(cols)


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str, float]:
    """Wall seconds, peak RSS bytes, stdout and CPU seconds (user + system, wait4) of one child process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} exited {proc.returncode}: {text[-2000:]}")
    return seconds, usage.ru_maxrss * 1024, text, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import pyarrow.parquet as pq

    table = make_table(args.rows)
    with s3_server() as s3, tempfile.TemporaryDirectory() as tmp:
        s3.make_bucket("bench")
        part = -(-args.rows // 4)
        for i in range(4):
            buf = io.BytesIO()
            pq.write_table(table.slice(i * part, part), buf)  # type: ignore[attr-defined]
            s3.put(f"bench/wide/part-{i}.parquet", buf.getvalue())
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLKUBE_")}
        env.update(s3.env("MLKUBE_SOURCE_"))
        spec = {
            "source": {
                "s3": {
                    "uri": "s3://bench/wide/",
                    "format": "parquet",
                    "endpoint": s3.endpoint,
                    "credentialsSecret": {"name": "bench"},
                }
            },
            "target": "churned",
        }
        log = Path(tmp) / "termination-log"
        profile_cmd = [
            sys.executable,
            "-m",
            "mlkube_operator.training",
            "profile",
            "--spec-json",
            json.dumps(spec),
        ]
        profile_cmd += [
            "--namespace",
            "bench",
            "--name",
            "wide",
            "--artifact-root",
            str(Path(tmp) / "artifacts"),
        ]
        profile_cmd += ["--termination-log", str(log), "--source-timeout", "120"]
        plain_cmd = [sys.executable, "-c", PLAIN, s3.endpoint.removeprefix("http://"), s3.access_key]
        plain_cmd += [s3.secret_key, "bench/wide/"]
        plain_runs, prof_runs = [], []
        for _ in range(args.repeat):
            plain_runs.append(run(plain_cmd, env))
            prof_runs.append(run(profile_cmd, env))
            result = json.loads(log.read_text())
            if not result.get("ok"):
                raise SystemExit(f"profile failed: {result}")
    mib = 1024 * 1024
    print(f"rows: {args.rows:,} x {table.num_columns} columns, 4 Parquet parts in SeaweedFS")  # type: ignore[attr-defined]
    for i, (plain, prof) in enumerate(zip(plain_runs, prof_runs, strict=True)):
        print(
            f"  run {i + 1}: plain {plain[0]:6.2f} s (cpu {plain[3]:5.2f} s) {plain[1] / mib:5.0f} MiB"
            f"   profile {prof[0]:6.2f} s (cpu {prof[3]:5.2f} s) {prof[1] / mib:5.0f} MiB"
        )
    plain_s, plain_rss = (
        statistics.median(r[0] for r in plain_runs),
        statistics.median(r[1] for r in plain_runs),
    )
    prof_s, prof_rss = statistics.median(r[0] for r in prof_runs), statistics.median(r[1] for r in prof_runs)
    print(
        f"plain pyarrow read + CSV + sha256: {plain_s:7.2f} s  peak RSS {plain_rss / mib:7.0f} MiB  ({plain_runs[0][2].split()[0]} rows)"
    )
    print(
        f"profile entrypoint (the Job):      {prof_s:7.2f} s  peak RSS {prof_rss / mib:7.0f} MiB  (contentHash {result['contentHash'][:12]})"
    )
    plain_cpu, prof_cpu = (
        statistics.median(r[3] for r in plain_runs),
        statistics.median(r[3] for r in prof_runs),
    )
    print(
        f"ratio of medians profile/plain: time {prof_s / plain_s:.2f}x, memory {prof_rss / plain_rss:.2f}x"
        f" (CPU seconds {prof_cpu:.2f} / {plain_cpu:.2f} = {prof_cpu / plain_cpu:.2f}x)"
    )
    print("targets: peak RSS < 1536 MiB, time within 2x of the plain script")


if __name__ == "__main__":
    main()
