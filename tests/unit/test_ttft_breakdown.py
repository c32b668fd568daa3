"""Where TTFT goes (ttft_breakdown.py): parts from histogram deltas between the first and last
telemetry sample, the remainder for the decode side, honest gaps."""

from __future__ import annotations

import json

import pytest

from pytest_pd.cluster.engines.sglang.metrics import server_times
from pytest_pd.prometheus import server_summary
from pytest_pd.ttft_breakdown import PARTS, ttft_breakdown
from tests.helpers import REPO

P = "engine_type=prefill,moe_ep_rank=0,pp_rank={pp},tp_rank=0"
D = "engine_type=decode,moe_ep_rank=0,pp_rank=0,tp_rank=0"


def breakdown(telemetry: dict | None, client_ttft_s: float) -> dict | None:
    """What a record gets: the breakdown from its telemetry's per-server summary."""
    return ttft_breakdown(server_times(server_summary((telemetry or {}).get("server") or {})), client_ttft_s)


def hist(name: str, labels: str, total: float, count: float) -> dict[str, float]:
    return {f"{name}_sum{{{labels}}}": total, f"{name}_count{{{labels}}}": count}


def telemetry(**workers: tuple[dict[str, float], dict[str, float]]) -> dict:
    return {
        "server": {
            name: {"samples": [{"t": 0.0, "values": first}, {"t": 9.0, "values": last}]}
            for name, (first, last) in workers.items()
        }
    }


def stage(labels: str, stage: str, total: float, count: float) -> dict[str, float]:
    return hist("sglang:per_stage_req_latency_seconds", f"{labels},stage={stage}", total, count)


def pd_telemetry(**drop: bool) -> dict:
    """A PD run: 10 requests; the prefill's two PP ranks both report (the means pool them)."""
    before = {
        **hist("sglang:queue_time_seconds", P.format(pp=0), 5.0, 5),  # before the run: ignored
        **stage(P.format(pp=0), "prefill_forward", 5.0, 5),
    }
    prefill = {
        **hist("sglang:queue_time_seconds", P.format(pp=0), 5.0 + 10 * 0.5, 15),
        **stage(P.format(pp=0), "prefill_forward", 5.0 + 10 * 2.0, 15),
        **stage(P.format(pp=1), "prefill_forward", 10 * 2.0, 10),
        **stage(P.format(pp=0), "prefill_transfer_kv_cache", 10 * 0.25, 10),
        **hist("sglang:kv_transfer_latency_ms", P.format(pp=0), 10 * 400.0, 10),
    }
    for key in [k for k in prefill if any(d in k for d, on in drop.items() if on)]:
        del prefill[key]
    decode = hist("sglang:time_to_first_token_seconds", "engine_type=decode,is_streaming=true", 10 * 2.9, 10)
    return telemetry(**{"prefill-0": (before, prefill), "decode-0": ({}, decode)})


def test_pd_parts_add_up_to_the_client_ttft():
    b = breakdown(pd_telemetry(), 3.0)
    assert b is not None and b["missing"] == {}
    assert b["parts"] == pytest.approx(
        {
            "queueing": 0.5,
            "prefill": 2.0,
            "kv_transfer": 0.25,
            "decode_first_step": 0.15,
            "client_router": 0.1,
        }
    )
    assert list(b["parts"]) == list(PARTS)
    assert sum(b["parts"].values()) == pytest.approx(3.0)
    assert b["server_ttft_s"] == pytest.approx(2.9)


def test_kv_transfer_falls_back_to_the_latency_histogram():
    b = breakdown(pd_telemetry(prefill_transfer_kv_cache=True), 3.0)
    assert b["parts"]["kv_transfer"] == pytest.approx(0.4)


def test_a_part_the_servers_do_not_export_is_missing_with_the_reason():
    b = breakdown(pd_telemetry(queue_time=True), 3.0)
    assert b["parts"]["queueing"] is None and b["parts"]["decode_first_step"] is None
    assert "sglang:queue_time_seconds" in b["missing"]["queueing"]
    assert "needs the queueing" in b["missing"]["decode_first_step"]
    assert b["parts"]["client_router"] == pytest.approx(0.1)  # still known


def test_unified_server_has_no_kv_transfer():
    u = "engine_type=unified,moe_ep_rank=0,pp_rank=0,tp_rank=0"
    last = {
        **hist("sglang:queue_time_seconds", u, 2.0, 4),
        **stage(u, "prefill_forward", 4.0, 4),
        **hist("sglang:time_to_first_token_seconds", "engine_type=unified,is_streaming=true", 6.0, 4),
    }
    b = breakdown(telemetry(server=({}, last)), 1.6)
    assert b["parts"] == pytest.approx(
        {"client_router": 0.1, "queueing": 0.5, "prefill": 1.0, "kv_transfer": 0.0, "decode_first_step": 0.0}
    )


def test_no_telemetry_or_no_ttft_gives_none():
    assert breakdown(None, 1.0) is None
    assert breakdown({"server": {}}, 1.0) is None
    assert breakdown(pd_telemetry(), float("nan")) is None


def test_real_sglang_pd_metrics_give_every_part():
    """Telemetry of a real SGLang 0.5.23 PD run (cpu-1p1d, recorded): every part is measured,
    the bootstrap queue counts as queueing, and the decode's remainder is its own small
    waiting + first-step stages (decode_waiting 0.6 ms + fake_output 0.7 ms, plus its bootstrap)."""
    data = json.loads((REPO / "tests" / "data" / "sglang_0.5.23_ttft_telemetry.json").read_text())
    b = breakdown(data["telemetry"], data["mean_ttft_s"])
    assert b["missing"] == {}
    parts = b["parts"]
    assert parts["queueing"] == pytest.approx(0.0292 + 0.0569, abs=1e-3)  # waiting + bootstrap queue
    assert parts["prefill"] == pytest.approx(0.0677, abs=1e-3)
    assert parts["kv_transfer"] == pytest.approx(0.0833, abs=1e-3)
    assert 0 < parts["decode_first_step"] < 0.02
    assert sum(parts.values()) == pytest.approx(b["ttft_s"])
