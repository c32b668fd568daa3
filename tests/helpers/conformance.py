"""Protocol conformance probes: what a PD pair (prefill + decode worker behind sglang-router)
sends, reduced to its *shape* (key sets, JSON types, which fields appear on which chunk, status
codes), so that real SGLang and the simulator can be compared field by field.

Every probe is a plain function of URLs returning a JSON-able observation. ``diff`` compares two
observations; ``unexplained`` drops the differences listed in ``KNOWN_DIFFERENCES`` (each with
its reason). ``PD_RECORD_SHAPES=1 pytest tests/integration/test_conformance.py -m real_sglang`` brings real
SGLang up and writes its shapes to ``tests/data/sglang_0.5.23_shapes.json``, which the fast tier
holds the simulator to.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHAPES_FILE = Path(__file__).resolve().parents[1] / "data" / "sglang_0.5.23_shapes.json"
N_TOKENS = 16  # max_new_tokens of the generation probes (several chunks, a few seconds on CPU)
PROMPT_TOKENS = 24

Obs = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# HTTP and shapes
# ---------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int | None  # None: nothing answered (connection refused, reset, timed out)
    content_type: str
    body: bytes


def http(method: str, url: str, body: object = None, timeout: float = 120.0) -> Reply:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 (loopback only)
            return Reply(r.status, _media_type(r.headers.get("Content-Type")), r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, _media_type(e.headers.get("Content-Type")), e.read())
    except (urllib.error.URLError, OSError):
        return Reply(None, "", b"")


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def shape(value: Any) -> Any:
    """A value's shape: dicts keep their keys (values reduced to shapes), scalars become their
    JSON type name, lists of scalars "list[int]" etc., lists of objects [merged object shape]."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        if not value:
            return "list[]"
        if all(isinstance(v, dict) for v in value):
            return [merge_shapes([shape(v) for v in value])]
        return "list[" + "|".join(sorted({_type_name(v) for v in value})) + "]"
    return _type_name(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    return "object"


def merge_shapes(shapes: list[Any]) -> Any:
    """One shape for several objects: a key missing from some of them gets a trailing "?", a key
    whose type varies gets the types joined with "|"."""
    if not shapes:
        return {}
    if not all(isinstance(s, dict) for s in shapes):
        return "|".join(
            sorted({json.dumps(s, sort_keys=True) if not isinstance(s, str) else s for s in shapes})
        )
    keys = sorted({k for s in shapes for k in s})
    out: dict[str, Any] = {}
    for k in keys:
        present = [s[k] for s in shapes if k in s]
        merged = present[0] if all(p == present[0] for p in present) else merge_shapes(present)
        out[k + ("" if len(present) == len(shapes) else "?")] = merged
    return out


def body_shape(reply: Reply) -> Any:
    """ "empty", the shape of a JSON body, or "text" for anything else."""
    if not reply.body.strip():
        return "empty"
    try:
        return shape(json.loads(reply.body))
    except ValueError:
        return "text"


def sse_events(body: bytes) -> list[Any]:
    """The ``data:`` payloads of a server-sent-event body: parsed JSON, the string "[DONE]", or
    "<not JSON>" for a data line that does not parse."""
    events: list[Any] = []
    for line in body.decode(errors="replace").splitlines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            events.append("[DONE]")
            continue
        try:
            events.append(json.loads(payload))
        except ValueError:
            events.append("<not JSON>")
    return events


def prompt_ids(n: int = PROMPT_TOKENS) -> list[int]:
    """Fresh random token ids (a new prompt per call: no prefix-cache hits between probes)."""
    rng = random.Random()
    return [rng.randrange(100, 1000) for _ in range(n)]


def prompt_text() -> str:
    rng = random.Random()
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "far", "away"]
    return " ".join(rng.choice(words) for _ in range(12))


# ---------------------------------------------------------------------------------------------
# Worker probes
# ---------------------------------------------------------------------------------------------


