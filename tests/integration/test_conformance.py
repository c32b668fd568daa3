"""The simulator held to real SGLang: one set of protocol probes (tests/helpers/conformance.py) run
against a PD pair of each kind, both behind the real sglang-router.

- target ``sim`` (fast tier): the simulated pair's shapes must equal the shapes recorded from
  real SGLang 0.5.23 (tests/data/sglang_0.5.23_shapes.json), except the KNOWN_DIFFERENCES.
- target ``sglang`` (marked real_sglang): the real pair's shapes must equal the simulated pair's,
  except the KNOWN_DIFFERENCES. ``PD_RECORD_SHAPES=1`` rewrites the recorded file from this run.

Each pair is brought up once per module by the harness itself (same cluster file, cpu-1p1d, for
both: only the engine and the model differ), probed by every probe at once, and torn down at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.cluster.topology import Topology
from tests.helpers import SIM_MODEL, real_cluster_copy
from tests.helpers import conformance as cf

RECORD = os.environ.get("PD_RECORD_SHAPES") == "1"


def _bring_up_and_observe(path: Path, run_dir: Path) -> dict[str, cf.Obs]:
    """Start the cluster in ``path`` (watching the workers' health from before they listen),
    run every probe, tear everything down; the observations."""
    spec = load_cluster(str(path), path.parent)
    prefill, decode = spec.servers("prefill")[0], spec.servers("decode")[0]
    pair = cf.Pair(spec.router_url, spec.server_url(prefill), spec.server_url(decode))
    with (
        cf.StartupWatch({"prefill": pair.prefill, "decode": pair.decode}) as watch,
        Topology(spec, run_dir, say=lambda _msg: None),
    ):
        startup = watch.finish()  # the topology is up: both workers answered 200 on /health
        return cf.observe_all(pair, startup=startup)


def _sim_cluster(dest: Path) -> Path:
    """cpu-1p1d with the simulator as its engine: the same flags, ports free, the sim's tiny
    model, this interpreter, and its own lock folder (sims never wait for a real cluster)."""
    path = real_cluster_copy("cpu-1p1d", dest, baseline=None)
    data = yaml.safe_load(path.read_text())
    data.update(
        engine="sim",
        model={"path": str(SIM_MODEL), "name": "sim-tiny"},
        hosts={"cpu": {"address": "127.0.0.1", "python": sys.executable, "lock_dir": str(dest / "locks")}},
        sim={"speedup": 20, "startup_delay_s": 1.0},
    )
    for server in (*data["prefill"], *data["decode"]):
        server["health_timeout_s"] = 60
    data["router"].update(startup_timeout_s=60, readiness_timeout_s=90)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def sim_shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, cf.Obs]:
    tmp = tmp_path_factory.mktemp("conformance-sim")
    return _bring_up_and_observe(_sim_cluster(tmp / "clusters"), tmp / "runs")


@pytest.fixture(scope="module")
def sglang_shapes(real_sglang: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, cf.Obs]:
    tmp = tmp_path_factory.mktemp("conformance-sglang")
    obs = _bring_up_and_observe(real_cluster_copy("cpu-1p1d", tmp / "clusters", baseline=None), tmp / "runs")
    if RECORD:
        cf.save_recorded(obs)
    return obs


@pytest.fixture(scope="module")
def recorded() -> dict[str, cf.Obs]:
    return cf.load_recorded()


def _pairs(target: str, request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """(SGLang's observations, the sim's observations) for the target under test."""
    if target == "sim":
        yield request.getfixturevalue("recorded"), request.getfixturevalue("sim_shapes")
    else:
        yield request.getfixturevalue("sglang_shapes"), request.getfixturevalue("sim_shapes")


TARGETS = ["sim", pytest.param("sglang", marks=pytest.mark.real_sglang)]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("probe", cf.PROBES)
def test_conforms(probe: str, target: str, request: pytest.FixtureRequest) -> None:
    for sglang, sim in _pairs(target, request):
        assert probe in sglang, f"no recorded SGLang observation for probe {probe!r}"
        left = cf.unexplained(probe, sglang[probe], sim[probe])
        assert not left, (
            f"{probe}: the simulator differs from SGLang where no known "
            "difference says so:\n" + "\n".join(f"  {d}" for d in left)
        )


def test_known_differences_are_still_real(recorded: dict[str, cf.Obs], sim_shapes: dict[str, cf.Obs]) -> None:
    """Every KNOWN_DIFFERENCES entry still explains something: fixed ones get removed."""
    unused = [
        k
        for k in cf.KNOWN_DIFFERENCES
        if not any(k.covers(k.probe, d) for d in cf.diff(recorded[k.probe], sim_shapes[k.probe]))
    ]
    assert not unused, "known differences that no longer occur:\n" + "\n".join(
        f"  {k.probe} {k.path}" for k in unused
    )


def test_diff_spots_a_changed_shape() -> None:
    """The comparison itself: a missing key, a changed type and an extra key are all reported."""
    a = {"meta": {"id": "str", "n": "int"}, "list": [{"x": "int"}]}
    b = {"meta": {"id": "str", "n": "float", "extra": "null"}, "list": [{"y": "int"}]}
    got = {d.path: (d.sglang, d.sim) for d in cf.diff(a, b)}
    assert got == {
        "meta.n": ("int", "float"),
        "meta.extra": (cf.ABSENT, "null"),
        "list[*].x": ("int", cf.ABSENT),
        "list[*].y": (cf.ABSENT, "int"),
    }
    known = cf.Known("p", ("meta.*",), cf.ANY, cf.ABSENT, "why", unless=("meta.id",))
    assert known.covers("p", cf.Difference("meta.x", "int", cf.ABSENT))
    assert not known.covers("p", cf.Difference("meta.id", "str", cf.ABSENT))
    assert not known.covers("p", cf.Difference("meta.n", "int", "float"))
