"""The streaming client and runner against a real aiohttp server on 127.0.0.1.

The server below speaks SGLang's streaming /generate and OpenAI /v1/completions (SSE) with
deterministic delays, and has misbehaving prefixes: each failure must land in its error kind and
never produce a TTFT of 0.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time

import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web

from pytest_pd.workload import (
    Prompt,
    RunResult,
    Workload,
    WorkloadError,
    run_workload,
    run_workload_sync,
    summarize,
)
from pytest_pd.workload.client import send_request
from pytest_pd.workload.record import RequestRecord
from pytest_pd.workload.transport import Dialer
from tests.helpers import free_port

FIRST_DELAY = 0.05  # s before the first token
STEP_DELAY = 0.004  # s between tokens
MODEL = "sim-model"


class FakeSGLang:
    """Streams like an SGLang worker; behaviour chosen by the URL prefix."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.app = web.Application()
        self.app.router.add_get("/{mode}/v1/models", self.models)
        self.app.router.add_post("/{mode}/generate", self.generate)
        self.app.router.add_post("/{mode}/v1/completions", self.completions)

    async def models(self, request: web.Request) -> web.Response:
        if request.match_info["mode"] == "nomodels":
            return web.json_response({"data": []})
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def _start(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        return resp

    @staticmethod
    async def _send(resp: web.StreamResponse, obj) -> None:
        payload = obj if isinstance(obj, str) else json.dumps(obj)
        await resp.write(f"data: {payload}\n\n".encode())

    async def _handle(self, request: web.Request, api: str):
        mode = request.match_info["mode"]
        body = await request.json()
        self.requests.append((mode, api, body))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if mode == "err500":
                return web.Response(status=500, text="internal error: " + "x" * 2000)
            if mode == "hangheaders":
                await asyncio.sleep(30)
            if api == "generate":
                n_prompt = len(body["input_ids"])
                n_out = body["sampling_params"]["max_new_tokens"]
            else:
                n_prompt = len(body["prompt"])
                n_out = body["max_tokens"]
            resp = await self._start(request)
            if mode == "zero":
                await asyncio.sleep(FIRST_DELAY)
                if api == "generate":
                    await self._send(
                        resp,
                        {
                            "text": "",
                            "meta_info": {
                                "prompt_tokens": n_prompt,
                                "completion_tokens": 0,
                                "finish_reason": {"type": "stop", "matched": 2},
                            },
                        },
                    )
                else:
                    await self._send(
                        resp, {"choices": [], "usage": {"prompt_tokens": n_prompt, "completion_tokens": 0}}
                    )
                await self._send(resp, "[DONE]")
                return resp
            if mode == "inbanderror":
                await self._send(resp, {"error": {"message": "KV transfer failed", "code": 503}})
                await self._send(resp, "[DONE]")
                return resp
            if mode == "abortchunk":  # real SGLang's /generate after a failed KV transfer
                await self._send(
                    resp,
                    {
                        "text": "t1 ",
                        "output_ids": [5],
                        "meta_info": {
                            "prompt_tokens": n_prompt,
                            "completion_tokens": 1,
                            "finish_reason": None,
                        },
                    },
                )
                await self._send(
                    resp,
                    {
                        "text": "",
                        "output_ids": [],
                        "meta_info": {
                            "prompt_tokens": n_prompt,
                            "completion_tokens": 0,
                            "finish_reason": {
                                "type": "abort",
                                "status_code": 500,
                                "message": "Decode transfer "
                                "failed for request rank=0 req.rid='x': KVTransferError",
                            },
                        },
                    },
                )
                await self._send(resp, "[DONE]")
                return resp
            if mode == "short":  # stops early although ignore_eos was sent
                n_out = max(1, n_out - 2)
            if mode == "badprompt":  # counts the prompt differently
                n_prompt += 1
            await asyncio.sleep(FIRST_DELAY)
            text = ""
            for k in range(1, n_out + 1):
                if k > 1:
                    await asyncio.sleep(STEP_DELAY)
                if mode == "malformed" and k == 3:
                    await resp.write(b"data: {not json\n\n")
                    continue
                if mode == "cut" and k == 3:
                    request.transport.close()  # abort the connection mid-body
                    return resp
                if mode in ("nodone", "hang") and k == 3:
                    if mode == "hang":
                        await asyncio.sleep(30)
                    return resp  # clean end of body, but no [DONE]
                piece = f"t{k} "
                text += piece
                if api == "generate":
                    meta = {
                        "prompt_tokens": n_prompt,
                        "completion_tokens": k,
                        "finish_reason": {"type": "length"} if k == n_out else None,
                    }
                    if mode == "metafirst":  # meta_info not last: decoded the slow way
                        await self._send(resp, {"meta_info": meta, "text": text, "index": 0})
                    elif mode == "trickle":  # one event over three reads
                        raw = f"data: {json.dumps({'text': text, 'meta_info': meta})}\n\n"
                        third = len(raw) // 3
                        for piece in (raw[:third], raw[third : 2 * third], raw[2 * third :]):
                            await resp.write(piece.encode())
                            await asyncio.sleep(0.002)
                    else:
                        await self._send(resp, {"text": text, "meta_info": meta})
                else:
                    await self._send(
                        resp,
                        {
                            "id": "c1",
                            "object": "text_completion",
                            "model": MODEL,
                            "usage": None,
                            "choices": [{"index": 0, "text": piece, "finish_reason": None}],
                        },
                    )
            if api == "completions":
                await self._send(
                    resp,
                    {
                        "id": "c1",
                        "choices": [],
                        "usage": {
                            "prompt_tokens": n_prompt,
                            "completion_tokens": n_out,
                            "total_tokens": n_prompt + n_out,
                        },
                    },
                )
            await self._send(resp, "[DONE]")
            return resp
        finally:
            self.in_flight -= 1

    async def generate(self, request: web.Request):
        return await self._handle(request, "generate")

    async def completions(self, request: web.Request):
        return await self._handle(request, "completions")


@pytest_asyncio.fixture
async def server():
    fake = FakeSGLang()
    runner = web.AppRunner(fake.app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    fake.base = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def prompts(n: int, input_len: int = 20, output_len: int = 10) -> list[Prompt]:
    return [Prompt(token_ids=tuple(range(3 + i, 3 + i + input_len)), output_len=output_len) for i in range(n)]


def wl(**kw) -> Workload:
    base = dict(
        input_len=20, output_len=10, concurrency=2, num_requests=4, warmup_requests=0, request_timeout_s=10.0
    )
    base.update(kw)
    return Workload(**base)


def assert_no_ttft_zero(result: RunResult) -> None:
    for r in result.records:
        if r.t_first_token is not None:
            assert r.t_first_token > r.t_start


@pytest.mark.asyncio
async def test_good_generate_run(server):
    w = wl(warmup_requests=1)
    progress = []
    result = await run_workload(server.base + "/ok", w, prompts(4), on_progress=lambda *a: progress.append(a))
    assert all(r.error_kind is None for r in result.records), [r.error for r in result.records]
    for r in result.records:
        assert r.prompt_tokens == 20 and r.completion_tokens == 10
        assert r.chunk_tokens == list(range(1, 11))
        assert len(r.chunk_times) == 10
        assert r.t_first_token - r.t_start >= FIRST_DELAY
        assert r.t_end >= r.chunk_times[-1] >= r.t_first_token
        assert r.t_start >= r.t_queued
        assert r.status == 200
    # warm-up: one request, 16 output tokens, sent first, not measured
    assert len(result.warmup) == 1 and result.warmup[0].completion_tokens == 16
    gen = [b for m, a, b in server.requests if a == "generate"]
    assert gen[0]["sampling_params"]["max_new_tokens"] == 16
    assert gen[1]["sampling_params"] == {"max_new_tokens": 10, "ignore_eos": True, "temperature": 0}
    assert gen[1]["stream"] is True and len(gen[1]["input_ids"]) == 20
    assert server.max_in_flight <= 2
    assert [p[0] for p in progress] == [1, 2, 3, 4]
    assert progress[-1] == (4, 4, 40, 0)

    s = summarize(result)
    assert s.completed == 4 and s.failed == 0 and s.errors_by_kind == {}
    assert s.total_output_tokens == 40 and s.total_input_tokens == 80
    assert s.output_len_mismatches == 0
    assert s.mean_ttft_ms >= FIRST_DELAY * 1000
    assert s.mean_tpot_ms >= STEP_DELAY * 1000 * 0.9
    assert s.mean_e2e_latency_ms > s.mean_ttft_ms
    assert s.max_concurrency == 2
    assert 0 < s.concurrency <= 2.0 + 1e-6
    assert s.duration == pytest.approx(result.finished - result.started)


@pytest.mark.asyncio
async def test_good_completions_run(server):
    w = wl(api="completions")
    result = await run_workload(server.base + "/ok", w, prompts(4))
    assert result.model == MODEL
    assert all(r.error_kind is None for r in result.records), [r.error for r in result.records]
    for r in result.records:
        assert r.completion_tokens == 10 and r.prompt_tokens == 20
        assert len(r.chunk_times) == 10
        assert r.chunk_tokens == []  # no per-chunk usage from this server
        assert r.token_source == "one per chunk" and len(r.chunk_texts) == 10
        assert r.t_first_token - r.t_start >= FIRST_DELAY
    body = [b for m, a, b in server.requests if a == "completions"][0]
    assert body["model"] == MODEL and body["prompt"] == list(range(3, 23))
    assert body["max_tokens"] == 10 and body["ignore_eos"] is True
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    s = summarize(result)
    assert s.completed == 4 and s.total_output_tokens == 40
    assert s.mean_ttft_ms >= FIRST_DELAY * 1000
    assert not math.isnan(s.mean_itl_ms)


@pytest.mark.asyncio
@pytest.mark.parametrize("api", ["generate", "completions"])
@pytest.mark.parametrize(
    "mode,kind",
    [
        ("err500", "http_status"),
        ("malformed", "malformed_stream"),
        ("nodone", "incomplete_stream"),
        ("cut", "dropped_connection"),
        ("zero", "no_tokens"),
        ("inbanderror", "http_status"),
    ],
)
async def test_failure_kinds(server, api, mode, kind):
    result = await run_workload(server.base + "/" + mode, wl(api=api, num_requests=2), prompts(2))
    assert [r.error_kind for r in result.records] == [kind, kind], [r.error for r in result.records]
    for r in result.records:
        assert r.error and r.t_end is not None and r.t_end >= r.t_start
    assert_no_ttft_zero(result)
    s = summarize(result)
    assert s.completed == 0 and s.failed == 2 and s.errors_by_kind == {kind: 2}
    assert math.isnan(s.mean_ttft_ms) and math.isnan(s.mean_e2e_latency_ms)
    if mode == "err500":
        r = result.records[0]
        assert r.status == 500 and "internal error" in r.error
        assert len(r.error) < 600  # body excerpt capped at 500 chars
    if mode == "inbanderror":
        assert result.records[0].status == 503 and "KV transfer failed" in result.records[0].error


@pytest.mark.asyncio
async def test_sglang_abort_finish_reason_is_a_failure(server):
    result = await run_workload(server.base + "/abortchunk", wl(num_requests=2), prompts(2))
    for r in result.records:
        assert r.error_kind == "http_status" and r.status == 500, r
        assert r.error.endswith(
            "request aborted by the server: Decode transfer failed for "
            "request rank=0 req.rid='x': KVTransferError"
        ), r.error
    assert summarize(result).errors_by_kind == {"http_status": 2}


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["hang", "hangheaders"])
async def test_timeout(server, mode):
    t0 = time.perf_counter()
    result = await run_workload(
        server.base + "/" + mode, wl(num_requests=2, request_timeout_s=0.5), prompts(2)
    )
    assert time.perf_counter() - t0 < 5
    assert [r.error_kind for r in result.records] == ["timeout", "timeout"]
    for r in result.records:
        assert r.t_end - r.t_start >= 0.45
    assert_no_ttft_zero(result)
    s = summarize(result)
    assert s.errors_by_kind == {"timeout": 2} and math.isnan(s.mean_ttft_ms)


@pytest.mark.asyncio
async def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await run_workload(f"http://127.0.0.1:{port}", wl(num_requests=2), prompts(2))
    assert [r.error_kind for r in result.records] == ["connection", "connection"]
    assert all(r.t_first_token is None for r in result.records)
    assert summarize(result).errors_by_kind == {"connection": 2}


@pytest.mark.asyncio
async def test_output_len_mismatch_still_completes(server):
    # the server generates what it is asked for; expect more than we ask for
    p = [Prompt(token_ids=tuple(range(3, 23)), output_len=10)]
    rec = RequestRecord(index=0, prompt_len=20, expected_output_len=12)
    await send_request(Dialer(), server.base + "/ok", "generate", p[0], rec, max_tokens=10, timeout_s=5)
    assert rec.error_kind is None and rec.completion_tokens == 10
    result = RunResult(
        workload=wl(num_requests=1),
        records=[rec],
        started=rec.t_start,
        finished=rec.t_end,
        base_url=server.base,
    )
    s = summarize(result)
    assert s.completed == 1 and s.output_len_mismatches == 1


@pytest.mark.asyncio
async def test_concurrency_cap_and_queue_time(server):
    result = await run_workload(
        server.base + "/ok", wl(concurrency=1, num_requests=3, output_len=3), prompts(3, output_len=3)
    )
    assert server.max_in_flight == 1
    r = result.records
    assert r[1].t_start >= r[0].t_end - 1e-3 and r[2].t_start >= r[1].t_end - 1e-3
    assert r[2].t_start - r[2].t_queued > 2 * FIRST_DELAY
    s = summarize(result)
    assert s.mean_queue_ms > 0
    # TTFT excludes the queueing
    assert s.max_concurrency == 1 and s.p99_ttft_ms < 3 * FIRST_DELAY * 1000


@pytest.mark.asyncio
async def test_finite_request_rate_spaces_arrivals(server):
    from pytest_pd.workload.runner import arrival_offsets

    w = wl(num_requests=4, concurrency=4, request_rate=20.0, output_len=2, seed=3)
    offsets = arrival_offsets(w, 4)
    assert offsets[0] == 0 and all(b > a for a, b in zip(offsets, offsets[1:], strict=False))
    assert list(arrival_offsets(w, 4)) == list(offsets)  # seeded
    result = await run_workload(server.base + "/ok", w, prompts(4, output_len=2))
    q = [r.t_queued for r in result.records]
    for i in range(1, 4):
        assert q[i] - q[0] >= offsets[i] - 1e-3


@pytest.mark.asyncio
async def test_completions_without_a_listed_model_send_no_model_name(server):
    """A server whose /v1/models lists none (or fails) serves one model: the requests name none."""
    result = await run_workload(server.base + "/nomodels", wl(api="completions"), prompts(4))
    assert result.model is None and all(r.ok for r in result.records)
    sent = [b for m, a, b in server.requests if m == "nomodels" and a == "completions"]
    assert len(sent) == 4 and not any("model" in b for b in sent)


@pytest.mark.asyncio
async def test_completions_against_nothing_is_a_clear_error():
    with pytest.raises(WorkloadError, match="Cannot reach http://127.0.0.1:.*/v1/models"):
        await run_workload(f"http://127.0.0.1:{free_port()}", wl(api="completions"), prompts(4))


def test_sync_wrapper_against_server_in_thread():
    """run_workload_sync owns its event loop; the server runs on another loop in a thread."""
    fake = FakeSGLang()
    ready = threading.Event()
    stop: dict = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(fake.app, handler_cancellation=True, shutdown_timeout=0.5)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        stop["port"] = site._server.sockets[0].getsockname()[1]
        stop["loop"] = loop
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        result = run_workload_sync(
            f"http://127.0.0.1:{stop['port']}/ok", wl(num_requests=3, output_len=4), prompts(3, output_len=4)
        )
    finally:
        stop["loop"].call_soon_threadsafe(stop["loop"].stop)
        thread.join(10)
    s = summarize(result)
    assert s.completed == 3 and s.total_output_tokens == 12
    assert s.mean_ttft_ms >= FIRST_DELAY * 1000


def test_bad_base_url_is_a_clear_error():
    with pytest.raises(WorkloadError, match="http"):
        run_workload_sync("127.0.0.1:8000", wl(), prompts(4))


@pytest.mark.asyncio
async def test_sync_wrapper_refuses_running_loop():
    with pytest.raises(WorkloadError, match="await run_workload"):
        run_workload_sync("http://127.0.0.1:9", wl(), prompts(4))


def abort_after(seconds: float, reason: str = "decode-0 on node exited with code -9"):
    t0 = time.perf_counter()
    return lambda: reason if time.perf_counter() - t0 > seconds else None


@pytest.mark.asyncio
@pytest.mark.parametrize("rate", [math.inf, 0.2])  # closed loop; open loop mid-way a 5 s gap
async def test_abort_ends_requests_in_flight_and_sends_no_more(server, rate):
    t0 = time.perf_counter()
    result = await run_workload(
        server.base + "/hangheaders",
        wl(num_requests=6, concurrency=2, request_rate=rate, request_timeout_s=30),
        prompts(6),
        abort=abort_after(0.5),
    )
    assert time.perf_counter() - t0 < 3  # not the request timeout, not the arrival gap
    sent = 2 if math.isinf(rate) else 1
    assert [r.error_kind for r in result.records] == ["aborted"] * sent
    for r in result.records:
        assert r.error == "run stopped: decode-0 on node exited with code -9" and r.t_end
    assert result.not_sent == 6 - sent
    s = summarize(result)
    assert s.errors_by_kind == {"aborted": sent} and s.completed == 0
    for _ in range(100):  # the server sees the disconnects
        if server.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert server.in_flight == 0


@pytest.mark.asyncio
async def test_abort_during_warm_up_sends_nothing_measured(server):
    t0 = time.perf_counter()
    result = await run_workload(
        server.base + "/hangheaders",
        wl(num_requests=3, warmup_requests=1, request_timeout_s=30),
        prompts(3),
        abort=abort_after(0.5),
    )
    assert time.perf_counter() - t0 < 3
    assert result.records == [] and result.warmup == [] and result.not_sent == 3


@pytest.mark.asyncio
async def test_cancellation_cancels_in_flight_requests(server):
    task = asyncio.create_task(run_workload(server.base + "/hang", wl(num_requests=3), prompts(3)))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if server.in_flight == 2:
            break
    assert server.in_flight == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):  # the server sees the disconnects and its handlers end
        if server.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert server.in_flight == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["metafirst", "trickle"])