class StartupWatch:
    """Polls a worker's /health and /health_generate from before it starts listening until both
    answer 200: the sequence of distinct answers (status and body shape) each went through."""

    PATHS = ("/health", "/health_generate")

    def __init__(self, workers: dict[str, str], interval: float = 0.2, timeout: float = 900.0) -> None:
        self.workers = workers
        self.interval = interval
        self.timeout = timeout
        self.seen: dict[str, dict[str, list[Any]]] = {role: {p: [] for p in self.PATHS} for role in workers}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StartupWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def finish(self, timeout: float = 120.0) -> Obs:
        """Wait until every endpoint answered 200 (or ``timeout``). Per endpoint: its final
        answer, and whether every answer before it was "down", then 503 with an empty body,
        in that order (how long each phase lasts, and so whether a poll catches the 503 phase
        at all, depends on timing: SGLang's is the warm-up request)."""
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(10)
        order = (["down"], [503, "empty"], [200, "empty"])
        out: Obs = {}
        for role, paths in self.seen.items():
            for path, seq in paths.items():
                ranks = [order.index(s) if s in order else -1 for s in seq]
                out.setdefault(role, {})[path] = {
                    "final": seq[-1] if seq else None,
                    "down_then_503_then_200": -1 not in ranks and ranks == sorted(ranks),
                }
        return out

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            pending = 0
            for role, url in self.workers.items():
                for path in self.PATHS:
                    seq = self.seen[role][path]
                    if seq and seq[-1] == [200, "empty"]:
                        continue
                    pending += 1
                    r = http("GET", url + path, timeout=10)
                    step = ["down"] if r.status is None else [r.status, body_shape(r)]
                    if not seq or seq[-1] != step:
                        seq.append(step)
            if not pending:
                return
            self._stop.wait(self.interval)


def probe_health(worker: str) -> Obs:
    """A warmed-up worker's health endpoints."""
    out: Obs = {}
    for path in StartupWatch.PATHS:
        r = http("GET", worker + path)
        out[path] = {"status": r.status, "body": body_shape(r)}
    return out


def probe_info(worker: str) -> Obs:
    """Model and server info: status and {key: JSON type}; the older names (/get_…, which the
    router falls back to) must answer the same shape."""
    out: Obs = {}
    for path in ("/model_info", "/server_info"):
        r = http("GET", worker + path)
        alias = http("GET", worker + "/get_" + path[1:])
        out[path] = {
            "status": r.status,
            "body": body_shape(r),
            "/get_ alias": {"status": alias.status, "same_shape": body_shape(alias) == body_shape(r)},
        }
    return out


def probe_decode_without_room(decode: str) -> Obs:
    """A /generate sent straight to the decode worker, without the router's bootstrap fields:
    plain (an HTTP error) and streamed (an aborted chunk)."""
    body = {"input_ids": prompt_ids(), "sampling_params": {"max_new_tokens": 4, "ignore_eos": True}}
    plain = http("POST", decode + "/generate", body)
    streamed = http("POST", decode + "/generate", {**body, "stream": True})
    events = sse_events(streamed.body)
    reasons = [
        e["meta_info"].get("finish_reason")
        for e in events
        if isinstance(e, dict) and isinstance(e.get("meta_info"), dict)
    ]
    return {
        "status": plain.status,
        "content_type": plain.content_type,
        "body": body_shape(plain),
        "message": _without_ids(_error_message(plain)),
        "stream": {
            "status": streamed.status,
            "content_type": streamed.content_type,
            "events": [e if e == "[DONE]" else shape(e) for e in events],
            "finish_reasons": [
                {k: _without_ids(v) for k, v in f.items()} if isinstance(f, dict) else f for f in reasons
            ],
        },
    }


def _without_ids(value: Any) -> Any:
    """Request ids (hex) in a message replaced by <id>: they differ per request."""
    return re.sub(r"[0-9a-f]{32}", "<id>", value) if isinstance(value, str) else value


