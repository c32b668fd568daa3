"""Fixtures shared by every tier (tests/unit, tests/integration, tests/e2e); helpers live in
tests/helpers. Each test is marked with its tier (unit, integration, e2e) by its folder, and a
real-engine test ``serial`` as well."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SGLANG_CPU_HOME, VLLM_CPU_HOME, sim_cluster_copy

TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(tier)
        if item.get_closest_marker("real_sglang") or item.get_closest_marker("real_vllm"):
            item.add_marker("serial")  # a real engine spins both cores


@pytest.fixture(scope="session", autouse=True)
def own_lock_dir(tmp_path_factory: pytest.TempPathFactory):
    """The host locks of this test process in its own folder (``$PYTEST_PD_LOCK_DIR``, which the
    sessions it starts inherit): the other pytest-xdist worker's topologies, on other free ports,
    do not make it wait, and neither does a user's run on this machine. Tests of the lock itself
    set their own folder."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTEST_PD_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
        yield


@pytest.fixture(scope="session")
def real_sglang() -> Path:
    """The real-SGLang environment's folder (venv/, tiny-llama/); fails when it is not set up."""
    if not (SGLANG_CPU_HOME / ".ready").is_file():
        pytest.fail(
            f"real SGLang is not set up in {SGLANG_CPU_HOME}: run `make real-sglang` once "
            "(about 6 minutes), or deselect this tier with -m 'not real_sglang'",
            pytrace=False,
        )
    return SGLANG_CPU_HOME


@pytest.fixture(scope="session")
def real_vllm() -> Path:
    """The real-vLLM environment's folder (venv/, tiny-llama/); fails when it is not set up."""
    if not (VLLM_CPU_HOME / ".ready").is_file():
        pytest.fail(
            f"real vLLM is not set up in {VLLM_CPU_HOME}: run `make real-vllm` once "
            "(about 3 minutes), or deselect this tier with -m 'not real_vllm'",
            pytrace=False,
        )
    return VLLM_CPU_HOME


@pytest.fixture
def sim_clusters(tmp_path: Path) -> Path:
    """sim-pp2 and its baseline sim-tp8 in a fresh cluster folder, on free ports."""
    folder = tmp_path / "clusters"
    sim_cluster_copy("sim-pp2", folder)
    sim_cluster_copy("sim-tp8", folder)
    return folder


@pytest.fixture(scope="session")
def sshd_farm(tmp_path_factory: pytest.TempPathFactory):
    """Real OpenSSH servers on 127.0.0.2 and 127.0.0.3 (one "host" each), for the SSH tests;
    skips with the reason when sshd cannot be had here."""
    from tests.helpers.sshd import SshdUnavailable, start_farm

    try:
        farm = start_farm(tmp_path_factory.mktemp("sshd"))
    except SshdUnavailable as exc:
        pytest.skip(str(exc))
    yield farm
    farm.stop()


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory: pytest.TempPathFactory):
    """A real one-controller, two-node Slurm on this machine (nodes n1 at 127.0.0.2, n2 at
    127.0.0.3), for the Slurm tests; ``SLURM_CONF`` points this process and the sessions it starts
    at it. Skips with the reason when Slurm cannot be had here."""
    from tests.helpers.slurm import SlurmUnavailable, start_slurm

    try:
        slurm = start_slurm(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as exc:
        pytest.skip(str(exc))
    with pytest.MonkeyPatch.context() as env:
        for name, value in slurm.env.items():
            env.setenv(name, value)
        yield slurm
        slurm.stop()
