"""Multi-turn conversations against simulated SGLang servers: every later turn sends the
conversation so far with the answer the server really gave (the server's own prompt count and
prefix-cache hits say so), after the think time, one conversation per place under the cap;
cumulative and incremental ``/generate`` streams, the chat API, and through the real router in
PD mode. Loopback only; every process is stopped in a finally."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_pd.sim.prefix_cache import BLOCK
from pytest_pd.workload import (
    RunResult,
    Workload,
    build_prompts,
    load_tokenizer,
    run_workload_sync,
    summarize,
)
from tests.helpers import SIM_MODEL, start_pd
from tests.integration.test_workload_sim import start_unified

THINK_S = 0.3
TIMER_RESOLUTION_S = 0.002
"""uvloop's timers (libuv's) have millisecond resolution and may fire that much early."""
TALKS = Workload(
    input_len=300,
    output_len=24,
    num_requests=9,
    concurrency=2,
    turns=3,
    turn_input_len=50,
    think_time_s=THINK_S,
    warmup_requests=0,
)


def _run(url: str, workload: Workload) -> RunResult:
    tok = load_tokenizer(str(SIM_MODEL))
    result = run_workload_sync(url, workload, build_prompts(tok, workload), tokenizer=tok)
    assert summarize(result).completed == workload.num_requests, [r.error for r in result.records]
    return result


def _turns(result: RunResult, turns: int) -> list[list]:
    recs = sorted(result.records, key=lambda r: r.index)
    return [recs[k : k + turns] for k in range(0, len(recs), turns)]


def _check_turns(result: RunResult, workload: Workload, *, template: bool = False) -> None:
    for talk in _turns(result, workload.turns):
        for before, after in zip(talk, talk[1:], strict=False):
            grown = after.prompt_tokens - before.prompt_tokens - before.completion_tokens
            if template:  # the chat template's tokens around the two new messages
                assert workload.turn_input_len < grown < workload.turn_input_len + 40
            else:
                assert grown == workload.turn_input_len
                assert after.prompt_len == after.prompt_tokens
            waited = after.t_start - before.t_end
            assert THINK_S - TIMER_RESOLUTION_S <= waited < THINK_S + 0.5


def _check_cap(result: RunResult, workload: Workload) -> None:
    """At most ``concurrency`` conversations overlap (first turn's start to last turn's end)."""
    spans = [(talk[0].t_start, talk[-1].t_end) for talk in _turns(result, workload.turns)]
    for t, _ in spans:
        live = sum(1 for a, b in spans if a <= t < b)
        assert live <= workload.concurrency


@pytest.mark.parametrize("incremental", [False, True], ids=["cumulative", "incremental"])
def test_each_turn_sends_the_previous_answer_and_hits_the_prefix_cache(tmp_path: Path, incremental: bool):
    args = ["--sim-speedup", "100", "--enable-cache-report"]
    if incremental:
        args.append("--incremental-streaming-output")
    url, proc = start_unified(tmp_path, SIM_MODEL, *args)
    try:
        result = _run(url, TALKS)
    finally:
        proc.stop()
    _check_turns(result, TALKS)
    _check_cap(result, TALKS)
    for talk in _turns(result, TALKS.turns):
        for before, after in zip(talk, talk[1:], strict=False):
            # the whole of the previous prompt is found (to the simulator's block)
            assert after.cached_tokens == before.prompt_tokens // BLOCK * BLOCK


def test_a_chat_conversation_sends_its_messages(tmp_path: Path):
    workload = dataclasses.replace(TALKS, api="chat", num_requests=6)
    url, proc = start_unified(tmp_path, SIM_MODEL, "--sim-speedup", "100")
    try:
        result = _run(url, workload)
    finally:
        proc.stop()
    _check_turns(result, workload, template=True)


def test_conversations_through_the_router_in_pd_mode(tmp_path: Path):
    pd = start_pd(tmp_path, speedup=100.0)
    try:
        result = _run(pd.router, TALKS)
    finally:
        pd.stop()
    _check_turns(result, TALKS)
    _check_cap(result, TALKS)
