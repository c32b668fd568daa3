"""The chat API's prompts: one user message holding the exact-length text, and the prompt length
the server will count for it (its chat template's tokens included) when the tokenizer has a chat
template; without one that length is unknown and the input-length check is skipped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .spec import Prompt

UNKNOWN_PROMPT_LEN = 0
"""``Prompt.prompt_len`` of a chat prompt whose templated length the client cannot know."""

NO_TEMPLATE_NOTE = (
    "input lengths not checked: the chat API counts the chat template's tokens and the tokenizer "
    "has no chat template to predict them (total_input_tokens is the server's count)"
)


def chat_messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt_len(tokenizer: Any, text: str) -> int:
    """Tokens of ``text`` as a user message with the tokenizer's chat template and the generation
    prompt (what SGLang counts as ``prompt_tokens``); :data:`UNKNOWN_PROMPT_LEN` without one."""
    if not has_chat_template(tokenizer):
        return UNKNOWN_PROMPT_LEN
    ids = tokenizer.apply_chat_template(chat_messages(text), add_generation_prompt=True, tokenize=True)
    if not isinstance(ids, list):  # newer transformers return a BatchEncoding
        ids = ids["input_ids"]
    return len(ids)


def chat_prompts(tokenizer: Any, prompts: Sequence[Prompt]) -> list[Prompt]:
    """The text prompts, each with the length the server counts once it is a chat message."""
    return [
        Prompt(p.token_ids, p.output_len, p.text, chat_prompt_len(tokenizer, p.text or "")) for p in prompts
    ]
