"""The router's /workers gate against a real router of each kind: a worker the router has
registered but marked unhealthy is named in the bring-up error, with the counts per role."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from pytest_pd.cluster import router_workers, routers
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.cluster.topology import Topology
from pytest_pd.errors import BringUpError
from tests.helpers import SIM_MODEL, SimPD, assert_nothing_left, sim_cluster_copy, start_pd

# The router re-checks its workers every second, marks one unhealthy at its first failed check and
# healthy again only after 1000 good ones: a worker paused for a few seconds stays unhealthy.
FLAKY_HEALTH = [
    "--health-check-interval-secs",
    "1",
    "--health-check-timeout-secs",
    "1",
    "--health-failure-threshold",
    "1",
    "--health-success-threshold",
    "1000",
]


def attach_file(pd: SimPD, kind: str, folder: Path) -> Path:
    """A ``launcher: attach`` cluster file for the workers and router ``pd`` started by hand."""
    port = lambda url: int(url.rsplit(":", 1)[1])  # noqa: E731
    data = {
        "name": "attached",
        "launcher": "attach",
        "engine": "sim",
        "model": {"path": str(SIM_MODEL)},
        "hosts": {"local": {"address": "127.0.0.1"}},
        "prefill": [{"host": "local", "port": port(pd.prefill), "bootstrap_port": pd.boot}],
        "decode": [{"host": "local", "port": port(pd.decode)}],
        "router": {"kind": kind, "port": port(pd.router)},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "attached.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def wait_until_unhealthy(pd: SimPD, timeout: float = 30.0) -> None:
    expected = [("prefill", pd.prefill), ("decode", pd.decode)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = router_workers.probe(pd.router + "/workers", expected)
        if "is_healthy=false" in view.text:
            return
        time.sleep(0.2)
    raise AssertionError(f"the router never marked the paused decode unhealthy: {view.text}")


# the kinds that front SGLang-protocol workers (the simulator); vllm-router speaks vLLM's PD and
# is installed with vLLM (its gate is covered by the real vLLM tier)
SIM_ROUTERS = [k for k in routers.names() if routers.KINDS[k].bootstrap_ports]


@pytest.mark.parametrize("kind", SIM_ROUTERS)
def test_registered_but_unhealthy_worker_fails_bring_up_naming_it(kind, tmp_path):
    # smg drains for up to its grace period on SIGTERM (5 s here with idle keep-alive probes)
    grace = ["--shutdown-grace-period-secs", "1"] if kind == "smg" else []
    pd = start_pd(tmp_path, router_module=routers.KINDS[kind].module, router_args=[*FLAKY_HEALTH, *grace])
    try:
        path = attach_file(pd, kind, tmp_path / "clusters")
        spec = load_cluster(str(path), path.parent)
        Topology(spec, tmp_path / "run-ok", say=lambda _: None).up()  # all healthy: passes

        decode = next(p for p in pd.procs if p.name == "decode")
        os.kill(decode.p.pid, signal.SIGSTOP)
        try:
            wait_until_unhealthy(pd)
        finally:
            os.kill(decode.p.pid, signal.SIGCONT)  # answers its /health again; the router still says no

        with pytest.raises(BringUpError) as err:
            Topology(spec, tmp_path / "run-bad", say=lambda _: None).up()
        message = str(err.value)
        assert (
            "router sees 1 of 1 prefill and 0 of 1 decode workers healthy: "
            f"{pd.decode} (decode) is_healthy=false (from {pd.router}/workers)"
        ) in message, message
        assert "fix any worker named above" in message
    finally:
        pd.stop()


def test_bring_up_times_out_naming_the_workers_the_router_has_not_registered(tmp_path):
    """A managed bring-up (launcher: local) whose router (smg, told to wait 60 s before it first
    looks at its workers) does not register them within readiness_timeout_s."""
    path = sim_cluster_copy("sim-tp8", tmp_path / "clusters", baseline=None)
    data = yaml.safe_load(path.read_text())
    data["router"].update(
        kind="smg",
        readiness_timeout_s=3,
        # a 1 s drain on SIGTERM (smg's default grace period keeps teardown waiting ~5 s)
        extra_args=[
            *data["router"]["extra_args"],
            "--worker-startup-delay",
            "60",
            "--shutdown-grace-period-secs",
            "1",
        ],
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    spec = load_cluster(str(path), path.parent)
    topology = Topology(spec, tmp_path / "runs" / "r", say=lambda _: None)
    started = time.monotonic()
    with pytest.raises(BringUpError) as err:
        topology.up()
    assert time.monotonic() - started < 60
    message = str(err.value)
    prefill, decode = (spec.server_url(spec.servers(r)[0]) for r in ("prefill", "decode"))
    assert f"router on prefill-node did not become ready within 3 s: {spec.router_url}/readiness" in message
    assert (
        "router sees 0 of 1 prefill and 0 of 1 decode workers healthy: "
        f"{prefill} (prefill) is not registered; {decode} (decode) is not registered "
        f"(from {spec.router_url}/workers)"
    ) in message, message
    assert "Raise router.readiness_timeout_s" in message
    assert not topology.running
    assert_nothing_left(tmp_path / "runs")