def probe_metrics(worker: str) -> Obs:
    """Metric families of /metrics: {name: {"type", "labels"}} (label names over all samples,
    without the histogram's ``le``)."""
    from prometheus_client.parser import text_string_to_metric_families

    r = http("GET", worker + "/metrics")
    if r.status != 200:
        return {"status": r.status}
    families: Obs = {}
    for fam in text_string_to_metric_families(r.body.decode()):
        labels = sorted({k for s in fam.samples for k in s.labels if k not in ("le", "quantile")})
        families[fam.name] = {"type": fam.type, "labels": labels}
    return {"status": r.status, "content_type": r.content_type, "families": families}


def _error_message(r: Reply) -> Any:
    try:
        body = json.loads(r.body)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("message")
    return body.get("message") if isinstance(body, dict) else None


# ---------------------------------------------------------------------------------------------
# Probes through the router
# ---------------------------------------------------------------------------------------------


def _stream_summary(events: list[Any]) -> Obs:
    """Shape of a stream of JSON chunks: the first, the middle ones (merged) and the last."""
    chunks = [e for e in events if isinstance(e, dict)]
    return {
        "n_chunks_ge_3": len(chunks) >= 3,
        "first": shape(chunks[0]) if chunks else None,
        "middle": merge_shapes([shape(c) for c in chunks[1:-1]]) if len(chunks) > 2 else None,
        "last": shape(chunks[-1]) if len(chunks) > 1 else None,
        "ends_with_done": bool(events) and events[-1] == "[DONE]",
        "non_json_events": [e for e in events if isinstance(e, str) and e != "[DONE]"],
    }


def _prefixes(seq: list[Any]) -> bool:
    """Each element extends the one before (cumulative output)."""
    return all(b[: len(a)] == a for a, b in zip(seq, seq[1:], strict=False))


def probe_generate_stream(router: str, n: int = N_TOKENS) -> Obs:
    r = http(
        "POST",
        router + "/generate",
        {
            "input_ids": prompt_ids(),
            "stream": True,
            "sampling_params": {"max_new_tokens": n, "ignore_eos": True},
        },
    )
    events = sse_events(r.body)
    chunks = [e for e in events if isinstance(e, dict)]
    metas = [c.get("meta_info", {}) for c in chunks]
    return {
        "status": r.status,
        "content_type": r.content_type,
        **_stream_summary(events),
        "text_cumulative": _prefixes([c.get("text", "") for c in chunks]),
        "output_ids_cumulative": _prefixes([c.get("output_ids", []) for c in chunks]),
        "completion_tokens_is_len_output_ids": all(
            m.get("completion_tokens") == len(c.get("output_ids", []))
            for m, c in zip(metas, chunks, strict=True)
        ),
        "final_output_ids": len(chunks[-1].get("output_ids", [])) if chunks else None,
        "finish_reason_before_last": sorted({json.dumps(m.get("finish_reason")) for m in metas[:-1]}),
        "finish_reason_last": metas[-1].get("finish_reason") if metas else None,
        "decode_timing_in_order": _timing_in_order(metas[-1]) if metas else None,
    }


def _timing_in_order(meta: dict[str, Any]) -> bool:
    """What the TTFT breakdown reads from the answering (decode) server's final ``meta_info``:
    received, then first forward batch, then first token, then finished, on its own clock."""
    try:
        received, entered = meta["request_received_ts"], meta["forward_entry_time"]
        first, finished = received + meta["first_token_latency"], meta["request_finished_ts"]
    except (KeyError, TypeError):
        return False
    return received <= entered <= first <= finished


def probe_generate(router: str, n: int = N_TOKENS) -> Obs:
    r = http(
        "POST",
        router + "/generate",
        {"input_ids": prompt_ids(), "sampling_params": {"max_new_tokens": n, "ignore_eos": True}},
    )
    body = json.loads(r.body) if r.status == 200 else {}
    return {
        "status": r.status,
        "content_type": r.content_type,
        "body": shape(body),
        "output_ids": len(body.get("output_ids", [])),
        "finish_reason": body.get("meta_info", {}).get("finish_reason"),
    }


