"""The workload that describes a run (lengths, concurrency, arrival rate, API dialect, dataset,
timeouts), one request's prompt, and the error a workload can raise."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_pd.errors import PdError

API_GENERATE = "generate"
API_COMPLETIONS = "completions"
API_CHAT = "chat"
APIS = (API_GENERATE, API_COMPLETIONS, API_CHAT)
PROMPT_TEXT = "text"
PROMPT_IDS = "ids"
PROMPT_KINDS = (PROMPT_TEXT, PROMPT_IDS)
WARMUP_OUTPUT_LEN = 16
DEFAULT_REQUEST_TIMEOUT_S = 3600.0
"""6000 in / 1000 out at 16 concurrent requests takes ~30 s on the seed's H20s; an hour covers
hardware (or a loaded simulator) 100x slower. Configurable per workload."""


class WorkloadError(PdError):
    """A workload that cannot be built or run (bad parameters, missing tokenizer, bad endpoint)."""


def json_object_line(line: str, where: str, hint: str) -> dict[str, Any]:
    """One line of a JSONL file (a dataset, a trace) as an object; WorkloadError naming
    ``where`` (file:line) and ``hint`` (what a line must hold) otherwise."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise WorkloadError(f"{where}: not JSON ({exc}). {hint}") from None
    if not isinstance(obj, dict):
        raise WorkloadError(f"{where}: expected a JSON object. {hint}")
    return obj


_ID_HEAD = (("in", "input_len"), ("out", "output_len"), ("c", "concurrency"), ("n", "num_requests"))
_ID_SUFFIXES: tuple[tuple[str, str, type], ...] = (
    ("rate", "request_rate", float),
    ("r", "range_ratio", float),
    ("blk", "trace_block_size", int),
    ("b", "burstiness", float),
    ("ts", "trace_time_scale", float),
    ("think", "think_time_s", float),
    ("t", "duration_limit_s", float),
    ("s", "seed", int),
    ("w", "warmup_requests", int),
)
"""Id suffixes ``<prefix><number>`` and the field each sets (``rate`` before ``r``, ``blk``
before ``b``, ``ts`` and ``think`` before ``t``)."""


DISTRIBUTIONS = ("uniform", "normal", "lognormal")


