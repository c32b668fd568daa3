"""Prometheus metrics of a simulated worker, under SGLang's metric names and label names
(``/metrics`` with ``--enable-metrics``). Latencies are in model seconds: what the simulated
cluster would show.

As in SGLang 0.5.23: scheduler metrics carry ``engine_type, model_name, tp_rank, pp_rank,
moe_ep_rank``; request metrics ``engine_type, model_name, is_streaming``. In PD mode the prefill
worker has no TTFT / inter-token / per-output-token histograms (the decode worker has them) and
the KV transfer latency/speed/size histograms are the prefill's. The failure counters appear once
something failed. SGLang exports many more families (speculative decoding, memory, CUDA graphs,
DP attention, …) that have nothing to simulate; the sim leaves them out.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # SGLang exports no ``*_created`` series

LATENCY_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    60.0,
    120.0,
    300.0,
)
ITL_BUCKETS = (
    0.002,
    0.005,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.035,
    0.04,
    0.05,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
GEN_THROUGHPUT_WINDOW_S = 5.0
"""Wall seconds over which a server's ``gen_throughput`` gauge counts the tokens it emitted."""
MS_BUCKETS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)
SPEED_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0)
MB_BUCKETS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
TOKEN_BUCKETS = (1, 16, 64, 256, 1024, 4096, 16384, 65536, 262144)

SCHEDULER_LABELS = ("engine_type", "model_name", "tp_rank", "pp_rank", "moe_ep_rank")
REQUEST_LABELS = ("engine_type", "model_name", "is_streaming")
ENGINE_LABELS = ("engine_type", "model_name")


