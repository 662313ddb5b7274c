"""An episode's DDS teardown is bounded (``tps_eval.runner.close_within``): Fast DDS 2.14 can
deadlock a participant's deletion (eProsima/Fast-DDS#6502; seen once, a search worker sat in
``Collector.close`` for 15 min), and a pool worker that saw it exits without running the
destructors that would wait on the deadlocked participant."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import pytest
from tps_eval.runner import _exit_hard_at_exit, close_within


def test_a_teardown_that_returns_or_raises_is_waited_for():
    calls = []
    assert close_within(lambda: calls.append(1), "collector", timeout_s=5.0) == ""
    assert calls == [1]

    def broken():
        raise RuntimeError("context already shut down")
    with pytest.raises(RuntimeError, match="already shut down"):
        close_within(broken, "collector", timeout_s=5.0)


def test_a_hung_teardown_is_abandoned_and_named():
    release = threading.Event()
    t0 = time.monotonic()
    note = close_within(release.wait, "collector", timeout_s=0.5)
    waited = time.monotonic() - t0
    release.set()
    assert 0.5 <= waited < 3.0, waited
    assert "collector teardown hung" in note and "Fast-DDS#6502" in note


def _child_that_would_hang_at_exit() -> None:
    import atexit

    atexit.register(time.sleep, 3600)   # stands in for a destructor waiting on a deadlocked participant
    _exit_hard_at_exit()                # registered later, so it runs first at exit


def test_a_worker_that_saw_a_hung_teardown_exits_without_running_what_would_hang():
    proc = mp.get_context("spawn").Process(target=_child_that_would_hang_at_exit)
    proc.start()
    proc.join(timeout=60.0)
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive, "the worker hung at exit"
    assert proc.exitcode == 0


def test_the_main_process_keeps_its_normal_exit():
    import atexit

    before = atexit._ncallbacks()
    _exit_hard_at_exit()
    assert atexit._ncallbacks() == before
