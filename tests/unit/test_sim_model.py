"""Unit tests of the simulator's pure timing model, and its calibration against the seed table."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_pd.sim import model
from pytest_pd.sim.closed_loop import (
    SEED_TABLE,
    SEED_TOPOLOGIES,
    SEED_WORKLOAD,
    simulate_closed_loop,
)
from pytest_pd.sim.model import (
    PrefillScheduler,
    ServerShape,
    SimParams,
    decode_step_time,
    experts_touched,
    kv_transfer_time,
    prefill_chunk_time,
    prefill_compute_time,
    prefill_stage_time,
)

P = SimParams()
TOLERANCE = 0.05  # every seed number within 5 %


def test_params_are_simple_and_have_speedup() -> None:
    fields = {f.name: f for f in dataclasses.fields(SimParams)}
    assert fields["speedup"].default == 1.0
    for f in fields.values():
        assert f.type in ("float", "int", "bool", "str", float, int, bool, str), f.name
    for name in ("startup_delay_s", "eos_after_tokens", "bootstrap_timeout_s"):
        assert name in fields
    assert [f.name for f in model.sim_param_fields()] == list(fields)


def test_sim_cli_args() -> None:
    assert model.sim_cli_args({"speedup": 10, "eos_after_tokens": 3}) == [
        "--sim-speedup",
        "10",
        "--sim-eos-after-tokens",
        "3",
    ]
    with pytest.raises(ValueError, match="unknown sim parameter"):
        model.sim_cli_args({"speedpu": 1.0})
    with pytest.raises(ValueError, match="must be int"):
        model.sim_cli_args({"eos_after_tokens": 1.5})


def test_tp_scaling() -> None:
    assert model.tp_time_factor(P, P.reference_tp) == 1.0
    assert model.tp_time_factor(P, 4) > 1.0 > model.tp_time_factor(P, 16)


def test_prefill_compute_grows_with_tokens_context_and_fewer_gpus() -> None:
    assert prefill_compute_time(P, 0, 0, 8) == 0.0
    t1 = prefill_compute_time(P, 1000, 0, 8)
    assert prefill_compute_time(P, 2000, 0, 8) > 2 * t1 * 0.999  # linear + attention
    assert prefill_compute_time(P, 1000, 5000, 8) > t1  # attends to earlier context
    assert prefill_compute_time(P, 1000, 0, 4) > t1


def test_pipeline_fill_and_stage_time() -> None:
    stage1 = prefill_stage_time(P, [(6000, 0)], tp=8, pp=1)
    assert prefill_chunk_time(P, 6000, tp=8) == pytest.approx(stage1)
    stage2 = prefill_stage_time(P, [(6000, 0)], tp=4, pp=2)
    # a stage does half the layers on half the GPUs, plus the hand-off
    assert stage2 < stage1
    assert prefill_chunk_time(P, 6000, tp=4, pp=2) == pytest.approx(2 * stage2)
    assert model.pipeline_bubble_time(P, 6000, tp=8, pp=1) == 0.0
    assert model.pipeline_bubble_time(P, 6000, tp=4, pp=2) == pytest.approx(stage2)


def test_kv_transfer() -> None:
    p = dataclasses.replace(P, kv_bytes_per_token=1000.0, kv_bandwidth_gb_s=1.0, kv_bootstrap_s=0.1)
    assert kv_transfer_time(p, 1_000_000) == pytest.approx(0.1 + 1.0)
    assert kv_transfer_time(p, 1_000_000, prefill_pp=2) == pytest.approx(0.2 + 1.0)


def test_decode_step_grows_with_batch_and_context() -> None:
    assert decode_step_time(P, 0, 0, 8) == 0.0
    steps = [decode_step_time(P, b, 6500, 8) for b in (1, 4, 8, 16, 32)]
    assert steps == sorted(steps) and steps[0] < steps[-1]
    assert decode_step_time(P, 4, 8000, 8) > decode_step_time(P, 4, 1000, 8)


def test_decode_step_is_physical_outside_the_seed_range() -> None:
    # a token costs less in a bigger batch: the weights are read once per step for all of them
    per_token = [decode_step_time(P, b, 6500, 8) / b for b in (1, 16, 64, 256)]
    assert per_token == sorted(per_token, reverse=True)
    # 256 requests: no slower than reading every weight and the whole KV cache at the achieved
    # bandwidth while computing every token at the achieved FLOP rate (the 2.15-power law this
    # replaced took 14.6 s here)
    bandwidth = P.hbm_gb_s * 1e9 * P.decode_memory_efficiency
    flops = P.gpu_tflops * 1e12 * P.decode_compute_efficiency
    reads = (P.weights_dense_gb + P.weights_experts_gb) * 1e9 / 8 + 256 * 6500 * P.kv_bytes_per_token
    computes = 256 * (P.decode_gflop_per_token * 1e9 + 6500 * P.decode_attn_mflop_per_context_token * 1e6) / 8
    step = decode_step_time(P, 256, 6500, 8)
    assert step <= P.decode_step_base_s + reads / bandwidth + computes / flops
    assert step < 0.2
    # half the GPUs: the weights and the FLOPs per GPU double, the KV read per rank (MLA) does not
    assert 1.0 < decode_step_time(P, 16, 6500, 4) / decode_step_time(P, 16, 6500, 8) < 2.0


def test_dense_model_decode_is_flat_until_compute_bound() -> None:
    dense = dataclasses.replace(P, weights_experts_gb=0.0, kv_bytes_per_token=0.0)
    small = [decode_step_time(dense, b, 0, 8) for b in (1, 2, 4)]
    assert small[0] == pytest.approx(small[-1])  # memory-bound: the same weights, whatever B
    big = [decode_step_time(dense, b, 0, 8) for b in (4096, 8192)]
    assert big[1] - dense.decode_step_base_s == pytest.approx(2 * (big[0] - dense.decode_step_base_s))
    assert experts_touched(P, 1) == pytest.approx(8 / 256)
    assert experts_touched(P, 10_000) == pytest.approx(1.0)
    assert experts_touched(dense, 3) == 1.0


def test_scheduler_fifo_chunks() -> None:
    s = PrefillScheduler(P, tp=8, pp=1, chunk_size=16384)
    for key in "abc":
        s.submit(key, 6000)
    b1 = s.next_batch(0.0)
    assert b1 is not None
    assert b1.pieces == (("a", 6000, 0), ("b", 6000, 0), ("c", 4384, 0))
    assert b1.finished == ("a", "b")
    assert s.next_batch(b1.done_at - 1e-9) is None  # stage 0 still busy
    b2 = s.next_batch(b1.done_at)
    assert b2 is not None
    assert b2.pieces == (("c", 1616, 4384),) and b2.finished == ("c",)
    assert b2.done_at == pytest.approx(b1.done_at + prefill_stage_time(P, [(1616, 4384)], 8, 1))
    assert not s.has_work() and s.next_batch(1e9) is None


def test_scheduler_pipelines_batches_across_stages() -> None:
    s = PrefillScheduler(P, tp=4, pp=2, chunk_size=6000)
    s.submit("a", 6000)
    s.submit("b", 6000)
    b1 = s.next_batch(0.0)
    assert b1 is not None
    stage = prefill_stage_time(P, [(6000, 0)], 4, 2)
    assert s.stage0_free_at == pytest.approx(stage)  # next batch may enter after one stage
    b2 = s.next_batch(s.stage0_free_at)
    assert b2 is not None
    assert b1.done_at == pytest.approx(2 * stage)
    assert b2.done_at == pytest.approx(3 * stage)  # overlapped, not 4 stages


def test_single_request_closed_loop_is_exact() -> None:
    p = P
    pre, dec = ServerShape(tp=8, chunked_prefill_size=8192), ServerShape(tp=8)
    r = simulate_closed_loop(p, pre, dec, input_len=2000, output_len=11, concurrency=1, num_requests=1)
    ttft = prefill_chunk_time(p, 2000, tp=8) + kv_transfer_time(p, 2000)
    decode = sum(decode_step_time(p, 1, 2000 + k, 8) for k in range(1, 11))
    assert r["mean_ttft_s"] == pytest.approx(ttft)
    assert r["mean_tpot_ms"] == pytest.approx(100 * decode)
    assert r["mean_e2e_latency_s"] == pytest.approx(ttft + decode)
    assert r["output_throughput"] == pytest.approx(11 / r["mean_e2e_latency_s"])


def test_speedup_divides_times() -> None:
    pre, dec = SEED_TOPOLOGIES["tp8"]
    slow = simulate_closed_loop(P, pre, dec, 1000, 50, 4, 8)
    fast = simulate_closed_loop(dataclasses.replace(P, speedup=10.0), pre, dec, 1000, 50, 4, 8)
    assert fast["mean_ttft_s"] == pytest.approx(slow["mean_ttft_s"] / 10)
    assert fast["mean_tpot_ms"] == pytest.approx(slow["mean_tpot_ms"] / 10)
    assert fast["output_throughput"] == pytest.approx(slow["output_throughput"] * 10)


def test_decode_batch_limit_queues() -> None:
    pre = ServerShape(tp=8, chunked_prefill_size=16384)
    free = simulate_closed_loop(P, pre, ServerShape(tp=8), 1000, 100, 4, 4)
    capped = simulate_closed_loop(P, pre, ServerShape(tp=8, max_running_requests=1), 1000, 100, 4, 4)
    assert capped["mean_e2e_latency_s"] > free["mean_e2e_latency_s"]
    assert capped["output_throughput"] < free["output_throughput"]


def test_closed_loop_keeps_concurrency() -> None:
    pre, dec = SEED_TOPOLOGIES["tp8"]
    r = simulate_closed_loop(P, pre, dec, 6000, 100, 4, 12)
    assert len(r["requests"]) == 12
    sends = sorted(q["send"] for q in r["requests"])
    assert sends[:4] == [0.0] * 4 and sends[4] > 0
    finishes = sorted(q["finish"] for q in r["requests"])
    # each later request is sent when an earlier one finishes
    assert all(any(abs(s - f) < 1e-9 for f in finishes) for s in sends[4:])


@pytest.fixture(scope="module")
def seed_results() -> dict[str, dict[str, float]]:
    return {
        name: simulate_closed_loop(P, pre, dec, **SEED_WORKLOAD)
        for name, (pre, dec) in SEED_TOPOLOGIES.items()
    }


@pytest.mark.parametrize("topology", ["pp2", "tp8"])
@pytest.mark.parametrize("metric", ["mean_ttft_s", "output_throughput", "mean_tpot_ms", "mean_e2e_latency_s"])
def test_calibrated_to_seed_table(
    seed_results: dict[str, dict[str, float]], topology: str, metric: str
) -> None:
    got, want = seed_results[topology][metric], SEED_TABLE[topology][metric]
    assert got == pytest.approx(want, rel=TOLERANCE), (topology, metric, got, want)


def test_pp_vs_tp_deltas_agree_with_the_seed(seed_results: dict[str, dict[str, float]]) -> None:
    """PP's TTFT is much higher and its TPOT lower (its decode batch fills less); the seed's
    +0.9 % throughput is one run's, within noise: the model has PP 2-4 % lower, and the suite's
    bound (0.95) holds either way."""
    pp, tp = seed_results["pp2"], seed_results["tp8"]
    assert pp["mean_ttft_s"] > 1.25 * tp["mean_ttft_s"]
    assert pp["mean_tpot_ms"] < tp["mean_tpot_ms"]
    assert 0.95 < pp["output_throughput"] / tp["output_throughput"] < 1.02
