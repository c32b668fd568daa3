"""The machines one bring-up holds: each machine's host lock, taken in a fixed order, and this run's
entry in the ledger next to it (with the processes it started there), so that the next session to
take the lock can stop what this one leaves if it dies without teardown (``stale_runs``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from pytest_pd.cluster.locks import HostLock, MachineLock
from pytest_pd.cluster.stale_runs import RunLedger, reap_stale

Say = Callable[[str], None]
# this run's ledger entry for the hosts of one machine; kept: left running on purpose
Entry = Callable[[frozenset[str], bool], dict[str, Any]]


class Reservation:
    def __init__(self, run_id: str, entry: Entry, say: Say) -> None:
        self.run_id = run_id
        self.entry = entry
        self.say = say
        self.locks: list[HostLock] = []
        self._ledgers: list[tuple[RunLedger, frozenset[str]]] = []

    def take(self, machines: list[MachineLock]) -> None:
        """Each machine's lock, waited for up to its timeout; holding it, stop what a dead session
        left on that machine, then record this run there."""
        for machine in machines:
            machine.lock.acquire(machine.timeout_s, self.say)
            self.locks.append(machine.lock)
            ledger = machine.lock.ledger()
            reap_stale(ledger, self.say, own_run=self.run_id)
            ledger.record(self.entry(machine.hosts, False))
            self._ledgers.append((ledger, machine.hosts))

    def started_on(self, host: str) -> None:
        """A process started on ``host``: its machine's entry lists it from now on."""
        for ledger, hosts in self._ledgers:
            if host in hosts:
                ledger.record(self.entry(hosts, False))

    def keep(self) -> None:
        """The run is left running on purpose: the next session reports it, leaves it alone."""
        for ledger, hosts in self._ledgers:
            with contextlib.suppress(Exception):
                ledger.record(self.entry(hosts, True))
        self._ledgers.clear()

    def release(self, *, forget: bool) -> None:
        """Release the locks; with ``forget`` (nothing of the run is left) the run leaves the
        ledgers too, else it stays listed for the next session to stop."""
        for ledger, _ in self._ledgers if forget else ():
            with contextlib.suppress(Exception):
                ledger.forget(self.run_id)
        self._ledgers.clear()
        while self.locks:
            lock = self.locks.pop()
            with contextlib.suppress(Exception):
                lock.release()
