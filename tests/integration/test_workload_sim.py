"""The load generator against real simulated SGLang workers (and the real router in PD mode).

Exact prompt lengths are verified by the *server*: a sim started with ``--model-path`` pointing at
a tokenizer counts text prompts with that tokenizer, and reports ``usage.prompt_tokens`` /
``meta_info.prompt_tokens`` per request, which the summary compares with the requested length.
Extra tokenizers with awkward edge cases are built here with the ``tokenizers`` library, saved to
tmp folders and loaded offline. Loopback only; every process group is killed in a finally.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_pd.workload import (
    Workload,
    build_prompts,
    load_tokenizer,
    run_problems,
    run_workload_sync,
    summarize,
)
from pytest_pd.workload.text import text_builder
from tests.helpers import SIM_MODEL, Proc, free_port, sim_argv, start_pd, wait_ok

SIM_TINY = SIM_MODEL
HOST = "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def start_unified(log_dir: Path, model: Path = SIM_TINY, *args: str) -> tuple[str, Proc]:
    port = free_port()
    p = Proc(f"sim-{port}", sim_argv(model, "--port", str(port), "--context-length", "65536", *args), log_dir)
    try:
        wait_ok(f"http://{HOST}:{port}/health", [p], timeout=30)
    except BaseException:
        p.stop()
        raise
    return f"http://{HOST}:{port}", p


# ---------------------------------------------------------------------------------------------
# Edge-case tokenizers (built offline, saved like a model folder)
# ---------------------------------------------------------------------------------------------

CORPUS = (
    "the quick brown fox jumps over the lazy dog while seven wizards quietly judge boxing "
    "matches and pack my box with five dozen liquor jugs hello world lorem ipsum dolor sit "
    "amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore "
    "magna aliqua "
).split()


def _save(tok: Any, folder: Path, **config: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 65536, **config})
    )
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 65536}))
    return folder


def make_wordlevel(folder: Path) -> Path:
    """Whitespace pre-tokenizer + WordLevel vocabulary; no decoder (decode joins with spaces)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted(set(CORPUS)) + [f"w{chr(97 + i)}{chr(97 + j)}" for i in range(26) for j in range(26)]
    vocab = {"[UNK]": 0, "<eos>": 1}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["[UNK]", "<eos>"])
    return _save(tok, folder, unk_token="[UNK]", eos_token="<eos>")


def make_bytelevel_odd(folder: Path) -> Path:
    """Byte-level BPE *without* regex pre-splitting, trained so merges cross spaces ("e t", " th"):
    decoded ids re-encode differently, so the builder has to trim/extend and verify."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=["<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(CORPUS, size=40)) for _ in range(300)]
    tok.train_from_iterator(lines, trainer=trainer)
    return _save(tok, folder, eos_token="<|eos|>")


def make_with_special(folder: Path) -> Path:
    """sim-tiny-like byte-level BPE plus added special tokens whose text could be spelled by
    ordinary pieces (" hello world" spans two words): they must never appear in a prompt."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(SIM_TINY / "tokenizer.json"))
    tok.add_special_tokens(["<|tool|>", " hello world", "quick"])
    return _save(tok, folder, eos_token="<|eos|>", bos_token="<|bos|>")


TOKENIZERS = {"wordlevel": make_wordlevel, "bytelevel_odd": make_bytelevel_odd, "special": make_with_special}


@pytest.fixture(scope="module")
def edge_tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    out = {"sim-tiny": SIM_TINY}
    out.update({name: make(root / name) for name, make in TOKENIZERS.items()})
    return out


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim-logs")


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sim-tiny", "wordlevel", "bytelevel_odd", "special"])
def test_text_prompt_length_verified_by_server(
    name: str, edge_tokenizers: dict[str, Path], logs: Path
) -> None:
    """Exact-length text for /v1/completions, counted by a sim that tokenizes with the same
    tokenizer: every request's usage.prompt_tokens equals the requested length."""
    folder = edge_tokenizers[name]
    tok = load_tokenizer(folder)
    w = Workload(
        input_len=300,
        output_len=4,
        concurrency=8,
        num_requests=12,
        range_ratio=0.5,
        api="completions",
        warmup_requests=0,
        request_timeout_s=60.0,
        seed=3,
    )
    prompts = build_prompts(tok, w)
    tb = text_builder(tok)
    if name == "bytelevel_odd":
        assert not tb.exact_by_construction  # the odd merges force the verify/adjust path
    else:
        assert tb.exact_by_construction
    for p in prompts:
        assert p.text and len(p) == len(tok.encode(p.text, add_special_tokens=True))
        for forbidden in tb.forbidden:
            assert forbidden not in p.text
    url, proc = start_unified(logs, folder, "--sim-speedup", "1000")
    try:
        result = run_workload_sync(url, w, prompts)
    finally:
        proc.stop()
    s = summarize(result)
    assert s.completed == 12, [r.error for r in result.records]
    assert [r.prompt_tokens for r in result.records] == [len(p) for p in prompts]
    assert s.input_len_mismatches == 0 and s.output_len_mismatches == 0
    assert s.total_input_tokens == sum(len(p) for p in prompts)
    assert run_problems(s) == []


