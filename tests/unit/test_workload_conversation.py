"""Multi-turn conversations: the workload's fields and id, which requests form a conversation,
the answer a stream keeps (cumulative and incremental ``output_ids``, chat text), the next turn's
prompt built from it, the model's lengths and prefix keys against the prompts really sent, and
the timing model's closed loop per conversation with think time."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_pd.sim.closed_loop import simulate
from pytest_pd.sim.model import ServerShape, SimParams
from pytest_pd.sim.prefix_cache import block_keys
from pytest_pd.sim.routing import Topology
from pytest_pd.twin.prefixes import workload_keys
from pytest_pd.twin.requests import workload_requests
from pytest_pd.workload import (
    RequestRecord,
    Workload,
    WorkloadError,
    arrival_offsets,
    build_prompts,
    load_tokenizer,
)
from pytest_pd.workload.conversation import Conversation, conversation_units, turn_lengths
from pytest_pd.workload.lengths import draw_lengths
from pytest_pd.workload.sse import Answer, SSEStream
from tests.helpers import SIM_MODEL

CHAT = Workload(
    input_len=300, output_len=40, num_requests=6, concurrency=2, turns=3, turn_input_len=50, api="chat"
)
IDS = Workload(
    input_len=300,
    output_len=40,
    num_requests=12,
    concurrency=2,
    turns=4,
    turn_input_len=70,
    think_time_s=1.5,
    prefix_groups=2,
    prefix_len=100,
)


def test_the_id_names_turns_new_tokens_and_think_time_and_reads_back():
    assert IDS.id == "in300-out40-c2-n12-px2x100-mt4x70-think1.5"
    assert Workload.from_id(IDS.id) == IDS
    assert IDS.conversations == 3
    assert "-mt" not in Workload(turn_input_len=99).id  # single-turn: the field means nothing


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"num_requests": 10, "turns": 3}, "whole number of conversations"),
        ({"turns": 2, "api": "completions", "completions_prompt": "ids"}, "api='generate'"),
        ({"turns": 2, "turn_input_len": 0}, "turn_input_len must be an integer >= 1"),
        ({"think_time_s": -1}, "think_time_s must be >= 0"),
    ],
)
def test_bad_conversation_settings_say_what_to_fix(kwargs, says):
    with pytest.raises(WorkloadError, match=says):
        Workload(**kwargs)


def test_requests_group_into_conversations_by_index():
    assert conversation_units([0, 1, 2, 3, 4, 5], 3) == [[0, 1, 2], [3, 4, 5]]
    # a client process's share: whole conversations, positions in its own list
    assert conversation_units([3, 4, 5, 9, 10, 11], 3) == [[0, 1, 2], [3, 4, 5]]
    assert conversation_units([0, 1, 2], 1) == [[0], [1], [2]]


def test_a_later_turns_length_is_its_new_tokens_and_its_prompt_grows_by_each_answer():
    ins, outs = draw_lengths(IDS, np.random.default_rng(IDS.seed))
    assert ins.tolist() == [300, 70, 70, 70] * 3
    assert turn_lengths(ins.tolist(), outs.tolist(), 4)[:4] == [300, 410, 520, 630]


def test_conversations_start_at_the_rate_and_their_turns_share_the_start():
    offsets = arrival_offsets(Workload(num_requests=6, turns=3, request_rate=2.0), 6)
    assert offsets[0] == offsets[1] == offsets[2] == 0.0
    assert offsets[3] == offsets[4] == offsets[5] > 0.0


def _stream(api: str, events: list[str]) -> Answer:
    answer = Answer()
    stream = SSEStream(api, RequestRecord(index=0, prompt_len=1, expected_output_len=3), answer)
    for i, event in enumerate(events):
        stream.feed(f"data: {event}\n\n".encode(), float(i))
    return answer


def _generate_event(ids: list[int], count: int) -> str:
    return f'{{"text": "x", "output_ids": {ids}, "meta_info": {{"completion_tokens": {count}}}}}'


def test_the_answer_keeps_generate_output_ids_cumulative_or_incremental():
    cumulative = [_generate_event([7], 1), _generate_event([7, 8], 2), _generate_event([7, 8, 9], 3)]
    incremental = [_generate_event([7], 1), _generate_event([8, 9], 3), _generate_event([], 3)]
    assert _stream("generate", cumulative).ids == [7, 8, 9]
    assert _stream("generate", incremental).ids == [7, 8, 9]


def test_the_answer_keeps_chat_text():
    pieces = [
        '{"choices": [{"delta": {"content": "Hel"}}]}',
        '{"choices": [{"delta": {"content": "lo"}, "finish_reason": "length"}]}',
    ]
    assert _stream("chat", pieces).text == "Hello"


def test_the_next_turn_sends_the_conversation_so_far_then_its_own_tokens():
    prompts = build_prompts(load_tokenizer(SIM_MODEL), IDS)
    talk = Conversation(chat=False)
    first = talk.next_prompt(prompts[0])
    assert first is prompts[0]
    talk.answer.ids = [5, 6, 7]
    second = talk.next_prompt(prompts[1])
    assert second.token_ids.tolist() == [
        *prompts[0].token_ids.tolist(),
        5,
        6,
        7,
        *prompts[1].token_ids.tolist(),
    ]
    assert second.output_len == prompts[1].output_len


def test_a_chat_turn_sends_the_earlier_messages_with_the_answers():
    prompts = build_prompts(load_tokenizer(SIM_MODEL), CHAT)
    talk = Conversation(chat=True)
    talk.next_prompt(prompts[0])
    talk.answer.text = "first answer"
    talk.next_prompt(prompts[1])
    talk.answer.text = "second answer"
    third = talk.next_prompt(prompts[2])
    assert [m["role"] for m in third.history] == ["user", "assistant", "user", "assistant"]
    assert third.history[0]["content"] == prompts[0].text and third.history[3]["content"] == "second answer"
    assert third.text == prompts[2].text


def test_a_generate_answer_without_output_ids_stops_the_run_saying_why():
    talk = Conversation(chat=False)
    with pytest.raises(WorkloadError, match="no output_ids"):
        talk.check_answer(40, "http://127.0.0.1:1")


def test_model_keys_are_equal_exactly_where_the_sent_prompts_tokens_are():
    """The prompts really sent (answers of the drawn lengths, prefix groups on first turns),
    keyed as the simulated server keys them, against the model's keys from lengths alone."""
    prompts = build_prompts(load_tokenizer(SIM_MODEL), IDS)
    rng = np.random.default_rng(0)
    sent = []
    for c in range(IDS.conversations):
        talk = Conversation(chat=False)
        for turn in range(IDS.turns):
            prompt = talk.next_prompt(prompts[c * IDS.turns + turn])
            talk.answer.ids = rng.integers(1000, 2000, size=prompt.output_len).tolist()
            sent.append(prompt.token_ids.tolist())
    requests = workload_requests(IDS)
    assert list(requests.input_lens) == [len(s) for s in sent]
    modelled = workload_keys(IDS, requests.input_lens)
    assert modelled is not None
    real = [block_keys(s) for s in sent]
    assert [len(k) for k in real] == [len(k) for k in modelled]
    for i in range(len(sent)):
        for j in range(len(sent)):
            shared_real = sum(1 for a, b in zip(real[i], real[j], strict=False) if a == b)
            shared_model = sum(1 for a, b in zip(modelled[i], modelled[j], strict=False) if a == b)
            assert shared_real == shared_model, (i, j)


PARAMS = SimParams()
ONE = Topology((ServerShape(tp=8, chunked_prefill_size=16384),), (ServerShape(tp=8),))


def test_the_model_sends_a_turn_think_time_after_the_previous_answer():
    out = simulate(PARAMS, ONE, [2000, 3000, 2000, 3000], [50] * 4, concurrency=1, turns=2, think_s=4.0)
    r = out["requests"]
    assert r[1]["send"] == pytest.approx(r[0]["finish"] + 4.0)
    # one place under the cap per conversation: the second starts when the first one's last turn ends
    assert r[2]["send"] == pytest.approx(r[1]["finish"])


def test_a_conversation_holds_its_place_through_its_think_time():
    one_turn = simulate(PARAMS, ONE, [2000] * 4, [50] * 4, concurrency=2)
    talks = simulate(PARAMS, ONE, [2000] * 4, [50] * 4, concurrency=2, turns=2, think_s=30.0)
    assert talks["duration_s"] > one_turn["duration_s"] + 30.0
