"""The baseline: a bare Starlette app on uvicorn that calls ``predict`` inline.

This is what a team writes in an afternoon, and the bar the issue sets ("never slower
than the bare app").  It speaks the same V2 JSON as the other servers so the load is
identical; it has no validation beyond numpy's, no metrics and no batching.  uvloop,
httptools and no access log, like mlkube, so the comparison is about the request path,
not about uvicorn options.

Run: ``python benchmarks/serving_bare.py MODEL_PATH NAME PORT``.
"""

from __future__ import annotations

import sys
from typing import Any

import joblib
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def make_app(model_path: str, name: str) -> Starlette:
    model: Any = joblib.load(model_path)

    async def infer(request: Request) -> JSONResponse:
        body = await request.json()
        tensor = body["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        pred = model.predict(x)
        return JSONResponse(
            {
                "model_name": name,
                "outputs": [
                    {"name": "predict", "datatype": "INT64", "shape": [len(pred)], "data": pred.tolist()}
                ],
            }
        )

    async def predict_v1(request: Request) -> JSONResponse:
        body = await request.json()
        pred = model.predict(np.asarray(body["instances"], dtype=np.float64))
        return JSONResponse({"predictions": pred.tolist()})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    return Starlette(
        routes=[
            Route(f"/v2/models/{name}/infer", infer, methods=["POST"]),
            Route(f"/v1/models/{name}:predict", predict_v1, methods=["POST"]),
            Route("/v2/health/ready", ready),
        ]
    )


if __name__ == "__main__":
    path, model_name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uvicorn.run(
        make_app(path, model_name),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