async def test_stream_shapes_parse_the_same(server, mode):
    """meta_info not at the end (full decode path) and events split over several reads (partial
    lines wait for their end) give the same records as the plain stream."""
    result = await run_workload(server.base + "/" + mode, wl(num_requests=2), prompts(2))
    for r in result.records:
        assert r.ok, r.error
        assert r.chunk_tokens == list(range(1, 11)) and r.completion_tokens == 10
        assert r.prompt_tokens == 20
        assert all(b > a for a, b in zip(r.chunk_times, r.chunk_times[1:], strict=False))
    s = summarize(result)
    assert s.completed == 2 and s.output_len_mismatches == 0 and s.input_len_mismatches == 0
    if mode == "trickle":  # stamped when the last third arrived, not the first
        assert s.mean_itl_ms >= STEP_DELAY * 1000


@pytest.mark.asyncio
@pytest.mark.parametrize("api", ["generate", "completions"])
async def test_output_and_input_mismatch_flagged_and_fail_the_run(server, api):
    from pytest_pd.workload import run_problems

    short = await run_workload(server.base + "/short", wl(api=api, num_requests=3), prompts(3))
    s = summarize(short)
    assert s.completed == 3 and s.output_len_mismatches == 3
    assert [r.completion_tokens for r in short.records] == [8, 8, 8]
    assert s.mismatch_share == 1.0
    assert run_problems(s) and "3 output" in run_problems(s)[0]
    assert run_problems(s, max_mismatch_share=1.0) == []
    bad = await run_workload(server.base + "/badprompt", wl(api=api, num_requests=2), prompts(2))
    sb = summarize(bad)
    assert sb.input_len_mismatches == 2 and sb.output_len_mismatches == 0
    assert [r.prompt_tokens for r in bad.records] == [21, 21]
    assert run_problems(sb) and "2 input" in run_problems(sb)[0]


