"""Multi-turn conversations (``Workload.turns`` > 1): which requests form one, the answer a turn
keeps from its stream, and the prompt of the next turn built from it.

Request ``i`` is turn ``i % turns`` of conversation ``i // turns``. Its built prompt
(:func:`.prompts.build_prompts`) is the first turn's whole prompt, or a later turn's new tokens
only; when it is sent, the conversation so far comes first: the previous prompt and the answer
the server actually gave to it (its output token ids on ``/generate``, its text as an assistant
message on the chat API). So every turn's prompt starts with the previous turn's, as a chat
client's does, and a server's prefix cache can find it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .chat import UNKNOWN_PROMPT_LEN, chat_messages
from .spec import Prompt, Workload, WorkloadError
from .sse import Answer


def conversation_units(indices: Sequence[int], turns: int) -> list[list[int]]:
    """Positions in ``indices`` grouped by conversation, in order: the consecutive requests of
    one conversation (``i // turns`` equal) form one unit, sent one after the other (every
    request is a unit of its own when ``turns`` is 1)."""
    units: list[list[int]] = []
    for k, i in enumerate(indices):
        if units and turns > 1 and indices[units[-1][-1]] // turns == i // turns:
            units[-1].append(k)
        else:
            units.append([k])
    return units


def prefix_group(workload: Workload, i: int) -> int | None:
    """The shared-prefix group request ``i``'s prompt starts with (None: no shared prefix). In a
    multi-turn workload a conversation's first prompt has its group's prefix; later turns add
    new tokens after the conversation so far."""
    if not workload.prefix_groups or i % workload.turns:
        return None
    return (i // workload.turns) % workload.prefix_groups


class Conversation:
    """One conversation in flight: the prompt sent last and the answer to it."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.last: Prompt | None = None
        self.answer = Answer()

    def next_prompt(self, new: Prompt) -> Prompt:
        """The prompt to send for a turn whose own part is ``new``: the conversation so far, then
        ``new``; the first turn's prompt as built."""
        last, answer = self.last, self.answer
        if last is None:
            prompt = new
        elif self.chat:
            history = (
                *last.history,
                *chat_messages(last.text or ""),
                {"role": "assistant", "content": answer.text},
            )
            prompt = Prompt((), new.output_len, new.text, UNKNOWN_PROMPT_LEN, history)
        else:
            before = np.asarray(last.token_ids)
            ids = np.concatenate(
                (before, np.asarray(answer.ids, dtype=before.dtype), np.asarray(new.token_ids))
            )
            prompt = Prompt(ids, new.output_len)
        self.last = prompt
        self.answer = Answer()
        return prompt

    def check_answer(self, completion_tokens: int | None, url: str) -> None:
        """Raise :class:`WorkloadError` when a ``/generate`` answer with output carried no token
        ids: the next turn could not send it back."""
        if not self.chat and completion_tokens and not self.answer.ids:
            raise WorkloadError(
                f"{url} streamed {completion_tokens} output tokens but no output_ids: a multi-turn "
                "workload over token ids sends each answer back and needs them (SGLang's /generate "
                "has them); use api='chat' for a server without them"
            )


def turn_lengths(new_lens: Sequence[int], output_lens: Sequence[int], turns: int) -> list[int]:
    """Every request's whole prompt length: a first turn's own; a later turn's, the previous
    turn's prompt and output and its own new tokens (``new_lens``, as :func:`.lengths.draw_lengths`
    gives them)."""
    out: list[int] = []
    for i, (new, _) in enumerate(zip(new_lens, output_lens, strict=True)):
        out.append(int(new) if i % turns == 0 else out[-1] + int(output_lens[i - 1]) + int(new))
    return out
