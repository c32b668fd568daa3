"""Which API a server serves, for ``pytest-pd bench`` without ``--api``: a 1-token ``/generate``
probe (SGLang's native API: token-id prompts, exact lengths, the cheapest to drive), then ``GET
/v1/models`` or a 1-token ``/v1/completions`` (an OpenAI-compatible API), with the reason for the
choice in words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_pd.http_get import get_json, post_json

from .spec import API_COMPLETIONS, API_GENERATE, WorkloadError

PROBE_TIMEOUT_S = 30.0
GENERATE_PROBE = {"input_ids": [1, 2, 3, 4], "sampling_params": {"max_new_tokens": 1, "temperature": 0}}


@dataclass(frozen=True)
class ApiChoice:
    api: str
    reason: str


def _one_token(url: str, body: dict[str, Any], counts_in: str, timeout: float) -> str | None:
    """None when a 1-token POST to ``url`` answered a JSON object whose ``counts_in`` part holds
    an int ``completion_tokens``, else what happened instead."""
    try:  # the whole answer within ``timeout``: a server that trickles it is given up on
        status, answer = post_json(url, body, timeout)
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if status >= 400:
        return f"HTTP {status}"
    part = answer.get(counts_in) if isinstance(answer, dict) else None
    if not isinstance(part, dict) or not isinstance(part.get("completion_tokens"), int):
        return f"an answer without {counts_in}.completion_tokens"
    return None


def probe_generate(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``POST /generate`` answered a 1-token request with SGLang's completion count,
    else what happened instead."""
    return _one_token(base_url.rstrip("/") + "/generate", GENERATE_PROBE, "meta_info", timeout)


def probe_models(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``GET /v1/models`` listed a model, else what happened instead."""
    data = get_json(base_url.rstrip("/") + "/v1/models", timeout=timeout)
    if "error" in data and not data.get("data"):
        return str(data["error"])
    models = data.get("data")
    if not isinstance(models, list) or not models:
        return "no model listed"
    return None


def probe_completions(base_url: str, model: str | None, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``POST /v1/completions`` answered a 1-token request (naming ``model`` when
    given; a server serving one model takes none) with its usage, else what happened instead."""
    probe: dict[str, Any] = {"prompt": "Hello", "max_tokens": 1, "temperature": 0}
    if model:
        probe["model"] = model
    return _one_token(base_url.rstrip("/") + "/v1/completions", probe, "usage", timeout)


def _timed_out(failure: str) -> bool:
    """Whether a probe's failure was the server not answering in time (a refused connection
    fails at once, and so would every request: the run then says so per request)."""
    return failure.startswith("TimeoutError:")


def choose_api(base_url: str, timeout: float = PROBE_TIMEOUT_S, model: str | None = None) -> ApiChoice:
    """``generate`` when ``/generate`` works; else ``completions`` when ``GET /v1/models`` lists a
    model or, where it does not (``transformers serve`` may answer it with HTTP 500), a 1-token
    ``POST /v1/completions`` works; else ``generate`` (the default), saying that no probe
    succeeded, unless all three timed out: then :class:`WorkloadError` (measuring would only time
    out again). Each probe gets ``timeout`` for its whole answer: three at most."""
    gen = probe_generate(base_url, timeout)
    if gen is None:
        return ApiChoice(
            API_GENERATE,
            "POST /generate answered a 1-token probe with SGLang's meta_info; token-id prompts there "
            "have exact lengths; pass --api to choose another",
        )
    openai_hint = (
        "the OpenAI completions API, with exact-length text prompts; pass --api chat for /v1/chat/completions"
    )
    models = probe_models(base_url, timeout)
    if models is None:
        return ApiChoice(
            API_COMPLETIONS,
            f"POST /generate is not served ({gen}) but GET /v1/models listed a model: {openai_hint}",
        )
    completions = probe_completions(base_url, model, timeout)
    if completions is None:
        return ApiChoice(
            API_COMPLETIONS,
            f"POST /generate is not served ({gen}) and GET /v1/models failed ({models}), but POST "
            f"/v1/completions answered a 1-token probe: {openai_hint}",
        )
    failures = f"POST /generate: {gen}; GET /v1/models: {models}; POST /v1/completions: {completions}"
    if all(_timed_out(f) for f in (gen, models, completions)):
        raise WorkloadError(
            f"{base_url} answered none of the three API probes within {timeout:g} s each ({failures}). "
            "Check --ip/--port and that the server is up and not stuck; a server that is only slow "
            "takes a longer --request-timeout, or --api to skip the probes."
        )
    return ApiChoice(
        API_GENERATE,
        f"no probe succeeded ({failures}); trying generate, the default; check --ip/--port, or pass --api",
    )
