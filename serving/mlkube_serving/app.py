"""The ASGI application: routing, body handling, protocol responses, model lifecycle.

It is a plain ASGI callable rather than a Starlette app on purpose.  The inference
routes are the whole point of the process and every microsecond per request is a
request per second on a one-core pod; a framework's middleware stack, regex routing and
Request/Response objects cost more than the predict of a small model.  The dispatcher is
a dict lookup on the exact path, with a regex fallback only to explain 404s.

Error handling is centralised here: ``RequestError`` becomes ``{"error": ...}`` with its
status; any other exception is logged with its traceback and answered with a bare 500.
The model is loaded in a background thread after the server is already listening, so
liveness answers at once and readiness tells why it is not ready yet (or never will be).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from . import __version__
from .artifacts import (
    LoadRefused,
    ModelMetadata,
    load_metadata,
    load_profile,
    model_path,
    parse_sha256,
    read_verified,
    unpickle,
)
from .batcher import MicroBatcher, PredictFailed
from .codec import parse_feedback, parse_v1, parse_v2
from .errors import RequestError, bad_request
from .feedback import FeedbackIds, PredictionMemory, ScoredIds, score_feedback
from .metrics import ServingMetrics, exposition
from .model import Prediction, ServedModel
from .schema import BOOL
from .settings import Settings

log = logging.getLogger("mlkube_serving")
access_log = logging.getLogger("mlkube_serving.access")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = b"application/json"
# A predict request that finds no other in flight and arrives this long after the last one
# left found the server idle: nothing could join its batch, so it is answered in place.
# (Under load the next request is picked up within microseconds of the previous answer.)
_IDLE_GAP_S = 50e-6
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class _Disconnected(Exception):
    pass


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: bytes = _JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


def json_reply(status: int, payload: Any) -> Reply:
    return Reply(status, orjson.dumps(payload, option=_NUMPY))


@dataclass
class _Request:
    scope: Scope
    method: str
    lone: bool = False
    content_type: str | None = None
    content_length: int | None = None
    content_encoding: str | None = None
    binary_header_length: int | None = None
    accept: str | None = None
    body: bytes = b""


Handler = Callable[["ServingApp", _Request], Awaitable[Reply]]


@dataclass(frozen=True)
class _Route:
    template: str
    methods: tuple[str, ...]
    handler: Handler
    reads_body: bool = False


_V2_MODEL_RE = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer|/feedback)?$")
_V1_MODEL_RE = re.compile(r"^/v1/models/([^/:]+)(:predict)?$")


def _json_content_type(value: str | None) -> bool:
    if value is None:
        return True  # tritonclient, and many scripts, send no Content-Type
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class ServingApp:
    """One model, served over KServe V1 and Open Inference Protocol V2."""

    def __init__(self, settings: Settings, *, metrics: ServingMetrics | None = None) -> None:
        self.settings = settings
        self.name = settings.model_name
        self.metrics = metrics or ServingMetrics(self.name)
        self.memory = PredictionMemory(settings.feedback_cache_size)
        self.scored_ids = ScoredIds(settings.feedback_cache_size)
        self.feedback_ids: FeedbackIds | None = None
        self.model: ServedModel | None = None
        self.batcher: MicroBatcher | None = None
        self.ready = False
        self.reason = "Loading"
        self.message = "the model is being loaded"
        self._load_task: asyncio.Task[None] | None = None
        self._id_prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self._predicting = 0  # predict requests between arrival and answer
        self._last_answer = 0.0
        n = self.name
        self._routes: dict[str, _Route] = {
            "/v2/health/live": _Route("/v2/health/live", ("GET",), ServingApp._live),
            "/v2/health/ready": _Route("/v2/health/ready", ("GET",), ServingApp._ready),
            "/v2": _Route("/v2", ("GET",), ServingApp._server_metadata),
            "/metrics": _Route("/metrics", ("GET",), ServingApp._metrics),
            f"/v2/models/{n}": _Route("/v2/models/{name}", ("GET",), ServingApp._model_metadata),
            f"/v2/models/{n}/ready": _Route("/v2/models/{name}/ready", ("GET",), ServingApp._model_ready),
            f"/v2/models/{n}/infer": _Route("/v2/models/{name}/infer", ("POST",), ServingApp._infer, True),
            f"/v2/models/{n}/feedback": _Route(
                "/v2/models/{name}/feedback", ("POST",), ServingApp._feedback, True
            ),
            "/v1/models": _Route("/v1/models", ("GET",), ServingApp._v1_models),
            f"/v1/models/{n}": _Route("/v1/models/{name}", ("GET",), ServingApp._v1_model),
            f"/v1/models/{n}:predict": _Route(
                "/v1/models/{name}:predict", ("POST",), ServingApp._v1_predict, True
            ),
        }

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_loading()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _resolve(self, path: str) -> tuple[_Route | None, str | None]:
        route = self._routes.get(path)
        if route is not None:
            return route, None
        m = _V2_MODEL_RE.match(path)
        if m is not None:
            name, version, tail = m.group(1), m.group(2), m.group(3) or ""
            if name != self.name:
                return None, f"unknown model {name!r}; this server serves {self.name!r}"
            if version is not None and (self.model is None or version != self.model.version):
                known = self.model.version if self.model is not None else "(not loaded yet)"
                return None, f"unknown version {version!r} of model {name!r}; the served version is {known}"
            return self._routes[f"/v2/models/{name}{tail}"], None
        m = _V1_MODEL_RE.match(path)
        if m is not None and m.group(1) != self.name:
            return None, f"unknown model {m.group(1)!r}; this server serves {self.name!r}"
        return None, f"no route {path!r}"

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        route, not_found = self._resolve(path)
        template = route.template if route is not None else "other"
        req = _Request(scope, method)
        try:
            if route is None:
                reply = json_reply(404, {"error": not_found})
            elif method not in route.methods:
                reply = json_reply(
                    405, {"error": f"method {method} not allowed on {path}; use {route.methods[0]}"}
                )
                reply.headers = ((b"allow", ", ".join(route.methods).encode()),)
            else:
                if route.reads_body:
                    self._predicting += 1
                    self.metrics.in_flight = self._predicting
                    req.lone = self._predicting == 1 and t0 - self._last_answer > _IDLE_GAP_S
                    try:
                        self._read_headers(req)
                        req.body = await self._read_body(req, receive)
                        reply = await route.handler(self, req)
                    finally:
                        self._predicting -= 1
                        self.metrics.in_flight = self._predicting
                else:
                    reply = await route.handler(self, req)
        except RequestError as exc:
            reply = json_reply(exc.status, {"error": exc.message})
            if exc.status == 413:
                reply.headers = ((b"connection", b"close"),)
        except _Disconnected:
            self.metrics.observe_request(template, 499, time.perf_counter() - t0)
            return
        except PredictFailed as exc:
            reply = json_reply(500, {"error": str(exc)})
        except Exception:
            log.exception("unhandled error serving %s %s", method, path)
            reply = json_reply(500, {"error": "internal server error"})
        headers = [
            (b"content-type", reply.content_type),
            (b"content-length", str(len(reply.body)).encode()),
            *reply.headers,
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        done = time.perf_counter()
        if route is not None and route.reads_body:
            self._last_answer = done
        elapsed = done - t0
        self.metrics.observe_request(template, reply.status, elapsed)
        if self.settings.access_log:
            access_log.info(
                "request",
                extra={
                    "fields": {
                        "method": method,
                        "path": path,
                        "status": reply.status,
                        "durationMs": round(elapsed * 1000, 3),
                        "bytes": len(reply.body),
                    }
                },
            )

    @staticmethod
    def _read_headers(req: _Request) -> None:
        for key, value in req.scope["headers"]:
            if key == b"content-type":
                req.content_type = value.decode("latin-1")
            elif key == b"content-length":
                try:
                    req.content_length = int(value)
                except ValueError:
                    raise bad_request("invalid Content-Length header") from None
            elif key == b"content-encoding":
                req.content_encoding = value.decode("latin-1").strip().lower()
            elif key == b"inference-header-content-length":
                try:
                    req.binary_header_length = int(value)
                except ValueError:
                    raise bad_request("invalid Inference-Header-Content-Length header") from None

    async def _read_body(self, req: _Request, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        if req.content_length is not None and req.content_length > limit:
            raise RequestError(
                413, f"request body of {req.content_length} bytes exceeds the limit of {limit} bytes"
            )
        if req.content_encoding not in (None, "identity", "gzip", "deflate"):
            raise RequestError(
                415, f"unsupported Content-Encoding {req.content_encoding!r}; use gzip or deflate"
            )
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            chunks = [body]
            size = len(body)
            while message.get("more_body", False):
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
        if len(body) > limit:
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
        if req.content_encoding in ("gzip", "deflate"):
            body = _decompress(body, req.content_encoding, limit)
        return body

    # -- helpers --------------------------------------------------------------------------------

    def _need_model(self) -> ServedModel:
        model = self.model
        if not self.ready or model is None:
            raise RequestError(503, f"model {self.name!r} is not ready ({self.reason}): {self.message}")
        return model

    @staticmethod
    def _json_body(req: _Request, data: bytes | None = None) -> Any:
        if not _json_content_type(req.content_type):
            raise RequestError(415, f"unsupported Content-Type {req.content_type!r}; send application/json")
        raw = req.body if data is None else data
        if not raw:
            raise bad_request("invalid JSON: the request body is empty")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"invalid JSON: {exc}") from None

    def new_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    def _remember(self, client_id: str | None, model: ServedModel, pred: Prediction) -> tuple[str, str]:
        """(response id, feedback id): the client's id is echoed; the feedback id is the
        self-describing one any replica of this model can score (the same when the client
        sent no id). Both are remembered in this replica's LRU."""
        kept = pred.values
        if kept.ndim > 1:
            kept = kept[:, 0]
        visible = self.new_id()
        feedback_id = visible
        ids = self.feedback_ids
        if ids is not None and pred.values.ndim == 1:
            if model.task == "classification":
                index = pred.class_index
                if index is None:
                    index = model.class_index_of(pred.values)
                feedback_id = ids.encode(visible, index, None) or visible
            else:
                feedback_id = ids.encode(visible, None, pred.values) or visible
        if client_id is not None:
            self.memory.remember(client_id, kept)
            return client_id, feedback_id
        self.memory.remember(feedback_id, kept)
        return feedback_id, feedback_id

    # -- routes -------------------------------------------------------------------------------------

    async def _live(self, req: _Request) -> Reply:
        return json_reply(200, {"live": True})

    def _readiness(self) -> Reply:
        if self.ready:
            return json_reply(200, {"ready": True})
        return json_reply(503, {"ready": False, "reason": self.reason, "error": self.message})

    async def _ready(self, req: _Request) -> Reply:
        return self._readiness()

    async def _model_ready(self, req: _Request) -> Reply:
        reply = self._readiness()
        if self.ready:
            reply = json_reply(200, {"name": self.name, "ready": True})
        return reply

    async def _server_metadata(self, req: _Request) -> Reply:
        return json_reply(
            200,
            {
                "name": "mlkube",
                "version": __version__,
                "extensions": ["binary_tensor_data", "mlkube_feedback"],
            },
        )

    async def _metrics(self, req: _Request) -> Reply:
        accept = None
        for key, value in req.scope["headers"]:
            if key == b"accept":
                accept = value.decode("latin-1")
        body, content_type = exposition(self.metrics, accept)
        return Reply(200, body, content_type.encode())

    async def _model_metadata(self, req: _Request) -> Reply:
        model = self._need_model()
        outputs: list[dict[str, Any]] = [
            {"name": "predict", "datatype": model.predict_datatype, "shape": [-1]}
        ]
        if model.has_proba:
            outputs.append(
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(model.class_labels)]}
            )
        return json_reply(
            200,
            {
                "name": self.name,
                "versions": [model.version],
                "platform": "sklearn",
                "inputs": _input_metadata(model),
                "outputs": outputs,
                "parameters": model.describe(),
            },
        )

    async def _v1_models(self, req: _Request) -> Reply:
        return json_reply(200, {"models": [self.name]})

    async def _v1_model(self, req: _Request) -> Reply:
        return json_reply(200 if self.ready else 503, {"name": self.name, "ready": self.ready})

    async def _v1_predict(self, req: _Request) -> Reply:
        model = self._need_model()
        body = self._json_body(req)
        x, rid = parse_v1(body, model.schema)
        assert self.batcher is not None
        pred = await self.batcher.submit(x, False, req.lone)
        rid, feedback_id = self._remember(rid, model, pred)
        values = pred.values if pred.values.dtype.kind in "iufb" else pred.values.tolist()
        answer: dict[str, Any] = {"predictions": values, "id": rid}
        if feedback_id != rid:
            answer["feedbackId"] = feedback_id
        return json_reply(200, answer)

    async def _infer(self, req: _Request) -> Reply:
        model = self._need_model()
        binary = None
        header_len = req.binary_header_length
        if header_len is not None:
            if not 0 < header_len <= len(req.body):
                raise bad_request(
                    f"Inference-Header-Content-Length {header_len} does not fit a body of {len(req.body)} bytes"
                )
            body = self._json_body(_Request(req.scope, req.method), req.body[:header_len])
            binary = memoryview(req.body)[header_len:]
        else:
            body = self._json_body(req)
        request = parse_v2(body, model.schema, model.has_proba, binary)
        assert self.batcher is not None
        pred = await self.batcher.submit(request.x, request.wants_proba, req.lone)
        rid, feedback_id = self._remember(request.request_id, model, pred)
        return self._v2_reply(model, rid, request.outputs, pred, feedback_id)

    def _v2_reply(
        self, model: ServedModel, rid: str, outputs: Iterable[Any], pred: Prediction, feedback_id: str
    ) -> Reply:
        tensors: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        for out in outputs:
            if out.name == "predict":
                values = pred.values
                datatype = model.predict_datatype
                shape = list(values.shape)
            else:
                assert pred.proba is not None
                values = pred.proba
                datatype = "FP64"
                shape = list(values.shape)
            tensor: dict[str, Any] = {"name": out.name, "datatype": datatype, "shape": shape}
            if out.binary:
                blob = _binary(values, datatype)
                tensor["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            elif datatype == "BYTES":
                tensor["data"] = [str(v) for v in values.ravel().tolist()]
            else:
                tensor["data"] = np.ascontiguousarray(values).ravel()
            tensors.append(tensor)
        answer: dict[str, Any] = {"model_name": self.name, "model_version": model.version, "id": rid}
        if feedback_id != rid:
            answer["parameters"] = {"mlkube_feedback_id": feedback_id}
        answer["outputs"] = tensors
        header = orjson.dumps(answer, option=_NUMPY)
        if not blobs:
            return Reply(200, header)
        return Reply(
            200,
            header + b"".join(blobs),
            b"application/octet-stream",
            ((b"inference-header-content-length", str(len(header)).encode()),),
        )

    async def _feedback(self, req: _Request) -> Reply:
        model = self._need_model()
        items = parse_feedback(self._json_body(req))
        result = score_feedback(
            items,
            self.memory,
            model.task,
            self.metrics,
            ids=self.feedback_ids,
            scored_ids=self.scored_ids,
            classes=model.classes,
        )
        answer: dict[str, Any] = {
            "accepted": result.accepted,
            "unknownIds": result.unknown_ids,
            "scoredRows": result.rows,
        }
        if result.other_model_ids:
            answer["otherModelIds"] = result.other_model_ids
        return json_reply(200, answer)

    # -- model lifecycle --------------------------------------------------------------------------

    def start_loading(self) -> None:
        self._load_task = asyncio.get_running_loop().create_task(self._load(), name="mlkube-load")

    async def wait_loaded(self) -> None:
        if self._load_task is not None:
            await self._load_task

    async def _load(self) -> None:
        s = self.settings
        try:
            model, notes = await asyncio.to_thread(_load_model, s)
        except LoadRefused as exc:
            self._refuse(exc.reason, exc.message)
            return
        except Exception as exc:
            log.exception("model load failed")
            self._refuse("LoadFailed", f"{type(exc).__name__}: {str(exc)[:500]}")
            return
        for note in notes:
            log.warning(note, extra={"fields": {"model": self.name}})
        self.metrics.bind_model(
            sha256=model.sha256,
            version=model.version,
            task=model.task,
            class_labels=model.class_labels,
            schema=model.schema,
            profile=model.profile,
            class_index_of=model.class_index_of if model.classes is not None else None,
            reference=model.metadata.reference_predictions,
            reference_accuracy=_held_out_accuracy(model.metadata),
        )
        classifier = model.task == "classification"
        self.feedback_ids = FeedbackIds(
            model.sha256,
            len(model.class_labels) if classifier else None,
            list(model.class_labels) if classifier else None,
        )
        self.model = model
        self.batcher = MicroBatcher(
            model,
            self.metrics,
            max_requests=s.max_batch_size,
            max_rows=s.max_batch_rows,
            max_wait_s=s.max_batch_wait_ms / 1000.0,
            offload_threshold_s=s.offload_threshold_ms / 1000.0,
        )
        self.batcher.start()
        self.ready = True
        self.reason, self.message = "Ready", "model loaded and warmed up"
        self.metrics.ready = True
        log.info(
            "model ready",
            extra={
                "fields": {
                    "model": self.name,
                    "reason": "Ready",
                    **model.describe(),
                    "predictCostMs": round(model.cost_fixed_s * 1000, 3),
                    "predictCostPerRowUs": round(model.cost_per_row_s * 1e6, 3),
                    "offload": model.expected_cost_s(1) > s.offload_threshold_ms / 1000.0,
                }
            },
        )

    def _refuse(self, reason: str, message: str) -> None:
        self.ready = False
        self.reason, self.message = reason, message
        log.error("model not loaded: %s", message, extra={"fields": {"model": self.name, "reason": reason}})

    async def shutdown(self) -> None:
        was_ready = self.ready
        self.ready = False
        self.metrics.ready = False
        self.reason, self.message = "ShuttingDown", "the server is shutting down"
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self.batcher is not None:
            await self.batcher.close()
        if was_ready:
            log.info("stopped serving", extra={"fields": {"model": self.name}})


def _held_out_accuracy(meta: ModelMetadata) -> float | None:
    """The accuracy on the held-out rows the prediction references come from."""
    ref = meta.reference_predictions
    value = ref.accuracy if ref is not None and ref.accuracy is not None else meta.metrics.get("accuracy")
    return float(value) if isinstance(value, int | float) and 0.0 <= value <= 1.0 else None


def _input_metadata(model: ServedModel) -> list[dict[str, Any]]:
    """What the model takes, truthfully: numeric-only models one FP64 tensor [N, F] (one
    tensor per feature is accepted too); models with categorical features one tensor per
    feature, named after it, FP64 for numbers and BYTES for text (BOOL for a feature
    trained on booleans only), since a single numeric tensor cannot carry text."""
    schema = model.schema
    if schema.all_numeric:
        return [{"name": "input-0", "datatype": "FP64", "shape": [-1, schema.n_features]}]
    out: list[dict[str, Any]] = []
    for j, (name, categorical) in enumerate(zip(schema.feature_names, schema.categorical, strict=True)):
        if not categorical:
            datatype = "FP64"
        elif schema.kinds_of(j) == {BOOL}:
            datatype = "BOOL"
        else:
            datatype = "BYTES"
        out.append({"name": name, "datatype": datatype, "shape": [-1]})
    return out


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise bad_request(f"body is not valid {encoding} data: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise RequestError(413, f"decompressed request body exceeds the limit of {limit} bytes")
    return out


def _binary(values: np.ndarray[Any, Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in values.ravel().tolist():
            raw = str(v).encode()
            parts.append(len(raw).to_bytes(4, "little") + raw)
        return b"".join(parts)
    dtype = {"INT64": "<i8", "FP64": "<f8", "BOOL": "?"}[datatype]
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def _load_model(settings: Settings) -> tuple[ServedModel, list[str]]:
    """Blocking part of start-up (runs in a thread): verify, unpickle, describe, warm up."""
    path = model_path(settings.model_uri)
    expected = parse_sha256(settings.model_sha256)
    data = read_verified(path, expected)
    metadata = load_metadata(path)
    profile = load_profile(settings.reference_profile) if settings.reference_profile else None
    notes: list[str] = []
    if metadata is None:
        notes.append(f"no metadata.json beside {str(path)!r}; feature names and classes come from the model")
    estimator = unpickle(data)
    model = ServedModel(
        estimator, name=settings.model_name, sha256=expected, metadata=metadata, profile=profile
    )
    if model.metadata_classes_mismatch:
        notes.append("metadata.json classes differ from the estimator's classes_; serving the estimator's")
    try:
        import sklearn

        if (
            metadata is not None
            and metadata.sklearn_version
            and metadata.sklearn_version != sklearn.__version__
        ):
            notes.append(
                f"model was trained with scikit-learn {metadata.sklearn_version}, serving with {sklearn.__version__}"
            )
    except ImportError:  # pragma: no cover
        pass
    try:
        model.warm_up(rows=min(64, settings.max_batch_rows), fast_path=settings.fast_path)
    except Exception as exc:
        raise LoadRefused(
            "WarmupFailed", f"warm-up predict failed: {type(exc).__name__}: {str(exc)[:500]}"
        ) from exc
    return model, notes
