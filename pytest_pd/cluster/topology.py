"""Bring a cluster up (servers in parallel, each gated on its own health; the router last, gated on
/readiness) and down again (reverse order, always, verified)."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
import time
import typing
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from pytest_pd.cluster.commands import LaunchCommand, launch_plan
from pytest_pd.cluster.hosts import Host, LocalHost, Proc
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.errors import BringUpError, HostError

Say = Callable[[str], None]


def probe(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (our own URLs)
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def port_in_use(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return True
    return False


@dataclass
class Running:
    command: LaunchCommand
    proc: Proc
    host: Host


class Topology:
    """One cluster's processes. Use as a context manager: teardown runs whatever happens."""

    def __init__(self, spec: ClusterSpec, run_dir: Path, *, local_python: str = sys.executable,
                 say: Say = print) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.say = say
        self.plan = launch_plan(spec, local_python=local_python)
        self.running: list[Running] = []
        self._hosts: dict[str, Host] = {}
        self.started_at: float | None = None
        self.ready_at: float | None = None

    # ------------------------------------------------------------------ public

    @property
    def router_url(self) -> str:
        return self.spec.router_url

    @property
    def manages_processes(self) -> bool:
        return self.spec.launcher != "attach"

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
                self._check_ports()
                servers = [c for c in self.plan if c.role != "router"]
                for cmd in servers:
                    self._start(cmd)
                self._gate_all(self.running)
                router_cmd = next(c for c in self.plan if c.role == "router")
                self._gate_all([self._start(router_cmd)])
            else:
                self._gate_attached()
        except BaseException:
            self.down()
            raise
        self.ready_at = time.time()
        self.say(f"{self.spec.label}: ready at {self.router_url} "
                 f"({self.ready_at - self.started_at:.1f} s to bring up)")

    def down(self) -> None:
        """Stop every process in reverse start order and confirm its group is gone."""
        problems = []
        while self.running:
            item = self.running.pop()
            try:
                item.host.kill_tree(item.proc)
            except HostError as exc:
                problems.append(str(exc))
            with contextlib.suppress(OSError, HostError):
                item.host.fetch_log(item.proc, self.run_dir)
        for host in self._hosts.values():
            host.close()
        self._hosts.clear()
        if problems:
            raise HostError("teardown left processes behind: " + " ".join(problems))

    def dead(self) -> list[str]:
        """Processes of this topology that have exited, described for an error message."""
        out = []
        for item in self.running:
            code = item.host.exit_code(item.proc)
            if code is not None:
                out.append(f"{item.command.name} on {item.command.host} exited with code {code}; "
                           f"last log lines ({item.proc.log_path}):\n"
                           f"{item.host.tail_log(item.proc, 15)}")
        return out

    def processes(self) -> list[dict[str, object]]:
        return [
            {"name": r.command.name, "host": r.command.host, "pid": r.proc.pid,
             "log": str(r.proc.log_path), "command": r.command.shell_line()}
            for r in self.running
        ]

    # ------------------------------------------------------------------ internals

    def _host(self, name: str) -> Host:
        if name not in self._hosts:
            if self.spec.launcher == "local":
                self._hosts[name] = LocalHost(name)
            else:
                raise HostError(
                    f"cluster {self.spec.label} uses launcher: {self.spec.launcher}, which this "
                    "version cannot start yet; use launcher: local (loopback hosts) or attach "
                    "(a cluster someone else started)."
                )
        return self._hosts[name]

    def _check_ports(self) -> None:
        spec = self.spec
        wanted: list[tuple[str, str, int]] = []
        for role in ("prefill", "decode"):
            for i, server in enumerate(spec.servers(role)):
                address = server.listen or spec.host_address(server.node_hosts[0])
                wanted.append((f"{role}-{i}", address, server.port))
                if server.bootstrap_port:
                    wanted.append((f"{role}-{i} bootstrap", address, server.bootstrap_port))
        router_address = spec.router.listen or spec.host_address(spec.router_host)
        wanted.append(("router", router_address, spec.router.port))
        if spec.router.prometheus_port:
            wanted.append(("router prometheus", spec.router.prometheus_host or router_address,
                           spec.router.prometheus_port))
        busy = [f"{what} wants {addr}:{port}" for what, addr, port in wanted
                if port_in_use(addr, port)]
        if busy:
            raise BringUpError(
                f"cannot bring up {spec.label}: port already in use ({'; '.join(busy)}). Another "
                f"cluster or program holds it: stop it (`ss -ltnp | grep PORT` shows who), or change "
                f"the port in {spec.source}."
            )

    def _start(self, cmd: LaunchCommand) -> Running:
        host = self._host(cmd.host)
        proc = host.start_detached(cmd.name, cmd.argv, cmd.env, self.run_dir)
        item = Running(cmd, proc, host)
        self.running.append(item)
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
        delay, next_note = 0.1, start + 10.0
        while not cancel.is_set():
            code = item.host.exit_code(item.proc)
            if code is not None:
                raise BringUpError(
                    f"{cmd.name} on {cmd.host} exited with code {code} during bring-up of "
                    f"{self.spec.label}, before {url} answered. Last log lines "
                    f"({item.proc.log_path}):\n{item.host.tail_log(item.proc, 20)}\n"
                    "Fix the cause shown in the log (command: `pytest-pd commands "
                    f"{self.spec.label}`)."
                )
            status = probe(url)
            if status == 200:
                self.say(f"{self.spec.label}: {cmd.name} healthy after {time.monotonic() - start:.1f} s")
                return
            now = time.monotonic()
            if now > deadline:
                raise BringUpError(
                    f"{cmd.name} on {cmd.host} did not become healthy within "
                    f"{cmd.health_timeout_s:.0f} s ({url} last answered {status or 'nothing'}). "
                    f"Last log lines ({item.proc.log_path}):\n{item.host.tail_log(item.proc, 20)}\n"
                    "Raise health_timeout_s (servers) or router.readiness_timeout_s in the cluster "
                    "file if it is just slow."
                )
            if now > next_note:
                last = item.host.tail_log(item.proc, 1).strip()
                self.say(f"{self.spec.label}: waiting for {cmd.name} ({now - start:.0f} s): {last}")
                next_note = now + 10.0
            cancel.wait(delay)
            delay = min(delay * 1.5, 2.0)

    def _gate_attached(self) -> None:
        """``launcher: attach``: only check that the router and its workers answer."""
        for cmd in self.plan:
            if cmd.health_url and probe(cmd.health_url, timeout=10.0) != 200:
                raise BringUpError(
                    f"attached cluster {self.spec.label}: {cmd.name} at {cmd.health_url} is not "
                    "healthy. Start the cluster first (`pytest-pd commands "
                    f"{self.spec.label}` prints how), or use launcher: local/ssh."
                )


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (a CI cancel) into KeyboardInterrupt so teardown runs; main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
