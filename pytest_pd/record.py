"""The results schema as code: what one run of one workload on one cluster records
(:class:`RunRecord`), a run that did not complete (:class:`Failure`), where it ran
(:class:`ClusterInfo`, :class:`Environment`), and :func:`build_record`, the one function the suites
and ``pytest-pd bench`` make their records with. Pure: no I/O (the store in ``results.py`` reads
and writes the files).

Every number is in *model time*: a simulated cluster running ``speedup`` times faster than the one
it stands for has its times and rates scaled back (``simulated.measured_metrics`` keeps what the
client measured). Statistics without data are NaN in memory and ``null`` in the file.

Schema history (:func:`migrate` reads every version): 0 — no ``schema_version`` key; 1 — metrics,
cluster, workload, environment, server_info; 2 — ``repeats``, ``baseline_mark``, ``requests``
(compressed per-request records), ``telemetry``, ``session``, ``host``, ISO times; 3 — ``failure``
and ``source`` (``suite`` or ``bench``); 4 — the typed record: ``problems`` and ``extra`` for every
run, ``failure.recorded`` (workload id → results file) not written to files; since, with no new
version (older files have none): ``prediction``, the cluster's twin profile's; ``capacity``, a
capacity search's result (such a record's metrics hold the capacity; it is stored and looked up
under :attr:`RunRecord.key`, not the workload's id); ``ttft_breakdown``, where the mean TTFT went.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    computed_field,
    field_validator,
)

from pytest_pd.catalog import to_model_time
from pytest_pd.cluster import engines
from pytest_pd.failure import Failure
from pytest_pd.prometheus import server_summary
from pytest_pd.ttft_breakdown import RequestTimes, ttft_breakdown
from pytest_pd.workload.metrics import RunSummary, aggregate_repeats, run_problems
from pytest_pd.workload.spec import Workload

SCHEMA_VERSION = 4
SGLANG_GAUGES = {"running": "sglang:num_running_reqs", "queued": "sglang:num_queue_reqs"}
"""The gauges charted from telemetry recorded before each engine named its own (every engine then
exported SGLang's names)."""
REQUESTS_ENCODING = "gzip+base64+json"

Metrics = dict[str, Any]
"""A run's summary keyed like SGLang bench_serving's JSON (``RunSummary`` fields), model time."""


def _workload(value: Any) -> Any:
    return Workload.from_dict(dict(value)) if isinstance(value, Mapping) else value


WorkloadField = Annotated[
    Workload, BeforeValidator(_workload), PlainSerializer(lambda w: w.to_dict(), return_type=dict)
]


def _nan_for_none(metrics: Mapping[str, Any]) -> Metrics:
    return {k: (math.nan if v is None else v) for k, v in metrics.items()}


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class ClusterInfo(BaseModel):
    name: str
    file: str | None = None
    engine: str | None = None
    launcher: str | None = None
    baseline: str | None = None
    prefill_strategy: str = ""
    spec: dict[str, Any] | None = None  # the resolved cluster file, secrets redacted
    commands: str | None = None  # the rendered launch commands, secrets redacted
    # the same with ports, addresses and interpreters masked (cluster/commands.py: launch_identity)
    launch: str | None = None
    router_url: str | None = None
    router_kind: str | None = None  # the cluster file's router.kind (sglang-router, smg)


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    name: str | None = None
    path: str | None = None


class Environment(BaseModel):
    """Versions and places of a run; hooks (``pytest_pd_environment``) may add keys."""

    model_config = ConfigDict(extra="allow")
    pytest_pd: str | None = None
    python: str | None = None
    harness_host: str | None = None
    git_commit: str | None = None
    git_subject: str | None = None  # the commit's subject line (what changed, in history)
    engines: dict[str, str] = Field(default_factory=dict)  # process → "sglang 0.5.23" (its server's)
    router: str | None = None  # the router kind's package and version here, e.g. "smg 1.13.0"
    gpus: dict[str, str] = Field(default_factory=dict)  # host → "8× NVIDIA H20 (driver 580.95.05)"


class Simulated(BaseModel):
    speedup: float = 1.0
    measured_metrics: Metrics = Field(default_factory=dict)  # as the client measured them


class CapacitySearch(BaseModel):
    """A capacity search (judge/capacity.py) as stored: what was varied, the SLOs, every load
    measured (its statistics in model time, failed requests, why it missed, its results file),
    the capacity found and the bracket the knee lies in."""

    over: str
    slo: dict[str, float]
    loads: list[float] = Field(default_factory=list)
    """A sweep's loads (measured as given); empty for a search."""
    search: dict[str, float] = Field(default_factory=dict)
    """A search's start, growth, max_points and resolution; empty for a sweep."""
    points: list[dict[str, Any]] = Field(default_factory=list)
    capacity: float | None = None
    bracket: list[float | None] = Field(default_factory=list)
    limited_by_search: bool = False
    """Every load measured met the SLOs: the capacity is at least the figure given."""
    predicted: float | None = None
    """The timing model's capacity for the same search (simulated clusters and twin profiles)."""

    @property
    def metric(self) -> str:
        return capacity_metric(self.over)


def capacity_metric(over: str) -> str:
    """The metric a capacity over ``over`` is recorded as: capacity_concurrency, capacity_request_rate."""
    return f"capacity_{over}"


def capacity_key(workload_id: str, over: str, slo: Mapping[str, float], loads: Sequence[float] = ()) -> str:
    """The results key of a capacity search (or sweep) of a workload: what it varied, its SLOs
    and a sweep's loads, e.g.
    ``in6000-out1000-c16-n32-capacity-concurrency-p90_tpot_ms50-p90_ttft_ms10000``."""
    parts = [f"{k}{v:g}" for k, v in sorted(slo.items())]
    if loads:
        parts.append("at" + "_".join(f"{x:g}" for x in loads))
    return "-".join([f"{workload_id}-capacity-{over}", *parts])


class RunRecord(BaseModel):
    """One workload on one cluster: its metrics (the median over repeats), each repeat's, where
    and with what it ran, and its per-request records; or the failure that stopped it."""

    model_config = ConfigDict(protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    source: Literal["suite", "bench"] = "suite"  # bench runs are never baselines or history
    cluster: ClusterInfo
    model: ModelInfo = Field(default_factory=ModelInfo)
    workload: WorkloadField
    metrics: Metrics = Field(default_factory=dict)
    repeats: list[Metrics] = Field(default_factory=list)  # one summary per repeat (2 or more)
    slo: dict[str, float] | None = None
    simulated: Simulated | None = None
    problems: list[str] = Field(default_factory=list)  # why the run is not sound; empty if it is
    failure: Failure | None = None
    baseline_mark: bool = False  # --pd-save-baseline
    session: str | None = None
    host: str | None = None
    started_at: float = 0.0
    finished_at: float | None = None
    run_dir: str | None = None
    environment: Environment = Field(default_factory=Environment)
    server_info: dict[str, Any] = Field(default_factory=dict)
    telemetry: dict[str, Any] | None = None
    command: list[str] | None = None  # the command line of a bench run
    extra: dict[str, Any] = Field(default_factory=dict)  # what hooks add (pytest_pd_record)
    prediction: dict[str, Any] | None = None  # the cluster's twin profile's: twin/predict.py
    capacity: CapacitySearch | None = None  # a capacity search's result (judge/capacity.py)
    ttft_breakdown: dict[str, Any] | None = None  # where the mean TTFT went (ttft_breakdown.py)
    requests: list[dict[str, Any]] | None = None  # per repeat: encode_requests(RunResult.to_dict())
    path: str | None = None  # the file it was read from or saved to (not written to the file)
    _runs: list[dict[str, Any]] | None = PrivateAttr(default=None)

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics(cls, value: Any) -> Any:
        return _nan_for_none(value) if isinstance(value, Mapping) else value

    @field_validator("repeats", mode="before")
    @classmethod
    def _repeats(cls, value: Any) -> Any:
        return [_nan_for_none(r) if isinstance(r, Mapping) else r for r in value or []]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def started_at_iso(self) -> str | None:
        return _iso(self.started_at)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def finished_at_iso(self) -> str | None:
        return _iso(self.finished_at)

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def key(self) -> str:
        """What the record is stored and looked up under: the workload's id, or for a capacity
        search :func:`capacity_key`."""
        if self.capacity is not None:
            return capacity_key(self.workload.id, self.capacity.over, self.capacity.slo, self.capacity.loads)
        return self.workload.id

    @property
    def speedup(self) -> float:
        return self.simulated.speedup if self.simulated else 1.0

    @property
    def capacity_range(self) -> dict[str, tuple[float, float]]:
        """For a capacity search, where its knee lies: from the capacity found to the lowest load
        that missed (unbounded when every load met the SLOs); empty otherwise."""
        cap = self.capacity
        if cap is None or cap.capacity is None:
            return {}
        above = cap.bracket[1] if len(cap.bracket) > 1 and cap.bracket[1] is not None else math.inf
        return {cap.metric: (float(cap.capacity), float(above))}

    @property
    def samples(self) -> dict[str, list[float]]:
        """Per-repeat values of every numeric metric (model time); empty for a single run."""
        return repeat_samples(self.repeats)

    def runs(self) -> list[dict[str, Any]]:
        """Each repeat's per-request records (``RunResult.to_dict()``, perf_counter times);
        empty when none were stored. Decoded once."""
        if self._runs is None:
            runs = []
            for block in self.requests or []:
                try:
                    run = decode_requests(block)
                except (ValueError, OSError, KeyError, TypeError):
                    run = None
                if run is not None:
                    runs.append(run)
            self._runs = runs
        return self._runs

    def brief(self) -> RunRecord:
        """This record without its bulky parts (requests, telemetry, server info): what a
        comparison carries, e.g. from a pytest-xdist worker to the controller."""
        return self.model_copy(update={"requests": None, "telemetry": None, "server_info": {}})

    def to_json(self, *, with_requests: bool = True) -> str:
        """The results file's text (strict JSON: NaN is written as null)."""
        exclude: dict[str, Any] = {"path": True, "failure": {"recorded"}}
        if not with_requests:
            exclude["requests"] = True
        text = self.model_dump_json(indent=2, exclude=exclude)
        return text + "\n"


def repeat_samples(per_repeat: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """{metric: [value of repeat 1, 2, …]} for the numeric metrics of per-repeat summaries."""
    if len(per_repeat) < 2:
        return {}
    out: dict[str, list[float]] = {}
    for key, value in per_repeat[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            vals = [r.get(key) for r in per_repeat]
            out[key] = [float("nan") if v is None else float(v) for v in vals]
    return out


def _neutral_environment(env: Mapping[str, Any], engine: str | None) -> dict[str, Any]:
    """An environment recorded before it named each server's engine: ``sglang`` (process → the
    version its server reported) and ``sglang_router`` (the harness's sglang-router)."""
    out = {k: v for k, v in env.items() if k not in ("sglang", "sglang_router")}
    versions = env.get("sglang") or {}
    label = "{}" if engine == "sim" else "sglang {}"  # the simulator reported "sim (pytest-pd)"
    out.setdefault("engines", {p: label.format(v) for p, v in versions.items()})
    if env.get("sglang_router") and not env.get("router"):
        out["router"] = f"sglang-router {env['sglang_router']}"
    return out


def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    """A stored run of any schema version as the current version's fields (to validate)."""
    out = dict(data)
    version = int(out.get("schema_version") or 0)
    if version < 4:
        failure = out.get("failure")
        if isinstance(failure, Mapping):  # 3 kept the files of a failure under "results"
            out["failure"] = {k: v for k, v in failure.items() if k != "results"}
    env = out.get("environment")
    if isinstance(env, Mapping) and ("sglang" in env or "sglang_router" in env):  # engine-neutral since
        out["environment"] = _neutral_environment(env, (out.get("cluster") or {}).get("engine"))
    telemetry = out.get("telemetry")
    if isinstance(telemetry, Mapping) and "gauges" not in telemetry:  # before engines named them
        out["telemetry"] = {**telemetry, "gauges": SGLANG_GAUGES}
    out["schema_version"] = SCHEMA_VERSION
    out.setdefault("cluster", {})
    return out


# ---------------------------------------------------------------------------- per-request records


def encode_requests(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's per-request records (``RunResult.to_dict()``), compressed for the results file."""
    raw = json.dumps(run, separators=(",", ":"), default=str).encode()
    return {
        "encoding": REQUESTS_ENCODING,
        "count": len(run.get("records", [])),
        "data": base64.b64encode(gzip.compress(raw, 6)).decode("ascii"),
    }


def decode_requests(block: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Inverse of :func:`encode_requests`; None when the block holds no records."""
    if not block or block.get("encoding") != REQUESTS_ENCODING:
        return None
    run: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(block["data"])))
    return run


# ---------------------------------------------------------------------------- building a record


def _request_times(runs: Sequence[Mapping[str, Any]], speedup: float) -> RequestTimes | None:
    """The answering server's own timing of every completed request that carries it, over all
    repeats (model seconds); None when no response carried it."""
    return RequestTimes.mean_of(
        (
            (r["t_first_token"] - r["t_start"]) * speedup,
            r["server_ttft"] * speedup,
            r["server_before_forward"] * speedup,
        )
        for run in runs
        for r in run.get("records", ())
        if r.get("error_kind") is None
        and r.get("t_first_token") is not None
        and r.get("t_start") is not None
        and r.get("server_ttft") is not None
        and r.get("server_before_forward") is not None
    )


def build_record(
    *,
    cluster: ClusterInfo,
    workload: Workload,
    summaries: Sequence[RunSummary],
    runs: Sequence[Mapping[str, Any]] = (),
    speedup: float = 1.0,
    simulated: bool = False,
    slo: Mapping[str, float] | None = None,
    **context: Any,
) -> RunRecord:
    """The record of ``summaries`` (one per repeat, as measured) and their per-request ``runs``:
    the median over repeats, every number in model time (``speedup``: how much faster than the
    cluster it stands for a simulated one ran), the SLOs (model time) and the run's problems.
    ``context``: the other :class:`RunRecord` fields (model, session, environment, …)."""
    agg = aggregate_repeats(list(summaries))

    def model_time(summary: RunSummary) -> Metrics:
        out = to_model_time(summary.to_dict(), speedup)
        if slo:
            out["slo"] = dict(slo)
        return out

    metrics = model_time(agg)
    telemetry = context.get("telemetry") or {}
    rows = server_summary(telemetry.get("server") or {})  # each server's metrics over the run
    engine = engines.find(cluster.engine)
    hit_rate = engine.prefix_cache_hit_rate(rows) if engine else None
    server_times = engine.server_times(rows) if engine else None
    if hit_rate is not None:  # what the servers say; the client sees hits only on unified servers
        metrics["prefix_cache_hit_rate"] = hit_rate
    return RunRecord(
        cluster=cluster,
        workload=workload,
        metrics=metrics,
        ttft_breakdown=ttft_breakdown(
            server_times, metrics["mean_ttft_ms"] / 1000.0, _request_times(runs, speedup)
        ),
        repeats=[model_time(s) for s in summaries] if len(summaries) > 1 else [],
        slo=dict(slo) if slo else None,
        simulated=Simulated(speedup=speedup, measured_metrics=agg.to_dict()) if simulated else None,
        problems=run_problems(agg, workload.max_mismatch_share),
        requests=[encode_requests(r) for r in runs] or None,
        **context,
    )
