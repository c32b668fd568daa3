"""`pytest-pd up`: holds a cluster for manual use and tears it down on Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import assert_nothing_left, sim_cluster_copy


@pytest.mark.parametrize(
    ("sig", "times"),
    [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 3)],
    ids=["int", "term", "int-x3"],
)
def test_up_serves_then_tears_down_on_signal(tmp_path: Path, sig: signal.Signals, times: int):
    """Also an impatient user: Ctrl-C pressed again during teardown must not orphan servers."""
    cluster = sim_cluster_copy("sim-tp8", tmp_path / "clusters")
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "pytest-pd"), "up", str(cluster), "--run-dir", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()  # printed once the router is ready
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read()
        body = json.dumps(
            {"input_ids": list(range(10, 110)), "sampling_params": {"max_new_tokens": 4, "ignore_eos": True}}
        ).encode()
        req = urllib.request.Request(url + "/generate", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read())["meta_info"]["completion_tokens"] == 4
        for _ in range(times):
            proc.send_signal(sig)
            time.sleep(0.05)
        proc.wait(30)
        assert "torn down" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_nothing_left(runs)
