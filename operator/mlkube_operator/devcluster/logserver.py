"""The kubelet's log endpoint, so `kubectl logs` works against the dev cluster.

`kubectl logs` asks the API server, which connects to the node's kubelet endpoint
(`status.daemonEndpoints.kubeletEndpoint`) over TLS and proxies
`/containerLogs/<namespace>/<pod>/<container>`. Serving exactly that path (with
follow, previous, tailLines and limitBytes) from the per-container log files is all it
takes; exec, attach and port-forward are not offered. Only clients with a certificate
from the cluster CA (the API server) are accepted.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .pki import Pki

log = logging.getLogger("mlkube.kubelet")

# (namespace, pod, container) -> (directory of numbered .log files, still running?)
LogLocator = Callable[[str, str, str], tuple[Path | None, Callable[[], bool]]]


def _numbered(d: Path) -> list[Path]:
    return sorted((p for p in d.glob("*.log") if p.stem.isdigit()), key=lambda p: int(p.stem))


def _tail_lines(data: bytes, n: int) -> bytes:
    if n < 0:
        return data
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:]) if n else b""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("logserver: " + format, *args)

    def _error(self, code: int, message: str) -> None:
        body = message.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts == ["healthz"]:
            self._error(200, "ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._error(404, f"the dev cluster kubelet serves only /containerLogs, not {url.path}")
            return
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        directory, running = self.server.locate(parts[1], parts[2], parts[3])
        if directory is None or not directory.is_dir():
            self._error(404, f"container {parts[3]} in pod {parts[1]}/{parts[2]} not found on this node")
            return
        files = _numbered(directory)
        previous = q.get("previous") in ("true", "1")
        if previous:
            if len(files) < 2:
                self._error(400, f'previous terminated container "{parts[3]}" in pod "{parts[2]}" not found')
                return
            path = files[-2]
        elif files:
            path = files[-1]
        else:
            self._error(404, "no logs yet")
            return
        data = path.read_bytes()
        if "tailLines" in q:
            data = _tail_lines(data, int(q["tailLines"]))
        limit = int(q["limitBytes"]) if "limitBytes" in q else None
        if limit is not None:
            data = data[:limit]
        follow = q.get("follow") in ("true", "1") and not previous
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        if not follow:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = len(data)
        try:
            self._chunk(data)
            offset = path.stat().st_size
            idle_after_exit = 0
            while limit is None or sent < limit:
                with path.open("rb") as f:
                    f.seek(offset)
                    more = f.read(65536)
                if more:
                    if limit is not None:
                        more = more[: limit - sent]
                    offset += len(more)
                    sent += len(more)
                    self._chunk(more)
                    continue
                if not running():
                    idle_after_exit += 1
                    if idle_after_exit > 2:
                        break
                time.sleep(0.2)
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        else:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], locate: LogLocator) -> None:
        super().__init__(address, _Handler)
        self.locate = locate


def serve_logs(port: int, pki: Pki, locate: LogLocator) -> threading.Thread:
    server = _Server(("127.0.0.1", port), locate)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.kubelet_cert, pki.kubelet_key)
    ctx.load_verify_locations(pki.ca_cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="logserver", daemon=True)
    thread.start()
    log.info("Serving container logs on https://127.0.0.1:%d", port)
    return thread