def test_poisson_schedule_statistics():
    from pytest_pd.workload.runner import arrival_offsets

    n = 20000
    w = Workload(input_len=10, output_len=5, num_requests=n, request_rate=50.0, seed=5)
    off = arrival_offsets(w, n)
    gaps = np.diff(off)
    assert off[0] == 0 and (gaps > 0).all()
    assert np.mean(gaps) == pytest.approx(1 / 50.0, rel=0.03)
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(1.0, abs=0.03)  # exponential: CV 1
    # Kolmogorov-Smirnov distance to Exp(rate) is small
    x = np.sort(gaps)
    ecdf = np.arange(1, x.size + 1) / x.size
    assert np.max(np.abs(ecdf - (1 - np.exp(-50.0 * x)))) < 0.015
    # counts per 1 s window are Poisson: variance ~ mean
    counts = np.bincount(off.astype(int))[:-1]
    assert np.var(counts) / np.mean(counts) == pytest.approx(1.0, abs=0.25)
    # seeded: same seed same schedule, other seed other schedule
    assert np.array_equal(arrival_offsets(w, n), off)
    other = Workload(input_len=10, output_len=5, num_requests=n, request_rate=50.0, seed=6)
    assert not np.array_equal(arrival_offsets(other, n), off)
    # burstiness: gamma gaps with the same mean rate, CV = 1/sqrt(shape)
    for shape in (0.25, 4.0):
        b = Workload(input_len=10, output_len=5, num_requests=n, request_rate=50.0, seed=5, burstiness=shape)
        g = np.diff(arrival_offsets(b, n))
        assert np.mean(g) == pytest.approx(1 / 50.0, rel=0.05)
        assert np.std(g) / np.mean(g) == pytest.approx(1 / np.sqrt(shape), rel=0.08)
    assert (arrival_offsets(Workload(), 5) == 0).all()  # closed loop: all due at once


