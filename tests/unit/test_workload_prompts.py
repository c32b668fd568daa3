"""Token-exact prompts from the real sim-tiny tokenizer, and the Workload value object."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pytest_pd.errors import PdError
from pytest_pd.workload import Prompt, Workload, WorkloadError, build_prompts, load_tokenizer

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "clusters" / "models" / "sim-tiny"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER_DIR)


def test_exact_lengths_with_ratio_one(tokenizer):
    wl = Workload(input_len=600, output_len=100, num_requests=8, concurrency=4)
    prompts = build_prompts(tokenizer, wl)
    assert len(prompts) == 8
    assert all(isinstance(p, Prompt) for p in prompts)
    assert [len(p.token_ids) for p in prompts] == [600] * 8
    assert [p.output_len for p in prompts] == [100] * 8
    assert all(np.issubdtype(np.asarray(p.token_ids).dtype, np.integer) for p in prompts)
    assert all(p.text is None for p in prompts)  # /generate sends ids
    # JSON-serialisable as the request body needs it
    json.dumps([int(t) for t in prompts[0].token_ids])
    from pytest_pd.workload.client import encode_body, request_payload

    body = json.loads(encode_body(request_payload("generate", prompts[0], max_tokens=5, model=None)))
    assert body["input_ids"] == [int(t) for t in prompts[0].token_ids]


def test_ranges_with_ratio_half(tokenizer):
    wl = Workload(input_len=400, output_len=60, num_requests=200, range_ratio=0.5)
    prompts = build_prompts(tokenizer, wl)
    in_lens = [len(p.token_ids) for p in prompts]
    out_lens = [p.output_len for p in prompts]
    assert min(in_lens) >= 200 and max(in_lens) <= 400
    assert min(out_lens) >= 30 and max(out_lens) <= 60
    assert len(set(in_lens)) > 20  # actually spread, not constant
    assert len(set(out_lens)) > 10


def test_ratio_zero_never_gives_empty_prompts(tokenizer):
    prompts = build_prompts(tokenizer, Workload(input_len=3, output_len=2, num_requests=100, range_ratio=0.0))
    assert min(len(p.token_ids) for p in prompts) >= 1
    assert min(p.output_len for p in prompts) >= 1


def test_seeded_reproducibility(tokenizer):
    wl = Workload(input_len=300, output_len=20, num_requests=5, range_ratio=0.5, seed=7)
    a = build_prompts(tokenizer, wl)
    b = build_prompts(tokenizer, wl)
    c = build_prompts(
        tokenizer, Workload(input_len=300, output_len=20, num_requests=5, range_ratio=0.5, seed=8)
    )
    assert a == b
    assert a != c
    # prompts within a run differ from each other
    assert len({tuple(p.token_ids) for p in a}) == 5


def test_no_special_tokens_and_ids_in_vocab(tokenizer):
    prompts = build_prompts(tokenizer, Workload(input_len=5000, output_len=10, num_requests=4))
    special = set(tokenizer.all_special_ids)
    assert special  # the sim-tiny tokenizer has bos/eos/pad
    used = {int(t) for p in prompts for t in p.token_ids}
    assert not (used & special)
    assert min(used) >= 0 and max(used) < len(tokenizer)
    assert len(used) > 1000  # drawn across the vocabulary


def test_load_tokenizer_missing_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(WorkloadError) as exc:
        load_tokenizer(missing)
    assert isinstance(exc.value, PdError)
    assert str(missing) in str(exc.value)
    assert "tokenizer.json" in str(exc.value)


def test_load_tokenizer_folder_without_tokenizer(tmp_path):
    with pytest.raises(WorkloadError) as exc:
        load_tokenizer(tmp_path)
    assert str(tmp_path) in str(exc.value)


def test_workload_id_and_dict():
    assert Workload().id == "in6000-out1000-c16-n32"
    assert Workload(range_ratio=0.5).id == "in6000-out1000-c16-n32-r0.5"
    assert Workload(request_rate=2.0).id == "in6000-out1000-c16-n32-rate2"
    assert Workload(api="completions").id == "in6000-out1000-c16-n32-completions"
    wl = Workload(input_len=10, output_len=5, request_rate=1.5, api="completions")
    d = wl.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["id"] == wl.id
    assert Workload.from_dict(d) == wl
    d_inf = Workload().to_dict()
    assert d_inf["request_rate"] == "inf"
    assert math.isinf(Workload.from_dict(d_inf).request_rate)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_len": 0},
        {"output_len": -1},
        {"concurrency": 0},
        {"num_requests": 0},
        {"range_ratio": 1.5},
        {"request_rate": 0.0},
        {"api": "chat/v2"},
        {"request_timeout_s": 0},
        {"warmup_requests": -1},
    ],
)
def test_invalid_workloads_raise(kwargs):
    with pytest.raises(WorkloadError):
        Workload(**kwargs)


def test_new_workload_fields_id_and_round_trip(tmp_path):
    assert Workload().id == "in6000-out1000-c16-n32"  # the default id never changes
    assert Workload(request_rate=4.0, burstiness=0.5).id == "in6000-out1000-c16-n32-rate4-b0.5"
    assert Workload(prefix_groups=4, prefix_len=512).id == "in6000-out1000-c16-n32-px4x512"
    assert Workload(api="completions", completions_prompt="ids").id.endswith("-completions-ids")
    assert Workload(duration_limit_s=60).id.endswith("-t60")
    assert Workload(dataset_path=str(tmp_path / "my set.jsonl")).id.endswith("-dsmy_set")
    # run-time knobs do not change what is measured, so not the id either
    assert Workload(client_processes=2, max_mismatch_share=0.1).id == Workload().id
    w = Workload(
        input_len=10,
        output_len=5,
        request_rate=2.0,
        burstiness=3.0,
        prefix_groups=2,
        prefix_len=4,
        max_mismatch_share=0.25,
        client_processes=2,
        concurrency=4,
    )
    d = w.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["duration_limit_s"] == "inf"
    assert Workload.from_dict(d) == w
    assert Workload().request_timeout_s >= 3600  # 6000/1000 on slow hardware


@pytest.mark.parametrize(
    "kwargs",
    [
        {"burstiness": 0},
        {"prefix_groups": 2},
        {"prefix_len": 10},
        {"prefix_groups": 2, "prefix_len": 6000},
        {"duration_limit_s": 0},
        {"max_mismatch_share": 1.5},
        {"completions_prompt": "tokens"},
        {"client_processes": 0},
        {"client_processes": 32, "concurrency": 16},
        {"prefix_groups": 1, "prefix_len": 10, "dataset_path": "x.jsonl"},
    ],
)
def test_invalid_new_fields_raise(kwargs):
    with pytest.raises(WorkloadError):
        Workload(**kwargs)


def test_shared_prefix_ids(tokenizer):
    w = Workload(
        input_len=400, output_len=8, num_requests=9, prefix_groups=3, prefix_len=300, range_ratio=0.9
    )
    prompts = build_prompts(tokenizer, w)
    heads = [tuple(int(t) for t in p.token_ids[:300]) for p in prompts]
    for i, h in enumerate(heads):
        assert h == heads[i % 3]  # request i is in group i mod 3
    assert len(set(heads)) == 3
    assert len({tuple(int(t) for t in p.token_ids[300:]) for p in prompts}) == 9
    assert all(360 <= len(p) <= 400 for p in prompts)


def test_text_prompts_exact_with_sim_tiny(tokenizer):
    w = Workload(
        input_len=700, output_len=8, num_requests=6, api="completions", prefix_groups=2, prefix_len=500
    )
    prompts = build_prompts(tokenizer, w)
    for i, p in enumerate(prompts):
        assert isinstance(p.text, str) and len(p) == 700
        assert len(tokenizer.encode(p.text, add_special_tokens=True)) == 700
        assert p.text.startswith(prompts[i % 2].text[:1000])
    assert prompts[0].text[:1500] != prompts[1].text[:1500]
    # the ids variant of the completions API sends token ids
    ids = build_prompts(
        tokenizer,
        Workload(input_len=50, output_len=4, num_requests=2, api="completions", completions_prompt="ids"),
    )
    assert all(p.text is None and len(p) == 50 for p in ids)


def test_text_prompts_count_the_bos_the_server_adds(tmp_path):
    """SGLang counts text prompts with the special tokens the tokenizer adds (BOS): the builder
    makes one token less of text so the server's count is the requested one."""
    from tokenizers import Tokenizer, processors

    tok = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
    tok.post_processor = processors.TemplateProcessing(single="<|bos|> $A", special_tokens=[("<|bos|>", 0)])
    folder = tmp_path / "bos"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|bos|>", "eos_token": "<|eos|>"}
        )
    )
    hf = load_tokenizer(folder)
    w = Workload(input_len=120, output_len=4, num_requests=3, api="completions")
    for p in build_prompts(hf, w):
        with_bos = hf.encode(p.text, add_special_tokens=True)
        assert len(with_bos) == 120 and with_bos[0] == 0
        assert len(hf.encode(p.text, add_special_tokens=False)) == 119
    plain = build_prompts(
        hf,
        Workload(input_len=120, output_len=4, num_requests=3, api="completions", text_special_tokens=False),
    )
    assert all(len(hf.encode(p.text, add_special_tokens=False)) == 120 for p in plain)


