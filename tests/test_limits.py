"""The throttling counters shared by worker processes (``triage.limits``), on real SQLite files: the
limits' arithmetic, and processes racing on one file never getting more than one process would."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import stat
import time
from pathlib import Path

import pytest

from triage.limits import FailureLimiter, LimitsFile, RateLimiter


def test_failures_are_counted_per_client_and_forgotten_after_the_window(tmp_path: Path):
    limits = FailureLimiter(LimitsFile(tmp_path / "limits.db"), "keys", limit=3, window=60)
    for t in (0, 1, 2):
        assert limits.retry_after("a", now=t) is None
        assert limits.fail("a", now=t) is None
    assert limits.retry_after("a", now=3) == 57 and limits.retry_after("b", now=3) is None
    # over the limit: nothing more is counted, the attempt is to be refused with the same wait
    assert limits.fail("a", now=3) == 57
    assert limits.retry_after("a", now=60.5) is None  # the oldest failure aged out
    assert limits.fail("a", now=60.5) is None  # one more allowed: the window then holds failures at 1, 2, 60.5
    assert limits.retry_after("a", now=60.6) == 1 and limits.retry_after("a", now=61.5) is None
    assert stat.S_IMODE(os.stat(tmp_path / "limits.db").st_mode) == 0o600  # it holds client addresses


def test_kinds_are_separate_and_aged_failures_are_deleted(tmp_path: Path):
    file = LimitsFile(tmp_path / "limits.db")
    keys, logins = FailureLimiter(file, "keys", 2, 10), FailureLimiter(file, "logins", 1, 10)
    keys.fail("a", now=0)
    keys.fail("a", now=1)
    assert keys.retry_after("a", now=2) == 8 and logins.retry_after("a", now=2) is None
    logins.fail("z", now=100)  # deletes the aged "logins" rows only: the keys' rows stay until a key fails
    keys.fail("b", now=100)
    rows = file.run(lambda db: db.execute("SELECT kind, client FROM failures ORDER BY kind").fetchall())
    assert rows == [("keys", "b"), ("logins", "z")]


def test_two_openings_of_one_file_share_the_counts(tmp_path: Path):
    """Two ``LimitsFile`` objects on one path (as two worker processes have) see each other's counts."""
    one = FailureLimiter(LimitsFile(tmp_path / "limits.db"), "keys", 2, 60)
    two = FailureLimiter(LimitsFile(tmp_path / "limits.db"), "keys", 2, 60)
    assert one.fail("a", now=0) is None and two.retry_after("a", now=0) is None
    assert two.fail("a", now=1) is None
    assert one.retry_after("a", now=2) == 58 and two.fail("a", now=2) == 58
    bucket1 = RateLimiter(LimitsFile(tmp_path / "limits.db"), per_minute=60, burst=2)
    bucket2 = RateLimiter(LimitsFile(tmp_path / "limits.db"), per_minute=60, burst=2)
    assert [bucket1.allow("a", now=0)[0], bucket2.allow("a", now=0)[0], bucket1.allow("a", now=0)[0]] == \
        [True, True, False]


def test_token_bucket_refills_at_its_rate(tmp_path: Path):
    limiter = RateLimiter(LimitsFile(tmp_path / "limits.db"), per_minute=60, burst=2)
    assert [limiter.allow("a", now=0)[0] for _ in range(3)] == [True, True, False]
    allowed, wait = limiter.allow("a", now=0.25)
    assert not allowed and wait == pytest.approx(0.75)
    assert limiter.allow("b", now=0)[0] and limiter.allow("a", now=1.01)[0]
    assert not limiter.allow("a", now=1.02)[0]
    assert [limiter.allow("a", now=10)[0] for _ in range(3)] == [True, True, False]  # at most `burst` saved up
    assert not limiter.allow("a", now=5)[0]  # a clock that steps back gives no tokens


def test_full_buckets_are_purged(tmp_path: Path):
    file = LimitsFile(tmp_path / "limits.db")
    limiter = RateLimiter(file, per_minute=60, burst=2, purge_seconds=30)
    for client in ("a", "b", "c"):
        limiter.allow(client, now=0)
    limiter.allow("d", now=29)  # no purge yet
    assert file.run(lambda db: db.execute("SELECT count(*) FROM buckets").fetchone()[0]) == 4
    limiter.allow("d", now=31)  # a purge: a, b, c refilled after 2 s and are the same as absent
    assert file.run(lambda db: [c for (c,) in db.execute("SELECT client FROM buckets")]) == ["d"]
    assert [limiter.allow("a", now=31)[0] for _ in range(3)] == [True, True, False]


def _race_failures(path: str, limit: int, tries: int, start: multiprocessing.synchronize.Barrier,
                   out: multiprocessing.Queue) -> None:
    limiter = FailureLimiter(LimitsFile(Path(path)), "keys", limit, 600)
    limiter.retry_after("warm-up")  # opens the file
    start.wait()
    counted = 0
    for _ in range(tries):
        # what check_key does: check, then (the key being wrong) count the failure
        if limiter.retry_after("10.0.0.1") is None and limiter.fail("10.0.0.1") is None:
            counted += 1
        time.sleep(0.001)  # spread the tries out, so that the processes' tries interleave
    out.put(counted)


def _race_tokens(path: str, burst: int, tries: int, start: multiprocessing.synchronize.Barrier,
                 out: multiprocessing.Queue) -> None:
    limiter = RateLimiter(LimitsFile(Path(path)), per_minute=0.001, burst=burst)
    limiter.allow("warm-up")
    start.wait()
    allowed = 0
    for _ in range(tries):
        allowed += limiter.allow("10.0.0.1")[0]
        time.sleep(0.001)
    out.put(allowed)


@pytest.mark.parametrize("race", [_race_failures, _race_tokens])
def test_processes_racing_on_one_file_get_no_more_than_one_process(tmp_path: Path, race):
    """Four processes, each trying 60 times at once: together exactly ``limit`` failures are counted
    (answered 401), exactly ``burst`` tracking lookups allowed; one process alone gets the same."""
    ctx = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
    start, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=race, args=(str(tmp_path / "limits.db"), 25, 60, start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert sum(counts) == 25, counts
    assert sum(1 for c in counts if c) >= 2, counts  # the processes really raced (each got some)
