"""The micro-batcher on its own, with the session's real model doing the work."""

from __future__ import annotations

import asyncio
import threading

import pytest
from api_helpers import TEXTS

from triage.batching import MicroBatcher
from triage.errors import BusyError, ConflictError


class Recorder:
    """A ``process`` that predicts with the real model and remembers the batches it was given."""

    def __init__(self, model, gate: threading.Event | None = None) -> None:
        self.model, self.gate, self.batches = model, gate, []
        self.started = threading.Event()

    def __call__(self, texts: list[str]) -> list:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(30)
        self.batches.append(list(texts))
        out: list = []
        preds = iter(self.model.predict([t for t in texts if t != "conflict"]))
        for t in texts:
            out.append(ConflictError("that one conflicts") if t == "conflict" else next(preds))
        return out


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_are_predicted_together_and_each_gets_its_own_result(small_model):
    texts = TEXTS * 3
    expected = [small_model.predict([t])[0] for t in texts]

    async def go():
        gate = threading.Event()
        rec = Recorder(small_model, gate)
        b = MicroBatcher(rec, max_wait_ms=5, max_batch=64, max_queue=100)
        b.start()
        first = asyncio.ensure_future(b.submit(texts[0]))  # keeps the worker busy while the rest queue up
        while not rec.started.is_set():
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(b.submit(t)) for t in texts[1:]]
        await asyncio.sleep(0.01)
        gate.set()
        results = [await first] + list(await asyncio.gather(*rest))
        await b.stop()
        return rec, results

    rec, results = run(go())
    assert results == expected
    assert [len(x) for x in rec.batches] == [1, len(texts) - 1]  # the 23 that queued went in one call


def test_one_request_alone_does_not_wait_for_company(small_model):
    async def go():
        rec = Recorder(small_model)
        b = MicroBatcher(rec, max_wait_ms=100_000 / 1000, max_batch=8, max_queue=10)
        b.start()
        out = [await asyncio.wait_for(b.submit(t), 20) for t in TEXTS[:3]]  # would time out if each waited
        await b.stop()
        return rec, out

    rec, out = run(go())
    assert [len(x) for x in rec.batches] == [1, 1, 1] and len(out) == 3


def test_an_items_error_goes_to_its_caller_alone(small_model):
    async def go():
        gate = threading.Event()
        rec = Recorder(small_model, gate)
        b = MicroBatcher(rec, max_wait_ms=1, max_batch=64, max_queue=100)
        b.start()
        first = asyncio.ensure_future(b.submit(TEXTS[0]))
        while not rec.started.is_set():
            await asyncio.sleep(0.001)
        futs = [asyncio.ensure_future(b.submit(t)) for t in (TEXTS[1], "conflict", TEXTS[2])]
        gate.set()
        out = await asyncio.gather(first, *futs, return_exceptions=True)
        await b.stop()
        return rec, out

    rec, out = run(go())
    assert isinstance(out[2], ConflictError)
    assert out[1] == small_model.predict([TEXTS[1]])[0] and out[3] == small_model.predict([TEXTS[2]])[0]
    assert ["conflict" in batch for batch in rec.batches] == [False, True]


def test_a_full_queue_refuses_at_once_and_what_was_queued_still_completes(small_model):
    async def go():
        gate = threading.Event()
        rec = Recorder(small_model, gate)
        b = MicroBatcher(rec, max_wait_ms=1, max_batch=2, max_queue=3)
        b.start()
        busy = asyncio.ensure_future(b.submit(TEXTS[0]))
        while not rec.started.is_set():
            await asyncio.sleep(0.001)
        queued = [asyncio.ensure_future(b.submit(t)) for t in TEXTS[1:4]]
        await asyncio.sleep(0)
        with pytest.raises(BusyError) as refused:
            await b.submit(TEXTS[4])
        gate.set()
        out = await asyncio.gather(busy, *queued)
        await b.stop()
        return rec, out, refused.value

    rec, out, refused = run(go())
    assert refused.retry_after >= 1 and "TRIAGE_BATCH_QUEUE" in str(refused)
    assert out == [small_model.predict([t])[0] for t in TEXTS[:4]]
    assert [len(x) for x in rec.batches] == [1, 2, 1]  # max_batch 2


def test_a_failing_batch_fails_its_callers_and_the_batcher_goes_on(small_model):
    calls = []

    def process(texts):
        calls.append(texts)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return small_model.predict(texts)

    async def go():
        b = MicroBatcher(process, max_wait_ms=1, max_batch=8, max_queue=10)
        b.start()
        with pytest.raises(RuntimeError):
            await b.submit(TEXTS[0])
        ok = await b.submit(TEXTS[1])
        await b.stop()
        return ok

    assert run(go()) == small_model.predict([TEXTS[1]])[0]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(lambda items: items, max_batch=0)


def test_stopping_waits_for_the_batch_on_the_worker_thread_and_answers_its_callers(small_model):
    """``stop()`` while a batch is being processed: its callers still get their results, then the
    worker thread ends (the batcher has its own thread, no executor)."""
    async def go():
        gate = threading.Event()
        rec = Recorder(small_model, gate)
        b = MicroBatcher(rec, max_wait_ms=0, max_batch=8, max_queue=10)
        b.start()
        worker = b._thread
        calls = [asyncio.ensure_future(b.submit(t)) for t in TEXTS[:3]]
        while not rec.started.is_set():
            await asyncio.sleep(0.001)
        stopping = asyncio.ensure_future(b.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # the batch is still on the worker thread
        gate.set()
        await stopping
        return rec, [c.result() for c in calls], worker

    rec, results, worker = run(go())
    assert results == small_model.predict(TEXTS[:3])
    assert worker is not None and not worker.is_alive()
    assert [len(x) for x in rec.batches] == [3]
