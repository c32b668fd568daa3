"""An engine from outside pytest-pd: a throwaway package, written and pip-installed into this test's
temporary folder, registers itself under the ``pytest_pd.engines`` entry point and a suite runs on
a cluster file that names it — with nothing of pytest-pd edited. The package is what the README's
"Adding an engine" section shows: one module implementing the Engine protocol, one entry-point line.

The toy engine serves with the simulator's server (the only engine that runs anywhere in seconds)
but renders the command line itself, names its own version and exports no breakdown, so what the
session records can only have come from the toy's own members."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import SIM_MODEL, free_ports, run_session

TOY_ENGINE = '''
"""A third-party pytest-pd engine: "toy", served by pytest-pd's simulator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_pd.cluster import engines


class Toy:
    name = "toy"  # the cluster file's `engine: toy`
    server_module = "pytest_pd.sim"  # python -m MODULE on every prefill and decode node
    distribution = "pytest-pd"  # the PyPI distribution that provides it (pytest-pd doctor)
    image = "example.org/toy:1"  # pytest-pd manifests' default container image
    options_key = "toy"  # its own `toy:` block in the cluster file (top, server_defaults, servers)
    simulated = True  # runs no real model (no GPU to sample; times scaled by time_scale)
    apis = ("generate", "completions", "chat")  # the workload APIs it serves, preferred first

    # the cluster file's server entries -> the command line
    def server_argv(self, spec, role, server, rank, *, python):
        argv = [python, "-m", self.server_module, "--model-path", spec.model_path]
        argv += ["--disaggregation-mode", role]
        if role == "prefill" and server.bootstrap_port is not None:
            argv += ["--disaggregation-bootstrap-port", str(server.bootstrap_port)]
        argv += ["--host", server.listen or spec.host_address(server.node_hosts[rank])]
        argv += ["--port", str(server.port)]
        return argv + self.server_args(engines.options(spec, server)) + list(server.extra_args)

    def exports_metrics(self, server) -> bool:
        return False

    def uses_gpus(self, argv: Sequence[str]) -> bool:
        return False

    # the `toy:` block: checked when the cluster file is read, rendered into the command line
    def server_args(self, options: Mapping[str, Any]) -> list[str]:
        return ["--sim-speedup", str(float(options.get("speedup", 1)))]

    def option_problems(self, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [(key, "unknown toy option; toy takes: speedup") for key in options if key != "speedup"]

    def read_option_files(self, options: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
        return []

    def time_scale(self, options: Mapping[str, Any]) -> float:
        return float(options.get("speedup", 1))

    def spec_problems(self, spec) -> list:
        return [(("decode",), "toy serves one decode server")] if len(spec.decode) > 1 else []

    # endpoints on each server's own URL
    health_path = "/health"
    server_info_path = "/get_server_info"
    flush_cache = None  # no prefix cache to empty

    def version_of(self, info: Mapping[str, Any]) -> str | None:
        return f"toy on {info['version']}" if info.get("version") else None

    # the server's /metrics, in pytest-pd's terms: none here
    gauges: Mapping[str, str] = {}
    pod_flags: Mapping[str, str] = {"bind": "--host"}

    def server_times(self, rows):
        return None

    def prefix_cache_hit_rate(self, rows):
        return None


ENGINE = Toy()
'''

TOY_PYPROJECT = """
[project]
name = "pd-toy-engine"
version = "0.1"

[project.entry-points."pytest_pd.engines"]
toy = "pd_toy_engine:ENGINE"

[tool.setuptools]
packages = ["pd_toy_engine"]
"""

SUITE = """
import pytest
from pytest_pd import Workload

W = Workload(input_len=1000, output_len=20, concurrency=2, num_requests=4)

@pytest.mark.parametrize("pd_workload", [W], ids=lambda w: w.id)
def test_toy_serves(pd_run):
    assert pd_run.candidate.metrics["completed"] == 4
"""


def install_toy(tmp: Path) -> Path:
    """The toy package built and installed into ``tmp/site`` (not into this environment)."""
    src = tmp / "toy"
    (src / "pd_toy_engine").mkdir(parents=True)
    (src / "pd_toy_engine" / "__init__.py").write_text(TOY_ENGINE)
    (src / "pyproject.toml").write_text(TOY_PYPROJECT)
    site = tmp / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*pip, "--target", str(site), str(src)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return site


def toy_cluster(folder: Path) -> None:
    prefill, boot, decode, router = free_ports(4)
    data = {
        "name": "toy-1p1d",
        "launcher": "local",
        "engine": "toy",
        "model": {"path": str(SIM_MODEL), "name": "sim-tiny"},
        "hosts": {"node": {"address": "127.0.0.1"}},
        "toy": {"speedup": 20},  # the engine's own options block
        "server_defaults": {"health_timeout_s": 60},
        "prefill": [{"host": "node", "port": prefill, "bootstrap_port": boot}],
        "decode": [{"host": "node", "port": decode}],
        "router": {"port": router},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy-1p1d.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.timeout(600)
def test_an_engine_installed_from_outside_runs_a_suite(pytester: pytest.Pytester, monkeypatch):
    site = install_toy(pytester.path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    clusters = pytester.path / "clusters"
    toy_cluster(clusters)
    pytester.makepyfile(test_suite=SUITE)

    commands = subprocess.run(
        [sys.executable, "-m", "pytest_pd.cli", "commands", "toy-1p1d", "--cluster-dir", str(clusters)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert commands.returncode == 0, commands.stderr
    assert "-m pytest_pd.sim --model-path" in commands.stdout and "--sim-speedup 20.0" in commands.stdout

    result, out = run_session(pytester, clusters, cluster="toy-1p1d")
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == 0, text
    (stored,) = (json.loads(p.read_text()) for p in (out / "results").glob("*.json"))
    assert stored["cluster"]["engine"] == "toy"
    assert stored["environment"]["engines"] == {
        "prefill-0": "toy on sim (pytest-pd)",
        "decode-0": "toy on sim (pytest-pd)",
    }
    assert stored["ttft_breakdown"] is None and stored["simulated"]["speedup"] == 20.0
    assert "--sim-speedup 20.0" in stored["cluster"]["commands"]

    # the engine's own rules of a cluster file and of its options block, with their lines
    path = clusters / "toy-1p1d.yaml"
    data = yaml.safe_load(path.read_text())
    data["decode"].append({"host": "node", "port": free_ports(1)[0]})
    data["prefill"][0]["toy"] = {"speed": 2}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    bad = subprocess.run(
        [sys.executable, "-m", "pytest_pd.cli", "commands", "toy-1p1d", "--cluster-dir", str(clusters)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "decode: toy serves one decode server" in bad.stderr, bad.stderr
    assert "prefill[0].toy.speed: unknown toy option; toy takes: speedup" in bad.stderr, bad.stderr
