"""Which API a server serves, for ``pytest-pd bench`` without ``--api``: a 1-token ``/generate``
probe (SGLang's native API: token-id prompts, exact lengths, the cheapest to drive) and ``GET
/v1/models`` (an OpenAI-compatible API), with the reason for the choice in words."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from pytest_pd.http_get import get_json

from .spec import API_COMPLETIONS, API_GENERATE

PROBE_TIMEOUT_S = 30.0
GENERATE_PROBE = {"input_ids": [1, 2, 3, 4], "sampling_params": {"max_new_tokens": 1, "temperature": 0}}


@dataclass(frozen=True)
class ApiChoice:
    api: str
    reason: str


def probe_generate(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``POST /generate`` answered a 1-token request with a completion count, else
    what happened instead."""
    req = urllib.request.Request(
        base_url.rstrip("/") + "/generate",
        data=json.dumps(GENERATE_PROBE).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the user's server)
            body = json.loads(resp.read(1 << 20))
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    meta = body.get("meta_info") if isinstance(body, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("completion_tokens"), int):
        return "an answer without meta_info.completion_tokens"
    return None


def probe_models(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``GET /v1/models`` listed a model, else what happened instead."""
    data = get_json(base_url.rstrip("/") + "/v1/models", timeout=timeout)
    if "error" in data and not data.get("data"):
        return str(data["error"])
    models = data.get("data")
    if not isinstance(models, list) or not models:
        return "no model listed"
    return None


def choose_api(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> ApiChoice:
    """``generate`` when ``/generate`` works, else ``completions`` when ``/v1/models`` lists a
    model, else ``generate`` (the default), saying that neither probe succeeded."""
    gen = probe_generate(base_url, timeout)
    models = probe_models(base_url, timeout)
    seen_models = "GET /v1/models listed a model" if models is None else f"GET /v1/models: {models}"
    if gen is None:
        return ApiChoice(
            API_GENERATE,
            f"POST /generate answered a 1-token probe with SGLang's meta_info ({seen_models}); "
            "token-id prompts there have exact lengths; pass --api to choose another",
        )
    if models is None:
        return ApiChoice(
            API_COMPLETIONS,
            f"POST /generate is not served ({gen}) but GET /v1/models listed a model: the "
            "OpenAI completions API, with exact-length text prompts; pass --api chat for "
            "/v1/chat/completions",
        )
    return ApiChoice(
        API_GENERATE,
        f"neither probe succeeded (POST /generate: {gen}; {seen_models}); trying generate, the "
        "default; check --ip/--port, or pass --api",
    )
