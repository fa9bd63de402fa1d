"""Closed-loop HTTP/1.1 load generator for loopback benchmarks.

A Python HTTP client library (httpx, aiohttp) spends more CPU per request than a fast
server does, and on a two-core machine the load generator gets one core; it would then
measure itself.  This one pre-encodes every request, keeps one keep-alive connection per
simulated client on uvloop, and parses only the status line and Content-Length of each
response, so it can drive well over 10k requests/s from one core.

Each of ``concurrency`` clients sends a request, waits for the whole response, and sends
the next (closed loop, like the issue's "concurrency N").  Latencies are measured from
just before the write to the end of the response body.  Prints one JSON line.

Run: ``python benchmarks/serving_loadgen.py --port P --path /v2/... --payloads FILE
--concurrency 16 --duration 5 --warmup 1``.  FILE holds one JSON body per line; clients
cycle through them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any


def _request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _client(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    state: dict[str, Any],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    latencies: list[float] = state["latencies"]
    n = len(requests)
    try:
        while not state["stop"]:
            req = requests[i % n]
            i += 1
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            lower = head.lower()
            pos = lower.find(b"content-length:")
            if pos >= 0:
                end = lower.find(b"\r\n", pos)
                length = int(lower[pos + 15 : end])
            elif b"transfer-encoding: chunked" in lower:
                raise RuntimeError("chunked responses are not supported by the load generator")
            if length:
                await reader.readexactly(length)
            t1 = time.perf_counter()
            if state["measuring"]:
                if status == 200:
                    latencies.append(t1 - t0)
                else:
                    state["errors"] += 1
                    if state["first_error"] is None:
                        state["first_error"] = f"HTTP {status}"
    finally:
        writer.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.payloads, "rb") as fh:
        bodies = [line.rstrip(b"\n") for line in fh if line.strip()]
    requests = [_request(args.host, args.port, args.path, b) for b in bodies]
    state: dict[str, Any] = {
        "stop": False,
        "measuring": False,
        "latencies": [],
        "errors": 0,
        "first_error": None,
    }
    tasks = [
        asyncio.create_task(_client(args.host, args.port, requests, k * 7, state))
        for k in range(args.concurrency)
    ]
    await asyncio.sleep(args.warmup)
    state["measuring"] = True
    t0 = time.perf_counter()
    await asyncio.sleep(args.duration)
    state["measuring"] = False
    elapsed = time.perf_counter() - t0
    state["stop"] = True
    done, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    for task in done:
        if task.exception() is not None and state["first_error"] is None:
            state["first_error"] = repr(task.exception())
    lat = sorted(state["latencies"])
    count = len(lat)

    def pct(p: float) -> float | None:
        if not lat:
            return None
        return lat[min(count - 1, int(p / 100.0 * count))] * 1000.0

    return {
        "requests": count,
        "errors": state["errors"],
        "first_error": state["first_error"],
        "seconds": elapsed,
        "rps": count / elapsed if elapsed else 0.0,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--payloads", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
