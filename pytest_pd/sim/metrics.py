"""Prometheus metrics of a simulated worker, under SGLang's metric names (``/metrics`` with
``--enable-metrics``). Latencies are in model seconds: what the simulated cluster would show."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                   7.5, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 120.0, 300.0)
ITL_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.06, 0.08, 0.1,
               0.25, 0.5, 1.0, 2.5)


class SimMetrics:
    """One registry per worker process; gauges read the server's live state when scraped."""

    def __init__(self, model_name: str, speedup: float, running: Callable[[], int],
                 queued: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.speedup = speedup
        reg, labels = self.registry, ["model_name"]

        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=reg).labels(model_name)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=reg).labels(model_name)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=reg).labels(model_name)

        self.ttft = hist("sglang:time_to_first_token_seconds", "Time to first token.", LATENCY_BUCKETS)
        self.itl = hist("sglang:inter_token_latency_seconds", "Inter-token latency.", ITL_BUCKETS)
        self.e2e = hist("sglang:e2e_request_latency_seconds", "End-to-end request latency.",
                        LATENCY_BUCKETS)
        self.prompt_tokens = counter("sglang:prompt_tokens", "Prefill tokens processed.")
        self.generation_tokens = counter("sglang:generation_tokens", "Generation tokens processed.")
        self.requests = counter("sglang:num_requests", "Requests received.")
        self.bootstrap_failed = counter("sglang:num_bootstrap_failed_reqs",
                                        "PD requests whose bootstrap failed.")
        self.transfer_failed = counter("sglang:num_transfer_failed_reqs",
                                       "PD requests whose KV transfer failed.")
        self.kv_transfer_latency_ms = gauge("sglang:kv_transfer_latency_ms",
                                            "Latency of the last KV transfer (ms).")
        self.kv_transfer_speed_gb_s = gauge("sglang:kv_transfer_speed_gb_s",
                                            "Speed of the last KV transfer (GB/s).")
        gauge("sglang:num_running_reqs", "Running requests.").set_function(running)
        gauge("sglang:num_queue_reqs", "Queued requests.").set_function(queued)
        gauge("sglang:cache_hit_rate", "Prefix cache hit rate.").set(0.0)
        gauge("sglang:gen_throughput", "Generation throughput (token/s).").set_function(
            self._gen_throughput)
        self._steps: deque[tuple[float, int]] = deque()

    def model_seconds(self, wall_seconds: float) -> float:
        return wall_seconds * self.speedup

    def decode_step(self, tokens: int, step_model_s: float) -> None:
        """One decode step of ``step_model_s`` model seconds emitted ``tokens`` tokens."""
        self.generation_tokens.inc(tokens)
        for _ in range(tokens):
            self.itl.observe(step_model_s)
        now = time.monotonic()
        self._steps.append((now, tokens))
        while self._steps and self._steps[0][0] < now - 5.0:
            self._steps.popleft()

    def _gen_throughput(self) -> float:
        """Tokens per (model) second over the last 5 s of wall time."""
        now = time.monotonic()
        recent = sum(n for t, n in self._steps if t >= now - 5.0)
        return recent / self.model_seconds(5.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
