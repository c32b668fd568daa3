"""Token-exact prompts from a transformers tokenizer, and the workload that describes a run.

Prompts are lists of token ids drawn uniformly from the tokenizer's non-special vocabulary and are
sent as ids (``input_ids`` for ``/generate``, a token-id ``prompt`` for ``/v1/completions``), so the
server sees exactly ``input_len`` tokens: no decode/re-encode drift.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pytest_pd.errors import PdError

API_GENERATE = "generate"
API_COMPLETIONS = "completions"
APIS = (API_GENERATE, API_COMPLETIONS)

WARMUP_OUTPUT_LEN = 16


class WorkloadError(PdError):
    """A workload that cannot be built or run (bad parameters, missing tokenizer, bad endpoint)."""


def _fmt(x: float) -> str:
    """Compact, filename-safe number: 0.5 -> '0.5', 2.0 -> '2'."""
    return f"{x:g}"


@dataclass(frozen=True)
class Workload:
    """What to send: lengths, how many, how fast. Defaults are the seed's perf_bench run."""

    input_len: int = 6000
    output_len: int = 1000
    concurrency: int = 16
    num_requests: int = 32
    range_ratio: float = 1.0
    request_rate: float = math.inf
    seed: int = 0
    api: str = API_GENERATE
    warmup_requests: int = 1
    request_timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("input_len", "output_len", "concurrency", "num_requests"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an integer >= 1 (got {value!r})")
        if not (isinstance(self.warmup_requests, int) and self.warmup_requests >= 0):
            problems.append(
                f"warmup_requests must be an integer >= 0 (got {self.warmup_requests!r})"
            )
        if not (0.0 <= float(self.range_ratio) <= 1.0):
            problems.append(f"range_ratio must be in [0, 1] (got {self.range_ratio!r})")
        rate = float(self.request_rate)
        if math.isnan(rate) or rate <= 0:
            problems.append(f"request_rate must be > 0 or inf (got {self.request_rate!r})")
        if self.api not in APIS:
            problems.append(f"api must be one of {', '.join(APIS)} (got {self.api!r})")
        timeout = float(self.request_timeout_s)
        if math.isnan(timeout) or timeout <= 0:
            problems.append(f"request_timeout_s must be > 0 (got {self.request_timeout_s!r})")
        if problems:
            raise WorkloadError(
                "Invalid workload: " + "; ".join(problems) + ". Fix the Workload(...) arguments "
                "(or the suite/CLI options that build them)."
            )

    @property
    def id(self) -> str:
        """Stable, filename-safe name, e.g. ``in6000-out1000-c16-n32``.

        Suffixes appear only for non-default range ratio (``-r0.5``), finite request rate
        (``-rate2``) and the completions API (``-completions``).
        """
        parts = [f"in{self.input_len}", f"out{self.output_len}", f"c{self.concurrency}",
                 f"n{self.num_requests}"]
        if self.range_ratio != 1.0:
            parts.append(f"r{_fmt(self.range_ratio)}")
        if not math.isinf(self.request_rate):
            parts.append(f"rate{_fmt(self.request_rate)}")
        if self.api != API_GENERATE:
            parts.append(self.api)
        return "-".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (an infinite request rate is written as the string ``"inf"``)."""
        d = dataclasses.asdict(self)
        if math.isinf(self.request_rate):
            d["request_rate"] = "inf"
        d["id"] = self.id
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workload:
        """Inverse of :meth:`to_dict` (unknown keys such as ``id`` are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "request_rate" in kwargs:
            kwargs["request_rate"] = float(kwargs["request_rate"])
        return cls(**kwargs)


@dataclass(frozen=True)
class Prompt:
    """One request: exact prompt token ids and the number of tokens to generate."""

    token_ids: tuple[int, ...] = field(repr=False)
    output_len: int

    def __len__(self) -> int:
        return len(self.token_ids)


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """Load a tokenizer from a local model folder, offline and quietly.

    Raises :class:`WorkloadError` naming the path and what to do when it cannot be loaded.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    p = Path(path).expanduser()
    hint = (
        "Point the tokenizer path at a local model folder that holds tokenizer.json / "
        "tokenizer_config.json (the same folder the servers load with --model-path); "
        "nothing is downloaded."
    )
    if not p.is_dir():
        raise WorkloadError(
            f"Tokenizer folder {str(p)!r} does not exist or is not a folder. {hint}"
        )
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        return AutoTokenizer.from_pretrained(str(p), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many unrelated types here
        raise WorkloadError(
            f"Cannot load a tokenizer from {str(p)!r}: {type(exc).__name__}: {exc}. {hint}"
        ) from exc


def candidate_token_ids(tokenizer: Any) -> np.ndarray:
    """All non-special token ids of the tokenizer's vocabulary, sorted."""
    try:
        size = len(tokenizer)
    except TypeError:
        size = int(tokenizer.vocab_size)
    special = {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    special.update(int(i) for i, tok in added.items() if getattr(tok, "special", False))
    ids = np.arange(size, dtype=np.int64)
    if special:
        ids = ids[~np.isin(ids, np.fromiter(special, dtype=np.int64))]
    if ids.size == 0:
        raise WorkloadError(
            "The tokenizer has no non-special tokens to build prompts from; check the model folder."
        )
    return ids


def sample_lengths(rng: np.random.Generator, length: int, ratio: float, n: int) -> np.ndarray:
    """n lengths uniform over the integers in [max(int(length*ratio), 1), length]."""
    low = max(int(length * ratio), 1)
    if low >= length:
        return np.full(n, length, dtype=np.int64)
    return rng.integers(low, length, size=n, endpoint=True)


def build_prompts(tokenizer: Any, workload: Workload) -> list[Prompt]:
    """``workload.num_requests`` token-exact prompts, reproducible from ``workload.seed``."""
    rng = np.random.default_rng(workload.seed)
    candidates = candidate_token_ids(tokenizer)
    n = workload.num_requests
    input_lens = sample_lengths(rng, workload.input_len, workload.range_ratio, n)
    output_lens = sample_lengths(rng, workload.output_len, workload.range_ratio, n)
    prompts = []
    for in_len, out_len in zip(input_lens.tolist(), output_lens.tolist(), strict=True):
        ids = rng.choice(candidates, size=in_len, replace=True)
        prompts.append(Prompt(token_ids=tuple(ids.tolist()), output_len=int(out_len)))
    return prompts
