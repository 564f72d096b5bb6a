"""The served model: loaded with its router, warmed, and swapped whole on reload.

``ModelHolder.current`` is one ``Served`` snapshot (model, metadata, router); a request takes it
once and uses it throughout, so a reload never changes the model under a request and no request
waits for a reload. With several worker processes, a reload in one touches a signal file that
the others watch (checked at most once a second), and they reload too; with a PostgreSQL store,
replicas on other machines hear of it through the database (``also_announce``).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from triage import registry
from triage.errors import ModelError, TriageError
from triage.prediction import predict
from triage.routing import Router

log = logging.getLogger("triage.serving")

WARM_UP = ("ไฟฟ้าดับทั้งซอย สายไฟช็อต โทร 081-234-5678", "บางรัก")


def settle_heap() -> None:
    """Keep the loaded model out of the cyclic garbage collector's full passes (``gc.freeze``).

    A loaded model is about 130,000 objects the collector tracks (vocabularies, fitted estimators);
    every full collection walked them all, 120-200 ms with the GIL held, so now and then one request
    (and every request queued behind it) waited that long. Frozen, a full pass walks only what the
    requests made. On a reload the previous model's objects are unfrozen and collected with the
    rest of the garbage first, so nothing of it is kept.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass(frozen=True)
class Served:
    """One model with its router, swapped as a whole on reload."""

    model: Any
    meta: dict[str, Any]
    router: Router
    path: Path
    loaded_at: str


class ModelHolder:
    """Holds the served model; ``reload`` loads and warms a new one, then swaps it in one assignment."""

    def __init__(self, path: Path, signal_file: Path | None = None,
                 corrections: Callable[[], Any] | None = None) -> None:
        """``corrections``: returns reviewers' corrections (``triage.corrections.agency_corrections``)
        that each reload teaches the agency model at once (issue 14 item 4), or None."""
        self.path = path
        self.signal_file = signal_file
        self.corrections = corrections
        self._current: Served | None = None
        self._lock = threading.Lock()
        self._seen = self._signal_mtime()
        self._next_check = 0.0
        self.also_announce: Callable[[], None] | None = None
        """Tells replicas on other machines too (the PostgreSQL store's ``announce_reload``)."""

    def _signal_mtime(self) -> int:
        try:
            return self.signal_file.stat().st_mtime_ns if self.signal_file else 0
        except OSError:
            return 0

    @property
    def current(self) -> Served:
        loaded = self._current
        if loaded is None:
            raise ModelError("the model is not loaded yet")
        if self.signal_file is not None and time.monotonic() >= self._next_check:
            self._follow_other_workers()
        return loaded

    def _follow_other_workers(self) -> None:
        """Reload (in the background) when another worker process announced a reload, checked once a second."""
        self._next_check = time.monotonic() + 1.0
        seen = self._signal_mtime()
        if seen != self._seen:
            self._seen = seen
            threading.Thread(target=self.reload_quietly, name="follow-reload", daemon=True).start()

    def reload_quietly(self) -> None:
        """``reload``, logging a failure instead of raising it (for signal handlers and followers)."""
        try:
            self.reload()
        except TriageError as exc:
            log.error("reload failed, still serving the previous model: %s", exc)

    def announce(self) -> None:
        """Tell the other worker processes to reload: touch the signal file they watch (and ``also_announce``)."""
        if self.signal_file is None:
            if self.also_announce is not None:
                self.also_announce()
            return
        self.signal_file.parent.mkdir(parents=True, exist_ok=True)
        self.signal_file.write_text(datetime.now(UTC).isoformat(), encoding="utf-8")
        self._seen = self._signal_mtime()
        if self.also_announce is not None:
            self.also_announce()

    @property
    def ready(self) -> bool:
        return self._current is not None

    def reload(self) -> Served:
        with self._lock:
            model, meta = registry.load(self.path)
            # one complaint per call: joblib's worker dispatch costs more than the transform itself
            # (27 vs 3.6 ms per complaint measured); a server gets its parallelism from requests
            if hasattr(model.featurizer, "n_jobs"):
                model.featurizer.n_jobs = 1
            router = Router.load()
            self._learn_corrections(model, meta, router)
            predict(model, [WARM_UP[0]], [WARM_UP[1]], router)  # warm up: tokenizer dictionary, caches
            loaded = Served(model, meta, router, registry.resolve(self.path),
                            datetime.now(UTC).isoformat(timespec="microseconds"))
            self._current = loaded
            settle_heap()
        log.info("serving model %s from %s", meta.get("version"), loaded.path)
        return loaded

    def _learn_corrections(self, model: Any, meta: dict[str, Any], router: Router) -> None:
        """Reviewers' agency corrections, applied to the freshly loaded agency model without a retrain:
        the corrected complaints most similar to a new one vote for their kind (``CorrectionMemory``).
        Recorded in ``meta["agency_corrections"]`` (how many are remembered)."""
        agency = getattr(model, "agency", None)
        if self.corrections is None or agency is None or not hasattr(agency, "learn_corrections"):
            return
        rows = self.corrections()
        if rows is None or len(rows) == 0:
            meta["agency_corrections"] = 0
            return
        model.agency = agency.learn_corrections(rows, router, strength=getattr(agency, "memory_strength_", 10.0),
                                                min_sim=getattr(agency, "memory_min_sim_", 0.4))
        meta["agency_corrections"] = len(model.agency.memory_)
        log.info("agency model follows %d reviewers' corrections", meta["agency_corrections"])
