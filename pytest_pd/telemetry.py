"""Telemetry sampled during a measurement, in a background thread: each worker's Prometheus
``/metrics`` (its engine's metric names, parsed by :mod:`pytest_pd.prometheus`), the router's
own (``router``: request counts, worker health, circuit-breaker state) and, on every host where
``nvidia-smi`` exists, GPU utilisation, memory and power once per interval.

Parsing is pure (:mod:`pytest_pd.prometheus`, :func:`parse_nvidia_smi`); :class:`Sampler` does the
I/O.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from pytest_pd.cluster import engines, routers
from pytest_pd.cluster.hosts import Host
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.topology import Topology
from pytest_pd.http_get import get_text
from pytest_pd.prometheus import parse_prometheus

NVIDIA_SMI_QUERY = [
    "nvidia-smi",
    "--query-gpu=index,utilization.gpu,memory.used,memory.total,power.draw",
    "--format=csv,noheader,nounits",
]
GPU_FIELDS = ("utilization_pct", "memory_used_mib", "memory_total_mib", "power_w")
NVIDIA_SMI_INVENTORY = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]

ROUTER = "router"
"""The router's name among the sampled targets (the workers go by their process names)."""

RunCommand = Callable[[list[str]], tuple[int, str]]
"""Runs argv on a host, returns (exit code, stdout)."""


def parse_gpu_inventory(text: str) -> str | None:
    """``nvidia-smi --query-gpu=name,driver_version`` CSV → "8× NVIDIA H20 (driver 580.95.05)"
    (each model and driver, counted); None when it lists no GPU."""
    kinds: dict[tuple[str, str], int] = {}
    for line in text.strip().splitlines():
        name, sep, driver = line.rpartition(",")
        if sep and name.strip():
            key = (name.strip(), driver.strip())
            kinds[key] = kinds.get(key, 0) + 1
    if not kinds:
        return None
    ordered = sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n}× {name} (driver {driver})" for (name, driver), n in ordered)


def gpu_inventory(telemetry: Mapping[str, Any] | None) -> dict[str, str]:
    """{host: its GPUs and driver} of a run's telemetry, where the host reported them."""
    gpu = (telemetry or {}).get("gpu") or {}
    return {host: entry["inventory"] for host, entry in gpu.items() if entry.get("inventory")}


def parse_nvidia_smi(text: str) -> dict[str, dict[str, float | None]]:
    """``nvidia-smi --query-gpu=…`` CSV → {gpu index: {field: value}} ([N/A] → None)."""
    out: dict[str, dict[str, float | None]] = {}
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 1 + len(GPU_FIELDS):
            continue
        values: dict[str, float | None] = {}
        for name, cell in zip(GPU_FIELDS, cells[1:], strict=True):
            try:
                values[name] = float(cell)
            except ValueError:
                values[name] = None
        out[cells[0]] = values
    return out


