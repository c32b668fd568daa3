"""The chat API and ignore_eos, pure parts: the request body per API, the chat prompt length from
a chat template (or unknown without one), workload ids and validation, and the hint a rejected
ignore_eos gets."""

from __future__ import annotations

import pytest

from pytest_pd.workload import RequestRecord, RunResult, Workload, WorkloadError, summarize
from pytest_pd.workload.chat import NO_TEMPLATE_NOTE, UNKNOWN_PROMPT_LEN, chat_prompt_len, chat_prompts
from pytest_pd.workload.client import endpoint_url, ignore_eos_rejected, request_payload
from pytest_pd.workload.spec import Prompt

PROMPT = Prompt(token_ids=[5, 6, 7], output_len=9, text="hello there", prompt_len=3)


class TemplateTokenizer:
    """Counts characters; its chat template wraps the message in '<u>' ... '<a>'."""

    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        assert add_generation_prompt and tokenize
        (m,) = messages
        assert m == {"role": "user", "content": m["content"]}
        return list("<u>" + m["content"] + "<a>")


class NoTemplateTokenizer:
    chat_template = None


def test_chat_payload_uses_messages_and_both_output_cap_names():
    body = request_payload("chat", PROMPT, max_tokens=9, model="m", rid="r1")
    assert body["messages"] == [{"role": "user", "content": "hello there"}]
    assert body["max_completion_tokens"] == 9 == body["max_tokens"]
    assert body["ignore_eos"] is True and body["stream"] is True and body["model"] == "m"
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert body["rid"] == "r1"
    assert endpoint_url("http://h:1/", "chat") == "http://h:1/v1/chat/completions"
    assert endpoint_url("http://h:1", "completions") == "http://h:1/v1/completions"
    assert endpoint_url("http://h:1", "generate") == "http://h:1/generate"


@pytest.mark.parametrize("api", ["generate", "completions", "chat"])
def test_ignore_eos_can_be_left_out(api):
    on = request_payload(api, PROMPT, max_tokens=9, model="m")
    off = request_payload(api, PROMPT, max_tokens=9, model="m", ignore_eos=False)
    where_on = on["sampling_params"] if api == "generate" else on
    where_off = off["sampling_params"] if api == "generate" else off
    assert where_on["ignore_eos"] is True and "ignore_eos" not in where_off


def test_chat_prompt_len_counts_the_template():
    assert chat_prompt_len(TemplateTokenizer(), "abc") == 9
    assert chat_prompt_len(NoTemplateTokenizer(), "abc") == UNKNOWN_PROMPT_LEN
    (p,) = chat_prompts(TemplateTokenizer(), [PROMPT])
    assert len(p) == len("<u>hello there<a>") and p.text == PROMPT.text and p.output_len == 9


def test_workload_chat_id_and_rules():
    assert Workload(api="chat").id == "in6000-out1000-c16-n32-chat"
    assert Workload(ignore_eos=False).id == "in6000-out1000-c16-n32-eos"
    assert Workload(api="chat").sends_text
    with pytest.raises(WorkloadError, match="chat"):
        Workload(api="chat", completions_prompt="ids")


def test_unknown_chat_prompt_length_is_not_a_mismatch_and_is_noted():
    w = Workload(input_len=3, output_len=2, num_requests=2, concurrency=2, warmup_requests=0, api="chat")

    def rec(i, prompt_len):
        r = RequestRecord(i, prompt_len, 2, t_start=0.0, t_first_token=1.0, t_end=2.0)
        r.chunk_times, r.completion_tokens, r.prompt_tokens = [1.0, 2.0], 2, 17
        return r

    s = summarize(RunResult(w, [rec(0, UNKNOWN_PROMPT_LEN), rec(1, 16)], 0.0, 2.0, "http://x"))
    assert s.input_len_mismatches == 1 and s.input_len_unchecked == 1
    assert s.total_input_tokens == 34  # the server's counts
    assert "chat template" in NO_TEMPLATE_NOTE


def test_rejected_ignore_eos_is_recognised():
    body = b'{"detail":[{"type":"extra_forbidden","loc":["body","ignore_eos"]}]}'
    assert ignore_eos_rejected(422, body, b'{"ignore_eos":true}')
    assert ignore_eos_rejected(
        400, b"Unrecognized request argument supplied: ignore_eos", b'{"ignore_eos":true}'
    )
    assert not ignore_eos_rejected(500, body, b"ignore_eos")
    assert not ignore_eos_rejected(422, b'{"detail":"max_tokens too large"}', b"ignore_eos")
    assert not ignore_eos_rejected(422, body, b'{"prompt":"x"}')  # it was not asked for