def _stem(path: str) -> str:
    """A file's stem, filename-safe, at most 32 characters (for workload ids)."""
    return "".join(c if c.isalnum() or c in "_." else "_" for c in Path(path).stem)[:32]


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
    length_distribution: str = "uniform"
    """How prompt and output lengths vary: ``uniform`` within [L x range_ratio, L] (bench_serving's
    random dataset), or ``normal`` / ``lognormal`` around L with standard deviations
    ``input_std`` / ``output_std`` tokens (genai-perf's synthetic lengths; at least 1 token)."""
    input_std: float = 0.0
    output_std: float = 0.0
    lengths_path: str | None = None
    """A length histogram: a CSV file with columns ``input_len,output_len`` and optionally
    ``count``; each request draws one row, weighted by its count (real traffic's shape)."""
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
    trace_path: str | None = None
    """A request trace in the Mooncake format (:mod:`.trace`): its first ``num_requests`` rows are
    replayed at their timestamps with their lengths and shared prefixes (token-id prompts);
    ``input_len``, ``output_len`` and ``request_rate`` are not used. ``concurrency`` still caps
    the requests in flight: set it above what the trace needs."""
    trace_time_scale: float = 1.0
    """Replay the trace this many times faster (2: its requests come twice as often)."""
    trace_block_size: int = 512
    """Tokens per hash id of the trace (512 in Mooncake's published traces)."""
    duration_limit_s: float = math.inf
    """Stop dispatching new measured requests this many seconds after the first one; requests in
    flight finish (each bounded by ``request_timeout_s``); the rest are reported as not sent."""
    turns: int = 1
    """Requests per conversation. Above 1, the ``num_requests`` requests form
    ``num_requests / turns`` conversations: each turn after the first sends the whole
    conversation so far (the earlier prompts and the answers the server actually gave) and
    ``turn_input_len`` new tokens, ``think_time_s`` after the previous answer ended.
    ``concurrency`` then caps the conversations in flight (a closed loop per conversation) and a
    finite ``request_rate`` is the rate at which conversations start."""
    turn_input_len: int = 256
    """New prompt tokens of each turn after the first (the user's next message)."""
    think_time_s: float = 0.0
    """Seconds between an answer's end and the conversation's next turn."""
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
    ignore_eos: bool = True
    """Send ``ignore_eos`` so that every output has ``output_len`` tokens; False for servers that
    reject the field (outputs may then end early: their lengths come from the server's usage and
    a shorter one counts as a mismatch)."""

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "input_len",
            "output_len",
            "concurrency",
            "num_requests",
            "client_processes",
            "turns",
            "turn_input_len",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an integer >= 1 (got {value!r})")
        for name in ("warmup_requests", "prefix_groups", "prefix_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{name} must be an integer >= 0 (got {value!r})")
        if not (0.0 <= float(self.range_ratio) <= 1.0):
            problems.append(f"range_ratio must be in [0, 1] (got {self.range_ratio!r})")
        if self.length_distribution not in DISTRIBUTIONS:
            known = ", ".join(DISTRIBUTIONS)
            problems.append(f"length_distribution must be one of {known} (got {self.length_distribution!r})")
        elif self.length_distribution == "uniform" and (self.input_std or self.output_std):
            problems.append("input_std / output_std need length_distribution='normal' or 'lognormal'")
        if not (self.input_std >= 0 and self.output_std >= 0):
            problems.append(
                f"input_std and output_std must be >= 0 (got {self.input_std}, {self.output_std})"
            )
        if self.lengths_path and (self.dataset_path or self.length_distribution != "uniform"):
            problems.append("a lengths histogram excludes a dataset file and a length_distribution")
        rate = float(self.request_rate)
        if math.isnan(rate) or rate <= 0:
            problems.append(f"request_rate must be > 0 or inf (got {self.request_rate!r})")
        if self.api not in APIS:
            problems.append(f"api must be one of {', '.join(APIS)} (got {self.api!r})")
        if self.api == API_CHAT and self.completions_prompt != PROMPT_TEXT:
            problems.append(
                f"the chat API takes text prompts only (got completions_prompt={self.completions_prompt!r})"
            )
        if self.completions_prompt not in PROMPT_KINDS:
            problems.append(
                f"completions_prompt must be one of {', '.join(PROMPT_KINDS)} "
                f"(got {self.completions_prompt!r})"
            )
        if self.trace_path:
            if (
                self.dataset_path
                or self.lengths_path
                or self.prefix_groups
                or self.length_distribution != "uniform"
            ):
                problems.append(
                    "a trace file excludes a dataset, a lengths file, prefix groups and a length_distribution"
                )
            if self.sends_text:
                problems.append(
                    "a trace replay sends token-id prompts: use api='generate' or completions_prompt='ids'"
                )
            if not math.isinf(float(self.request_rate)):
                problems.append("a trace replay takes its arrivals from the trace: leave request_rate at inf")
        if (
            isinstance(self.trace_block_size, bool)
            or not isinstance(self.trace_block_size, int)
            or self.trace_block_size < 1
        ):
            problems.append(f"trace_block_size must be an integer >= 1 (got {self.trace_block_size!r})")
        problems.extend(self._turn_problems())
        for name in ("request_timeout_s", "duration_limit_s", "burstiness", "trace_time_scale"):
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

    def _turn_problems(self) -> list[str]:
        think = float(self.think_time_s)
        problems = (
            [] if think >= 0 and math.isfinite(think) else [f"think_time_s must be >= 0 (got {think!r})"]
        )
        if not isinstance(self.turns, int) or self.turns <= 1:
            return problems
        if isinstance(self.num_requests, int) and self.num_requests % self.turns:
            problems.append(
                f"num_requests ({self.num_requests}) must be a whole number of conversations of "
                f"{self.turns} turns"
            )
        if self.trace_path or self.dataset_path:
            problems.append(
                "a multi-turn workload excludes a trace and a dataset file (they hold their own prompts)"
            )
        if self.api == API_COMPLETIONS:
            problems.append(
                "a multi-turn workload sends each answer back: use api='generate' (token ids) or "
                "api='chat' (messages); /v1/completions streams text that would not tokenize back "
                "to the same prompt"
            )
        return problems

    @property
    def conversations(self) -> int:
        """How many conversations the requests form (``num_requests`` when single-turn)."""
        return self.num_requests // self.turns

    @property
    def id(self) -> str:
        """Stable, filename-safe name, e.g. ``in6000-out1000-c16-n32``.

        Suffixes appear only for non-default values: range ratio (``-r0.5``), finite request rate
        (``-rate2``, burstiness ``-b0.5``), shared prefix (``-px4x512``), conversations (``-mt4x256``:
        turns x new tokens per turn, think time ``-think2``), dataset (``-ds<stem>``),
        trace time scale (``-ts2``) and block size (``-blk256``; a trace's id starts with
        ``tr<stem>`` instead of the lengths),
        OpenAI API (``-completions`` / ``-chat``, ``-ids`` for token-id prompts), no ignore_eos
        (``-eos``), duration limit
        (``-t60``), prompt seed (``-s1``) and warm-up count (``-w0``): two workloads that would
        measure differently never share an id (it keys caches and stored results).
        """
        # a trace gives the lengths: its name comes first instead
        head = (
            [f"tr{_stem(self.trace_path)}"]
            if self.trace_path
            else [f"in{self.input_len}", f"out{self.output_len}"]
        )
        parts = [*head, f"c{self.concurrency}", f"n{self.num_requests}"]
        if self.range_ratio != 1.0:
            parts.append(f"r{_fmt(self.range_ratio)}")
        if self.length_distribution != "uniform":
            parts.append(f"{self.length_distribution}{_fmt(self.input_std)}x{_fmt(self.output_std)}")
        if self.lengths_path:
            parts.append(f"lh{_stem(self.lengths_path)}")
        if not math.isinf(self.request_rate):
            parts.append(f"rate{_fmt(self.request_rate)}")
            if self.burstiness != 1.0:
                parts.append(f"b{_fmt(self.burstiness)}")
        if self.prefix_groups:
            parts.append(f"px{self.prefix_groups}x{self.prefix_len}")
        if self.turns > 1:
            parts.append(f"mt{self.turns}x{self.turn_input_len}")
            if self.think_time_s:
                parts.append(f"think{_fmt(self.think_time_s)}")
        if self.dataset_path:
            parts.append(f"ds{_stem(self.dataset_path)}")
        if self.trace_path:
            if self.trace_time_scale != 1.0:
                parts.append(f"ts{_fmt(self.trace_time_scale)}")
            if self.trace_block_size != 512:
                parts.append(f"blk{self.trace_block_size}")
        if self.api != API_GENERATE:
            parts.append(self.api)
            if self.completions_prompt != PROMPT_TEXT:
                parts.append(self.completions_prompt)
        if not self.ignore_eos:
            parts.append("eos")
        if not math.isinf(self.duration_limit_s):
            parts.append(f"t{_fmt(self.duration_limit_s)}")
        if self.seed != 0:
            parts.append(f"s{self.seed}")
        if self.warmup_requests != 1:
            parts.append(f"w{self.warmup_requests}")
        return "-".join(parts)

    @property
    def sends_text(self) -> bool:
        """Whether requests carry text prompts (the chat API, ``/v1/completions`` with
        ``completions_prompt='text'``)."""
        return self.api in (API_COMPLETIONS, API_CHAT) and self.completions_prompt == PROMPT_TEXT

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

    @classmethod
    def from_id(cls, text: str) -> Workload:
        """The workload an :attr:`id` names (inverse of it), e.g. ``in6000-out1000-c16-n32-rate2``
        (not a trace's: its id names only the file's stem).

        Raises WorkloadError for text that is not an id, or names a dataset (``-ds…`` keeps only
        the file's stem: give the dataset itself)."""
        parts = text.strip().split("-")
        kw: dict[str, Any] = {}
        try:
            if parts[0].startswith("tr"):
                raise ValueError("a trace workload's id names only the file's stem; give the file")
            for place, (key, name) in enumerate(_ID_HEAD):
                token = parts[place] if place < len(parts) else ""
                if not token.startswith(key):
                    raise ValueError(f"part {place + 1} should be {key}<number>")
                kw[name] = int(token[len(key) :])
            for token in parts[4:]:
                if token in APIS:
                    kw["api"] = token
                elif token in PROMPT_KINDS:
                    kw["completions_prompt"] = token
                elif token == "eos":
                    kw["ignore_eos"] = False
                elif token.startswith(("ds", "lh", "tr")):
                    raise ValueError(
                        "a dataset, lengths-file or trace workload names only the file's stem; give the file"
                    )
                elif token.startswith(("normal", "lognormal")):
                    dist = "lognormal" if token.startswith("lognormal") else "normal"
                    sd_in, _, sd_out = token[len(dist) :].partition("x")
                    kw["length_distribution"], kw["input_std"], kw["output_std"] = (
                        dist,
                        float(sd_in),
                        float(sd_out),
                    )
                elif token.startswith("px"):
                    groups, _, length = token[2:].partition("x")
                    kw["prefix_groups"], kw["prefix_len"] = int(groups), int(length)
                elif token.startswith("mt"):
                    turns, _, length = token[2:].partition("x")
                    kw["turns"], kw["turn_input_len"] = int(turns), int(length)
                else:
                    for prefix, name, kind in _ID_SUFFIXES:
                        if token.startswith(prefix):
                            kw[name] = kind(token[len(prefix) :])
                            break
                    else:
                        raise ValueError(f"unknown part {token!r}")
        except ValueError as exc:
            raise WorkloadError(
                f"{text!r} is not a workload id ({exc}); ids look like in6000-out1000-c16-n32, optionally "
                "followed by -r0.5 -normal600x100 -rate2 -b0.5 -px4x512 -completions -eos -t60 -s1 -w0"
            ) from None
        return cls(**kw)


@dataclass(frozen=True, eq=False)
class Prompt:
    """One request: exact prompt token ids (or text) and the number of tokens to generate.

    ``token_ids`` is a sequence of ints (a numpy array for built prompts). ``text``, when set, is
    what ``/v1/completions`` sends; ``prompt_len`` is then the number of tokens the server should
    count for it (``len(token_ids)`` otherwise). ``history``: a chat turn's earlier messages
    (``{"role", "content"}`` dicts) sent before ``text``.
    """

    token_ids: Any = dataclasses.field(repr=False)
    output_len: int
    text: str | None = dataclasses.field(default=None, repr=False)
    prompt_len: int | None = None
    history: tuple[dict[str, str], ...] = dataclasses.field(default=(), repr=False)

    def __len__(self) -> int:
        return self.prompt_len if self.prompt_len is not None else len(self.token_ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prompt):
            return NotImplemented
        return (
            self.output_len == other.output_len
            and self.text == other.text
            and self.history == other.history
            and len(self) == len(other)
            and np.array_equal(np.asarray(self.token_ids), np.asarray(other.token_ids))
        )

    __hash__ = None  # type: ignore[assignment]
