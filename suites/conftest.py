"""What the shipped suites share: the greedy answer of a split prefill server.

When one of the clusters in ``ASKED`` comes up, before any workload runs on it, it is asked one
greedy question (``data/tiny-llama-greedy.json``: token ids to the router's ``/generate``,
temperature 0) and its answer is kept for ``test_pd_parallel.py``, which compares it with the
answer of one SGLang process (TP=1, PP=1) recorded in the same file. Asking at bring-up costs no
extra bring-up: the suite's workloads bring each cluster up anyway.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_pd.http_get import post_json

GREEDY: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "tiny-llama-greedy.json").read_text())
ASKED = ("cpu-pp2", "cpu-tp2")
ANSWERS = pytest.StashKey[dict[str, list[int]]]()


def greedy_answer(router_url: str) -> list[int]:
    """The output token ids of the greedy question, asked at ``router_url``."""
    sampling = {"temperature": 0, "max_new_tokens": len(GREEDY["output_ids"]), "ignore_eos": True}
    body = {"input_ids": GREEDY["input_ids"], "sampling_params": sampling}
    status, answer = post_json(f"{router_url}/generate", body, timeout=120)
    if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("output_ids"), list):
        raise AssertionError(f"the greedy question to {router_url}/generate got {status}: {answer!r:.300}")
    return [int(t) for t in answer["output_ids"]]


def pytest_pd_cluster_up(config: pytest.Config, topology: Any) -> None:
    if topology.spec.name in ASKED:
        config.stash.setdefault(ANSWERS, {})[topology.spec.name] = greedy_answer(topology.router_url)


@pytest.fixture
def greedy_answers(pytestconfig: pytest.Config) -> dict[str, list[int]]:
    """The greedy answer of each cluster in ``ASKED`` brought up in this session, by name."""
    return pytestconfig.stash.setdefault(ANSWERS, {})
