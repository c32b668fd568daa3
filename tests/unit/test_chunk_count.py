"""Token-true timing on the OpenAI APIs, pure parts: decoding per-chunk usage and chunk texts,
counting chunk tokens with a tokenizer after the run, reconciling with the server's total, the
sim's stream-interval rule, and ``token_count_source`` in the summary."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from pytest_pd.sim.serving import stream_due
from pytest_pd.workload import RequestRecord, RunResult, Workload, summarize
from pytest_pd.workload.chunk_count import count_chunk_tokens, cumulative_counts, reconcile
from pytest_pd.workload.metrics import request_itls, token_count_source
from pytest_pd.workload.record import TOKENS_ONE_PER_CHUNK, TOKENS_SERVER, TOKENS_TOKENIZER
from pytest_pd.workload.sse import SSEStream, ended_stream_failure
from tests.helpers import SIM_MODEL


class WordTokenizer:
    """One token per space-separated word (its leading space included), with offsets."""

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        offsets, start = [], 0
        for i in range(1, len(text) + 1):
            if i == len(text) or text[i] == " ":
                offsets.append((start, i))
                start = i
        return {"input_ids": list(range(len(offsets))), "offset_mapping": offsets}


class SlowTokenizer:
    """No offsets (a slow tokenizer): one token per character."""

    def __call__(self, text, **kw):
        raise NotImplementedError("return_offsets_mapping is not available")

    def encode(self, text, add_special_tokens=False):
        return list(text)


def sse(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def completions_chunk(text, usage=None, finish=None):
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish}], "usage": usage}


def chat_chunk(content, usage=None):
    return {"choices": [{"index": 0, "delta": {"content": content}}], **({"usage": usage} if usage else {})}


def usage(n, p=20):
    return {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}


def decode(api, events):
    rec = RequestRecord(index=0, prompt_len=20, expected_output_len=10)
    s = SSEStream(api, rec)
    for i, e in enumerate(events):
        s.feed(e if isinstance(e, bytes) else sse(e), 1.0 + i)
    s.close()
    return rec


def test_continuous_usage_gives_server_counts_per_chunk():
    rec = decode(
        "completions",
        [
            completions_chunk(" a", usage(1)),
            completions_chunk(" b c d", usage(4)),
            completions_chunk(" e f", usage(6), finish="length"),
            {"choices": [], "usage": usage(6)},
            b"data: [DONE]\n\n",
        ],
    )
    assert rec.chunk_tokens == [1, 4, 6] and rec.completion_tokens == 6
    assert rec.token_source == TOKENS_SERVER and rec.chunk_texts == []  # nothing left to count
    assert list(request_itls(rec)) == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.5, 0.5])


def test_without_usage_per_chunk_the_texts_are_kept_for_the_tokenizer():
    rec = decode(
        "completions",
        [
            completions_chunk(" a"),
            completions_chunk(" b c d"),
            completions_chunk(" e f", finish="length"),
            {"choices": [], "usage": usage(6)},
            b"data: [DONE]\n\n",
        ],
    )
    assert rec.chunk_tokens == [] and rec.token_source == TOKENS_ONE_PER_CHUNK
    assert rec.chunk_texts == [" a", " b c d", " e f"]
    assert count_chunk_tokens([rec], WordTokenizer()) == 1
    assert rec.chunk_tokens == [1, 4, 6] and rec.token_source == TOKENS_TOKENIZER
    assert rec.chunk_texts == []


def test_chat_deltas_role_chunk_and_finish_chunk():
    rec = decode(
        "chat",
        [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            chat_chunk(" a b"),
            chat_chunk(" c"),
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
            {"choices": [], "usage": usage(3, p=31)},
            b"data: [DONE]\n\n",
        ],
    )
    assert len(rec.chunk_times) == 2 and rec.t_first_token == 2.0
    assert rec.chunk_texts == [" a b", " c"] and rec.completion_tokens == 3 and rec.prompt_tokens == 31


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_total_on_the_last_choice_chunk_and_no_done_as_transformers_serve_sends(api):
    """No per-chunk usage; the count comes on the finish chunk, which has no text, and the body
    ends without [DONE]: three output chunks, a finished stream."""
    piece = completions_chunk if api == "completions" else chat_chunk
    last = (
        completions_chunk("", usage(6), finish="length")
        if api == "completions"
        else {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "usage": usage(6)}
    )
    rec = RequestRecord(index=0, prompt_len=20, expected_output_len=6)
    stream = SSEStream(api, rec)
    for i, e in enumerate([piece(" a"), piece(" b c d"), piece(" e f"), last]):
        stream.feed(sse(e), 1.0 + i)
    stream.finish(5.0)
    stream.close()
    assert rec.chunk_times == [1.0, 2.0, 3.0] and rec.completion_tokens == 6
    assert rec.token_source == TOKENS_ONE_PER_CHUNK and rec.chunk_texts == [" a", " b c d", " e f"]
    assert not stream.done and stream.finished
    assert ended_stream_failure(stream, "http://h/x") is None


def test_cumulative_counts_count_a_straddling_token_where_it_ends():
    tok = WordTokenizer()
    assert list(cumulative_counts(tok, [" a", " b", "c d", " e"])) == [1, 1, 3, 4]
    assert list(cumulative_counts(SlowTokenizer(), ["ab", "c"])) == [2, 3]
    assert cumulative_counts(tok, []).size == 0


@pytest.mark.parametrize(
    "counts,total,want",
    [
        ([1, 4, 6], 6, [1, 4, 6]),  # agrees with the server
        ([1, 1, 3, 4], 4, [1, 2, 3, 4]),  # a chunk with no token of its own still carries one
        ([2, 4, 6], 12, [4, 8, 12]),  # scaled to the server's total
        ([5, 10, 11], 4, [2, 3, 4]),  # more tokens than the server counted: scaled down
        ([0, 0, 0], 5, [1, 2, 5]),  # nothing counted: one per chunk, the rest on the last
    ],
)
def test_reconcile_with_the_server_total(counts, total, want):
    got = reconcile(np.asarray(counts), total)
    assert list(got) == want
    assert got[-1] == total and np.all(np.diff(got) >= 1) and got[0] >= 1


def test_count_skips_failed_and_server_counted_records():
    failed = RequestRecord(0, 20, 10, error_kind="timeout", chunk_times=[1.0], chunk_texts=[" a"])
    failed.token_source = TOKENS_ONE_PER_CHUNK
    server = RequestRecord(1, 20, 10, chunk_times=[1.0], chunk_tokens=[1], completion_tokens=1)
    server.token_source = TOKENS_SERVER
    assert count_chunk_tokens([failed, server], WordTokenizer()) == 0
    assert failed.chunk_texts == [] and failed.chunk_tokens == [] and server.chunk_tokens == [1]


def test_sim_tiny_tokenizer_counts_the_sims_output_text():
    from pytest_pd.sim.vocab import Vocab
    from pytest_pd.workload import load_tokenizer

    vocab = Vocab(SIM_MODEL / "tokenizer.json", 0)
    tok = load_tokenizer(SIM_MODEL)
    text = vocab.output_text(0, 0, 40)
    pieces = [text[i : i + 13] for i in range(0, len(text), 13)]
    counts = cumulative_counts(tok, pieces)
    assert counts[-1] == 40


@pytest.mark.parametrize(
    "interval,sends",
    [(1, [1, 2, 3, 4, 5, 6, 7]), (2, [1, 3, 5, 7]), (3, [1, 4, 7]), (4, [1, 5, 7])],
)
def test_stream_interval_sends_first_then_every_interval_and_last(interval, sends):
    sent, out = 0, []
    for n in range(1, 8):
        if stream_due(n, sent, n == 7, interval):
            out.append(n)
            sent = n
    assert out == sends


def test_token_count_source_in_the_summary():
    def rec(i, source):
        r = RequestRecord(i, 20, 2, t_start=0.0, t_first_token=1.0, t_end=2.0, completion_tokens=2)
        r.chunk_times, r.token_source = [1.0, 2.0], source
        r.chunk_tokens = [1, 2] if source != TOKENS_ONE_PER_CHUNK else []
        return r

    w = Workload(input_len=20, output_len=2, num_requests=2, concurrency=2, warmup_requests=0)
    same = [rec(0, TOKENS_TOKENIZER), rec(1, TOKENS_TOKENIZER)]
    assert summarize(RunResult(w, same, 0.0, 2.0, "http://x")).token_count_source == "tokenizer"
    mixed = [rec(0, TOKENS_SERVER), rec(1, TOKENS_ONE_PER_CHUNK)]
    assert token_count_source(mixed) == "mixed: one per chunk 1, server per chunk 1"
    assert token_count_source([]) == ""
