"""A V2 client nobody here wrote: tritonclient.http, used exactly as its documentation shows."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import Artifact, ServerProc

httpclient = pytest.importorskip("tritonclient.http")


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer(
    servers: dict[str, ServerProc], artifacts: dict[str, Artifact], binary: bool
) -> None:
    server, art = servers["iris"], artifacts["iris"]
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("iris")
        meta = client.get_model_metadata("iris")
        assert meta["inputs"][0]["shape"] == [-1, 4]
        rows = art.x[:7].astype(np.float32)
        inp = httpclient.InferInput("input-0", list(rows.shape), "FP32")
        inp.set_data_from_numpy(rows, binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("predict", binary_data=binary),
            httpclient.InferRequestedOutput("predict_proba", binary_data=binary),
        ]
        result = client.infer("iris", [inp], outputs=outputs, request_id="triton-1")
        x64 = rows.astype(np.float64)
        assert result.as_numpy("predict").tolist() == art.model.predict(x64).tolist()
        np.testing.assert_allclose(result.as_numpy("predict_proba"), art.model.predict_proba(x64))
        assert result.get_response()["id"] == "triton-1"
        # Without requested outputs tritonclient asks for binary outputs by default.
        plain = client.infer("iris", [inp])
        assert plain.as_numpy("predict").tolist() == art.model.predict(x64).tolist()
    finally:
        client.close()


def test_tritonclient_string_classes(servers: dict[str, ServerProc], artifacts: dict[str, Artifact]) -> None:
    server, art = servers["pipe"], artifacts["pipe"]
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        size = httpclient.InferInput("size", [3], "FP64")
        size.set_data_from_numpy(np.array([5.0, 12.0, 14.0]))
        colour = httpclient.InferInput("colour", [3], "BYTES")
        colour.set_data_from_numpy(np.array([b"red", b"green", b"blue"], dtype=np.object_))
        result = client.infer("pipe", [size, colour])
        got = [v.decode() for v in result.as_numpy("predict").tolist()]
        frame = art.x.iloc[:0].copy()
        import pandas as pd

        frame = pd.DataFrame({"size": [5.0, 12.0, 14.0], "colour": ["red", "green", "blue"]})
        assert got == art.model.predict(frame).tolist()
    finally:
        client.close()