@pytest.mark.asyncio
async def test_duration_limit_stops_dispatching(server):
    w = wl(num_requests=50, concurrency=2, output_len=5, duration_limit_s=0.4)
    t0 = time.perf_counter()
    result = await run_workload(server.base + "/ok", w, prompts(50, output_len=5))
    assert time.perf_counter() - t0 < 3
    sent = len(result.records)
    assert 2 <= sent < 50 and result.not_sent == 50 - sent
    s = summarize(result)
    assert s.not_sent == 50 - sent and s.failed == 0 and s.completed == sent
    assert max(r.t_start for r in result.records) - result.started <= 0.4 + 0.05
    from pytest_pd.workload import run_problems

    assert any("not sent" in p for p in run_problems(s))


@pytest.mark.asyncio
async def test_open_loop_queue_time_apart_from_ttft(server):
    """At a rate above what the cap allows, requests queue in the client: that time shows up as
    queue time, never inside TTFT."""
    w = wl(num_requests=6, concurrency=1, output_len=3, request_rate=200.0)
    result = await run_workload(server.base + "/ok", w, prompts(6, output_len=3))
    s = summarize(result)
    assert s.completed == 6
    assert s.max_queue_ms > 3 * FIRST_DELAY * 1000
    assert s.p99_ttft_ms < FIRST_DELAY * 1000 * 3


