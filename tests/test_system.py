"""Stopping on signals: one helper for serve and the scheduler."""

from __future__ import annotations

import os
import signal
import threading

from studio.core import system


def test_a_signal_sets_the_stop_event_and_the_old_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    restore = system.stop_on_signals(stop)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is before


def test_outside_the_main_thread_nothing_is_installed() -> None:
    result = {}
    thread = threading.Thread(target=lambda: result.update(restore=system.stop_on_signals(threading.Event())))
    thread.start()
    thread.join()
    before = signal.getsignal(signal.SIGINT)
    result["restore"]()
    assert signal.getsignal(signal.SIGINT) is before
