"""Bring a cluster up (host locks first; servers in parallel across hosts, each gated on its own
health; the router last, gated on /readiness and then on /workers showing every worker healthy)
and down again (reverse order, always, verified; logs fetched into the run directory; locks
released)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import typing
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_pd.cluster import engine_check, router_workers
from pytest_pd.cluster.commands import LaunchCommand, launch_plan
from pytest_pd.cluster.host_agent import PROC_ENV, RUN_ENV
from pytest_pd.cluster.hosts import Host, Proc
from pytest_pd.cluster.launchers import launcher_of
from pytest_pd.cluster.locks import HostLock, MachineLock, holder_info, owner_info
from pytest_pd.cluster.reservation import Reservation
from pytest_pd.cluster.signals import signals_deferred
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.cluster.stale_runs import run_entry
from pytest_pd.cluster.state import STATE_FILE, attach_file, read_state, save_state
from pytest_pd.errors import BringUpError, HostError, PdError
from pytest_pd.http_get import get_status
from pytest_pd.redaction import scrub

Say = Callable[[str], None]


@dataclass
class Running:
    command: LaunchCommand
    proc: Proc
    host: Host


class Topology:
    """One cluster's processes. Use as a context manager: teardown runs whatever happens."""

    def __init__(
        self,
        spec: ClusterSpec,
        run_dir: Path,
        *,
        local_python: str = sys.executable,
        say: Say = print,
        keep_on_failure: bool = False,
    ) -> None:
        self.spec = spec
        self.launcher = launcher_of(spec)
        # a failed bring-up leaves its processes up (not an allocation: that ends with the session)
        self.keep_on_failure = keep_on_failure and not self.launcher.allocates
        self.run_dir = run_dir
        self.say = say
        self.local_python = local_python
        self.plan = launch_plan(spec, local_python=local_python)
        self.running: list[Running] = []
        self._running_lock = threading.Lock()
        # every process of this bring-up carries it (host_agent): how a later session tells ours
        self.run_id = f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
        self.reservation = Reservation(self.run_id, self._ledger_entry, say)
        self.hosts = self.launcher.hosts(spec, say=say, local_python=local_python)
        self._secrets = spec.secret_values()
        self.started_at: float | None = None
        self.ready_at: float | None = None

    # ------------------------------------------------------------------ public

    @property
    def router_url(self) -> str:
        return self.spec.router_url

    @property
    def manages_processes(self) -> bool:
        """False for a cluster someone else runs (launcher: attach): health checks only."""
        return self.launcher.manages_processes

    @property
    def locks(self) -> list[HostLock]:
        return self.reservation.locks

    def __enter__(self) -> Topology:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        self.started_at = time.time()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.manages_processes:
                self.connect_hosts()
                self.spec, self.plan = engine_check.checked(
                    self.spec,
                    self.plan,
                    self.hosts,
                    self.say,
                    lambda s: launch_plan(s, local_python=self.local_python),
                )
                self.reservation.take(self.host_locks())
                self._check_ports()
                self._start_all([c for c in self.plan if c.role != "router"])
                self._gate_all(list(self.running))
                router_cmd = next(c for c in self.plan if c.role == "router")
                self._gate_all([self._start(router_cmd)])
            else:
                self._gate_attached()
        except PdError:
            if self.keep_on_failure and self.running:
                self.detach()
            else:
                self.down()
            raise
        except BaseException:
            self.down()
            raise
        self.ready_at = time.time()
        self.say(
            f"{self.spec.label}: ready at {self.router_url} "
            f"({self.ready_at - self.started_at:.1f} s to bring up)"
        )

    def down(self) -> None:
        """Stop every process in reverse start order and confirm its group is gone; fetch the
        logs into the run directory; release the host locks; close the connections. Ctrl-C and
        SIGTERM arriving meanwhile wait until teardown is done (a second Ctrl-C must not leave
        servers behind)."""
        interrupted: BaseException | None = None
        problems: list[str] = []
        with signals_deferred():
            while True:
                try:
                    self._stop_processes(problems)
                    break
                except KeyboardInterrupt as exc:  # a signal delivered just before the deferral
                    interrupted = exc
            self._release()
        if interrupted is not None:
            raise interrupted
        if problems:
            raise HostError("teardown left processes behind: " + " ".join(problems))

    def stop_servers(self, grace_s: float = 2.0) -> None:
        """Stop the prefill and decode servers still running (teardown later takes their logs)."""
        for item in list(self.running):
            if item.command.role != "router" and item.host.exit_code(item.proc) is None:
                with contextlib.suppress(HostError, OSError):
                    item.host.kill_tree(item.proc, grace_s=grace_s)

    def _stop_processes(self, problems: list[str]) -> None:
        while self.running:
            item = self.running[-1]  # popped once dealt with: an interrupted kill is retried
            try:
                item.host.kill_tree(item.proc)
            except HostError as exc:
                problems.append(str(exc))
            self.running.pop()
            self._save_state()  # what is stopped is off the list (`pytest-pd down` never re-kills)
            with contextlib.suppress(OSError, HostError):
                item.host.fetch_log(item.proc, self.run_dir)
                item.proc.remote_log = None  # the local copy is the one to read from now on

    def _release(self) -> None:
        """Host locks and connections go after every process; one that outlived teardown stays listed."""
        self.reservation.release(forget=not self.running)
        self.hosts.close()

    def dead(self) -> list[str]:
        """Processes of this topology that have exited, described for an error message."""
        out = []
        for item in self.running:
            code = item.host.exit_code(item.proc)
            if code is not None:
                out.append(
                    f"{item.command.name} on {item.command.host} exited with code {code}; "
                    f"last log lines ({item.proc.log_location}):\n"
                    f"{self.tail(item, 15)}"
                )
        return out

    def _save_state(self) -> None:
        """``RUN_DIR/topology.json``: what runs where, so `pytest-pd down RUN_DIR` can find it."""
        save_state(
            self.run_dir,
            self.spec,
            [{"name": r.command.name, "host": r.command.host, "pid": r.proc.pid} for r in self.running],
        )

    @classmethod
    def adopt(cls, run_dir: Path, *, say: Say = print) -> Topology:
        """The topology a session left running in ``run_dir`` (``--pd-keep-cluster-on-failure``),
        with its processes, ready for :meth:`down`."""
        state = read_state(run_dir)
        spec = load_cluster(state["file"], run_dir)
        problem = launcher_of(spec).adopt_problem(spec)
        if problem is not None:
            raise HostError(problem)
        topology = cls(spec, run_dir, say=say)
        topology.connect_hosts()
        by_name = {c.name: c for c in topology.plan}
        for entry in state["processes"]:
            cmd = by_name.get(entry["name"])
            if cmd is None:
                raise HostError(
                    f"{state['file']} no longer has {entry['name']} (edited since the run?); stop "
                    f"the process group {entry['pid']} on {entry['host']} by hand "
                    f"(`kill -TERM -- -{entry['pid']}`), and the others listed in {run_dir / STATE_FILE}."
                )
            host = topology.host(entry["host"])
            topology.running.append(Running(cmd, host.adopt(entry["name"], int(entry["pid"]), run_dir), host))
        return topology

    def detach(self) -> None:
        """Leave every process running (for debugging), release locks and connections, and say
        how to reach the cluster and how to tear it down (also if Ctrl-C comes meanwhile)."""
        attach = attach_file(self.spec, self.run_dir)
        lines = [
            f"{self.spec.label} is left running for debugging (--pd-keep-cluster-on-failure):",
            f"  router      {self.router_url}  (try: curl {self.router_url}/v1/models)",
        ]
        lines += [
            f"  {r.command.name:<11} on {r.command.host}, pid {r.proc.pid}, log {r.proc.log_location}"
            for r in self.running
        ]
        lines += [
            f"  attach:     pytest suites/ --cluster={attach}  (absolute bounds; launcher: attach)",
            f"  tear down:  pytest-pd down {self.run_dir}",
        ]
        try:
            with signals_deferred():
                self.reservation.keep()
                self.running = []  # no longer ours to stop
                self._release()
        finally:
            self.say("\n".join(lines))

    def tail(self, item: Running, lines: int) -> str:
        """The last lines of a process's log, secrets of the cluster file scrubbed."""
        return scrub(item.host.tail_log(item.proc, lines), self._secrets)

    def processes(self) -> list[dict[str, object]]:
        return [
            {
                "name": r.command.name,
                "host": r.command.host,
                "pid": r.proc.pid,
                "log": str(r.proc.log_path),
                "command": r.command.shell_line(),
            }
            for r in self.running
        ]

    def host(self, name: str) -> Host:
        """The host named ``name`` in the cluster file, over this bring-up's own connection."""
        return self.hosts.get(name)

    def _used_hosts(self) -> list[str]:
        return list(dict.fromkeys(c.host for c in self.plan))

    def connect_hosts(self) -> None:
        """Reach every host at once (SSH connections; nothing to do for local hosts): unreachable
        hosts, unknown host keys and refused logins fail here, before anything starts). Hosts
        their launcher places now (Slurm's nodes) take their addresses into the spec and plan."""
        self.hosts.connect(self._used_hosts())
        placed = self.hosts.addresses()
        if placed:
            self.spec = self.spec.placed(placed)
            self.plan = launch_plan(self.spec, local_python=self.local_python)

    def host_locks(self) -> list[MachineLock]:
        """The lock of each machine this cluster uses (not taken), in the order they are taken."""
        return self.hosts.machine_locks(self._used_hosts(), holder_info(self.spec.label, self.run_dir))

    # ------------------------------------------------------------------ internals

    def _ledger_entry(self, hosts: frozenset[str], kept: bool) -> dict[str, Any]:
        """This run in one machine's ledger, with the processes it started there."""
        entry = run_entry(
            self.run_id, self.spec.label, self.run_dir, owner_info(), started=self.started_at, kept=kept
        )
        entry["leaders"] = [
            {"name": r.command.name, "pid": r.proc.pid} for r in self.running if r.command.host in hosts
        ]
        return entry

    def _check_ports(self) -> None:
        spec = self.spec
        wanted = spec.ports_by_host()

        def check(host_name: str) -> list[str]:
            items = wanted[host_name]
            taken = set(self.host(host_name).ports_in_use([(a, p) for _, a, p in items]))
            where = self.launcher.where(host_name)
            return [
                f"{what} wants {addr}:{port}{where}" for what, addr, port in items if (addr, port) in taken
            ]

        with ThreadPoolExecutor(max_workers=len(wanted)) as pool:  # one round trip per host
            busy = [line for lines in pool.map(check, list(wanted)) for line in lines]
        if busy:
            raise BringUpError(
                f"cannot bring up {spec.label}: port already in use ({'; '.join(busy)}). Another "
                f"cluster or program holds it: stop it (`ss -ltnp | grep PORT` on that host shows "
                f"who), or change the port in {spec.source}."
            )

    def _start_all(self, commands: list[LaunchCommand]) -> None:
        """Start servers in parallel (one SSH round trip each, all hosts at once)."""
        if len(commands) <= 1 or not self.launcher.parallel_starts:
            for cmd in commands:
                self._start(cmd)
            return
        with ThreadPoolExecutor(max_workers=min(len(commands), 8)) as pool:
            futures = [pool.submit(self._start, cmd) for cmd in commands]
            errors = [f.exception() for f in futures if f.exception() is not None]
        # keep the plan's order for teardown (reverse) and reports
        order = {cmd.name: i for i, cmd in enumerate(self.plan)}
        self.running.sort(key=lambda r: order.get(r.command.name, len(order)))
        if errors:
            raise typing.cast(BaseException, errors[0])

    def _start(self, cmd: LaunchCommand) -> Running:
        host = self.host(cmd.host)
        tags = {RUN_ENV: self.run_id, PROC_ENV: cmd.name}
        proc = host.start_detached(cmd.name, cmd.launch_argv, {**cmd.env, **tags}, self.run_dir)
        item = Running(cmd, proc, host)
        with self._running_lock:
            self.running.append(item)
            self._save_state()
            self.reservation.started_on(cmd.host)
        self.say(f"{self.spec.label}: started {cmd.name} on {cmd.host} (pid {proc.pid})")
        return item

    def _gate_all(self, items: list[Running]) -> None:
        gated = [i for i in items if i.command.health_url]
        if not gated:
            return
        cancel = threading.Event()
        with ThreadPoolExecutor(max_workers=len(gated)) as pool:
            futures = [pool.submit(self._gate, item, cancel) for item in gated]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
                for fut in futures:
                    if fut.done() and fut.exception() is not None:
                        raise typing.cast(BaseException, fut.exception())
            finally:
                cancel.set()

    def _gate(self, item: Running, cancel: threading.Event) -> None:
        cmd = item.command
        url = typing.cast(str, cmd.health_url)
        start = time.monotonic()
        deadline = start + cmd.health_timeout_s
        delay, next_note = 0.1, start + 5.0
        while not cancel.is_set():
            code = item.host.exit_code(item.proc)
            if code is not None:
                raise BringUpError(
                    f"{cmd.name} on {cmd.host} exited with code {code} during bring-up of "
                    f"{self.spec.label}, before {url} answered. Last log lines "
                    f"({item.proc.log_location}):\n{self.tail(item, 20)}\n"
                    "Fix the cause shown in the log (command: `pytest-pd commands "
                    f"{self.spec.label}`)."
                )
            if cmd.role == "router":  # a worker dying now would keep the router unready for good
                dead = self.dead()
                if dead:
                    raise BringUpError(
                        f"while {self.spec.label}'s router waited for its workers: " + "\n".join(dead)
                    )
            status = get_status(url)
            workers = None
            if status == 200 and cmd.workers_url:  # the router: ready, and showing every worker?
                workers = router_workers.probe(cmd.workers_url, cmd.expected_workers)
            if status == 200 and (workers is None or workers.ok):
                self.say(f"{self.spec.label}: {cmd.name} healthy after {time.monotonic() - start:.1f} s")
                if cmd.loads_url:  # routing by polled loads: has it polled every worker?
                    self.say(f"{self.spec.label}: {router_workers.await_loads(cmd, cancel)}")
                return
            now = time.monotonic()
            if now > deadline:
                if cmd.workers_url:
                    workers = workers or router_workers.probe(cmd.workers_url, cmd.expected_workers)
                    raise BringUpError(self._router_not_ready(item, status, workers))
                raise BringUpError(
                    f"{cmd.name} on {cmd.host} did not become healthy within "
                    f"{cmd.health_timeout_s:.0f} s ({url} last answered {status or 'nothing'}). "
                    f"Last log lines ({item.proc.log_location}):\n{self.tail(item, 20)}\n"
                    "Raise health_timeout_s (servers) in the cluster file if it is just slow."
                )
            if now > next_note:
                last = self.tail(item, 1).strip()
                self.say(
                    f"{self.spec.label}: waiting for {cmd.name} on {cmd.host} "
                    f"({now - start:.0f} s of {cmd.health_timeout_s:.0f} s)"
                    + (f", {workers.text}" if workers else "")
                    + f", last log line: {last or '(empty)'}"
                )
                next_note = now + 10.0
            cancel.wait(delay)
            delay = min(delay * 1.5, 0.5)  # a local GET: cheap, and it shortens every bring-up

    def _router_not_ready(
        self, item: Running, status: int | None, workers: router_workers.WorkersView
    ) -> str:
        cmd = item.command
        return (
            f"{cmd.name} on {cmd.host} did not become ready within {cmd.health_timeout_s:.0f} s: "
            f"{cmd.health_url} last answered {status or 'nothing'}; {workers.text} (from "
            f"{cmd.workers_url}). Check each worker named there: its log in {self.run_dir} and its "
            f"/health from {cmd.host} (a worker the router cannot reach shows as unhealthy or not "
            f"registered). Last log lines of the router ({item.proc.log_location}):\n"
            f"{self.tail(item, 20)}\nRaise router.readiness_timeout_s in the cluster file if the "
            "workers are just slow to register."
        )

    def _gate_attached(self) -> None:
        """``launcher: attach``: no bring-up, no locks, no teardown; only check (all at once) that
        the workers and the router named in the file answer."""
        checks = [c for c in self.plan if c.health_url]
        with ThreadPoolExecutor(max_workers=max(1, len(checks))) as pool:
            codes = list(pool.map(lambda c: get_status(typing.cast(str, c.health_url), timeout=10.0), checks))
        bad = [
            f"{c.name} at {c.health_url} answered {code or 'nothing'}"
            for c, code in zip(checks, codes, strict=True)
            if code != 200
        ]
        for c, code in zip(checks, codes, strict=True):
            if c.workers_url and code is not None:  # a router that answers: which workers it sees
                workers = router_workers.probe(c.workers_url, c.expected_workers)
                if not workers.ok:
                    bad.append(f"{workers.text} (from {c.workers_url})")
        if bad:
            raise BringUpError(
                f"attached cluster {self.spec.label} is not healthy: {'; '.join(bad)}. Start the "
                f"cluster first (`pytest-pd commands {self.spec.label}` prints how) and fix any "
                "worker named above, or use launcher: local/ssh to let pytest-pd bring it up."
            )
        self.say(f"{self.spec.label}: attached; {', '.join(c.name for c in checks)} healthy")
