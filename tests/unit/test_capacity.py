"""Capacity under an SLO (judge/capacity.py), the loads of a sweep (workload/sweep.py), and the
timing model's answer to the same search (twin/capacity.py)."""

from __future__ import annotations

import math

import pytest

from pytest_pd.judge.capacity import CapacitySpec, capacity_record, capacity_spec, measure_loads, search
from pytest_pd.record import RunRecord, capacity_key
from pytest_pd.sim.model import ServerShape, SimParams
from pytest_pd.sim.routing import Topology
from pytest_pd.twin.capacity import model_capacity, model_stats
from pytest_pd.workload.spec import Workload, WorkloadError
from pytest_pd.workload.sweep import at_load, geometric
from tests.helpers.records import run_record

SLO = {"p90_ttft_ms": 2500.0}


def knee_at_20(load: float):
    """p90 TTFT grows with load and jumps past 20: the true capacity is 19 requests."""
    return {"p90_ttft_ms": 100 * load * (1 if load < 20 else 3)}, 0


def test_bracketing_then_bisection_within_the_point_budget():
    c = search(knee_at_20, SLO, start=1, max_points=12)
    assert [p.load for p in c.points][:6] == [1, 2, 4, 8, 16, 32]  # doubling until a miss
    assert c.capacity == 19 and c.bracket == (19, 20)
    assert len(c.points) <= 12 and not c.limited_by_search
    few = search(knee_at_20, SLO, start=1, max_points=6)
    assert len(few.points) == 6 and few.bracket == (16, 32)  # budget spent: the bracket says so


def test_a_rate_search_stops_at_its_resolution():
    c = search(knee_at_20, SLO, over="request_rate", start=1.5, resolution=0.05, max_points=20)
    low, high = c.bracket
    assert low is not None and high is not None and low <= 19.99 < high
    assert (high - low) / low <= 0.05


def test_a_load_that_misses_from_the_start_searches_down_and_failed_requests_miss():
    c = search(knee_at_20, {"p90_ttft_ms": 50.0}, start=4)
    assert [p.load for p in c.points] == [4, 2, 1] and c.capacity is None
    failing = search(lambda load: ({"p90_ttft_ms": 1.0}, 1 if load > 3 else 0), SLO, start=1)
    assert failing.capacity == 3
    assert "1 failed request(s)" in next(p for p in failing.points if p.load == 4).misses


def test_a_search_that_never_misses_says_its_figure_is_a_floor():
    c = search(knee_at_20, {"p90_ttft_ms": 1e9}, start=4, highest=40)
    assert c.capacity == 40 and c.limited_by_search and [p.load for p in c.points][-1] == 40


def test_a_small_growth_still_moves_the_load():
    up = search(knee_at_20, SLO, start=1, growth=1.3, max_points=30)
    assert up.capacity == 19 and len({p.load for p in up.points}) == len(up.points)
    down = search(knee_at_20, {"p90_ttft_ms": 150.0}, start=2, growth=1.3)
    assert [p.load for p in down.points] == [2, 1] and down.capacity == 1


def test_bad_search_arguments_are_refused():
    with pytest.raises(ValueError, match="concurrency, request_rate"):
        search(knee_at_20, SLO, over="tokens")
    with pytest.raises(ValueError, match="growth > 1"):
        search(knee_at_20, SLO, growth=1.0)


def test_sweep_points_are_the_workload_at_each_load():
    base = Workload(input_len=100, output_len=10, concurrency=4, num_requests=8)
    assert at_load(base, "concurrency", 16.4).concurrency == 16
    assert at_load(base, "concurrency", 16).num_requests == 32  # every slot turns over
    assert at_load(base, "request_rate", 2.5).request_rate == 2.5
    rate = at_load(base, "request_rate", 2.5)
    assert rate.concurrency == rate.num_requests == 8  # open loop: no client-side cap
    assert geometric(1, 16, 5) == pytest.approx([1, 2, 4, 8, 16])
    with pytest.raises(WorkloadError, match="concurrency or request_rate"):
        at_load(base, "tokens", 3)
    with pytest.raises(WorkloadError, match="finite rate > 0"):
        at_load(base, "request_rate", 0)


def test_the_model_capacity_is_the_search_run_on_simulations():
    pp2 = Topology((ServerShape(tp=4, pp=2, chunked_prefill_size=16384),), (ServerShape(tp=8, prefill_pp=2),))
    slo = {"p90_ttft_ms": 10000.0, "p90_tpot_ms": 50.0}
    c = model_capacity(SimParams(), pp2, Workload(), CapacitySpec(slo=slo, start=4))
    assert c.capacity is not None and 8 <= c.capacity < 32
    for p in c.points:  # each point is the model's statistics at that load
        assert p.stats == model_stats(SimParams(), pp2, at_load(Workload(), "concurrency", p.load))
    low, high = c.bracket
    assert high is not None and next(p for p in c.points if p.load == high).misses