@pytest.mark.asyncio
async def test_progress_ticks_report_streamed_tokens(server):
    ticks = []
    await run_workload(
        server.base + "/ok",
        wl(num_requests=2, output_len=40),
        prompts(2, output_len=40),
        on_progress=lambda *a: ticks.append(a),
        progress_interval_s=0.02,
    )
    assert len(ticks) > 2
    assert ticks[-1] == (2, 2, 80, 0)
    mid = [t for t in ticks if t[0] == 0]
    assert mid and max(t[2] for t in mid) > 0  # tokens streamed before any request finished


def _chunked_sse_response(n_out: int, *, bad_frame_at: int | None = None) -> bytes:
    """A whole streamed /generate response with hand-made chunked framing (upper-case hex,
    chunk extensions), as one byte string to be cut anywhere."""
    out = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ]
    text = ""
    for k in range(1, n_out + 1):
        text += f"t{k} "
        event = (
            "data: "
            + json.dumps({"text": text, "meta_info": {"prompt_tokens": 20, "completion_tokens": k}})
            + "\n\n"
        ).encode()
        size = b"zz" if k == bad_frame_at else f"{len(event):X}".encode()
        out.append(size + (b";ext=1" if k % 2 else b"") + b"\r\n" + event + b"\r\n")
    out.append(b"6\r\ndata: \r\n10\r\n[DONE]\n\n" + b" " * 8 + b"\r\n0\r\n\r\n")
    return b"".join(out)


