"""Serving throughput and latency: mlkube vs a bare Starlette app vs MLServer, side by side.

One command (``python benchmarks/serving.py``) trains the two benchmark models, makes
sure MLServer is installed in its own virtualenv (never in mlkube's dependencies), then
for each round, model and server: starts the server pinned to one core (``taskset -c
0``), waits until it is ready, checks that its predictions match the model's, and runs
the load generator pinned to the other core for each scenario.  Rounds are interleaved
(round 1 of every server before round 2 of any) so that background noise hits all
servers alike; the table shows the median of the rounds.

Scenarios (from issue 5): 1-row requests at concurrency 1 and 16, 100-row requests at
concurrency 4; all over Open Inference Protocol V2 JSON, the one protocol every server
here speaks.  Servers: mlkube (defaults), mlkube-plain (--no-fast-path, i.e. batching
with sklearn's own predict), the bare Starlette app (serving_bare.py) and MLServer with
its scikit-learn runtime (defaults).

Models (serving_models.py): ``rf`` and ``lr`` are bare estimators; ``rf-pipeline`` is the
same RandomForest as mlkube's training Job builds it (a Pipeline with a ColumnTransformer,
fitted on a DataFrame), which is what a ModelDeployment actually serves.  MLServer's
scikit-learn runtime cannot call that pipeline with a plain array, so it sits that one out.

Options: ``--rounds``, ``--duration``, ``--servers mlkube,mlkube-plain,bare,mlserver``,
``--models rf,lr,rf-pipeline``, ``--json FILE`` to keep the raw numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import serving_models  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlkube"
SCENARIOS = (("1 row, c=1", 1, 1), ("1 row, c=16", 1, 16), ("100 rows, c=4", 100, 4))
# mlkube-plain is mlkube with --no-fast-path: batching, validation and metrics, but sklearn's own
# predict; it shows how much of mlkube's lead is coalescing and how much the exact fast paths.
SERVERS = ("mlkube", "mlkube-plain", "bare", "mlserver")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Set on some CPUs for old OpenBLAS builds; they slow a current numpy (see the env notes).
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def ensure_mlserver(venv: Path) -> Path:
    """MLServer and its sklearn runtime in their own virtualenv (installed once, then reused)."""
    exe = venv / "bin" / "mlserver"
    marker = venv / ".mlkube-bench-ready"
    if exe.exists() and marker.exists():
        return exe
    print(f"installing MLServer into {venv} (once) ...", flush=True)
    import sklearn

    if not (venv / "bin" / "pip").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "-q",
            "mlserver",
            "mlserver-sklearn",
            # The same scikit-learn as mlkube's, so both unpickle the very same model file.
            f"scikit-learn=={sklearn.__version__}",
            # MLServer 1.7 calls asyncio.get_event_loop() in its workers, which uvloop >= 0.22 refuses.
            "uvloop<0.22",
        ],
        check=True,
    )
    marker.write_text("ok\n")
    return exe


def _payloads(rows: Any, n_rows: int, count: int, path: Path) -> None:
    lines = []
    for k in range(count):
        start = (k * n_rows) % (len(rows) - n_rows + 1)
        chunk = rows[start : start + n_rows]
        body = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [n_rows, chunk.shape[1]],
                    "datatype": "FP64",
                    "data": chunk.ravel().tolist(),
                }
            ]
        }
        lines.append(json.dumps(body))
    path.write_text("\n".join(lines) + "\n")


class Server:
    def __init__(
        self, kind: str, model: str, info: dict[str, Any], workdir: Path, mlserver: Path | None
    ) -> None:
        self.kind, self.model, self.info = kind, model, info
        self.port = _free_port()
        self.log = workdir / f"{kind}-{model}.log"
        env = _env()
        pin = ["taskset", "-c", "0"]
        if kind in ("mlkube", "mlkube-plain"):
            env["PYTHONPATH"] = str(REPO / "serving") + os.pathsep + env.get("PYTHONPATH", "")
            cmd = [
                *pin,
                sys.executable,
                "-m",
                "mlkube_serving",
                "--model-uri",
                f"file://{info['path']}",
                "--model-sha256",
                info["sha256"],
                "--name",
                model,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--reference-profile",
                str(info["profile"]),
                "--log-level",
                "warning",
            ]
            if kind == "mlkube-plain":
                cmd.append("--no-fast-path")
        elif kind == "bare":
            cmd = [
                *pin,
                sys.executable,
                str(HERE / "serving_bare.py"),
                str(info["bare_path"]),
                model,
                str(self.port),
            ]
        else:
            assert mlserver is not None
            d = workdir / "mlserver" / model
            d.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(info["path"], d / "model.joblib")
            (d / "settings.json").write_text(
                json.dumps(
                    {
                        "http_port": self.port,
                        "grpc_port": _free_port(),
                        "metrics_port": _free_port(),
                        "host": "127.0.0.1",
                    }
                )
            )
            (d / "model-settings.json").write_text(
                json.dumps(
                    {
                        "name": model,
                        "implementation": "mlserver_sklearn.SKLearnModel",
                        "parameters": {"uri": "./model.joblib", "version": "v1"},
                    }
                )
            )
            cmd = [*pin, str(mlserver), "start", str(d)]
        self.fh = self.log.open("wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self.fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def wait_ready(self, timeout: float = 180.0) -> None:
        url = f"http://127.0.0.1:{self.port}/v2/health/ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited early; see {self.log}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        if self.kind == "mlserver":
                            model_url = f"http://127.0.0.1:{self.port}/v2/models/{self.model}/ready"
                            with urllib.request.urlopen(model_url, timeout=2) as r2:
                                if r2.status != 200:
                                    raise urllib.error.URLError("model not ready")
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.kind} not ready after {timeout}s; see {self.log}")

    def check(self, body: bytes, expected: list[Any]) -> None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v2/models/{self.model}/infer",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            got = json.loads(resp.read())["outputs"][0]["data"]
        if [int(v) for v in got] != [int(v) for v in expected]:
            raise RuntimeError(f"{self.kind} predicted {got[:10]}..., expected {expected[:10]}...")

    def fast_path(self) -> Any:
        """mlkube's ``parameters.fastPath`` (None: plain sklearn), from the V2 model metadata."""
        url = f"http://127.0.0.1:{self.port}/v2/models/{self.model}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())["parameters"]["fastPath"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        else:
            with contextlib.suppress(ProcessLookupError):  # MLServer's workers, if the parent died first
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.fh.close()


