"""``triage.training.Beside``: the agency stage in a forked process beside the urgency stages."""

from __future__ import annotations

import os

import pytest

from triage.errors import DataError, ModelError
from triage.training import Beside


def test_the_result_and_log_lines_come_back_from_a_child_process():
    seen: list[int] = []

    def work(log):
        seen.append(os.getpid())
        log("first")
        log("second")
        return {"pid": os.getpid(), "value": 42}

    value, lines, seconds = Beside(work).result()
    assert value["value"] == 42 and lines == ["first", "second"] and seconds >= 0
    assert value["pid"] != os.getpid() and seen == []  # it ran in another process


def test_an_error_in_the_child_is_raised_again_with_its_message():
    def fails(_log):
        raise DataError("too little agency data: 3 forwards")

    with pytest.raises(DataError, match="too little agency data: 3 forwards"):
        Beside(fails).result()


def test_a_child_that_dies_is_a_clear_error_not_a_hang():
    with pytest.raises(ModelError, match="ended without a result .exit code 7"):
        Beside(lambda _log: os._exit(7)).result()


def test_without_fork_it_runs_here_when_asked(monkeypatch):
    monkeypatch.setenv("TRIAGE_TRAIN_BESIDE", "0")
    value, lines, _ = Beside(lambda log: (log("here"), os.getpid())[1]).result()
    assert value == os.getpid() and lines == ["here"]


def test_cancel_stops_a_running_child():
    import time

    job = Beside(lambda _log: time.sleep(60))
    job.cancel()
    assert not job.proc.is_alive()