class Sampler:
    """Samples every target once per ``interval_s`` from :meth:`start` to :meth:`stop` (and once
    at each end, so even a short run has a first and a last sample).

    ``metrics_urls``: worker (or router) name → ``…/metrics`` URL. ``gpu_hosts``: host name → a
    function that runs a command there, or a string saying why GPUs cannot be sampled on that host.
    ``families``: name → the metric families kept of that target (all when not listed).
    """

    def __init__(
        self,
        metrics_urls: Mapping[str, str],
        gpu_hosts: Mapping[str, RunCommand | str],
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
        time_scale: float = 1.0,
        families: Mapping[str, Collection[str]] | None = None,
        gauges: Mapping[str, str] | None = None,
    ) -> None:
        self.metrics_urls = dict(metrics_urls)
        self.families = dict(families or {})
        self.gauges = dict(gauges or {})  # what the report charts: "running"/"queued" → sample name
        self.time_scale = time_scale  # model seconds per wall second (a simulation's speedup)
        self.interval_s = max(0.05, float(interval_s))
        self.timeout_s = timeout_s
        self.t0 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.server: dict[str, dict[str, Any]] = {
            name: {"url": url, "samples": [], "errors": 0, "last_error": None}
            for name, url in self.metrics_urls.items()
        }
        self.gpu: dict[str, dict[str, Any]] = {}
        self._gpu_run: dict[str, RunCommand] = {}
        for host, how in gpu_hosts.items():
            if isinstance(how, str):
                self.gpu[host] = {"available": False, "reason": how, "samples": []}
            else:
                self._gpu_run[host] = how
                self.gpu[host] = {"available": None, "reason": None, "samples": []}

    def start(self) -> Sampler:
        self.t0 = time.time()
        for host, run in list(self._gpu_run.items()):
            try:
                code, _ = run(["sh", "-c", "command -v nvidia-smi"])
            except Exception as exc:  # noqa: BLE001 (a host we cannot ask is reported, not fatal)
                code, reason = 1, f"could not run a command there: {exc}"
            else:
                reason = "nvidia-smi not found on this host"
            if code != 0:
                self.gpu[host].update(available=False, reason=reason)
                del self._gpu_run[host]
            else:
                self.gpu[host]["available"] = True
                with contextlib.suppress(Exception):  # the model and driver: what changed, later
                    code, out = run(NVIDIA_SMI_INVENTORY)
                    self.gpu[host]["inventory"] = parse_gpu_inventory(out) if code == 0 else None
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="pytest-pd-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)
        self._sample()
        return self.data()

    def data(self) -> dict[str, Any]:
        return {
            "interval_s": self.interval_s,
            "started_at": self.t0,
            "time_scale": self.time_scale,
            "server": self.server,
            "gpu": self.gpu,
            "gauges": self.gauges,
        }

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample(stoppable=True)

    def _sample(self, stoppable: bool = False) -> None:
        """One scrape of every target (each within ``timeout_s`` in all); ``stoppable``: the
        background round ends early once :meth:`stop` is called, so stop waits for one target at
        most, then takes the last sample itself."""
        t = round(time.time() - self.t0, 3)
        for name, url in self.metrics_urls.items():
            if stoppable and self._stop.is_set():
                return
            entry = self.server[name]
            try:
                values = parse_prometheus(get_text(url, self.timeout_s), self.families.get(name, ()))
                entry["samples"].append({"t": t, "values": values})
            except Exception as exc:  # noqa: BLE001 (a failed scrape is recorded, never fatal)
                entry["errors"] += 1
                entry["last_error"] = f"{type(exc).__name__}: {exc}"
        for host, run in self._gpu_run.items():
            with contextlib.suppress(Exception):
                code, out = run(NVIDIA_SMI_QUERY)
                if code == 0:
                    self.gpu[host]["samples"].append({"t": t, "gpus": parse_nvidia_smi(out)})


def cluster_sampler(spec: ClusterSpec, topology: Topology, interval_s: float) -> Sampler:
    """A sampler of ``topology``'s servers that export /metrics, of its router's Prometheus port
    (``router``, when the file sets ``router.prometheus_port``; the families of its kind only) and
    of its hosts' GPUs (over the bring-up's own connections); a simulated cluster is sampled as
    often per simulated second."""
    urls = {cmd.name: f"{cmd.base_url}/metrics" for cmd in topology.plan if cmd.exports_metrics}
    families: dict[str, Collection[str]] = {}
    if spec.router_metrics_url:
        urls[ROUTER] = spec.router_metrics_url
        families[ROUTER] = routers.kind(spec.router.kind).metric_families
    gpu_hosts: dict[str, Any] = {}
    for name in dict.fromkeys(c.host for c in topology.plan):
        if engines.engine_of(spec).simulated:
            gpu_hosts[name] = "simulated host: no GPU to sample"
        elif not topology.manages_processes:
            gpu_hosts[name] = "launcher: attach gives pytest-pd no shell on this host"
        else:
            gpu_hosts[name] = _runner(topology.host(name))
    speedup = engines.time_scale(spec)
    gauges = engines.engine_of(spec).gauges
    return Sampler(
        urls, gpu_hosts, interval_s / speedup, time_scale=speedup, families=families, gauges=gauges
    )


def _runner(host: Host) -> Callable[[list[str]], tuple[int, str]]:
    def run(argv: list[str]) -> tuple[int, str]:
        done = host.run(argv, timeout=10.0)
        return done.returncode, done.stdout

    return run
