"""How ``botc up`` turns stop signals into one clean stop (the end-to-end proof, a real
``botc up`` and a closed terminal, is in ``tests/e2e/test_up.py``)."""

from __future__ import annotations

import io
import signal

import pytest

from peers.cli.up import STOP_SIGNALS, Stopper, say


@pytest.fixture
def stopper():
    stopper = Stopper()
    yield stopper
    stopper.restore()


def test_sighup_sigint_and_sigterm_all_stop_botc_up(stopper):
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    stopper.install()
    assert signal.SIGHUP in STOP_SIGNALS
    for sig in STOP_SIGNALS:
        with pytest.raises(KeyboardInterrupt):
            signal.getsignal(sig)(sig, None)
    stopper.finish()
    assert all(signal.getsignal(sig) == signal.SIG_IGN for sig in STOP_SIGNALS)
    stopper.restore()
    assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == before


def test_a_hangup_ignored_by_nohup_stays_ignored(stopper):
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        stopper.install()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        stopper.restore()
        signal.signal(signal.SIGHUP, previous)


class GoneTerminal(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")


def test_saying_something_to_a_closed_terminal_does_not_stop_the_stop():
    say("stopping ...", GoneTerminal())  # no exception: market.stop() still runs
