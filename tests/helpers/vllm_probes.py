"""Conformance probes for vLLM: what pytest-pd relies on from a vLLM PD pair behind vllm-router,
observed on the real thing and reduced to shapes (tests/helpers/conformance.py's), so that a vLLM
version that changes any of it is caught by name.

pytest-pd relies on (``pytest_pd.cluster.engines.vllm`` and the workload client):
- each server's ``/health`` answering 200 once it serves, ``/version`` naming the version;
- ``POST /reset_prefix_cache`` (with ``VLLM_SERVER_DEV_MODE=1``) emptying the prefix cache;
- the ``vllm:*`` metric families the engine module reads, with the labels it reads them by;
- ``/v1/completions`` through the router, streamed with the body the workload client sends
  (``stream_options.include_usage``): text chunks, then a last chunk whose ``usage`` counts the
  prompt (BOS included) and the output; ``ignore_eos`` honoured;
- a prompt longer than the context refused with an HTTP 4xx and a JSON error body naming why.

``PD_RECORD_SHAPES=1`` with the cross-engine test writes the observations to
``tests/data/vllm_0.32.0_shapes.json``; the fast tier holds the vLLM engine module to that file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers.conformance import Obs, body_shape, http, probe_metrics, shape, sse_events

SHAPES_FILE = Path(__file__).resolve().parents[1] / "data" / "vllm_0.32.0_shapes.json"
OUTPUT_TOKENS = 8


def _completions(router: str, model: str, text: str, max_tokens: int) -> tuple[int | None, str, list[Any]]:
    from pytest_pd.workload.client import request_payload
    from pytest_pd.workload.spec import API_COMPLETIONS, Prompt

    body = request_payload(
        API_COMPLETIONS,
        Prompt(token_ids=[], output_len=max_tokens, text=text),
        max_tokens=max_tokens,
        model=model,
    )
    r = http("POST", router + "/v1/completions", body)
    return r.status, r.content_type, sse_events(r.body) if r.status == 200 else [json.loads(r.body or b"{}")]


def observe(router: str, workers: dict[str, str], model: str, context_length: int) -> dict[str, Obs]:
    """Every probe against one running vLLM pair (``workers``: process name -> URL)."""
    obs: dict[str, Obs] = {}
    for name, url in workers.items():
        role = name.split("-", 1)[0]
        version = http("GET", url + "/version")
        obs[f"{role}.health"] = {"status": http("GET", url + "/health").status}
        obs[f"{role}.version"] = {"status": version.status, "body": body_shape(version)}
        obs[f"{role}.reset_prefix_cache"] = {"status": http("POST", url + "/reset_prefix_cache").status}
    # the prompt " the" * n is n tokens (plus BOS) with the tiny Llama's tokenizer
    status, kind, events = _completions(router, model, " the" * 40, OUTPUT_TOKENS)
    chunks = [e for e in events if isinstance(e, dict)]
    with_usage = [c for c in chunks if c.get("usage")]
    text_chunks = [c for c in chunks if c.get("choices")]
    obs["completions_stream"] = {
        "status": status,
        "content_type": kind,
        "text_chunk": shape(text_chunks[0]) if text_chunks else None,
        "last_chunk": shape(chunks[-1]) if chunks else None,
        "ends_with_done": bool(events) and events[-1] == "[DONE]",
        "usage_last": with_usage[-1]["usage"] if with_usage else None,
        "text_chunks": len(text_chunks),
    }
    status, kind, events = _completions(router, model, " the" * (context_length + 10), 4)
    error = events[0] if events and isinstance(events[0], dict) else {}
    obs["too_long"] = {
        "status": status,
        "content_type": kind,
        "body": shape(error),
        "message": str((error.get("error") or {}).get("message", error.get("message", ""))),
    }
    for name, url in workers.items():  # last: the traffic above is in the histograms
        obs[f"{name.split('-', 1)[0]}.metrics"] = probe_metrics(url)
    return obs


def save(obs: dict[str, Obs]) -> None:
    SHAPES_FILE.write_text(json.dumps(obs, indent=1, sort_keys=True) + "\n")


def load() -> dict[str, Obs]:
    return json.loads(SHAPES_FILE.read_text())