def test_the_marker_arguments_are_checked_with_a_hint():
    spec = capacity_spec(
        (), {"slo": {"ttft_p90_ms": 2000, "p90_tpot_ms": 50}, "over": "request_rate", "min_ratio": 0.9}
    )
    assert spec.slo == {"p90_ttft_ms": 2000.0, "p90_tpot_ms": 50.0} and spec.over == "request_rate"
    assert spec.max_points == 8 and spec.loads == ()
    for args, kwargs, why in (
        ((), {}, "slo= a non-empty dict"),
        ((), {"loads": [1, "two"]}, "list of loads > 0"),
        ((), {"loads": 4}, "list of loads > 0"),
        (({"p90_ttft_ms": 1},), {}, "takes keyword arguments"),
        ((), {"slo": {"ttft": 1}}, "unknown statistic"),
        ((), {"slo": {"p90_ttft_ms": "fast"}}, "finite number"),
        ((), {"slo": {"p90_ttft_ms": 1}, "over": "tokens"}, "one of concurrency, request_rate"),
        ((), {"slo": {"p90_ttft_ms": 1}, "growth": 1}, "growth > 1"),
        ((), {"slo": {"p90_ttft_ms": 1}, "min_ratio": 0}, "min_ratio"),
        ((), {"slo": {"p90_ttft_ms": 1}, "budget": 3}, "takes keyword arguments"),
    ):
        with pytest.raises(ValueError, match=why):
            capacity_spec(args, kwargs)


def test_a_search_becomes_one_record_keyed_apart_from_its_runs():
    base = Workload(input_len=100, output_len=10, concurrency=4, num_requests=8)
    runs = {}

    def evaluate(load):
        stats, failed = knee_at_20(load)
        metrics = {**stats, "completed": 10, "failed": failed, "output_throughput": 10 * load}
        w = at_load(base, "concurrency", load)
        runs[load] = run_record(
            "sim-pp2", "", metrics, workload=w, started_at=1000 + load, path=f"/r/{w.id}.json"
        )
        return metrics, failed

    found = search(evaluate, SLO, start=4, max_points=5)
    record = capacity_record(found, runs, base, predicted=18.0)
    assert record.key == capacity_key(base.id, "concurrency", SLO) != base.id
    assert record.workload == base and record.metrics["capacity_concurrency"] == found.capacity
    assert record.metrics["p90_ttft_ms"] == runs[found.capacity].metrics["p90_ttft_ms"]  # at capacity
    assert record.capacity is not None and record.capacity.predicted == 18.0
    assert [p["load"] for p in record.capacity.points] == [p.load for p in found.points]
    assert record.capacity.points[0]["path"] == runs[4.0].path
    assert record.started_at == 1004 and record.requests is None
    assert RunRecord.model_validate_json(record.model_dump_json()).key == record.key
    nothing = search(lambda load: ({"p90_ttft_ms": 1e9}, 0), SLO, start=2, max_points=2)
    empty = capacity_record(nothing, {p.load: runs[4.0] for p in nothing.points}, base)
    assert math.isnan(empty.metrics["capacity_concurrency"])


def test_a_sweep_measures_exactly_its_loads_and_keys_apart_from_a_search():
    seen = []

    def evaluate(load):
        seen.append(load)
        return knee_at_20(load)

    swept = measure_loads(evaluate, SLO, [16, 4, 4.2, 25, 8])
    assert seen == [16, 4, 25, 8] and [p.ok for p in swept.points] == [True, True, False, True]
    assert swept.capacity == 16 and [p.load for p in swept.curve()] == [4, 8, 16, 25]
    spec = capacity_spec((), {"loads": [1, 2, 4]})  # a sweep needs no SLO
    assert spec.slo == {} and spec.loads == (1.0, 2.0, 4.0)
    plain = spec.run(lambda load: ({"p90_ttft_ms": load}, 0))
    assert plain.capacity == 4 and plain.limited_by_search
    assert capacity_key("w", "concurrency", SLO, (1, 2)) == "w-capacity-concurrency-p90_ttft_ms2500-at1_2"
    assert capacity_key("w", "concurrency", SLO) == "w-capacity-concurrency-p90_ttft_ms2500"