def probe_completions(router: str, n: int = N_TOKENS) -> Obs:
    r = http(
        "POST",
        router + "/v1/completions",
        {"model": "default", "prompt": prompt_text(), "max_tokens": n, "ignore_eos": True},
    )
    body = json.loads(r.body) if r.status == 200 else {}
    choice = (body.get("choices") or [{}])[0]
    usage = body.get("usage") or {}
    return {
        "status": r.status,
        "content_type": r.content_type,
        "body": shape(body),
        "object": body.get("object"),
        "finish_reason": choice.get("finish_reason"),
        "completion_tokens": usage.get("completion_tokens"),
    }


def probe_completions_stream(router: str, n: int = N_TOKENS) -> Obs:
    r = http(
        "POST",
        router + "/v1/completions",
        {"model": "default", "prompt": prompt_text(), "max_tokens": n, "ignore_eos": True, "stream": True},
    )
    events = sse_events(r.body)
    chunks = [e for e in events if isinstance(e, dict)]
    reasons = [(c.get("choices") or [{}])[0].get("finish_reason") for c in chunks]
    return {
        "status": r.status,
        "content_type": r.content_type,
        **_stream_summary(events),
        "object": sorted({c.get("object") for c in chunks}),
        "finish_reason_before_last": sorted({json.dumps(x) for x in reasons[:-1]}),
        "finish_reason_last": reasons[-1] if reasons else None,
    }


def _context_length(worker: str) -> int:
    info = json.loads(http("GET", worker + "/server_info").body)
    return int(info["context_length"])


def probe_too_long_stream(router: str, worker: str) -> Obs:
    """A prompt longer than the context length, streamed: HTTP 200, then an error event."""
    n = _context_length(worker) + 10
    r = http(
        "POST",
        router + "/generate",
        {
            "input_ids": prompt_ids(n),
            "stream": True,
            "sampling_params": {"max_new_tokens": 4, "ignore_eos": True},
        },
    )
    events = sse_events(r.body)
    errors = [e["error"] for e in events if isinstance(e, dict) and "error" in e]
    return {
        "status": r.status,
        "content_type": r.content_type,
        "events": [e if e == "[DONE]" else shape(e) for e in events],
        "messages": [e.get("message") for e in errors if isinstance(e, dict)],
    }


def probe_too_long(router: str, worker: str) -> Obs:
    """The same, not streamed: an HTTP error with a JSON error body."""
    n = _context_length(worker) + 10
    r = http(
        "POST",
        router + "/generate",
        {"input_ids": prompt_ids(n), "sampling_params": {"max_new_tokens": 4, "ignore_eos": True}},
    )
    return {
        "status": r.status,
        "content_type": r.content_type,
        "body": body_shape(r),
        "message": _error_message(r),
    }


def probe_router(router: str) -> Obs:
    """The router's own view of the workers (it depends on what the workers answered)."""
    out: Obs = {}
    for path in ("/readiness", "/workers", "/v1/models", "/get_model_info"):
        r = http("GET", router + path)
        out[path] = {"status": r.status, "body": body_shape(r)}
    workers = json.loads(http("GET", router + "/workers").body)
    listed = workers.get("workers", []) if isinstance(workers, dict) else []
    out["worker_fields"] = sorted(_worker_fields(w) for w in listed)
    return out


def _worker_fields(w: dict[str, Any]) -> list[Any]:
    """The values in /workers that follow from what a worker answered."""
    meta = w.get("metadata") or {}
    return [
        w.get("worker_type"),
        w.get("is_healthy"),
        w.get("connection_mode"),
        "bootstrap_port" in w,
        meta.get("disaggregation_mode"),
        meta.get("load_balance_method"),
    ]


# ---------------------------------------------------------------------------------------------
# All probes against one PD pair
# ---------------------------------------------------------------------------------------------


@dataclass
class Pair:
    router: str
    prefill: str
    decode: str


