"""The streaming client against a server that misbehaves on purpose (tests/helpers/hostile_server.py).

Every misbehaviour ends as a failed request of a named kind with a message that says what
happened (or, where the answer is usable, as a correct success), within the request timeout, with
bounded memory, and without disturbing the well-behaved requests of the same run.
"""

from __future__ import annotations

import time

import pytest
import pytest_asyncio

from pytest_pd.workload import Workload, run_problems, run_workload, summarize
from pytest_pd.workload.record import RequestRecord
from tests.helpers.hostile_server import (
    CASES,
    COMPLETIONS,
    EXTRA_TOKENS,
    GENERATE,
    HostileServer,
    probe,
    prompt_for,
)

TIMEOUT_S = 1.5
HANG_MARGIN_S = 3.0  # over the request timeout: only there to catch a hang
MEMORY_BOUND = 64 * 2**20
INPUT_LEN = 8
OUTPUT_LEN = 4

FAILS = {  # case -> the kind it must end in, and words of its message
    "stall": ("timeout", "within 1.5 s (2 output chunks received)"),
    "no_done_close": (
        "incomplete_stream",
        "ended without 'data: [DONE]' or a finish reason after 2 output chunks",
    ),
    "huge_line": (
        "malformed_stream",
        "sent an SSE line over the client's 8 MiB cap (no newline in its first",
    ),
    "big_event": ("malformed_stream", "sent an SSE line over the client's 8 MiB cap ("),
    "html_page": ("malformed_stream", "HTTP 200 text/html; charset=utf-8 from"),
    "json_error": ("http_status", "HTTP 200 application/json error from"),
    "error_event": ("http_status", "error event in stream from"),
    "abort_event": ("http_status", "request aborted by the server: Decode transfer failed"),
    "chunk_cut": ("dropped_connection", "was cut"),
    "trickle": ("timeout", "within 1.5 s (no response headers received)"),
    "wrong_counts": ("malformed_stream", "has token counts that contradict"),
    "no_headers": ("timeout", "within 1.5 s (no response headers received)"),
    "reset_in_headers": ("connection", "Connection reset by peer"),
    "rejects_ignore_eos": (
        "http_status",
        "the server rejects ignore_eos: run without it (pytest-pd bench --disable-ignore-eos",
    ),
}
SUCCEEDS = {
    "ok",
    "finish_without_done",
    "long_event",
    "byte_writes",
    "byte_chunks",
    "extra_tokens",
    "bad_utf8",
}
BAD_UTF8_COMPLETIONS = ("malformed_stream", "not valid UTF-8")
# bad_utf8 on /generate succeeds: the client decodes only meta_info of SGLang's events (the
# counts it needs), never the text the bytes are in
STATUS_OF = {"json_error": 400, "error_event": 503, "abort_event": 500, "rejects_ignore_eos": 422}


def expected(case_name: str, api: str) -> tuple[str, str] | None:
    """(kind, message words) a case must fail with; None when it must succeed."""
    if case_name == "bad_utf8":
        return BAD_UTF8_COMPLETIONS if api == COMPLETIONS else None
    return FAILS.get(case_name)


CASE_APIS = [(c.name, api) for c in CASES.values() for api in c.apis]


def workload(api: str, n: int = 1) -> Workload:
    return Workload(
        input_len=INPUT_LEN,
        output_len=OUTPUT_LEN,
        concurrency=n,
        num_requests=n,
        warmup_requests=0,
        api=api,
        request_timeout_s=TIMEOUT_S,
    )


@pytest_asyncio.fixture
async def server():
    async with HostileServer() as hostile:
        yield hostile


def output_len(case_name: str) -> int:
    return OUTPUT_LEN + (EXTRA_TOKENS if case_name == "extra_tokens" else 0)


def assert_correct_success(r: RequestRecord, api: str, n_out: int = OUTPUT_LEN) -> None:
    """The exact tokens and counts of a well-formed stream, stamped in order."""
    assert r.ok, r.error
    assert r.completion_tokens == n_out and r.prompt_tokens == INPUT_LEN
    assert len(r.chunk_times) == n_out
    # /generate reports a count on every event; the completions stream only at its end
    assert r.chunk_tokens == (list(range(1, n_out + 1)) if api == GENERATE else [])
    assert r.t_start < r.t_first_token == r.chunk_times[0] <= r.chunk_times[-1] <= r.t_end
    # events that came in one read share its stamp
    assert all(b >= a for a, b in zip(r.chunk_times, r.chunk_times[1:], strict=False))


def assert_failed_as(r: RequestRecord, kind: str, words: str) -> None:
    assert r.error_kind == kind, (r.error_kind, r.error)
    assert words in r.error, r.error
    assert r.t_end is not None and r.t_start <= r.t_end <= r.t_start + TIMEOUT_S + HANG_MARGIN_S
    assert r.t_first_token is None or r.t_first_token > r.t_start


