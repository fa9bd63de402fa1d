"""Micro-batching: coalesced requests get exactly their own predictions, whichever path runs them."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from mlkube_serving.batcher import MicroBatcher
from mlkube_serving.errors import RequestError
from mlkube_serving.metrics import ServingMetrics
from mlkube_serving.model import ServedModel


@pytest.fixture(scope="module")
def iris_model() -> tuple[ServedModel, Any]:
    x, y = load_iris(return_X_y=True)
    est = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, y)
    model = ServedModel(est, name="iris", sha256="0" * 64, metadata=None, profile=None)
    model.warm_up(rows=8)
    return model, x


def make_batcher(model: ServedModel, **kw: Any) -> MicroBatcher:
    opts: dict[str, Any] = {
        "max_requests": 64,
        "max_rows": 4096,
        "max_wait_s": 0.002,
        "offload_threshold_s": 1.0,
    }
    opts.update(kw)
    return MicroBatcher(model, ServingMetrics("iris", with_process=False), **opts)


@pytest.mark.parametrize("offload", [False, True])
async def test_concurrent_requests_get_their_own_rows(
    iris_model: tuple[ServedModel, Any], offload: bool
) -> None:
    model, x = iris_model
    batcher = make_batcher(model, offload_threshold_s=0.0 if offload else 1.0)
    batcher.start()
    rng = np.random.default_rng(1)
    slices = [x[i : i + int(rng.integers(1, 6))] for i in rng.integers(0, 140, 200)]

    async def one(rows: Any, proba: bool) -> None:
        pred = await batcher.submit(rows, proba)
        assert pred.values.tolist() == model.estimator.predict(rows).tolist()
        if proba:
            assert pred.proba is not None
            np.testing.assert_array_equal(pred.proba, model.estimator.predict_proba(rows))

    await asyncio.gather(*(one(rows, i % 3 == 0) for i, rows in enumerate(slices)))
    await batcher.close()
    assert batcher.batches < len(slices)  # requests were coalesced
    hist = batcher.metrics.batch_requests.series[("iris",)]
    assert sum(hist[:-1]) == batcher.batches


async def test_lone_request_is_answered_directly(iris_model: tuple[ServedModel, Any]) -> None:
    model, x = iris_model
    batcher = make_batcher(model)
    batcher.start()
    for _ in range(3):
        pred = await batcher.submit(x[:1], False, lone=True)
        assert pred.values.tolist() == model.estimator.predict(x[:1]).tolist()
        await asyncio.sleep(0.005)
    assert batcher.direct >= 1
    await batcher.close()


async def test_batch_limits(iris_model: tuple[ServedModel, Any]) -> None:
    model, x = iris_model
    batcher = make_batcher(model, max_requests=3, max_rows=5)
    batcher.start()
    preds = await asyncio.gather(*(batcher.submit(x[i : i + 2], False) for i in range(0, 20, 2)))
    await batcher.close()
    assert [p.values.tolist() for p in preds] == [
        model.estimator.predict(x[i : i + 2]).tolist() for i in range(0, 20, 2)
    ]
    sizes = batcher.metrics.batch_size.series[("iris",)]
    # No batch above 5 rows: buckets are 1,2,4,8,... so nothing lands beyond the "8" bucket and
    # the largest possible batch is 4 rows (two 2-row requests).
    assert sum(sizes[4:-1]) == 0


async def test_a_failing_request_does_not_fail_its_batch() -> None:
    class Picky:
        classes_ = np.array([0, 1])
        n_features_in_ = 2

        def predict(self, x: Any) -> Any:
            if (np.asarray(x) < 0).any():
                raise ValueError("negative values are not allowed")
            return (np.asarray(x)[:, 0] > 1).astype(int)

    model = ServedModel(Picky(), name="p", sha256="0" * 64, metadata=None, profile=None)
    batcher = make_batcher(model)
    batcher.start()
    good = [np.array([[2.0, 0.0]]), np.array([[0.0, 0.0]])]
    bad = np.array([[-1.0, 0.0]])
    results = await asyncio.gather(
        batcher.submit(good[0], False),
        batcher.submit(bad, False),
        batcher.submit(good[1], False),
        return_exceptions=True,
    )
    await batcher.close()
    assert results[0].values.tolist() == [1]  # type: ignore[union-attr]
    assert results[2].values.tolist() == [0]  # type: ignore[union-attr]
    assert isinstance(results[1], RequestError) and results[1].status == 400
    assert "negative values are not allowed" in results[1].message


async def test_closed_batcher_refuses_new_work(iris_model: tuple[ServedModel, Any]) -> None:
    model, x = iris_model
    batcher = make_batcher(model)
    batcher.start()
    await batcher.close()
    with pytest.raises(RequestError) as info:
        batcher.submit(x[:1], False)
    assert info.value.status == 503
