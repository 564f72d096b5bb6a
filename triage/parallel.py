"""Batch prediction on every core: worker processes forked with the loaded model (CLI and benchmarks).

Prediction is Python-heavy (normalising, tokenising, routing rules), so threads do not help (the
GIL); processes do. The workers are forked after the model and router are loaded and warm, so
they share them copy-on-write and nothing big is pickled: only texts go out and records come
back. Where ``fork`` is not available, or for one job, prediction runs in this process.

    with ParallelPredict(predict, model, router, jobs=2) as run:
        records = run(texts, districts)
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Self

Predict = Callable[..., list[Any]]
"""``predict(model, texts, districts, router)``: one record per text (``triage.prediction.predict``)."""

_FORKED: tuple[Predict, Any, Any] | None = None
"""What a forked worker predicts with: set in the parent just before the fork."""


def _predict_part(part: tuple[list[str], list[str | None] | None]) -> list[Any]:
    assert _FORKED is not None
    predict, model, router = _FORKED
    texts, districts = part
    return predict(model, texts, districts, router)


class _Done:
    """A result computed at once, with the ``result()`` of a future."""

    def __init__(self, value: list[Any]) -> None:
        self.value = value

    def result(self) -> list[Any]:
        return self.value


Pending = list[Any]
"""What ``ParallelPredict.submit`` returns: the parts' futures (or one computed result), in input order."""


def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity call on this platform
        return max(1, os.cpu_count() or 1)


class ParallelPredict:
    """Splits each call's texts across ``jobs`` forked workers and joins the records in input order."""

    def __init__(self, predict: Predict, model: Any, router: Any = None, jobs: int | None = None,
                 min_part: int = 250) -> None:
        self.predict, self.model, self.router = predict, model, router
        self.jobs = default_jobs() if jobs is None else max(1, jobs)
        self.min_part = min_part
        self._pool: ProcessPoolExecutor | None = None
        if self.jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
            global _FORKED
            _FORKED = (predict, model, router)
            gc.freeze()  # what exists now (the model) is never scanned by the workers' collector: no copied pages
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("fork"))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __call__(self, texts: list[str], districts: Sequence[str | None] | None = None) -> list[Any]:
        return self.result(self.submit(texts, districts))

    def submit(self, texts: list[str], districts: Sequence[str | None] | None = None) -> Pending:
        """Start predicting ``texts`` (in the workers; with none, now) and return at once: ``result`` waits.
        The caller can meanwhile read the next chunk or write the last one, so the workers never wait for it."""
        dist = list(districts) if districts is not None else None
        parts = min(self.jobs, len(texts) // self.min_part)
        if self._pool is None or parts < 2:
            return [_Done(self.predict(self.model, texts, dist, self.router))]
        size = -(-len(texts) // parts)
        return [self._pool.submit(_predict_part, (texts[s : s + size], dist[s : s + size] if dist is not None else None))
                for s in range(0, len(texts), size)]

    @staticmethod
    def result(pending: Pending) -> list[Any]:
        """The records of a ``submit``, in input order."""
        return [rec for part in pending for rec in part.result()]
