"""The micro-batcher: one model call for many queued requests, each answered with its own rows
and the model that computed them, calls off the event loop, swaps between batches only."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from dslc.serving.batcher import MicroBatcher, NoModelError, PredictionError, ServedModel
from dslc.serving.schema import InputSchema


class FakePredictor:
    """P = x / 1000 + version offset; records each call's size and thread; can be slowed."""

    def __init__(self, offset: float = 0.0, delay: float = 0.0) -> None:
        self.offset = offset
        self.delay = delay
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.gate: threading.Event | None = None

    def predict_proba(self, columns: dict[str, Any]) -> np.ndarray:
        x = np.asarray(columns["x"], dtype=np.float64)
        self.calls.append(len(x))
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(5)
        if self.delay:
            time.sleep(self.delay)
        if (x < 0).any():
            raise ValueError("negative x")
        return x / 1000 + self.offset


def served(predictor: FakePredictor, version: str) -> ServedModel:
    return ServedModel("m", version, predictor, InputSchema.default(), "now")


def cols(*xs: float) -> dict[str, list[float]]:
    return {"x": list(xs)}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_concurrent_requests_share_model_calls_and_get_their_own_rows():
    async def main() -> tuple[list[Any], FakePredictor, str]:
        predictor = FakePredictor(delay=0.02)
        batcher = MicroBatcher(max_rows=1000)
        batcher.swap(served(predictor, "1"))
        batcher.start()
        results = await asyncio.gather(*(batcher.predict(cols(i, i + 0.5), 2) for i in range(50)))
        await batcher.stop()
        return results, predictor, threading.current_thread().name

    results, predictor, loop_thread = run(main())
    for i, (probs, model) in enumerate(results):
        assert probs == [i / 1000, (i + 0.5) / 1000]
        assert model.version == "1"
    assert sum(predictor.calls) == 100
    assert len(predictor.calls) < 50, predictor.calls  # batched, not one call per request
    assert predictor.threads and loop_thread not in predictor.threads  # off the event loop


def test_a_batch_never_exceeds_the_row_cap_but_a_big_request_goes_alone():
    async def main() -> FakePredictor:
        predictor = FakePredictor(delay=0.01)
        batcher = MicroBatcher(max_rows=10)
        batcher.swap(served(predictor, "1"))
        batcher.start()
        small = [batcher.predict(cols(1, 2, 3, 4), 4) for _ in range(20)]
        big = batcher.predict(cols(*range(25)), 25)
        out = await asyncio.gather(*small, big)
        assert out[-1][0] == [i / 1000 for i in range(25)]
        await batcher.stop()
        return predictor

    predictor = run(main())
    assert sum(predictor.calls) == 20 * 4 + 25
    assert all(n <= 10 for n in predictor.calls if n != 25), predictor.calls
    assert 25 in predictor.calls


def test_a_swap_while_a_batch_runs_answers_each_request_with_one_whole_model():
    async def main() -> list[tuple[list[float], ServedModel]]:
        old, new = FakePredictor(offset=0.1), FakePredictor(offset=0.2)
        old.gate = threading.Event()
        batcher = MicroBatcher()
        batcher.swap(served(old, "1"))
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(cols(1), 1))
        while not old.calls:  # the old model is computing the first batch
            await asyncio.sleep(0.001)
        queued = [asyncio.ensure_future(batcher.predict(cols(2, 3), 2)) for _ in range(5)]
        await asyncio.sleep(0.01)
        assert batcher.swap(served(new, "2")).version == "1"
        old.gate.set()
        results = [await first, *[await q for q in queued]]
        await batcher.stop()
        return results

    results = run(main())
    probs, model = results[0]
    assert model.version == "1" and probs == [pytest.approx(0.1 + 0.001)]
    for probs, model in results[1:]:
        assert model.version == "2"
        assert probs == [pytest.approx(0.2 + 0.002), pytest.approx(0.2 + 0.003)]


def test_a_failing_request_fails_alone():
    async def main() -> list[Any]:
        predictor = FakePredictor(delay=0.01)
        batcher = MicroBatcher()
        batcher.swap(served(predictor, "1"))
        batcher.start()
        blocker = batcher.predict(cols(0), 1)  # keeps the model busy so the rest batch up
        calls = [batcher.predict(cols(i), 1) for i in (1, -1, 2)]
        out = await asyncio.gather(blocker, *calls, return_exceptions=True)
        await batcher.stop()
        return out

    _, ok1, bad, ok2 = run(main())
    assert ok1[0] == [0.001] and ok2[0] == [0.002]
    assert isinstance(bad, PredictionError) and "negative x" in str(bad)


def test_no_model_is_an_error_not_a_hang():
    async def main() -> None:
        batcher = MicroBatcher()
        batcher.start()
        with pytest.raises(NoModelError):
            await batcher.predict(cols(1), 1)
        await batcher.stop()

    run(main())


def test_array_and_list_columns_are_concatenated_in_order():
    async def main() -> list[Any]:
        predictor = FakePredictor(delay=0.01)
        batcher = MicroBatcher()
        batcher.swap(served(predictor, "1"))
        batcher.start()
        out = await asyncio.gather(
            batcher.predict(cols(9), 1),
            batcher.predict({"x": np.array([1.0, np.nan])}, 2),
            batcher.predict({"x": [3.0, None]}, 2),
        )
        await batcher.stop()
        return out

    (a, _), (b, _), (c, _) = run(main())
    assert a == [0.009]
    assert b[0] == 0.001 and np.isnan(b[1])
    assert c[0] == 0.003 and np.isnan(c[1])


def test_stop_answers_what_is_queued():
    async def main() -> list[Any]:
        predictor = FakePredictor(delay=0.02)
        batcher = MicroBatcher(max_rows=1)
        batcher.swap(served(predictor, "1"))
        batcher.start()
        tasks = [asyncio.ensure_future(batcher.predict(cols(i), 1)) for i in range(5)]
        await asyncio.sleep(0)
        await batcher.stop()
        return await asyncio.gather(*tasks)

    results = run(main())
    assert [r[0] for r in results] == [[i / 1000] for i in range(5)]
