"""Planning on the timing model (twin/plan.py, twin/plan_output.py): SLOs, memory, the Pareto
front, and cluster files written from a template."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_pd.cluster import safe_yaml
from pytest_pd.cluster.spec_file import parse_cluster
from pytest_pd.judge.slo import SloError, parse_slos, slo_misses
from pytest_pd.sim.candidates import candidate_topologies
from pytest_pd.sim.closed_loop import simulate
from pytest_pd.sim.model import ServerShape, SimParams
from pytest_pd.sim.routing import Topology
from pytest_pd.twin.observed import stats_of, topology_of
from pytest_pd.twin.plan import (
    PER_GPU,
    SLO_STATS,
    evaluate,
    fit_memory,
    kv_capacity_tokens,
    pareto_front,
    ranked,
    same_servers,
)
from pytest_pd.twin.plan_output import place, plan_cluster, rebase_paths
from pytest_pd.workload.spec import Workload, WorkloadError
from tests.helpers import CLUSTERS

P = SimParams()
SEED = Workload()
PP2 = Topology((ServerShape(tp=4, pp=2, chunked_prefill_size=16384),), (ServerShape(tp=8, prefill_pp=2),))


def test_slos_read_both_name_orders_and_refuse_unknown_names():
    slos = parse_slos("ttft_p90_ms=6000, p90_tpot_ms=40,output_throughput_per_gpu=25", SLO_STATS)
    assert slos == {"p90_ttft_ms": 6000.0, "p90_tpot_ms": 40.0, "output_throughput_per_gpu": 25.0}
    assert parse_slos("", SLO_STATS) == {}
    with pytest.raises(SloError, match="'ttft': unknown statistic; known: mean_tpot_ms"):
        parse_slos("ttft=5", SLO_STATS)
    with pytest.raises(SloError, match="'fast' is not a number"):
        parse_slos("p90_ttft_ms=fast", SLO_STATS)
    with pytest.raises(SloError, match="give NAME=VALUE"):
        parse_slos("p90_ttft_ms", SLO_STATS)
    stats = {"p90_ttft_ms": 7000.0, "p90_tpot_ms": 30.0, "output_throughput_per_gpu": 20.0}
    assert slo_misses(stats, slos) == ["p90_ttft_ms 7000 > 6000", "output_throughput_per_gpu 20 < 25"]


def test_workload_ids_read_back_as_the_workloads_they_name():
    for w in (
        SEED,
        Workload(100, 20, 4, 8, range_ratio=0.5, request_rate=2.5, burstiness=0.5, seed=3, warmup_requests=0),
        Workload(api="completions", completions_prompt="ids", ignore_eos=False, duration_limit_s=60),
        Workload(prefix_groups=4, prefix_len=512, api="chat"),
    ):
        assert Workload.from_id(w.id) == w
    for bad, why in (
        ("in1-out2-c3", "part 4 should be n<number>"),
        ("in1-out2-c3-n4-zz", "unknown part 'zz'"),
        ("in1-out2-c3-n4-dsprompts", "give the file"),
    ):
        with pytest.raises(WorkloadError, match=why):
            Workload.from_id(bad)


def test_weights_that_do_not_fit_rule_a_server_out_and_kv_caps_the_decode_batch():
    small_decode = Topology(PP2.prefill, (ServerShape(tp=4, prefill_pp=2),))
    _, why = fit_memory(P, small_decode, (6000, 1000, 16), 0.9)
    assert why.startswith("decode TP4xPP1: weights need 168 GB per GPU")
    fitted, why = fit_memory(P, PP2, (6000, 1000, 16), 0.9)
    assert not why and fitted == PP2  # 87 requests fit on H20-3e: no cap at concurrency 16
    h20_96 = dataclasses.replace(P, gpu_memory_gb=96.0)
    fitted, why = fit_memory(h20_96, PP2, (6000, 1000, 16), 0.9)
    fits = int(kv_capacity_tokens(h20_96, PP2.decode[0], 0.9) // 7000)
    assert not why and 1 <= fits < 16 and fitted.decode[0].max_running_requests == fits


def test_the_pareto_front_keeps_exactly_the_undominated():
    def point(per_gpu, ttft, tpot):
        return {PER_GPU: per_gpu, "mean_ttft_ms": ttft, "mean_tpot_ms": tpot}

    points = [
        point(30, 4000, 27),
        point(31, 3600, 27),
        point(29, 3000, 26),
        point(29, 3000, 26),
        point(20, 9000, 30),
    ]
    assert pareto_front(points) == [False, True, True, True, False]
    assert pareto_front([]) == []


def test_evaluation_is_the_discrete_event_model_with_memory_and_slos():
    topologies = list(candidate_topologies(2, 8))
    out = evaluate(P, topologies, SEED, parse_slos("p90_tpot_ms=40", SLO_STATS))
    assert len(out) == len(topologies)
    feasible = [c for c in out if c.feasible]
    assert feasible and all(c.gpus == 16 for c in feasible)  # DeepSeek-V3 needs 8 GPUs per server
    (pp2,) = [c for c in out if same_servers(c.topology, PP2)]
    n = SEED.num_requests
    run = simulate(P, PP2, [6000] * n, [1000] * n, concurrency=16)
    assert pp2.stats["output_throughput"] == pytest.approx(
        stats_of(run["requests"], run["duration_s"])["output_throughput"]
    )
    assert pp2.stats[PER_GPU] == pytest.approx(pp2.stats["output_throughput"] / 16)
    best = ranked(out)
    assert best and all(c.pareto for c in best)
    assert [c.stats[PER_GPU] for c in best] == sorted((c.stats[PER_GPU] for c in best), reverse=True)
    strict = evaluate(P, [PP2], SEED, parse_slos("p90_ttft_ms=1000", SLO_STATS))
    assert strict[0].problem.startswith("SLO: p90_ttft_ms") and not strict[0].pareto


def test_a_smaller_model_opens_the_candidate_space():
    dense = dataclasses.replace(P, weights_dense_gb=16.0, weights_experts_gb=0.0, kv_bytes_per_token=131072.0)
    out = evaluate(dense, candidate_topologies(1, 8), Workload(2000, 200, 8, 16))
    assert all(c.feasible for c in out) and len(out) > 100  # every one fits, even TP1
    assert any(len(c.topology.prefill) > 1 or len(c.topology.decode) > 1 for c in ranked(out))


def test_servers_are_placed_largest_first_on_the_hosts():
    shapes = [ServerShape(tp=4), ServerShape(tp=4), ServerShape(tp=8)]
    assert place(shapes, [("a", 8), ("b", 8)]) == [("b", 0), ("b", 4), ("a", 0)]
    with pytest.raises(ValueError, match="does not fit"):
        place([ServerShape(tp=8)] * 3, [("a", 8), ("b", 8)])


def test_a_plan_written_from_a_template_keeps_its_flags_and_validates(tmp_path: Path):
    source = CLUSTERS / "sim-pp2.yaml"
    raw = safe_yaml.load(safe_yaml.read_text(source), str(source)).data
    topology = Topology(
        (ServerShape(tp=4, chunked_prefill_size=8192),) * 2, (ServerShape(tp=8, max_running_requests=12),)
    )
    data = plan_cluster(
        rebase_paths(raw, source.parent, tmp_path),
        topology,
        "plan1",
        [("prefill-node", 8), ("decode-node", 8)],
        {"prefill-node": "127.0.0.1", "decode-node": "127.0.0.1"},
        {"twin": {"profile": "p.yaml"}},
    )
    (tmp_path / "sim-tp8.yaml").write_text("")  # the baseline it names must sit beside it
    (tmp_path / "p.yaml").write_text("name: p\n")
    path = tmp_path / "plan1.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    spec = parse_cluster(path.read_text(), path)
    assert spec.model_path == str((CLUSTERS / "models" / "sim-tiny").resolve())
    assert spec.engine_options["sim"] == raw["sim"] and spec.server_defaults.mem_fraction_static == 0.9
    assert [(s.host, s.base_gpu_id) for s in spec.prefill] == [("prefill-node", None), ("prefill-node", 4)]
    ports = [s.port for s in spec.prefill + spec.decode] + [s.bootstrap_port for s in spec.prefill]
    assert len(set(ports)) == len(ports) and spec.router.port not in ports  # one address for all
    assert spec.decode[0].max_running_requests == 12 and spec.decode[0].prefill_pp is None
    assert same_servers(topology_of(spec.model_dump(mode="json")), topology)