def observe_all(pair: Pair, startup: Obs | None = None) -> dict[str, Obs]:
    """Every probe against one running pair, in an order that leaves traffic behind before the
    metrics are read."""
    obs: dict[str, Obs] = {}
    if startup is not None:
        obs["startup"] = startup
    obs["health"] = {"prefill": probe_health(pair.prefill), "decode": probe_health(pair.decode)}
    obs["info"] = {"prefill": probe_info(pair.prefill), "decode": probe_info(pair.decode)}
    obs["generate_stream"] = probe_generate_stream(pair.router)
    obs["generate"] = probe_generate(pair.router)
    obs["completions"] = probe_completions(pair.router)
    obs["completions_stream"] = probe_completions_stream(pair.router)
    obs["too_long_stream"] = probe_too_long_stream(pair.router, pair.decode)
    obs["too_long"] = probe_too_long(pair.router, pair.decode)
    obs["decode_without_room"] = probe_decode_without_room(pair.decode)
    obs["metrics"] = {"prefill": probe_metrics(pair.prefill), "decode": probe_metrics(pair.decode)}
    obs["router"] = probe_router(pair.router)
    return obs


PROBES = (
    "startup",
    "health",
    "info",
    "generate_stream",
    "generate",
    "completions",
    "completions_stream",
    "too_long_stream",
    "too_long",
    "decode_without_room",
    "metrics",
    "router",
)


# ---------------------------------------------------------------------------------------------
# Comparing observations
# ---------------------------------------------------------------------------------------------

ABSENT = "<absent>"
ANY = "<any>"


@dataclass(frozen=True)
class Difference:
    path: str
    sglang: Any
    sim: Any

    def __str__(self) -> str:
        return f"{self.path}: sglang={self.sglang!r} sim={self.sim!r}"


def flatten(obs: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted path: leaf}; a list holding one object (a merged list shape) is entered as [*]."""
    if isinstance(obs, dict) and obs:
        out: dict[str, Any] = {}
        for k, v in obs.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obs, list) and len(obs) == 1 and isinstance(obs[0], dict):
        return flatten(obs[0], prefix + "[*]")
    return {prefix: obs}


def diff(sglang: Any, sim: Any) -> list[Difference]:
    a, b = flatten(sglang), flatten(sim)
    return [
        Difference(p, a.get(p, ABSENT), b.get(p, ABSENT))
        for p in sorted(a.keys() | b.keys())
        if a.get(p, ABSENT) != b.get(p, ABSENT)
    ]


def glob_match(pattern: str, path: str) -> bool:
    """``*`` matches any run of characters (dots and brackets too); nothing else is special."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), path) is not None


@dataclass(frozen=True)
class Known:
    """A difference kept on purpose: in ``probe``, paths matching one of ``paths`` (globs, see
    glob_match) where SGLang shows ``sglang`` and the sim ``sim`` (ANY: anything) — except
    paths matching ``unless``."""

    probe: str
    paths: tuple[str, ...]
    sglang: Any
    sim: Any
    why: str
    unless: tuple[str, ...] = ()

    def covers(self, probe: str, d: Difference) -> bool:
        return (
            probe == self.probe
            and any(glob_match(p, d.path) for p in self.paths)
            and not any(glob_match(u, d.path) for u in self.unless)
            and self.sglang in (ANY, d.sglang)
            and self.sim in (ANY, d.sim)
        )


# Server-info keys the sim must report as SGLang does (the router, pytest-pd and users read them).
SERVER_INFO_KEYS = (
    "model_path",
    "tokenizer_path",
    "served_model_name",
    "disaggregation_mode",
    "disaggregation_bootstrap_port",
    "disaggregation_transfer_backend",
    "tp_size",
    "pp_size",
    "dp_size",
    "context_length",
    "chunked_prefill_size",
    "page_size",
    "max_running_requests",
    "max_total_tokens",
    "max_total_num_tokens",
    "max_req_input_len",
    "load_balance_method",
    "enable_metrics",
    "version",
    "internal_states[*].last_gen_throughput",
    "internal_states[*].effective_max_running_requests_per_dp",
)

