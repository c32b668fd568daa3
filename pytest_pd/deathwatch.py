"""Watching a cluster's processes while a workload runs, so a run stops within about a second of
a process dying."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pytest_pd.cluster.topology import Topology

DEATH_GRACE_S = 1.0


class DeathWatch:
    """Watches a topology's processes while a workload runs (a thread, every ``interval_s``), so
    a run stops within about a second of a process dying instead of waiting on requests that a
    real router may leave hanging for minutes (``reason`` is the runner's ``abort``)."""

    def __init__(self, topology: Topology, on_death: Callable[[str], None], interval_s: float = 1.0) -> None:
        self.topology = topology
        self.on_death = on_death
        self.interval_s = interval_s
        self.dead: list[str] = []
        self.stop_servers = False  # once one died, stop the others (not with --pd-keep-cluster-on-failure)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pytest-pd-deathwatch", daemon=True)

    def start(self) -> DeathWatch:
        if self.topology.manages_processes:
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                dead = self.topology.dead()
            except Exception:  # noqa: BLE001 - a host we cannot ask now; the run's errors say more
                continue
            if dead:
                self.dead = dead
                self.on_death(self.reason() or "")
                if self.stop_servers:
                    # the rest cannot serve, and a server left without its peer may spin every core
                    # it has (vLLM's prefill after its decode died: the run's own cleanup then
                    # crawled for 30 s on two cores); the router stays to answer what is in flight
                    self.topology.stop_servers()
                return

    def reason(self) -> str | None:
        """Why the run must stop (the first dead process, one line), or None."""
        return self.dead[0].split(";")[0] if self.dead else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60.0)  # a last topology.dead() over SSH may take a while

    def final_check(self, failed: bool) -> list[str]:
        """Processes that died, after a run: what the watch saw, else a last look (after failed
        requests a dying process may still be closing the sockets that failed them: give it a
        moment to be seen dead)."""
        if self.dead or not self.topology.manages_processes:
            return self.dead
        dead = self.topology.dead()
        if not dead and failed:
            time.sleep(DEATH_GRACE_S)
            dead = self.topology.dead()
        return dead
