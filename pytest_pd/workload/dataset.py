"""Prompts from a JSONL dataset file (``Workload.dataset_path``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .lengths import sample_lengths
from .spec import Prompt, Workload, WorkloadError, json_object_line
from .text import text_builder


def dataset_prompts(tokenizer: Any, workload: Workload) -> list[Prompt]:
    path = Path(str(workload.dataset_path)).expanduser()
    hint = (
        'Each line must be a JSON object with "prompt" (text or a list of token ids) or '
        '"text" / "input_ids" / "token_ids", and optionally "output_len" / "max_tokens".'
    )
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise WorkloadError(f"Cannot read the dataset file {str(path)!r}: {exc}. {hint}") from exc
    if not lines:
        raise WorkloadError(f"The dataset file {str(path)!r} holds no prompts. {hint}")
    rng = np.random.default_rng(workload.seed)
    out_lens = sample_lengths(rng, workload.output_len, workload.range_ratio, workload.num_requests)
    tb = text_builder(tokenizer, workload.text_special_tokens) if workload.sends_text else None
    parsed: dict[int, tuple[Any, str | None, int | None]] = {}
    prompts = []
    for i in range(workload.num_requests):
        k = i % len(lines)
        if k not in parsed:
            parsed[k] = _parse_line(lines[k], path, k + 1, hint)
        value, text, out = parsed[k]
        out_len = int(out) if out is not None else int(out_lens[i])
        if text is not None:
            if tb is not None:
                prompts.append(Prompt(token_ids=(), output_len=out_len, text=text, prompt_len=tb.count(text)))
            else:
                ids = np.asarray(_encode(tokenizer, text), dtype=np.int64)
                prompts.append(Prompt(token_ids=ids, output_len=out_len))
        else:
            ids = np.asarray(value, dtype=np.int64)
            if tb is not None:
                text = tb.decode(ids)
                prompts.append(
                    Prompt(token_ids=ids, output_len=out_len, text=text, prompt_len=tb.count(text))
                )
            else:
                prompts.append(Prompt(token_ids=ids, output_len=out_len))
    return prompts


def _encode(tokenizer: Any, text: str) -> list[int]:
    fast = getattr(tokenizer, "backend_tokenizer", None)
    if fast is not None:
        return fast.encode(text, add_special_tokens=False).ids
    return list(tokenizer.encode(text, add_special_tokens=False))


def _parse_line(line: str, path: Path, lineno: int, hint: str) -> tuple[Any, str | None, int | None]:
    where = f"{path}:{lineno}"
    obj = json_object_line(line, where, hint)
    value = next((obj[k] for k in ("prompt", "text", "input_ids", "token_ids") if k in obj), None)
    out = obj.get("output_len", obj.get("max_tokens"))
    if out is not None and (isinstance(out, bool) or not isinstance(out, int) or out < 1):
        raise WorkloadError(f"{where}: output_len must be an integer >= 1 (got {out!r}). {hint}")
    if isinstance(value, str) and value:
        return None, value, out
    if (
        isinstance(value, list)
        and value
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value)
    ):
        return value, None, out
    raise WorkloadError(f"{where}: no non-empty prompt text or token-id list. {hint}")
