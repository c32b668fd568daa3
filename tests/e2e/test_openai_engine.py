"""`pytest-pd bench` against an OpenAI-compatible engine that is not SGLang: Hugging Face's
`transformers serve` (from the real-engine environment, `make real-sglang`) serving the tiny Llama
on this CPU, over `/v1/completions` and `/v1/chat/completions`.

That server is strict and different in the ways users meet: it has no `/generate`, its `GET
/v1/models` fails (HTTP 500) without a model hub cache, it refuses unknown request fields (HTTP 422
for `ignore_eos`), honours only `max_tokens` on chat, sends no per-chunk usage and ends its streams
without `data: [DONE]`. The bench must pick the API itself and say why, name the option when
`ignore_eos` is refused, and with that option complete every request with exact token counts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, Proc, free_port, group_alive, wait_ok

pytestmark = pytest.mark.real_sglang

# The tiny model's tokenizer has no chat template; this one makes the chat API's input length
# predictable (the client applies it too and checks the server's prompt_tokens against it).
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
N, INPUT_LEN, OUTPUT_LEN = 16, 200, 32


@pytest.fixture(scope="module")
def engine(real_sglang: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, model folder) of a running `transformers serve`; stopped afterwards."""
    work = tmp_path_factory.mktemp("transformers-serve")
    model = work / "tiny-llama-chat"
    shutil.copytree(real_sglang / "tiny-llama", model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHAT_TEMPLATE}))
    port = free_port()
    serve = real_sglang / "venv" / "bin" / "transformers"
    argv = ["env", "HF_HUB_OFFLINE=1", f"HF_HOME={work / 'hf-home'}", "OMP_NUM_THREADS=1"]
    argv += [str(serve), "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    proc = Proc("transformers-serve", argv, work)
    try:
        wait_ok(f"http://127.0.0.1:{port}/health", [proc], timeout=180)
        yield f"http://127.0.0.1:{port}", model
    finally:
        proc.stop()
        assert not group_alive(proc.p.pid), "transformers serve left processes running"


def bench(
    engine: tuple[str, Path], tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict]:
    url, model = engine
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest_pd.cli", "bench", "--tokenizer-path", str(model)]
        + ["--port", url.rsplit(":", 1)[1], "--parallel", "4", "--number", str(N)]
        + ["--input-length", str(INPUT_LEN), "--output-length", str(OUTPUT_LEN), "--no-progress"]
        + ["--output-json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    return done, (json.loads(out.read_text()) if out.exists() else {})


def test_refused_ignore_eos_names_the_option_after_an_explained_api_choice(engine, tmp_path):
    done, _ = bench(engine, tmp_path)
    text = done.stdout + done.stderr
    assert done.returncode == 2, text
    assert "api: completions (POST /generate is not served (HTTP 404)" in text, text
    assert "but POST /v1/completions answered a 1-token probe" in text, text
    assert "HTTP 422" in text and "ignore_eos" in text, text
    assert "the server rejects ignore_eos: run without it (pytest-pd bench --disable-ignore-eos" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_every_request_completes_with_exact_token_counts(engine, tmp_path, api):
    done, record = bench(engine, tmp_path, "--api", api, "--disable-ignore-eos")
    assert done.returncode == 0, done.stdout + done.stderr
    m = record["metrics"]
    assert m["completed"] == N and m["failed"] == 0, m
    assert m["output_len_mismatches"] == 0 and m["input_len_mismatches"] == 0
    assert m["input_len_unchecked"] == 0  # the chat template lets the client predict the length
    assert m["total_output_tokens"] == N * OUTPUT_LEN
    per_prompt = INPUT_LEN if api == "completions" else INPUT_LEN + 13  # the template's 13 tokens
    assert m["total_input_tokens"] == N * per_prompt
    # no per-chunk usage from this server: each chunk's tokens are counted with the tokenizer
    assert m["token_count_source"] == "tokenizer"
    assert 0 < m["mean_ttft_ms"] and 0 < m["mean_tpot_ms"] < m["mean_e2e_latency_ms"]