def run_loadgen(
    port: int, path: str, payloads: Path, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        "1",
        sys.executable,
        str(HERE / "serving_loadgen.py"),
        "--port",
        str(port),
        "--path",
        path,
        "--payloads",
        str(payloads),
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    out = subprocess.run(cmd, capture_output=True, check=True, env=_env(), timeout=duration + warmup + 120)
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per scenario")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--models", default=",".join(serving_models.MODELS))
    parser.add_argument("--workdir", type=Path, default=CACHE / "bench-serving")
    parser.add_argument("--mlserver-venv", type=Path, default=CACHE / "bench-mlserver")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    servers = [s for s in args.servers.split(",") if s]
    models = [m for m in args.models.split(",") if m]
    if os.cpu_count() is None or (os.cpu_count() or 1) < 2:
        print("needs 2 cores (server on core 0, load generator on core 1)", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    mlserver = ensure_mlserver(args.mlserver_venv) if "mlserver" in servers else None

    infos = serving_models.build(args.workdir)
    payload_files: dict[tuple[str, int], Path] = {}
    expected: dict[str, tuple[bytes, list[Any]]] = {}
    for m in models:
        rows = infos[m]["rows"]
        for _, n_rows, _ in SCENARIOS:
            p = args.workdir / f"{m}-{n_rows}.jsonl"
            _payloads(rows, n_rows, 64 if n_rows == 1 else 8, p)
            payload_files[(m, n_rows)] = p
        first = payload_files[(m, 100)].read_text().splitlines()[0].encode()
        expected[m] = (first, serving_models.reference_predict(infos[m], rows[:100]))

    load_start = _loadavg()
    print(
        f"load average at start: {load_start}; {args.rounds} rounds x {args.duration:.0f}s per scenario",
        flush=True,
    )
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rnd in range(args.rounds):
        for m in models:
            for kind in servers:
                if kind == "mlserver" and not infos[m]["mlserver"]:
                    continue
                server = Server(kind, m, infos[m], args.workdir, mlserver)
                try:
                    server.wait_ready()
                    server.check(*expected[m])
                    if kind.startswith("mlkube") and rnd == 0:
                        print(f"{m} {kind}: fastPath {server.fast_path()}", flush=True)
                    for label, n_rows, conc in SCENARIOS:
                        r = run_loadgen(
                            server.port,
                            f"/v2/models/{m}/infer",
                            payload_files[(m, n_rows)],
                            conc,
                            args.duration,
                            args.warmup,
                        )
                        results.setdefault((m, label, kind), []).append(r)
                        print(
                            f"round {rnd + 1} {m:>3} {kind:>8} {label:<14} {r['rps']:>9.1f} req/s "
                            f"p50 {r['p50_ms'] or 0:.2f} ms p99 {r['p99_ms'] or 0:.2f} ms "
                            f"errors {r['errors']} (load {_loadavg()})",
                            flush=True,
                        )
                finally:
                    server.stop()
    load_end = _loadavg()

    def med(rs: list[dict[str, Any]], key: str) -> float:
        vals = [r[key] for r in rs if r[key] is not None]
        return statistics.median(vals) if vals else float("nan")

    print()
    print(
        f"Median of {args.rounds} rounds, {args.duration:.0f}s each; server on 1 core (taskset -c 0), "
        f"load generator on the other. Load average start {load_start}, end {load_end}."
    )
    header = "| model | scenario | server | req/s | p50 ms | p99 ms | vs bare | vs MLServer |"
    print(header)
    print("|---|---|---|---:|---:|---:|---:|---:|")
    table: list[dict[str, Any]] = []
    for m in models:
        for label, _, _ in SCENARIOS:
            base = results.get((m, label, "bare"))
            mls = results.get((m, label, "mlserver"))
            for kind in servers:
                rs = results.get((m, label, kind))
                if not rs:
                    continue
                rps = med(rs, "rps")
                vs_bare = f"{rps / med(base, 'rps'):.2f}x" if base else ""
                vs_mls = f"{rps / med(mls, 'rps'):.2f}x" if mls else ""
                errors = sum(r["errors"] for r in rs)
                print(
                    f"| {m.upper()} | {label} | {kind}{f' (errors: {errors})' if errors else ''} | "
                    f"{_fmt_rate(rps)} | {med(rs, 'p50_ms'):.2f} | {med(rs, 'p99_ms'):.2f} | {vs_bare} | {vs_mls} |"
                )
                table.append(
                    {
                        "model": m,
                        "scenario": label,
                        "server": kind,
                        "rps": rps,
                        "p50_ms": med(rs, "p50_ms"),
                        "p99_ms": med(rs, "p99_ms"),
                        "rounds": rs,
                    }
                )
    if args.json:
        args.json.write_text(
            json.dumps({"load_start": load_start, "load_end": load_end, "results": table}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
