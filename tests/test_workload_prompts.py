"""Token-exact prompts from the real sim-tiny tokenizer, and the Workload value object."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pytest_pd.errors import PdError
from pytest_pd.workload import Prompt, Workload, WorkloadError, build_prompts, load_tokenizer

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "clusters" / "models" / "sim-tiny"


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
    assert all(isinstance(t, int) for p in prompts for t in p.token_ids)
    # JSON-serialisable as the request body needs it
    json.dumps(list(prompts[0].token_ids))


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
    prompts = build_prompts(tokenizer, Workload(input_len=3, output_len=2, num_requests=100,
                                                range_ratio=0.0))
    assert min(len(p.token_ids) for p in prompts) >= 1
    assert min(p.output_len for p in prompts) >= 1


def test_seeded_reproducibility(tokenizer):
    wl = Workload(input_len=300, output_len=20, num_requests=5, range_ratio=0.5, seed=7)
    a = build_prompts(tokenizer, wl)
    b = build_prompts(tokenizer, wl)
    c = build_prompts(tokenizer, Workload(input_len=300, output_len=20, num_requests=5,
                                          range_ratio=0.5, seed=8))
    assert a == b
    assert [p.token_ids for p in a] != [p.token_ids for p in c]
    # prompts within a run differ from each other
    assert len({p.token_ids for p in a}) == 5


def test_no_special_tokens_and_ids_in_vocab(tokenizer):
    prompts = build_prompts(tokenizer, Workload(input_len=5000, output_len=10, num_requests=4))
    special = set(tokenizer.all_special_ids)
    assert special  # the sim-tiny tokenizer has bos/eos/pad
    used = {t for p in prompts for t in p.token_ids}
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


@pytest.mark.parametrize("kwargs", [
    {"input_len": 0}, {"output_len": -1}, {"concurrency": 0}, {"num_requests": 0},
    {"range_ratio": 1.5}, {"request_rate": 0.0}, {"api": "chat"}, {"request_timeout_s": 0},
    {"warmup_requests": -1},
])
def test_invalid_workloads_raise(kwargs):
    with pytest.raises(WorkloadError):
        Workload(**kwargs)
