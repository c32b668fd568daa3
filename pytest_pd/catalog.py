"""Every metric a run reports, and what it means: unit, which direction is better, how it scales
with a simulated cluster's speedup, its title, and whether it is followed run over run.

The one place that knows this: judging (direction), time scaling (simulated runs), marker
validation (which names a ``pd_threshold`` may bound), history and the report read it here
instead of guessing from a metric's name. Names follow SGLang bench_serving's JSON keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Better = Literal["lower", "higher"] | None
Scaling = Literal["time", "rate", "none"]


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    unit: str  # "ms", "s", "tok/s", "req/s", "tokens", "requests", "share"
    better: Better  # None: neither (a count of work, a setting)
    scales: Scaling  # a run `speedup` times faster than real: time × speedup, rate ÷ speedup
    history: int = 0  # followed run over run (history rows, trend charts) in this order; 0: not

    def in_model_time(self, value: float, speedup: float) -> float:
        """``value`` measured on a cluster running ``speedup`` times faster than the one it
        stands for, in that cluster's time."""
        if self.scales == "time":
            return value * speedup
        if self.scales == "rate":
            return value / speedup
        return value


def _distribution(key: str, title: str, stats: tuple[str, ...], history_of_mean: int = 0) -> Iterator[Metric]:
    """A latency's statistics: mean_ttft_ms, median_ttft_ms, … (lower is better, in ms)."""
    for stat in stats:
        yield Metric(
            f"{stat}_{key}_ms",
            f"{stat} {title}",
            "ms",
            "lower",
            "time",
            history=history_of_mean if stat == "mean" else 0,
        )


def _rate(name: str, title: str, unit: str, history: int = 0) -> Metric:
    return Metric(name, title, unit, "higher", "rate", history)


def _count(name: str, title: str, unit: str, better: Better = None) -> Metric:
    return Metric(name, title, unit, better, "none")


_STATS = ("mean", "median", "std", "p90", "p99")
_METRICS: tuple[Metric, ...] = (
    Metric("duration", "benchmark duration", "s", "lower", "time"),
    _count("completed", "completed requests", "requests", "higher"),
    _count("failed", "failed requests", "requests", "lower"),
    _count("not_sent", "requests not sent", "requests", "lower"),
    _count("total_input_tokens", "input tokens", "tokens"),
    _count("total_output_tokens", "output tokens", "tokens"),
    _count("total_cached_tokens", "cached prompt tokens", "tokens"),
    # from the servers' /metrics (telemetry.prefix_cache_hit_rate): prompt tokens found cached
    _count("prefix_cache_hit_rate", "prefix-cache hit rate (servers)", "share", "higher"),
    _rate("request_throughput", "request throughput", "req/s"),
    _rate("input_throughput", "input throughput", "tok/s"),
    _rate("output_throughput", "output throughput", "tok/s", history=2),
    _rate("total_throughput", "total throughput", "tok/s"),
    _rate("peak_output_throughput", "peak output throughput (1 s)", "tok/s"),
    _rate("goodput", "goodput (requests meeting every SLO)", "req/s"),
    _count("goodput_ratio", "share of requests meeting every SLO", "share", "higher"),
    *_distribution("ttft", "TTFT", _STATS, history_of_mean=1),
    *_distribution("tpot", "TPOT", _STATS, history_of_mean=3),
    *_distribution("itl", "ITL", (*_STATS, "p95", "max")),
    *_distribution("e2e_latency", "E2E latency", _STATS, history_of_mean=4),
    *_distribution("queue", "client queue time", ("mean", "median", "p99", "max")),
    _count("concurrency", "mean requests in flight", "requests"),
    _count("max_concurrency", "concurrency cap", "requests"),
    _count("output_len_mismatches", "output length mismatches", "requests", "lower"),
    _count("input_len_mismatches", "input length mismatches", "requests", "lower"),
    _count("input_len_unchecked", "input lengths not checked (chat without a template)", "requests"),
    _count("mismatch_share", "share of requests with a length mismatch", "share", "lower"),
    _count("repeats", "repeats", "runs"),
    # a capacity search's result (judge/capacity.py), in the cluster's own time
    _count("capacity_concurrency", "capacity: highest concurrency within the SLOs", "requests", "higher"),
    _rate("capacity_request_rate", "capacity: highest request rate within the SLOs", "req/s"),
)
CATALOG: Mapping[str, Metric] = {m.name: m for m in _METRICS}
HISTORY_METRICS: tuple[str, ...] = tuple(  # the seed report's columns, in its order
    m.name for m in sorted(_METRICS, key=lambda m: m.history) if m.history
)


def metric(name: str) -> Metric:
    return CATALOG[name]


def higher_is_better(name: str) -> bool:
    return CATALOG[name].better == "higher" if name in CATALOG else False


def judgeable() -> set[str]:
    """Names a ``pd_threshold`` marker may bound: every metric of the catalog."""
    return set(CATALOG)


def to_model_time(values: Mapping[str, Any], speedup: float) -> dict[str, Any]:
    """A run's metrics measured on a simulated cluster running ``speedup`` times faster, in the
    time of the cluster it simulates (catalogued numbers only; anything else unchanged)."""
    out = dict(values)
    if speedup == 1.0:
        return out
    for name, value in values.items():
        m = CATALOG.get(name)
        if m is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = m.in_model_time(value, speedup)
    return out
