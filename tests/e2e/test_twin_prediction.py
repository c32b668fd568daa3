"""The twin's prediction as a test signal, in real sessions on a simulated cluster: a cluster file
names a profile (``twin: {profile: FILE}``), each run stores the profile's prediction beside what it
measured, the report says predicted vs measured, and ``@pytest.mark.pd_prediction`` passes a
profile that describes the cluster and fails one that does not, naming the statistic."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from pytest_pd.cluster.engines.sim.profile import profile_of, save_profile
from pytest_pd.sim.model import SimParams
from tests.helpers import PREDICTION_SUITE, run_session, sim_cluster_copy

pytestmark = pytest.mark.serial  # measured runs against predictions


@pytest.fixture
def twin_cluster(pytester: pytest.Pytester):
    folder = pytester.path / "clusters"
    path = sim_cluster_copy("sim-tp8", folder, sim={"speedup": 2})
    data = yaml.safe_load(path.read_text())
    data.pop("baseline", None)
    data["twin"] = {"profile": "profiles/twin.yaml"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    pytester.makepyfile(test_suite=PREDICTION_SUITE)
    return folder


def write_profile(folder, params: SimParams) -> None:
    save_profile(profile_of(params, "twin"), folder / "profiles" / "twin.yaml")


def test_a_profile_that_describes_the_cluster_passes(pytester, twin_cluster):
    write_profile(twin_cluster, SimParams())  # what the simulated cluster runs
    result, out = run_session(pytester, twin_cluster, cluster="sim-tp8")
    text = result.stdout.str()
    assert result.ret == 0, text
    assert "note: sim-tp8: predicted vs measured (profile twin.yaml): mean_ttft_ms" in text, text
    (stored,) = (json.loads(p.read_text()) for p in (out / "results").glob("*.json"))
    stats = stored["prediction"]["stats"]
    assert stored["prediction"]["profile"].endswith("profiles/twin.yaml")
    assert abs(stats["mean_ttft_ms"]["error"]) < 0.25 and stats["mean_ttft_ms"]["measured"] > 0


def test_a_profile_that_does_not_fails_naming_the_statistic(pytester, twin_cluster):
    write_profile(
        twin_cluster, dataclasses.replace(SimParams(), prefill_tokens_per_s=3000.0, kv_bootstrap_s=2.0)
    )
    result, _ = run_session(pytester, twin_cluster, cluster="sim-tp8")
    text = result.stdout.str()
    assert result.ret != 0, text
    assert "prediction missed: mean_ttft_ms predicted" in text and "bound ±25 %" in text, text
    assert "Traceback" not in text


def test_a_missing_profile_is_a_cluster_file_error(pytester, twin_cluster):
    result, _ = run_session(pytester, twin_cluster, cluster="sim-tp8")
    text = result.stdout.str() + result.stderr.str()
    assert result.ret != 0
    assert "twin.profile: cannot read profile" in text and "twin.yaml" in text, text
