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


def test_tritonclient_follows_the_metadata(
    servers: dict[str, ServerProc], artifacts: dict[str, Artifact]
) -> None:
    """A client that builds its inputs from GET /v2/models/{name} gets a prediction; one that
    sends a number for the text feature gets the server's 400 naming it."""
    import pandas as pd
    from tritonclient.utils import InferenceServerException

    server, art = servers["pipe"], artifacts["pipe"]
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        meta = client.get_model_metadata("pipe")
        values = {"size": np.array([5.0, 12.0]), "colour": np.array([b"red", b"blue"], dtype=np.object_)}
        inputs = []
        for spec in meta["inputs"]:
            inp = httpclient.InferInput(spec["name"], [2], spec["datatype"])
            inp.set_data_from_numpy(values[spec["name"]])
            inputs.append(inp)
        result = client.infer("pipe", inputs)
        assert result.get_response()["model_version"] == meta["versions"][0]
        frame = pd.DataFrame({"size": [5.0, 12.0], "colour": ["red", "blue"]})
        assert [v.decode() for v in result.as_numpy("predict").tolist()] == art.model.predict(frame).tolist()
        wrong = httpclient.InferInput("colour", [2], "FP64")
        wrong.set_data_from_numpy(np.array([1.0, 2.0]))
        with pytest.raises(InferenceServerException, match="'colour' is categorical"):
            client.infer("pipe", [inputs[0], wrong])
    finally:
        client.close()
