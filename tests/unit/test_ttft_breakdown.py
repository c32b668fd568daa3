"""Where TTFT goes (ttft_breakdown.py): per request from the answering server's own timing where
responses carry it, else parts from histogram deltas between the first and last telemetry sample;
the parts add up (the prefill side fitted when it overflows), honest gaps."""

from __future__ import annotations

import json

import pytest

from pytest_pd.cluster.engines.sglang.metrics import server_times
from pytest_pd.prometheus import server_summary
from pytest_pd.ttft_breakdown import (
    INFERRED,
    MEASURED,
    PARTS,
    RUN_MEAN,
    RequestTimes,
    ServerTimes,
    ttft_breakdown,
)
from pytest_pd.workload.record import RequestRecord
from pytest_pd.workload.spec import API_GENERATE
from pytest_pd.workload.sse import SSEStream
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


# ---------------------------------------------------------------- per request (the decode's own timing)


def per_request(times: ServerTimes, client: float, server: float, before: float, n: int = 10) -> dict:
    b = ttft_breakdown(times, None, RequestTimes(n, client, server, before))
    assert b is not None
    return b


def pd_times(queueing: float = 0.5, prefill: float = 2.0, kv: float = 0.25) -> ServerTimes:
    return ServerTimes(queueing=queueing, prefill=prefill, kv_transfer=kv, server_ttft=2.9)


def test_per_request_parts_add_up_and_say_what_was_measured():
    """The decode measured 3.0 s before its first forward: the prefill side's 2.75 s of run
    means fit, the 0.25 s left is the decode's hand-off, on top of its measured 0.1 s step."""
    b = per_request(pd_times(), client=3.3, server=3.1, before=3.0)
    assert b["parts"] == pytest.approx(
        {
            "client_router": 0.2,
            "queueing": 0.5,
            "prefill": 2.0,
            "kv_transfer": 0.25,
            "decode_first_step": 0.35,
        }
    )
    assert sum(b["parts"].values()) == pytest.approx(b["ttft_s"]) and b["ttft_s"] == 3.3
    assert b["sources"] == {
        "client_router": MEASURED,
        "queueing": INFERRED,
        "prefill": INFERRED,
        "kv_transfer": INFERRED,
        "decode_first_step": MEASURED,
    }
    assert b["scaled"] is None and b["requests"] == 10 and b["missing"] == {}


def test_prefill_means_over_the_measured_prefill_side_are_fitted_into_it():
    """The issue's real-SGLang case: the prefill's run means (0.724 s) exceed what the decode
    measured for them per request: scaled down in proportion, the parts still add up."""
    b = per_request(pd_times(0.1, 0.5, 0.124), client=0.626, server=0.60, before=0.58)
    assert b["scaled"] == pytest.approx(0.58 / 0.724)
    assert b["parts"]["prefill"] == pytest.approx(0.5 * 0.58 / 0.724)
    assert b["parts"]["decode_first_step"] == pytest.approx(0.02)
    assert sum(b["parts"].values()) == pytest.approx(0.626)


def test_run_means_that_overlap_the_decode_ttft_are_fitted_too():
    b = ttft_breakdown(pd_times(1.0, 2.0, 0.5), 3.0)  # 3.5 s of prefill stages in a 2.9 s decode TTFT
    assert b["scaled"] == pytest.approx(2.9 / 3.5) and b["parts"]["decode_first_step"] == 0.0
    assert sum(b["parts"].values()) == pytest.approx(3.0)
    assert set(b["sources"].values()) == {RUN_MEAN} and b["requests"] is None


def test_a_unified_server_measures_every_part_per_request():
    unified = ServerTimes(queueing=9.0, prefill=9.0, kv_transfer=0.0, server_ttft=9.0, unified=True)
    b = per_request(unified, client=1.0, server=0.9, before=0.3)
    assert b["parts"] == pytest.approx(
        {"client_router": 0.1, "queueing": 0.3, "prefill": 0.6, "kv_transfer": 0.0, "decode_first_step": 0.0}
    )
    assert set(b["sources"].values()) == {MEASURED}


def test_without_the_prefill_metrics_the_prefill_side_is_missing_with_its_total():
    silent_prefill = ServerTimes(
        queueing=None,
        prefill=None,
        kv_transfer=0.1,
        server_ttft=0.9,
        missing={"prefill": "no prefill_forward"},
    )
    b = per_request(silent_prefill, client=1.0, server=0.9, before=0.8)
    assert b["parts"]["client_router"] == pytest.approx(0.1) and b["parts"]["prefill"] is None
    assert b["missing"]["prefill"] == "no prefill_forward"
    assert "0.800 s per request before its first forward" in b["missing"]["decode_first_step"]
    assert b["missing"]["queueing"] == "the prefill servers export no such metric"
    # what the prefill did export is shown as it is, as without per-request times
    assert b["parts"]["kv_transfer"] == pytest.approx(0.1) and b["parts"]["decode_first_step"] is None
    assert b["sources"] == {"client_router": MEASURED, "kv_transfer": RUN_MEAN}


def test_an_engine_without_timing_of_its_own_has_no_breakdown_even_with_per_request_times():
    """Responses may carry timing (a third-party engine on the simulator does) while the engine
    says it exports none (``server_times`` None): no breakdown, as without responses."""
    assert ttft_breakdown(None, 1.0, RequestTimes(4, 1.0, 0.9, 0.8)) is None


def test_the_final_generate_event_carries_the_servers_own_timing():
    """What the client keeps of SGLang's final ``meta_info`` (with --enable-metrics), through the
    fast path and the whole-object path alike."""
    meta = {
        "completion_tokens": 2,
        "finish_reason": {"type": "length", "length": 2},
        "request_received_ts": 1000.0,
        "forward_entry_time": 1000.75,
        "first_token_latency": 0.8,
    }
    for meta_first in (False, True):  # True: a shape the fast path leaves to the whole-object decoder
        rec = RequestRecord(index=0, prompt_len=4, expected_output_len=2)
        stream = SSEStream(API_GENERATE, rec)
        first = {
            "text": "a",
            "output_ids": [1],
            "meta_info": {"completion_tokens": 1, "forward_entry_time": 1000.75},
        }
        stream.feed(b"data: " + json.dumps(first).encode() + b"\n\n", 1.0)
        assert rec.server_ttft is None  # only the final event says it
        last = json.dumps({"text": "ab", "output_ids": [1, 2], "meta_info": meta}).encode()
        if meta_first:
            last = json.dumps({"meta_info": meta, "text": "ab", "output_ids": [1, 2]}).encode()
        stream.feed(b"data: " + last + b"\n\n", 2.0)
        assert rec.server_ttft == 0.8 and rec.server_before_forward == pytest.approx(0.75)