# Metric families the sim must export as SGLang does (same type, same label names).
CORE_METRICS = (
    "num_running_reqs",
    "num_queue_reqs",
    "gen_throughput",
    "token_usage",
    "cache_hit_rate",
    "num_used_tokens",
    "max_total_num_tokens",
    "context_len",
    "page_size",
    "num_prefill_bootstrap_queue_reqs",
    "num_prefill_inflight_queue_reqs",
    "num_decode_prealloc_queue_reqs",
    "num_decode_transfer_queue_reqs",
    "queue_time_seconds",
    "per_stage_req_latency_seconds",
    "prefill_effective_tokens",
    "kv_transfer_alloc_ms",
    "kv_transfer_bootstrap_ms",
    "kv_transfer_latency_ms",
    "kv_transfer_speed_gb_s",
    "kv_transfer_total_mb",
    "prompt_tokens",
    "generation_tokens",
    "num_requests",
    "e2e_request_latency_seconds",
    "time_to_first_token_seconds",
    "inter_token_latency_seconds",
    "request_time_per_output_token_seconds",
    "prompt_tokens_histogram",
    "generation_tokens_histogram",
    "uncached_prompt_tokens_histogram",
)

KNOWN_DIFFERENCES: list[Known] = [
    # -- /server_info, /get_server_info
    Known(
        "info",
        ("*server_info.body.*",),
        ANY,
        ABSENT,
        "SGLang dumps all ~450 ServerArgs (most about GPUs, kernels, LoRA, speculative decoding) "
        "plus startup/memory stats; the sim reports the flags it parses and the fields that are "
        "read (SERVER_INFO_KEYS)",
        unless=tuple(f"*server_info.body.{k}" for k in SERVER_INFO_KEYS),
    ),
    Known(
        "info",
        ("*server_info.body.simulated", "*server_info.body.sim.*"),
        ABSENT,
        ANY,
        "marks a simulated worker and shows its model parameters (pytest-pd reports them)",
    ),
    Known(
        "info",
        tuple(
            f"*server_info.body.{where}disaggregation_{flag}"
            for where in ("", "internal_states[*].")
            for flag in ("prefill_pp", "decode_tp", "decode_dp")
        ),
        ABSENT,
        ANY,
        "flags the sim accepts; SGLang 0.5.23 no longer lists them in server_info (older "
        "versions did, and tests read disaggregation_prefill_pp)",
    ),
    # -- /model_info, /get_model_info (also proxied by the router)
    Known(
        "info",
        ("*model_info.body.embedding*",),
        ANY,
        ABSENT,
        "SGLang's embedding-capability block; the sim serves generation only",
    ),
    Known(
        "router",
        ("/get_model_info.body.embedding*",),
        ANY,
        ABSENT,
        "the router proxies a worker's model info: the embedding block, as above",
    ),
    # -- /metrics
    Known(
        "metrics",
        ("*.families.*",),
        ANY,
        ABSENT,
        "SGLang exports ~85 families (speculative decoding, CUDA graphs, memory, DP attention, "
        "SWA/mamba caches, HTTP, process CPU, …); the sim exports those its model has values "
        "for (CORE_METRICS)",
        unless=tuple(f"*.families.sglang:{m}.*" for m in CORE_METRICS),
    ),
    Known(
        "metrics",
        (
            "decode.families.sglang:kv_transfer_latency_ms.*",
            "decode.families.sglang:kv_transfer_speed_gb_s.*",
        ),
        ABSENT,
        ANY,
        "SGLang measures the transfer on the prefill (histograms there, as the sim has too); the "
        "sim also models it on the decode side and keeps the last transfer as decode gauges",
    ),
]


def unexplained(probe: str, sglang: Any, sim: Any) -> list[Difference]:
    """The differences between two observations of ``probe`` that no Known entry explains."""
    return [d for d in diff(sglang, sim) if not any(k.covers(probe, d) for k in KNOWN_DIFFERENCES)]


def load_recorded() -> dict[str, Obs]:
    return json.loads(SHAPES_FILE.read_text())


def save_recorded(obs: dict[str, Obs]) -> None:
    SHAPES_FILE.parent.mkdir(parents=True, exist_ok=True)
    SHAPES_FILE.write_text(json.dumps(obs, indent=1, sort_keys=True) + "\n")