def test_dataset_file(tokenizer, tmp_path):
    path = tmp_path / "prompts.jsonl"
    lines = [
        {"prompt": "hello there, general kenobi", "output_len": 7},
        {"input_ids": [11, 12, 13, 14]},
        {"text": "a second text prompt"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    w = Workload(input_len=10, output_len=5, num_requests=5, dataset_path=str(path))
    prompts = build_prompts(tokenizer, w)
    assert [p.output_len for p in prompts] == [7, 5, 5, 7, 5]  # cycled; default output_len
    assert list(prompts[0].token_ids) == tokenizer.encode(
        "hello there, general kenobi", add_special_tokens=False
    )
    assert list(prompts[1].token_ids) == [11, 12, 13, 14]
    # completions: text sent as is, its server-side length computed with the tokenizer
    wc = Workload(input_len=10, output_len=5, num_requests=3, dataset_path=str(path), api="completions")
    pc = build_prompts(tokenizer, wc)
    assert pc[0].text == "hello there, general kenobi"
    assert len(pc[0]) == len(tokenizer.encode(pc[0].text))
    assert pc[1].text == tokenizer.decode([11, 12, 13, 14])


@pytest.mark.parametrize(
    "content,match",
    [
        ("not json\n", "prompts.jsonl:1"),
        ('{"prompt": ""}\n', "no non-empty prompt"),
        ('{"prompt": "x", "output_len": 0}\n', "output_len"),
        ("", "holds no prompts"),
    ],
)
def test_bad_dataset_files(tokenizer, tmp_path, content, match):
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(WorkloadError, match=match):
        build_prompts(tokenizer, Workload(input_len=10, output_len=5, num_requests=2, dataset_path=str(path)))
    with pytest.raises(WorkloadError, match="Cannot read"):
        build_prompts(
            tokenizer,
            Workload(
                input_len=10, output_len=5, num_requests=2, dataset_path=str(tmp_path / "missing.jsonl")
            ),
        )


def test_prompts_are_cached(tokenizer):
    w = Workload(input_len=200, output_len=4, num_requests=3, api="completions", seed=11)
    a = build_prompts(tokenizer, w)
    b = build_prompts(tokenizer, w)
    assert a == b and all(x is y for x, y in zip(a, b, strict=True))
