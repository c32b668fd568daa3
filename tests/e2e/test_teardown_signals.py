"""Teardown must finish even when Ctrl-C / SIGTERM arrive during it, whatever threads exist
(paramiko keeps one per SSH connection, and the kernel may deliver a signal to any thread)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from pytest_pd.cluster.signals import signals_deferred


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_wait_until_the_block_is_done(sig):
    stop = threading.Event()
    idle = threading.Thread(target=stop.wait, daemon=True)  # like paramiko's transport thread
    idle.start()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    finished = False
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_deferred():
                os.kill(os.getpid(), sig)
                os.kill(os.getpid(), sig)  # pressed twice
                time.sleep(0.2)  # a signal handler would have run by now
                finished = True
        assert finished, "the block was interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
    # the usual handlers are back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_signal_no_interrupt():
    with signals_deferred():
        pass
