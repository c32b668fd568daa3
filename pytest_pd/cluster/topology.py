"""Bring a cluster up (host locks first; servers in parallel across hosts, each gated on its own
health; the router last, gated on /readiness) and down again (reverse order, always, verified; logs
fetched into the run directory; locks released)."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
import typing
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import yaml

from pytest_pd.cluster.commands import LaunchCommand, interpreter, launch_plan
from pytest_pd.cluster.host_agent import PROC_ENV, RUN_ENV
from pytest_pd.cluster.hosts import Host, LocalHost, Proc
from pytest_pd.cluster.hosts import port_in_use as port_in_use
from pytest_pd.cluster.locks import (
    HostLock,
    LocalHostLock,
    RemoteHostLock,
    holder_info,
    local_lock_dir,
    owner_info,
)
from pytest_pd.cluster.spec import ClusterSpec, load_cluster
from pytest_pd.cluster.ssh import SSHConnection, SSHHost, resolve_target
from pytest_pd.cluster.stale_runs import RunLedger, reap_stale, run_entry
from pytest_pd.errors import BringUpError, HostError, PdError
from pytest_pd.redaction import redact_env, scrub

Say = Callable[[str], None]
STATE_FILE = "topology.json"


def probe(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (our own URLs)
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class MachineLock:
    """The host lock of one machine, how long to wait for it, and the cluster's hosts on it."""

    lock: HostLock
    timeout_s: float
    hosts: frozenset[str]


@dataclass
class Running:
    command: LaunchCommand
    proc: Proc
    host: Host