def test_generate_ids_through_router_and_text_through_router(logs: Path) -> None:
    """Both APIs through the real router in PD mode: token ids on /generate, exact text on
    /v1/completions (the router rejects token-id prompts there), shared-prefix groups."""
    pd = start_pd(logs, speedup=200.0)
    router = pd.router
    tok = load_tokenizer(SIM_TINY)
    try:
        for w in (
            Workload(input_len=2000, output_len=8, concurrency=4, num_requests=8, request_timeout_s=60.0),
            Workload(
                input_len=2000,
                output_len=8,
                concurrency=4,
                num_requests=8,
                api="completions",
                request_timeout_s=60.0,
            ),
            Workload(
                input_len=1500,
                output_len=8,
                concurrency=4,
                num_requests=8,
                prefix_groups=2,
                prefix_len=1000,
                api="completions",
                request_timeout_s=60.0,
            ),
        ):
            prompts = build_prompts(tok, w)
            result = run_workload_sync(router, w, prompts)
            s = summarize(result, slo={"ttft_ms": 60_000, "tpot_ms": 10_000})
            assert s.completed == 8, (w.id, [r.error for r in result.records])
            assert s.input_len_mismatches == 0 and s.output_len_mismatches == 0, w.id
            assert [r.prompt_tokens for r in result.records] == [len(p) for p in prompts]
            assert s.goodput_ratio == 1.0 and s.goodput > 0
            assert s.peak_output_throughput > 0
            assert len(result.warmup) == 1 and result.warmup[0].ok
    finally:
        pd.stop()


def test_multiprocess_client_merges_results(logs: Path) -> None:
    url, proc = start_unified(logs, SIM_TINY, "--sim-speedup", "1000")
    tok = load_tokenizer(SIM_TINY)
    w = Workload(
        input_len=100,
        output_len=20,
        concurrency=6,
        num_requests=30,
        client_processes=3,
        request_timeout_s=60.0,
    )
    progress: list[tuple[int, int, int, int]] = []
    try:
        result = run_workload_sync(url, w, build_prompts(tok, w), on_progress=lambda *a: progress.append(a))
    finally:
        proc.stop()
    s = summarize(result)
    assert s.completed == 30 and s.failed == 0 and s.total_output_tokens == 600
    assert [r.index for r in result.records] == list(range(30))
    assert result.client_processes == 3 and len(result.warmup) == 1
    assert progress and progress[-1][0] == 30 and progress[-1][2] == 600
    assert s.duration > 0 and s.output_len_mismatches == 0


def test_prefix_cache_hits_show_per_request_and_in_server_metrics(logs: Path) -> None:
    """The sim's prefix cache (SGLang's radix cache): prompts sharing a 1024-token prefix find
    it cached once a prompt of their group was prefilled; the hits show in ``meta_info`` and in
    SGLang's metrics, and make the prefill shorter. Flushing after the warm-up (what the suites
    do) keeps the warm-up's prompt from being a hit for the first measured request."""
    from pytest_pd.http_get import get_status, get_text
    from pytest_pd.prometheus import parse_prometheus

    # ×5, not faster: the hits' shorter prefill must stand out of a loaded machine's jitter
    url, proc = start_unified(logs, SIM_TINY, "--enable-metrics", "--sim-speedup", "5")
    tok = load_tokenizer(SIM_TINY)
    w = Workload(
        input_len=1500, output_len=4, concurrency=1, num_requests=6, prefix_groups=2, prefix_len=1024
    )
    try:
        result = run_workload_sync(
            url, w, build_prompts(tok, w), after_warmup=lambda: get_status(url + "/flush_cache")
        )
        cached = [r.cached_tokens for r in result.records]
        assert cached == [0, 0, 1024, 1024, 1024, 1024], cached  # groups alternate: 0 1 0 1 0 1
        ttft = [r.t_first_token - r.t_start for r in result.records]
        # a third of the prompt left to compute: the hits' median TTFT is 0.81x the misses' (20
        # runs on a loaded machine: 0.807-0.811); their max was 0.81-0.83x, but one hit delayed by
        # the machine made it 0.95x in CI. No hit at all would be ~1.0x.
        assert statistics.median(ttft[2:]) < 0.9 * min(ttft[:2]), ttft
        metrics = parse_prometheus(get_text(url + "/metrics", timeout=5))
        hits = {k: v for k, v in metrics.items() if k.startswith("sglang:prefill_effective_tokens_total")}
        device_hit = next(v for k, v in hits.items() if "mode=device_hit" in k)
        computed = next(v for k, v in hits.items() if "mode=input" in k)
        assert device_hit == 4 * 1024 and computed == 7 * 1500 - 4 * 1024, hits  # warm-up included
        rate = next(v for k, v in metrics.items() if k.startswith("sglang:cache_hit_rate"))
        assert rate == pytest.approx(4 * 1024 / (6 * 1500))  # since the flush
        # without the flush the warm-up's prompt (the first one) is cached for request 0
        again = run_workload_sync(url, w, build_prompts(tok, w))
        assert again.records[0].cached_tokens == 1488  # 1499 rounded down to whole 16-token blocks
    finally:
        proc.stop()
