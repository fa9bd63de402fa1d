"""Running the app under uvicorn with the settings a serving pod needs.

uvloop and httptools because the request path is dominated by HTTP parsing and event
loop overhead on small models; no access log (one log line per request would cost more
than some predicts); graceful shutdown on SIGTERM (uvicorn stops accepting, lets
in-flight requests finish within ``graceful_timeout_s``, then the app drains its batcher).
"""

from __future__ import annotations

import importlib.util
import logging
import signal
from collections.abc import Sequence

import uvicorn

from .app import ServingApp
from .jsonlog import configure_logging
from .settings import Settings, load_settings

log = logging.getLogger("mlkube_serving")


def build_config(settings: Settings, app: ServingApp) -> uvicorn.Config:
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    has_httptools = importlib.util.find_spec("httptools") is not None
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if has_uvloop else "asyncio",
        http="httptools" if has_httptools else "h11",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        server_header=False,
        timeout_graceful_shutdown=int(settings.graceful_timeout_s) or None,
        backlog=2048,
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(argv)
    configure_logging(settings.log_level)
    app = ServingApp(settings)
    log.info(
        "starting model server",
        extra={
            "fields": {
                "model": settings.model_name,
                "host": settings.host,
                "port": settings.port,
                "modelUri": settings.model_uri,
                "referenceProfile": settings.reference_profile,
                "maxBatchSize": settings.max_batch_size,
                "maxBatchWaitMs": settings.max_batch_wait_ms,
            }
        },
    )
    server = uvicorn.Server(build_config(settings, app))
    # uvicorn re-raises a captured SIGTERM once it has shut down gracefully, which would
    # end the process with 143; after a clean drain we exit 0 instead.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    return 0