class Topology:
    """One cluster's processes. Use as a context manager: teardown runs whatever happens."""

    def __init__(self, spec: ClusterSpec, run_dir: Path, *, local_python: str = sys.executable,
                 say: Say = print, keep_on_failure: bool = False) -> None:
        self.spec = spec
        self.keep_on_failure = keep_on_failure  # a failed bring-up leaves its processes up
        self.run_dir = run_dir
        self.say = say
        self.plan = launch_plan(spec, local_python=local_python)
        self.running: list[Running] = []
        self._running_lock = threading.Lock()
        self.locks: list[HostLock] = []
        # every process of this bring-up carries it (host_agent): how a later session tells ours
        self.run_id = f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
        self._ledgers: list[tuple[RunLedger, frozenset[str]]] = []  # per machine: where this
        # run is recorded, and the cluster's hosts on that machine
        self._hosts: dict[str, Host] = {}
        self._conns: dict[object, SSHConnection] = {}
        self._local_python = local_python
        self._secrets = spec.secret_values()
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
                self.connect_hosts()
                self._lock_hosts()
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
        self.say(f"{self.spec.label}: ready at {self.router_url} "
                 f"({self.ready_at - self.started_at:.1f} s to bring up)")

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
        """Host locks and connections go only after every process is gone; the run leaves the
        ledgers with its last process (one that outlived teardown stays listed for the next)."""
        for ledger, _ in self._ledgers if not self.running else ():
            with contextlib.suppress(Exception):
                ledger.forget(self.run_id)
        self._ledgers.clear()
        while self.locks:
            lock = self.locks.pop()
            with contextlib.suppress(Exception):
                lock.release()
        for host in self._hosts.values():
            with contextlib.suppress(Exception):
                host.close()
        self._hosts.clear()
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()
        self._conns.clear()

    def dead(self) -> list[str]:
        """Processes of this topology that have exited, described for an error message."""
        out = []
        for item in self.running:
            code = item.host.exit_code(item.proc)
            if code is not None:
                out.append(f"{item.command.name} on {item.command.host} exited with code {code}; "
                           f"last log lines ({item.proc.log_location}):\n"
                           f"{self.tail(item, 15)}")
        return out

    def _save_state(self) -> None:
        """``RUN_DIR/topology.json``: what runs where, so `pytest-pd down RUN_DIR` can find it."""
        state = {"cluster": self.spec.label, "file": str(self.spec.source),
                 "router_url": self.router_url,
                 "processes": [{"name": r.command.name, "host": r.command.host, "pid": r.proc.pid}
                               for r in self.running]}
        path = self.run_dir / STATE_FILE
        if not self.running:  # nothing of this run is left to stop
            path.unlink(missing_ok=True)
            return
        tmp = self.run_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def adopt(cls, run_dir: Path, *, say: Say = print) -> Topology:
        """The topology a session left running in ``run_dir`` (``--pd-keep-cluster-on-failure``),
        with its processes, ready for :meth:`down`."""
        try:
            state = json.loads((run_dir / STATE_FILE).read_text())
        except FileNotFoundError:
            raise HostError(f"{run_dir} has no {STATE_FILE}: nothing of that run is left running "
                            "(teardown removes it), or it is not a run directory.") from None
        except (OSError, ValueError) as exc:
            raise HostError(f"{run_dir / STATE_FILE} cannot be read ({exc}).") from None
        spec = load_cluster(state["file"], run_dir)
        topology = cls(spec, run_dir, say=say)
        topology.connect_hosts()
        by_name = {c.name: c for c in topology.plan}
        for entry in state["processes"]:
            cmd = by_name.get(entry["name"])
            if cmd is None:
                raise HostError(
                    f"{state['file']} no longer has {entry['name']} (edited since the run?); stop "
                    f"the process group {entry['pid']} on {entry['host']} by hand "
                    f"(`kill -TERM -- -{entry['pid']}`), and the others listed in {run_dir / STATE_FILE}.")
            host = topology._host(entry["host"])
            topology.running.append(Running(cmd, host.adopt(entry["name"], int(entry["pid"]),
                                                            run_dir), host))
        return topology

    def detach(self) -> None:
        """Leave every process running (for debugging), release locks and connections, and say
        how to reach the cluster and how to tear it down (also if Ctrl-C comes meanwhile)."""
        attach = attach_file(self.spec, self.run_dir)
        lines = [f"{self.spec.label} is left running for debugging (--pd-keep-cluster-on-failure):",
                 f"  router      {self.router_url}  (try: curl {self.router_url}/v1/models)"]
        lines += [f"  {r.command.name:<11} on {r.command.host}, pid {r.proc.pid}, log {r.proc.log_location}"
                  for r in self.running]
        lines += [f"  attach:     pytest suites/ --cluster={attach}  (absolute bounds; launcher: attach)",
                  f"  tear down:  pytest-pd down {self.run_dir}"]
        try:
            with signals_deferred():
                for ledger, hosts in self._ledgers:  # the next session reports it, leaves it alone
                    with contextlib.suppress(Exception):
                        self._record(ledger, hosts, kept=True)
                self._ledgers.clear()
                self.running = []  # no longer ours to stop
                self._release()
        finally:
            self.say("\n".join(lines))

    def tail(self, item: Running, lines: int) -> str:
        """The last lines of a process's log, secrets of the cluster file scrubbed."""
        return scrub(item.host.tail_log(item.proc, lines), self._secrets)

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
            elif self.spec.launcher == "ssh":
                self._hosts[name] = self._ssh_host(name)
            else:
                raise HostError(f"cluster {self.spec.label} uses launcher: attach, which starts "
                                "nothing; no host is needed.")
        return self._hosts[name]

    def _ssh_host(self, name: str) -> SSHHost:
        """An SSH host; host names that reach the same account on the same machine share one
        connection for the whole bring-up."""
        host_spec = self.spec.hosts[name]
        target = resolve_target(name, host_spec, resolve_path=self.spec.resolve_path,
                                source=str(self.spec.source or "the cluster file"))
        conn = self._conns.get(target.key)
        if conn is None:
            conn = self._conns[target.key] = SSHConnection(target, say=self.say)
        return SSHHost(name, host_spec, conn,
                       python=interpreter(self.spec, name, self._local_python))

    def _used_hosts(self) -> list[str]:
        return list(dict.fromkeys(c.host for c in self.plan))

    def connect_hosts(self) -> None:
        """Open every SSH connection at once (a no-op for local hosts): unreachable hosts, unknown
        host keys and refused logins fail here, before anything starts."""
        hosts = [self._host(name) for name in self._used_hosts()]
        conns = list({id(h.conn): h.conn for h in hosts if isinstance(h, SSHHost)}.values())
        if not conns:
            return
        with ThreadPoolExecutor(max_workers=len(conns)) as pool:
            futures = [pool.submit(conn.connect) for conn in conns]
            errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise typing.cast(BaseException, errors[0])
        for conn in conns:
            self.say(f"{self.spec.label}: connected to {conn.target.name} ({conn.target.where})")

    def _record(self, ledger: RunLedger, hosts: frozenset[str], kept: bool = False) -> None:
        """This run in one machine's ledger, with the processes it started there."""
        entry = run_entry(self.run_id, self.spec.label, self.run_dir, owner_info(),
                          started=self.started_at, kept=kept)
        entry["leaders"] = [{"name": r.command.name, "pid": r.proc.pid}
                            for r in self.running if r.command.host in hosts]
        ledger.record(entry)

    def _lock_hosts(self) -> None:
        """One lock per machine, taken in a fixed order (no deadlock between two sessions that
        want overlapping hosts), each waited for up to the host's ``lock_timeout_s``. Holding it,
        stop what a dead session left on that machine, then record this run there."""
        for machine in self.host_locks():
            machine.lock.acquire(machine.timeout_s, self.say)
            self.locks.append(machine.lock)
            if isinstance(machine.lock, RemoteHostLock):
                machine.lock.conn.on_reconnect(lambda lock=machine.lock: lock.reacquire(self.say))
            ledger = machine.lock.ledger()
            reap_stale(ledger, self.say, own_run=self.run_id)
            self._record(ledger, machine.hosts)
            self._ledgers.append((ledger, machine.hosts))

    def host_locks(self) -> list[MachineLock]:
        """The lock of each machine this cluster uses (not taken), in the order they are taken."""
        info = holder_info(self.spec.label, self.run_dir)
        wanted: dict[str, MachineLock] = {}
        names = self._used_hosts()
        if self.spec.launcher == "local":
            specs = [self.spec.hosts[n] for n in names]
            configured = next((h.lock_dir for h in specs if h.lock_dir), None)
            lock_dir = local_lock_dir(self.spec.resolve_path(configured) if configured else None)
            timeout = max(h.lock_timeout_s for h in specs)
            wanted["localhost"] = MachineLock(
                LocalHostLock(lock_dir, "localhost", "this machine (launcher: local)", info),
                timeout, frozenset(names))
        else:
            for name in names:
                host = typing.cast(SSHHost, self._host(name))
                key = f"{host.conn.target.hostname}:{host.address}"
                if key in wanted:
                    wanted[key].hosts |= {name}
                    continue
                lock = RemoteHostLock(host.conn, host.spec.lock_dir, host.address,
                                      f"host {name} ({host.address})", info, python=host.python)
                wanted[key] = MachineLock(lock, host.spec.lock_timeout_s, frozenset([name]))
        return [wanted[key] for key in sorted(wanted)]

    def _check_ports(self) -> None:
        spec = self.spec
        wanted: dict[str, list[tuple[str, str, int]]] = {}
        for role in ("prefill", "decode"):
            for i, server in enumerate(spec.servers(role)):
                host = server.node_hosts[0]
                address = server.listen or spec.host_address(host)
                wanted.setdefault(host, []).append((f"{role}-{i}", address, server.port))
                if server.bootstrap_port:
                    wanted[host].append((f"{role}-{i} bootstrap", address, server.bootstrap_port))
        router_address = spec.router.listen or spec.host_address(spec.router_host)
        wanted.setdefault(spec.router_host, []).append(("router", router_address, spec.router.port))
        if spec.router.prometheus_port:
            wanted[spec.router_host].append(("router prometheus",
                                             spec.router.prometheus_host or router_address,
                                             spec.router.prometheus_port))
        def check(host_name: str) -> list[str]:
            items = wanted[host_name]
            taken = set(self._host(host_name).ports_in_use([(a, p) for _, a, p in items]))
            where = f" on {host_name}" if self.spec.launcher != "local" else ""
            return [f"{what} wants {addr}:{port}{where}" for what, addr, port in items
                    if (addr, port) in taken]

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
        if len(commands) <= 1 or self.spec.launcher == "local":
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
        host = self._host(cmd.host)
        tags = {RUN_ENV: self.run_id, PROC_ENV: cmd.name}
        proc = host.start_detached(cmd.name, cmd.argv, {**cmd.env, **tags}, self.run_dir)
        item = Running(cmd, proc, host)
        with self._running_lock:
            self.running.append(item)
            self._save_state()
            for ledger, hosts in self._ledgers:
                if cmd.host in hosts:
                    self._record(ledger, hosts)
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
                    raise BringUpError(f"while {self.spec.label}'s router waited for its workers: "
                                       + "\n".join(dead))
            status = probe(url)
            if status == 200:
                self.say(f"{self.spec.label}: {cmd.name} healthy after {time.monotonic() - start:.1f} s")
                return
            now = time.monotonic()
            if now > deadline:
                raise BringUpError(
                    f"{cmd.name} on {cmd.host} did not become healthy within "
                    f"{cmd.health_timeout_s:.0f} s ({url} last answered {status or 'nothing'}). "
                    f"Last log lines ({item.proc.log_location}):\n{self.tail(item, 20)}\n"
                    "Raise health_timeout_s (servers) or router.readiness_timeout_s in the cluster "
                    "file if it is just slow."
                )
            if now > next_note:
                last = self.tail(item, 1).strip()
                self.say(f"{self.spec.label}: waiting for {cmd.name} on {cmd.host} "
                         f"({now - start:.0f} s of {cmd.health_timeout_s:.0f} s), last log line: "
                         f"{last or '(empty)'}")
                next_note = now + 10.0
            cancel.wait(delay)
            delay = min(delay * 1.5, 2.0)

    def _gate_attached(self) -> None:
        """``launcher: attach``: no bring-up, no locks, no teardown; only check (all at once) that
        the workers and the router named in the file answer."""
        checks = [c for c in self.plan if c.health_url]
        with ThreadPoolExecutor(max_workers=max(1, len(checks))) as pool:
            codes = list(pool.map(lambda c: probe(typing.cast(str, c.health_url), timeout=10.0),
                                  checks))
        bad = [f"{c.name} at {c.health_url} answered {code or 'nothing'}"
               for c, code in zip(checks, codes, strict=True) if code != 200]
        if bad:
            raise BringUpError(
                f"attached cluster {self.spec.label} is not healthy: {'; '.join(bad)}. Start the "
                f"cluster first (`pytest-pd commands {self.spec.label}` prints how), or use "
                "launcher: local/ssh to let pytest-pd bring it up."
            )
        self.say(f"{self.spec.label}: attached; {', '.join(c.name for c in checks)} healthy")


def attach_file(spec: ClusterSpec, run_dir: Path) -> Path:
    """A copy of the cluster file with ``launcher: attach`` (no bring-up, no teardown) and paths
    made absolute, written into the run directory: tests run against the cluster as it is."""
    data = redact_env(spec.model_dump(mode="json", exclude_unset=True))  # attach needs no env
    data.update(name=spec.label, launcher="attach")
    data.pop("baseline", None)  # its file lives next to the original, not here
    data["model"]["path"] = spec.model_path
    if spec.model.tokenizer:
        data["model"]["tokenizer"] = spec.tokenizer_path
    path = run_dir / "attach" / f"{spec.label}.yaml"  # clusters are named by their file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {spec.label} as left running by pytest-pd; from {spec.source}\n"
                    + yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done (main thread only): Python handlers that
    only take note replace the usual ones meanwhile (whatever thread the kernel delivers to), and
    a noted signal is raised as KeyboardInterrupt right after the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: noted.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if noted:
        raise KeyboardInterrupt(f"signal {noted[0]} during teardown")


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