class SimMetrics:
    """One registry per worker process; gauges read the server's live state when scraped.

    ``role``: "prefill", "decode" or "null" (unified). ``gauges``: scheduler gauge name (without
    the ``sglang:`` prefix) → a function reading the live value.
    """

    def __init__(
        self,
        model_name: str,
        speedup: float,
        role: str,
        gauges: dict[str, Callable[[], float]],
        static: dict[str, float],
    ) -> None:
        self.registry = CollectorRegistry()
        self.speedup = speedup
        self.role = role
        self.engine = "unified" if role == "null" else role
        self.model_name = model_name
        self._sched = (self.engine, model_name, "0", "0", "0")
        self._lazy: dict[str, Counter] = {}
        decodes = role != "prefill"

        for name, fn in gauges.items():
            self._gauge(name).set_function(fn)
        for name, value in static.items():
            self._gauge(name).set(value)
        self._gauge("gen_throughput").set_function(self.gen_throughput)
        self.queue_time = self._hist("queue_time_seconds", SCHEDULER_LABELS, LATENCY_BUCKETS)
        self.stage_latency = self._family(
            Histogram, "per_stage_req_latency_seconds", (*SCHEDULER_LABELS, "stage"), buckets=LATENCY_BUCKETS
        )
        self.kv_alloc_ms = self._hist("kv_transfer_alloc_ms", SCHEDULER_LABELS, MS_BUCKETS)
        self.kv_bootstrap_ms = self._hist("kv_transfer_bootstrap_ms", SCHEDULER_LABELS, MS_BUCKETS)
        if role == "prefill":
            self.kv_latency_ms = self._hist("kv_transfer_latency_ms", SCHEDULER_LABELS, MS_BUCKETS)
            self.kv_speed_gb_s = self._hist("kv_transfer_speed_gb_s", SCHEDULER_LABELS, SPEED_BUCKETS)
            self.kv_total_mb = self._hist("kv_transfer_total_mb", SCHEDULER_LABELS, MB_BUCKETS)
        if role == "decode":
            # the sim models the transfer on the decode side: the last one, as gauges
            self.last_kv_latency_ms = self._gauge("kv_transfer_latency_ms")
            self.last_kv_speed_gb_s = self._gauge("kv_transfer_speed_gb_s")

        effective = self._family(
            Counter, "prefill_effective_tokens", (*SCHEDULER_LABELS[:1], "mode", *SCHEDULER_LABELS[1:])
        )
        # prompt tokens computed (``input``) and found in the prefix cache (``device_hit``)
        self.computed_tokens = effective.labels(self.engine, "input", *self._sched[1:])
        self.hit_tokens = effective.labels(self.engine, "device_hit", *self._sched[1:])
        self.prompt_tokens = self._family(Counter, "prompt_tokens", REQUEST_LABELS)
        self.generation_tokens = self._family(Counter, "generation_tokens", REQUEST_LABELS)
        self.requests = self._family(Counter, "num_requests", REQUEST_LABELS)
        self.e2e = self._family(
            Histogram, "e2e_request_latency_seconds", REQUEST_LABELS, buckets=LATENCY_BUCKETS
        )
        self.prompt_hist = self._hist("prompt_tokens_histogram", ENGINE_LABELS, TOKEN_BUCKETS)
        self.generation_hist = self._hist("generation_tokens_histogram", ENGINE_LABELS, TOKEN_BUCKETS)
        self.uncached_hist = self._hist("uncached_prompt_tokens_histogram", ENGINE_LABELS, TOKEN_BUCKETS)
        if decodes:
            self.ttft = self._family(
                Histogram, "time_to_first_token_seconds", REQUEST_LABELS, buckets=LATENCY_BUCKETS
            )
            self.tpot = self._family(
                Histogram, "request_time_per_output_token_seconds", REQUEST_LABELS, buckets=ITL_BUCKETS
            )
            self.itl = self._hist("inter_token_latency_seconds", ENGINE_LABELS, ITL_BUCKETS)
        self._steps: deque[tuple[float, int]] = deque()

    # -- registration -------------------------------------------------------------------------
    def _family(self, cls: type, name: str, labels: tuple[str, ...], **kw: object):  # noqa: ANN202
        return cls(
            "sglang:" + name, name.replace("_", " ").capitalize() + ".", labels, registry=self.registry, **kw
        )

    def _values(self, labels: tuple[str, ...]) -> tuple[str, ...]:
        return self._sched if labels == SCHEDULER_LABELS else (self.engine, self.model_name)

    def _gauge(self, name: str) -> Gauge:
        return self._family(Gauge, name, SCHEDULER_LABELS).labels(*self._sched)

    def _hist(self, name: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
        return self._family(Histogram, name, labels, buckets=buckets).labels(*self._values(labels))

    def _req(self, family, streaming: bool):  # noqa: ANN001, ANN202
        return family.labels(self.engine, self.model_name, "true" if streaming else "false")

    # -- events -------------------------------------------------------------------------------
    def model_seconds(self, wall_seconds: float) -> float:
        return wall_seconds * self.speedup

    def request_arrived(self, streaming: bool, prompt_tokens: int, cached: int = 0) -> None:
        """A request was admitted, ``cached`` of its prompt tokens found in the prefix cache."""
        self._req(self.requests, streaming).inc()
        self._req(self.prompt_tokens, streaming).inc(prompt_tokens)
        self.prompt_hist.observe(prompt_tokens)
        self.uncached_hist.observe(prompt_tokens - cached)
        if self.role != "decode":  # the prefill computes the prompt
            self.computed_tokens.inc(prompt_tokens - cached)
            self.hit_tokens.inc(cached)

    def first_token(self, streaming: bool, ttft_wall: float) -> None:
        """The request's first token (in PD: counted by the decode worker, whose first token
        comes with the KV: no wait in its own queue)."""
        self._req(self.generation_tokens, streaming).inc()
        if self.role == "decode":
            self.queue_time.observe(0.0)
        if self.role != "prefill":
            self._req(self.ttft, streaming).observe(self.model_seconds(ttft_wall))

    def _stage(self, stage: str, model_s: float) -> None:
        self.stage_latency.labels(*self._sched, stage).observe(model_s)

    def prefill_finished(self, queue_model_s: float, forward_model_s: float) -> None:
        """A prefill left the pipeline: it waited ``queue_model_s`` for its first forward batch,
        and its forward batches took ``forward_model_s`` (SGLang's queue time and
        ``prefill_forward`` stage)."""
        self.queue_time.observe(queue_model_s)
        self._stage("prefill_forward", forward_model_s)

    def request_finished(self, streaming: bool, e2e_wall: float, ttft_wall: float, tokens: int) -> None:
        self._req(self.e2e, streaming).observe(self.model_seconds(e2e_wall))
        self.generation_hist.observe(tokens)
        if self.role != "prefill" and tokens > 1:
            self._req(self.tpot, streaming).observe(self.model_seconds(e2e_wall - ttft_wall) / (tokens - 1))

    def decode_step(self, streaming: int, plain: int, step_model_s: float) -> None:
        """One decode step of ``step_model_s`` model seconds emitted a token for ``streaming``
        streamed and ``plain`` non-streamed requests."""
        for flag, n in ((True, streaming), (False, plain)):
            if n:
                self._req(self.generation_tokens, flag).inc(n)
        if self.role != "prefill":
            for _ in range(streaming + plain):
                self.itl.observe(step_model_s)
        now = time.monotonic()
        self._steps.append((now, streaming + plain))
        while self._steps and self._steps[0][0] < now - GEN_THROUGHPUT_WINDOW_S:
            self._steps.popleft()

    def kv_transfer(self, model_s: float, nbytes: float) -> None:
        """A KV transfer of ``nbytes`` that took ``model_s`` model seconds."""
        speed = nbytes / model_s / 1e9 if model_s > 0 else 0.0
        if self.role == "prefill":
            self._stage("prefill_transfer_kv_cache", model_s)
            self.kv_latency_ms.observe(model_s * 1000.0)
            self.kv_speed_gb_s.observe(speed)
            self.kv_total_mb.observe(nbytes / 1e6)
        elif self.role == "decode":
            self.last_kv_latency_ms.set(model_s * 1000.0)
            self.last_kv_speed_gb_s.set(speed)

    def kv_received(self, model_s: float) -> None:
        """Decode side: a request's KV arrived ``model_s`` after the decode asked for it (its
        prefill's queue and compute, then the transfer: SGLang's ``decode_transferred`` stage)."""
        self._stage("decode_transferred", model_s)

    def failed(self, what: str) -> None:
        """``what``: "bootstrap" or "transfer"; the counter family appears with its first use."""
        name = f"num_{what}_failed_reqs"
        if name not in self._lazy:
            self._lazy[name] = self._family(Counter, name, SCHEDULER_LABELS)
        self._lazy[name].labels(*self._sched).inc()

    def gen_throughput(self) -> float:
        """Tokens per (model) second over the last :data:`GEN_THROUGHPUT_WINDOW_S` of wall time."""
        now = time.monotonic()
        recent = sum(n for t, n in self._steps if t >= now - GEN_THROUGHPUT_WINDOW_S)
        return recent / self.model_seconds(GEN_THROUGHPUT_WINDOW_S)

    def render(self) -> bytes:
        return generate_latest(self.registry)