def assert_classified(r: RequestRecord, case_name: str, api: str) -> None:
    want = expected(case_name, api)
    if want is None:
        assert_correct_success(r, api, output_len(case_name))
    else:
        assert_failed_as(r, *want)
        if case_name in STATUS_OF:
            assert r.status == STATUS_OF[case_name], r


@pytest.mark.asyncio
@pytest.mark.parametrize("case_name,api", CASE_APIS)
async def test_each_case_is_classified(server, case_name, api):
    t0 = time.perf_counter()
    result = await run_workload(server.url, workload(api), [prompt_for(case_name)])
    assert time.perf_counter() - t0 < TIMEOUT_S + HANG_MARGIN_S
    (r,) = result.records
    assert_classified(r, case_name, api)
    summary = summarize(result)
    want = expected(case_name, api)
    if want is None:
        assert summary.completed == 1 and summary.errors_by_kind == {}
    else:  # what the report shows: the count by kind and the first message
        assert summary.errors_by_kind == {want[0]: 1}
        assert want[1] in summary.error_examples[want[0]]


@pytest.mark.asyncio
@pytest.mark.parametrize("api", [GENERATE, COMPLETIONS])
async def test_more_tokens_than_asked_completes_but_fails_the_run(server, api):
    result = await run_workload(server.url, workload(api), [prompt_for("extra_tokens")])
    summary = summarize(result)
    assert summary.completed == 1 and summary.output_len_mismatches == 1
    assert summary.total_output_tokens == OUTPUT_LEN + EXTRA_TOKENS
    assert any("1 output" in p for p in run_problems(summary)), run_problems(summary)


@pytest.mark.asyncio
@pytest.mark.parametrize("api", [GENERATE, COMPLETIONS])
@pytest.mark.parametrize("case_name", ["byte_writes", "byte_chunks"])
async def test_byte_by_byte_events_are_stamped_when_they_end(server, case_name, api):
    """An event that arrives one byte at a time is recorded once, stamped no earlier than the
    write of the newline that ends its data line."""
    result = await run_workload(server.url, workload(api), [prompt_for(case_name)])
    (r,) = result.records
    assert_correct_success(r, api)
    (exchange,) = server.exchanges_of(case_name)
    token_event_ends = exchange.event_ends[:OUTPUT_LEN]
    assert all(stamp >= end for stamp, end in zip(r.chunk_times, token_event_ends, strict=True)), (
        r.chunk_times,
        token_event_ends,
    )
    assert r.t_end >= exchange.event_ends[-1]  # [DONE] came last


@pytest.mark.asyncio
@pytest.mark.parametrize("api", [GENERATE, COMPLETIONS])
async def test_hostile_requests_leave_the_others_alone(server, api):
    """Every hostile case of the dialect and as many well-behaved requests, all in flight at
    once: each hostile one ends in its kind, each normal one succeeds with its exact tokens and
    is not held up until the hostile ones time out."""
    hostile = [name for name, a in CASE_APIS if a == api and name != "ok"]
    prompts = []
    for seed, name in enumerate(hostile):
        prompts += [prompt_for(name, seed=seed), prompt_for("ok", seed=seed)]
    t0 = time.perf_counter()
    result = await run_workload(server.url, workload(api, len(prompts)), prompts)
    assert time.perf_counter() - t0 < TIMEOUT_S + HANG_MARGIN_S
    by_index = sorted(result.records, key=lambda r: r.index)
    for name, r in zip(hostile, by_index[0::2], strict=True):
        assert_classified(r, name, api)
    for r in by_index[1::2]:
        assert_correct_success(r, api)
        assert r.t_end - r.t_start < TIMEOUT_S
    summary = summarize(result)
    failing = [name for name in hostile if expected(name, api) is not None]
    assert summary.failed == len(failing)
    assert summary.completed == len(prompts) - len(failing)


MEMORY_CASES = [
    ("huge_line", GENERATE),
    ("big_event", COMPLETIONS),
    ("long_event", COMPLETIONS),
    ("trickle", GENERATE),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("case_name,api", MEMORY_CASES)
async def test_client_memory_stays_bounded(server, case_name, api):
    """In a child process on the production path (run_workload_sync, uvloop): the peak RSS
    during the request stays under MEMORY_BOUND over the RSS after imports, whatever the line."""
    measured = await probe(server.url, api, case_name, TIMEOUT_S)
    r = RequestRecord.from_dict(measured["record"])
    assert_classified(r, case_name, api)
    assert measured["elapsed_s"] < TIMEOUT_S + HANG_MARGIN_S
    assert measured["rss_growth"] < MEMORY_BOUND, measured | {"record": r.error}


def test_every_case_has_an_expected_outcome():
    assert set(FAILS) | SUCCEEDS == set(CASES)
