"""The cluster's tokenizer, loaded offline from a local model folder, and its vocabulary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .spec import WorkloadError


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """Load a tokenizer from a local model folder, offline and quietly.

    Raises :class:`WorkloadError` naming the path and what to do when it cannot be loaded.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    p = Path(path).expanduser()
    hint = (
        "Point the tokenizer path at a local model folder that holds tokenizer.json / "
        "tokenizer_config.json (the same folder the servers load with --model-path); "
        "nothing is downloaded."
    )
    if not p.is_dir():
        raise WorkloadError(f"Tokenizer folder {str(p)!r} does not exist or is not a folder. {hint}")
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        return AutoTokenizer.from_pretrained(str(p), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many unrelated types here
        raise WorkloadError(
            f"Cannot load a tokenizer from {str(p)!r}: {type(exc).__name__}: {exc}. {hint}"
        ) from exc


def vocab_size(tokenizer: Any) -> int:
    try:
        return len(tokenizer)
    except TypeError:
        return int(tokenizer.vocab_size)


def added_tokens(tokenizer: Any) -> dict[int, Any]:
    return dict(getattr(tokenizer, "added_tokens_decoder", None) or {})


def candidate_token_ids(tokenizer: Any) -> np.ndarray:
    """All non-special token ids of the tokenizer's vocabulary, sorted (added tokens excluded)."""
    size = vocab_size(tokenizer)
    special = {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}
    special.update(int(i) for i in added_tokens(tokenizer))
    ids: np.ndarray = np.arange(size, dtype=np.int64)
    if special:
        ids = ids[~np.isin(ids, np.fromiter(special, dtype=np.int64))]
    if ids.size == 0:
        raise WorkloadError(
            "The tokenizer has no non-special tokens to build prompts from; check the model folder."
        )
    return ids