async def _raw_server(response: bytes, cut: int | None):
    """One-response-per-connection HTTP server writing ``response`` in pieces of ``cut`` bytes
    (None: one piece per chunk frame), each its own read on the client side."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        await reader.readexactly(length)
        if cut is None:
            pieces = [p + b"\r\n" for p in response.split(b"\r\n")]  # size lines and data apart
        else:
            pieces = [response[i : i + cut] for i in range(0, len(response), cut)]
        try:
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.0005)
        except ConnectionError:
            pass  # the client gave up on a malformed body
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"


@pytest.mark.asyncio
@pytest.mark.parametrize("cut", [None, 5, 64, 1000])
async def test_chunked_framing_cut_anywhere(cut):
    """The protocol takes chunks out of the framing itself once the body streams: a response cut
    at any byte (inside size lines, extensions, data, CRLFs, across the headers' end) gives the
    same records as aiohttp's own parser would."""
    srv, base = await _raw_server(_chunked_sse_response(10), cut)
    async with srv:
        result = await run_workload(base, wl(num_requests=2), prompts(2))
    for r in result.records:
        assert r.ok, r.error
        assert r.chunk_tokens == list(range(1, 11)) and r.completion_tokens == 10
        assert r.prompt_tokens == 20 and r.t_first_token is not None


@pytest.mark.asyncio
@pytest.mark.parametrize("cut", [None, 7])
async def test_chunked_framing_error_is_a_cut_body(cut):
    """Broken framing fails the request: a cut body when the protocol took the chunks out
    itself, a timeout when aiohttp's parser met it first (it leaves the body waiting)."""
    srv, base = await _raw_server(_chunked_sse_response(10, bad_frame_at=6), cut)
    async with srv:
        result = await run_workload(base, wl(num_requests=2, request_timeout_s=2.0), prompts(2))
    kinds = [r.error_kind for r in result.records]
    assert set(kinds) <= {"dropped_connection", "timeout"} and None not in kinds, kinds
    if cut is None:  # every read starts at a chunk boundary: the chunks are taken out here
        assert kinds == ["dropped_connection"] * 2, [r.error for r in result.records]


@pytest.mark.asyncio
async def test_pacer_starts_a_few_requests_per_loop_iteration():
    """A wave of request starts is spread over loop iterations, in order, none lost."""
    from collections import Counter

    from pytest_pd.workload.pacing import Pacer

    pacer = Pacer(3)
    turns: list[tuple[int, int]] = []
    loops = 0

    async def ticker() -> None:
        nonlocal loops
        while True:
            await asyncio.sleep(0)
            loops += 1

    async def start(i: int) -> None:
        await pacer.turn()
        turns.append((i, loops))

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(start(i) for i in range(10)))
    tick.cancel()
    assert [i for i, _ in turns] == list(range(10))
    assert max(Counter(n for _, n in turns).values()) <= 3
