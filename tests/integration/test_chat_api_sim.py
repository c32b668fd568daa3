"""The chat API, the automatic API choice and ignore_eos against real servers: the simulator (its
/v1/chat/completions, with a tokenizer that has its chat template and one without), the CLI's
probe, and the hostile server playing a server that answers 422 to ignore_eos."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_pd.workload import (
    Workload,
    WorkloadError,
    build_prompts,
    load_tokenizer,
    run_problems,
    run_workload,
    run_workload_sync,
    summarize,
)
from pytest_pd.workload.api_probe import choose_api
from tests.helpers import SIM_MODEL, Proc, free_port, pd_cli, sim_argv, wait_ok
from tests.helpers.hostile_server import HostileServer, prompt_for

# the simulator's chat template (sim/openai_api.py), as a tokenizer's jinja template
SIM_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def with_chat_template(folder: Path) -> Path:
    shutil.copytree(SIM_MODEL, folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["chat_template"] = SIM_CHAT_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    argv = sim_argv(SIM_MODEL, "--port", str(port), "--sim-speedup", "200", "--stream-interval", "2")
    p = Proc(f"sim-{port}", argv, tmp_path_factory.mktemp("chat-sim"))
    try:
        wait_ok(f"http://127.0.0.1:{port}/health", [p], timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        p.stop()


def chat_workload(**kw) -> Workload:
    return Workload(
        input_len=300, output_len=12, concurrency=4, num_requests=8, api="chat", request_timeout_s=60.0, **kw
    )


@pytest.mark.parametrize("template", [True, False], ids=["chat-template", "no-template"])
def test_chat_run_checks_input_lengths_with_the_chat_template(sim: str, tmp_path: Path, template: bool):
    folder = with_chat_template(tmp_path / "tok") if template else SIM_MODEL
    tok = load_tokenizer(folder)
    w = chat_workload()
    prompts = build_prompts(tok, w)
    result = run_workload_sync(sim, w, prompts, tokenizer=tok)
    s = summarize(result)
    assert s.completed == 8 and s.failed == 0, [r.error for r in result.records]
    assert s.output_len_mismatches == 0 and s.total_output_tokens == 8 * 12
    assert s.token_count_source == "server per chunk"
    for r in result.records:  # stream interval 2: at most 7 chunks (more tokens when the sim lags)
        assert r.chunk_tokens[0] == 1 and r.chunk_tokens[-1] == 12 and len(r.chunk_tokens) <= 7
    server_counts = [r.prompt_tokens for r in result.records]
    assert all(n > 300 for n in server_counts)  # the template's tokens are counted
    if template:
        assert [len(p) for p in prompts] == server_counts
        assert s.input_len_mismatches == 0 and s.input_len_unchecked == 0
    else:
        assert s.input_len_mismatches == 0 and s.input_len_unchecked == 8
    assert s.total_input_tokens == sum(server_counts)
    assert run_problems(s) == []


def test_auto_api_choice_probes_the_server(sim: str):
    choice = choose_api(sim)
    assert choice.api == "generate" and "POST /generate answered" in choice.reason
    dead = choose_api(f"http://127.0.0.1:{free_port()}", timeout=2)  # refused at once: each request says so
    assert dead.api == "generate" and "no probe succeeded" in dead.reason


@pytest.mark.asyncio
async def test_openai_only_server_gets_completions():
    async with HostileServer() as hostile:  # its /generate streams where a JSON answer is due
        choice = await asyncio.to_thread(choose_api, hostile.url, 5)
    assert choice.api == "completions" and "GET /v1/models listed a model" in choice.reason


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return pd_cli("bench", *args, timeout=120)


def test_bench_without_api_says_what_it_picked_and_chat_works(sim: str, tmp_path: Path):
    port = sim.rsplit(":", 1)[1]
    common = ["--tokenizer-path", str(SIM_MODEL), "--port", port, "--number", "4", "--parallel", "2"]
    common += ["--input-length", "200", "--output-length", "8", "--no-progress"]
    p = bench(*common, "--output-json", str(tmp_path / "auto.json"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "api: generate (POST /generate answered a 1-token probe" in p.stdout
    p = bench(*common, "--api", "chat", "--output-json", str(tmp_path / "chat.json"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "input lengths not checked" in p.stdout
    m = json.loads((tmp_path / "chat.json").read_text())["metrics"]
    assert m["completed"] == 4 and m["input_len_unchecked"] == 4 and m["input_len_mismatches"] == 0
    assert m["token_count_source"] == "server per chunk"


@pytest.mark.asyncio
@pytest.mark.parametrize("api", ["generate", "completions"])
async def test_rejected_ignore_eos_names_the_option(api: str):
    async with HostileServer() as hostile:
        w = Workload(input_len=8, output_len=4, concurrency=1, num_requests=2, api=api, request_timeout_s=5.0)
        prompts = [prompt_for("rejects_ignore_eos"), prompt_for("rejects_ignore_eos", seed=1)]
        with pytest.raises(WorkloadError, match="--disable-ignore-eos") as err:
            await run_workload(hostile.url, w, prompts)  # the warm-up request finds out
        assert "422" in str(err.value)
        honest = Workload(
            input_len=8,
            output_len=4,
            concurrency=1,
            num_requests=2,
            api=api,
            request_timeout_s=5.0,
            ignore_eos=False,
        )
        result = await run_workload(hostile.url, honest, prompts)
    s = summarize(result)
    assert s.completed == 2 and s.output_len_mismatches == 0 and s.total_output_tokens == 8
