"""Token-exact prompts from a transformers tokenizer, and the workload that describes a run.

Two kinds of prompt, both exact:

- **token ids** (``/generate``'s ``input_ids``, or a token-id ``prompt`` for ``/v1/completions``):
  ids drawn uniformly from the tokenizer's non-special vocabulary; the server counts exactly
  ``len(ids)``.
- **text** (``/v1/completions`` through the router, which rejects token-id prompts): text that the
  cluster's tokenizer re-encodes to exactly the requested number of tokens. Built from a *pool* of
  word pieces (a token whose text starts with a word boundary and encodes to itself alone); the pool
  is validated once per tokenizer on random concatenations, so a prompt made of pool pieces encodes
  to exactly its pieces. Tokenizers where that does not hold (merges across word boundaries, odd
  normalizers) fall back to decode -> re-encode -> trim/extend -> verify per prompt. Every text is
  kept free of added/special tokens' contents, and verified by re-encoding (all prompts, or a
  seeded sample when there are very many tokens; see :data:`VERIFY_ALL_MAX_TOKENS`). The server's
  own count is checked again per request (``input_len_mismatches`` in the summary).

Workloads: fixed lengths (``range_ratio=1``), uniform ranges, shared-prefix groups (prefix
caching), or a JSONL dataset file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_pd.errors import PdError

API_GENERATE = "generate"
API_COMPLETIONS = "completions"
APIS = (API_GENERATE, API_COMPLETIONS)

PROMPT_TEXT = "text"
PROMPT_IDS = "ids"
PROMPT_KINDS = (PROMPT_TEXT, PROMPT_IDS)

WARMUP_OUTPUT_LEN = 16
DEFAULT_REQUEST_TIMEOUT_S = 3600.0
"""6000 in / 1000 out at 16 concurrent requests takes ~30 s on the seed's H20s; an hour covers
hardware (or a loaded simulator) 100x slower. Configurable per workload."""

VERIFY_ALL_MAX_TOKENS = 4_000_000
"""Text prompts are all re-encoded when they hold at most this many tokens together (~4 s); above
it a seeded sample of that size is re-encoded (the construction is exact by the pool's validation,
and the server's count is checked per request anyway)."""

POOL_MIN_SIZE = 64
POOL_VALIDATION_SEQS = 24
POOL_VALIDATION_LEN = 384
FALLBACK_MAX_ROUNDS = 40


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
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    burstiness: float = 1.0
    """Gamma shape of the arrival gaps at a finite request rate: 1 = Poisson, < 1 burstier,
    > 1 more regular (same mean rate)."""
    prefix_groups: int = 0
    """Shared-prefix workload: prompts fall into this many groups (request i -> group i mod N),
    each group's prompts starting with the same ``prefix_len`` tokens. 0 = no shared prefix."""
    prefix_len: int = 0
    dataset_path: str | None = None
    """JSONL file, one prompt per line: ``{"prompt": "text" | [ids]}`` (or ``"text"``,
    ``"input_ids"``, ``"token_ids"``), optional ``"output_len"`` / ``"max_tokens"``. Lines are used in
    order (cycled when there are fewer than ``num_requests``)."""
    duration_limit_s: float = math.inf
    """Stop dispatching new measured requests this many seconds after the first one; requests in
    flight finish (each bounded by ``request_timeout_s``); the rest are reported as not sent."""
    max_mismatch_share: float = 0.0
    """The run fails when more than this share of requests has a server-reported input or output
    length different from the requested one."""
    completions_prompt: str = PROMPT_TEXT
    """``/v1/completions`` prompt form: ``text`` (exact-length text; what the router accepts) or
    ``ids`` (token-id prompt, for servers that take it)."""
    text_special_tokens: bool = True
    """Text prompts are sized so that the tokenizer's count *with* the special tokens it adds
    (BOS, as SGLang's server counts text) equals the requested length."""
    client_processes: int = 1
    """Client processes driving the load (results merged); for loads one core cannot drive."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("input_len", "output_len", "concurrency", "num_requests", "client_processes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an integer >= 1 (got {value!r})")
        for name in ("warmup_requests", "prefix_groups", "prefix_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{name} must be an integer >= 0 (got {value!r})")
        if not (0.0 <= float(self.range_ratio) <= 1.0):
            problems.append(f"range_ratio must be in [0, 1] (got {self.range_ratio!r})")
        rate = float(self.request_rate)
        if math.isnan(rate) or rate <= 0:
            problems.append(f"request_rate must be > 0 or inf (got {self.request_rate!r})")
        if self.api not in APIS:
            problems.append(f"api must be one of {', '.join(APIS)} (got {self.api!r})")
        if self.completions_prompt not in PROMPT_KINDS:
            problems.append(
                f"completions_prompt must be one of {', '.join(PROMPT_KINDS)} "
                f"(got {self.completions_prompt!r})"
            )
        for name in ("request_timeout_s", "duration_limit_s", "burstiness"):
            value = float(getattr(self, name))
            if math.isnan(value) or value <= 0:
                problems.append(f"{name} must be > 0 (got {getattr(self, name)!r})")
        share = float(self.max_mismatch_share)
        if not (0.0 <= share <= 1.0):
            problems.append(f"max_mismatch_share must be in [0, 1] (got {self.max_mismatch_share!r})")
        if (self.prefix_groups > 0) != (self.prefix_len > 0):
            problems.append(
                "prefix_groups and prefix_len go together: both > 0 for a shared-prefix "
                f"workload, both 0 otherwise (got {self.prefix_groups}, {self.prefix_len})"
            )
        elif self.prefix_len > 0:
            low = max(int(self.input_len * self.range_ratio), 1)
            if self.prefix_len >= low:
                problems.append(
                    f"prefix_len ({self.prefix_len}) must be shorter than the shortest "
                    f"input length ({low} = input_len x range_ratio)"
                )
            if self.dataset_path:
                problems.append("a dataset file and a shared-prefix workload exclude each other")
        if (
            isinstance(self.client_processes, int)
            and isinstance(self.concurrency, int)
            and self.client_processes > self.concurrency
        ):
            problems.append(
                f"client_processes ({self.client_processes}) must not exceed the "
                f"concurrency ({self.concurrency}): each process takes a share of it"
            )
        if problems:
            raise WorkloadError(
                "Invalid workload: " + "; ".join(problems) + ". Fix the Workload(...) arguments "
                "(or the suite/CLI options that build them)."
            )

    @property
    def id(self) -> str:
        """Stable, filename-safe name, e.g. ``in6000-out1000-c16-n32``.

        Suffixes appear only for non-default values: range ratio (``-r0.5``), finite request rate
        (``-rate2``, burstiness ``-b0.5``), shared prefix (``-px4x512``), dataset (``-ds<stem>``),
        completions API (``-completions``, ``-ids`` for token-id prompts), duration limit
        (``-t60``), prompt seed (``-s1``) and warm-up count (``-w0``): two workloads that would
        measure differently never share an id (it keys caches and stored results).
        """
        parts = [
            f"in{self.input_len}",
            f"out{self.output_len}",
            f"c{self.concurrency}",
            f"n{self.num_requests}",
        ]
        if self.range_ratio != 1.0:
            parts.append(f"r{_fmt(self.range_ratio)}")
        if not math.isinf(self.request_rate):
            parts.append(f"rate{_fmt(self.request_rate)}")
            if self.burstiness != 1.0:
                parts.append(f"b{_fmt(self.burstiness)}")
        if self.prefix_groups:
            parts.append(f"px{self.prefix_groups}x{self.prefix_len}")
        if self.dataset_path:
            stem = "".join(c if c.isalnum() or c in "_." else "_" for c in Path(self.dataset_path).stem)[:32]
            parts.append(f"ds{stem}")
        if self.api != API_GENERATE:
            parts.append(self.api)
            if self.completions_prompt != PROMPT_TEXT:
                parts.append(self.completions_prompt)
        if not math.isinf(self.duration_limit_s):
            parts.append(f"t{_fmt(self.duration_limit_s)}")
        if self.seed != 0:
            parts.append(f"s{self.seed}")
        if self.warmup_requests != 1:
            parts.append(f"w{self.warmup_requests}")
        return "-".join(parts)

    @property
    def sends_text(self) -> bool:
        """Whether requests carry text prompts (``/v1/completions`` with ``completions_prompt='text'``)."""
        return self.api == API_COMPLETIONS and self.completions_prompt == PROMPT_TEXT

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (infinite rate / duration limit are written as the string ``"inf"``)."""
        d = dataclasses.asdict(self)
        for name in ("request_rate", "duration_limit_s"):
            if math.isinf(getattr(self, name)):
                d[name] = "inf"
        d["id"] = self.id
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workload:
        """Inverse of :meth:`to_dict` (unknown keys such as ``id`` are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for name in ("request_rate", "duration_limit_s"):
            if name in kwargs:
                kwargs[name] = float(kwargs[name])
        return cls(**kwargs)


@dataclass(frozen=True, eq=False)
class Prompt:
    """One request: exact prompt token ids (or text) and the number of tokens to generate.

    ``token_ids`` is a sequence of ints (a numpy array for built prompts). ``text``, when set, is
    what ``/v1/completions`` sends; ``prompt_len`` is then the number of tokens the server should
    count for it (``len(token_ids)`` otherwise).
    """

    token_ids: Any = dataclasses.field(repr=False)
    output_len: int
    text: str | None = dataclasses.field(default=None, repr=False)
    prompt_len: int | None = None

    def __len__(self) -> int:
        return self.prompt_len if self.prompt_len is not None else len(self.token_ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prompt):
            return NotImplemented
        return (
            self.output_len == other.output_len
            and self.text == other.text
            and len(self) == len(other)
            and np.array_equal(np.asarray(self.token_ids), np.asarray(other.token_ids))
        )

    __hash__ = None  # type: ignore[assignment]


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


# ---------------------------------------------------------------------------------------------
# Vocabulary helpers
# ---------------------------------------------------------------------------------------------


def _vocab_size(tokenizer: Any) -> int:
    try:
        return len(tokenizer)
    except TypeError:
        return int(tokenizer.vocab_size)


def _added_tokens(tokenizer: Any) -> dict[int, Any]:
    return dict(getattr(tokenizer, "added_tokens_decoder", None) or {})


def candidate_token_ids(tokenizer: Any) -> np.ndarray:
    """All non-special token ids of the tokenizer's vocabulary, sorted (added tokens excluded)."""
    size = _vocab_size(tokenizer)
    special = {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}
    special.update(int(i) for i in _added_tokens(tokenizer))
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


class TextBuilder:
    """Exact-length text for one tokenizer (see the module docstring). Cached per tokenizer."""

    def __init__(self, tokenizer: Any, *, special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.fast = getattr(tokenizer, "backend_tokenizer", None)
        self.candidates = candidate_token_ids(tokenizer)
        self.forbidden = sorted(
            {
                str(getattr(t, "content", t))
                for t in _added_tokens(tokenizer).values()
                if str(getattr(t, "content", t))
            }
            | {str(s) for s in (getattr(tokenizer, "all_special_tokens", None) or []) if s}
        )
        self.extra = self._special_overhead() if special_tokens else 0
        self.pieces: np.ndarray | None = None  # object array: id -> its text piece ("" = unusable)
        self.pool = self._pool()

    # -- tokenizer access ------------------------------------------------------------------
    def encode_many(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        if self.fast is not None:
            return [e.ids for e in self.fast.encode_batch(texts, add_special_tokens=add_special_tokens)]
        return [list(self.tokenizer.encode(t, add_special_tokens=add_special_tokens)) for t in texts]

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.encode_many([text], add_special_tokens)[0]

    def decode(self, ids: Any) -> str:
        ids = [int(i) for i in ids]
        if self.fast is not None:
            return self.fast.decode(ids, skip_special_tokens=False)
        return self.tokenizer.decode(ids)

    def count(self, text: str) -> int:
        """Tokens the server counts for ``text`` (with the special tokens the tokenizer adds)."""
        return len(self.encode(text, add_special_tokens=self.extra > 0))

    def _special_overhead(self) -> int:
        probe = "hello world"
        return max(0, len(self.encode(probe, True)) - len(self.encode(probe, False)))

    def _clean(self, text: str) -> bool:
        return not any(f in text for f in self.forbidden)

    # -- the pool of word pieces -----------------------------------------------------------
    def _pool(self) -> np.ndarray:
        cands = self.candidates
        if cands.size < 2:
            return np.empty(0, dtype=np.int64)
        ref = int(cands[0])
        ref_text = self.decode([ref])
        pieces = np.full(_vocab_size(self.tokenizer), "", dtype=object)
        good: list[int] = []
        texts: list[str] = []
        ids: list[int] = []
        for i in cands.tolist():
            whole = self.decode([ref, i])
            if not whole.startswith(ref_text):
                continue
            piece = whole[len(ref_text) :]
            # a word boundary, then letters only: pre-tokenizers split before it, so a piece never
            # merges with its neighbours
            if len(piece) < 2 or not piece[0].isspace() or not piece[1:].isalpha():
                continue
            if not self._clean(piece):
                continue
            texts.append(piece)
            ids.append(i)
        if not ids:
            return np.empty(0, dtype=np.int64)
        for i, piece, enc in zip(ids, texts, self.encode_many(texts), strict=True):
            if enc == [i]:
                good.append(i)
                pieces[i] = piece
        pool = np.asarray(good, dtype=np.int64)
        if pool.size < POOL_MIN_SIZE:
            return np.empty(0, dtype=np.int64)
        # validate on random concatenations (also at the start of a text)
        rng = np.random.default_rng(12345)
        seqs = rng.choice(pool, size=(POOL_VALIDATION_SEQS, POOL_VALIDATION_LEN))
        texts = ["".join(pieces[row].tolist()) for row in seqs]
        for row, text, enc in zip(seqs, texts, self.encode_many(texts), strict=True):
            if not self._clean(text) or enc != row.tolist():
                return np.empty(0, dtype=np.int64)
        self.pieces = pieces
        return pool

    @property
    def exact_by_construction(self) -> bool:
        return self.pool.size > 0

    # -- building ----------------------------------------------------------------------------
    def content_len(self, n: int) -> int:
        """Text tokens to build so the server's count (with added special tokens) is ``n``."""
        return max(1, n - self.extra)

    def from_pool(self, ids: np.ndarray) -> str:
        assert self.pieces is not None
        return "".join(self.pieces[ids].tolist())

    def fallback(self, rng: np.random.Generator, n: int, prefix: str = "") -> tuple[str, list[int]]:
        """decode -> re-encode -> trim/extend until ``prefix + text`` encodes to exactly
        ``len(encode(prefix)) + n`` tokens; returns the suffix text and the full ids."""
        base = len(self.encode(prefix)) if prefix else 0
        ids = rng.choice(self.candidates, size=n).tolist()
        for attempt in range(FALLBACK_MAX_ROUNDS):
            text = self.decode(ids)
            full = prefix + text
            enc = self.encode(full)
            have = len(enc) - base
            if have == n and self._clean(full):
                return text, enc
            if not self._clean(full):
                ids = rng.choice(self.candidates, size=n).tolist()
            elif have > n:
                # trim, and redraw a few tokens at the end: the cut itself may re-tokenize
                # differently, so plain trimming can cycle
                redraw = min(n, 1 + attempt // 2)
                ids = enc[base : base + n - redraw] + rng.choice(self.candidates, size=redraw).tolist()
            else:
                ids = enc[base:] + rng.choice(self.candidates, size=n - have).tolist()
        raise WorkloadError(
            f"Could not build a text prompt that re-tokenizes to exactly {n} tokens with this "
            f"tokenizer ({type(self.tokenizer).__name__}) after {FALLBACK_MAX_ROUNDS} rounds; send "
            "token ids instead (api='generate', or completions_prompt='ids' where the server "
            "accepts them)."
        )


_BUILDERS: weakref.WeakKeyDictionary[Any, dict[bool, TextBuilder]] = weakref.WeakKeyDictionary()
_PROMPT_CACHE: OrderedDict[tuple[Any, ...], list[Prompt]] = OrderedDict()
_PROMPT_CACHE_SIZE = 8


def text_builder(tokenizer: Any, special_tokens: bool = True) -> TextBuilder:
    """The (cached) :class:`TextBuilder` of ``tokenizer``."""
    try:
        per = _BUILDERS.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable: no caching
        return TextBuilder(tokenizer, special_tokens=special_tokens)
    if special_tokens not in per:
        per[special_tokens] = TextBuilder(tokenizer, special_tokens=special_tokens)
    return per[special_tokens]


# ---------------------------------------------------------------------------------------------
# Building a workload's prompts
# ---------------------------------------------------------------------------------------------


def _cache_key(tokenizer: Any, workload: Workload) -> tuple[Any, ...] | None:
    ds = workload.dataset_path
    stamp = None
    if ds:
        try:
            st = Path(ds).expanduser().stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return None
    return (
        id(tokenizer),
        getattr(tokenizer, "name_or_path", None),
        _vocab_size(tokenizer),
        workload.input_len,
        workload.output_len,
        workload.num_requests,
        workload.range_ratio,
        workload.seed,
        workload.sends_text,
        workload.prefix_groups,
        workload.prefix_len,
        ds,
        stamp,
        workload.text_special_tokens,
    )


def build_prompts(tokenizer: Any, workload: Workload, *, verify: bool = True) -> list[Prompt]:
    """``workload.num_requests`` token-exact prompts, reproducible from ``workload.seed``.

    Token-id prompts for ``/generate`` (and ``completions_prompt='ids'``); exact-length text for
    ``/v1/completions``. Results are cached in memory per (tokenizer, workload lengths and seed).
    ``verify`` re-encodes text prompts (all, or a seeded sample above
    :data:`VERIFY_ALL_MAX_TOKENS` tokens) and raises :class:`WorkloadError` on any difference.
    """
    key = _cache_key(tokenizer, workload)
    if key is not None and key in _PROMPT_CACHE:
        _PROMPT_CACHE.move_to_end(key)
        return list(_PROMPT_CACHE[key])
    if workload.dataset_path:
        prompts = _dataset_prompts(tokenizer, workload)
    elif workload.sends_text:
        prompts = _text_prompts(tokenizer, workload, verify=verify)
    else:
        prompts = _id_prompts(tokenizer, workload)
    if key is not None:
        _PROMPT_CACHE[key] = prompts
        while len(_PROMPT_CACHE) > _PROMPT_CACHE_SIZE:
            _PROMPT_CACHE.popitem(last=False)
    return list(prompts)


def _lengths(workload: Workload, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = workload.num_requests
    input_lens = sample_lengths(rng, workload.input_len, workload.range_ratio, n)
    output_lens = sample_lengths(rng, workload.output_len, workload.range_ratio, n)
    return input_lens, output_lens


def _id_prompts(tokenizer: Any, workload: Workload) -> list[Prompt]:
    rng = np.random.default_rng(workload.seed)
    candidates = candidate_token_ids(tokenizer)
    dtype = np.int32 if candidates[-1] < 2**31 else np.int64
    input_lens, output_lens = _lengths(workload, rng)
    plen = workload.prefix_len
    groups = workload.prefix_groups
    prefixes = (
        rng.choice(candidates, size=(groups, plen)).astype(dtype) if groups else np.empty((0, 0), dtype=dtype)
    )
    own = input_lens - plen if groups else input_lens
    flat = rng.choice(candidates, size=int(own.sum())).astype(dtype)
    bodies = np.split(flat, np.cumsum(own)[:-1])
    prompts = []
    for i, (body, out_len) in enumerate(zip(bodies, output_lens.tolist(), strict=True)):
        ids = np.concatenate((prefixes[i % groups], body)) if groups else body
        prompts.append(Prompt(token_ids=ids, output_len=int(out_len)))
    return prompts


def _text_prompts(tokenizer: Any, workload: Workload, *, verify: bool) -> list[Prompt]:
    tb = text_builder(tokenizer, workload.text_special_tokens)
    rng = np.random.default_rng(workload.seed)
    input_lens, output_lens = _lengths(workload, rng)
    groups, plen = workload.prefix_groups, workload.prefix_len
    prompts: list[Prompt] = []
    if tb.exact_by_construction:
        pool = tb.pool
        prefix_ids = [rng.choice(pool, size=plen) for _ in range(groups)]
        prefix_text = [tb.from_pool(p) for p in prefix_ids]
        for i, (n, out_len) in enumerate(zip(input_lens.tolist(), output_lens.tolist(), strict=True)):
            want = tb.content_len(n)
            head_ids = prefix_ids[i % groups] if groups else pool[:0]
            head = prefix_text[i % groups] if groups else ""
            while True:
                ids = np.concatenate((head_ids, rng.choice(pool, size=want - len(head_ids))))
                text = head + tb.from_pool(ids[len(head_ids) :])
                if tb._clean(text):
                    break
            prompts.append(
                Prompt(token_ids=ids.astype(np.int32), output_len=int(out_len), text=text, prompt_len=int(n))
            )
    else:
        prefixes = []
        for _ in range(groups):
            text, _ids = tb.fallback(rng, tb.content_len(plen) if plen else 0)
            prefixes.append(text)
        for i, (n, out_len) in enumerate(zip(input_lens.tolist(), output_lens.tolist(), strict=True)):
            head = prefixes[i % groups] if groups else ""
            head_len = len(tb.encode(head)) if head else 0
            tail, tail_ids = tb.fallback(rng, tb.content_len(n) - head_len, prefix=head)
            prompts.append(
                Prompt(
                    token_ids=np.asarray(tail_ids, dtype=np.int64),
                    output_len=int(out_len),
                    text=head + tail,
                    prompt_len=int(n),
                )
            )
    if verify:
        verify_text_prompts(tb, prompts, seed=workload.seed)
    return prompts


def verify_text_prompts(
    tb: TextBuilder, prompts: list[Prompt], *, seed: int = 0, max_tokens: int = VERIFY_ALL_MAX_TOKENS
) -> int:
    """Re-encode text prompts (all, or a seeded sample of about ``max_tokens`` tokens) and raise
    :class:`WorkloadError` on the first whose count differs. Returns how many were checked."""
    idx = np.arange(len(prompts))
    total = sum(len(p) for p in prompts)
    if total > max_tokens and prompts:
        k = max(1, int(len(prompts) * max_tokens / total))
        idx = np.sort(np.random.default_rng([seed, 7]).choice(idx, size=k, replace=False))
    texts = [prompts[i].text or "" for i in idx.tolist()]
    encs = tb.encode_many(texts, add_special_tokens=tb.extra > 0)
    for i, enc in zip(idx.tolist(), encs, strict=True):
        if len(enc) != len(prompts[i]):
            raise WorkloadError(
                f"Text prompt {i} re-tokenizes to {len(enc)} tokens instead of {len(prompts[i])}: "
                "this tokenizer does not round-trip the prompt builder's text; use token-id "
                "prompts (api='generate' or completions_prompt='ids')."
            )
    return len(texts)


def _dataset_prompts(tokenizer: Any, workload: Workload) -> list[Prompt]:
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
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise WorkloadError(f"{where}: not JSON ({exc}). {hint}") from exc
    if not isinstance(obj, dict):
        raise WorkloadError(f"{where}: expected a JSON object. {hint}")
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
