"""Calibrating the timing model (twin/calibrate.py) and its profiles (cluster/engines/sim/profile.py), on the
model itself: "measurements" made with hidden parameters that the fit is never given."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_pd.cluster.engines.sim.profile import ProfileError, load_profile, profile_of, save_profile
from pytest_pd.errors import ClusterFileError
from pytest_pd.sim.closed_loop import simulate
from pytest_pd.sim.model import ServerShape, SimParams
from pytest_pd.sim.routing import Topology
from pytest_pd.twin.calibrate import DEFAULT_FIT, NotIdentifiable, calibrate, relative_errors
from pytest_pd.twin.observed import Observed, stats_of
from pytest_pd.twin.requests import Requests
from tests.helpers import REPO

HIDDEN = dataclasses.replace(
    SimParams(),
    prefill_tokens_per_s=12000.0,
    prefill_batch_overhead_s=0.1,
    kv_bootstrap_s=0.4,
    tp_scaling=0.85,
    decode_step_base_s=0.004,
    decode_memory_efficiency=0.35,
)
PP2 = Topology((ServerShape(tp=4, pp=2, chunked_prefill_size=16384),), (ServerShape(tp=8, prefill_pp=2),))
TP8 = Topology((ServerShape(tp=8, chunked_prefill_size=16384),), (ServerShape(tp=8),))


def measured(label: str, topology: Topology, n_in: int, n_out: int, concurrency: int, n: int) -> Observed:
    out = simulate(HIDDEN, topology, [n_in] * n, [n_out] * n, concurrency=concurrency)
    requests = Requests((n_in,) * n, (n_out,) * n, concurrency=concurrency)
    return Observed(label, topology, requests, stats_of(out["requests"], out["duration_s"]))


@pytest.fixture(scope="module")
def fitted():
    return calibrate([measured("pp2", PP2, 6000, 1000, 16, 32), measured("tp8", TP8, 6000, 1000, 16, 32)])


def test_the_fit_reproduces_its_runs(fitted):
    assert set(fitted.fitted) == set(DEFAULT_FIT)
    assert fitted.max_error < 0.03, fitted.errors


def test_the_fit_predicts_held_out_topologies_within_5_percent(fitted):
    held_out = [
        measured(
            "2p1d",
            Topology(
                (ServerShape(tp=4, pp=2, chunked_prefill_size=16384),) * 2,
                (ServerShape(tp=8, prefill_pp=2),),
                "least_load",
            ),
            6000,
            1000,
            16,
            32,
        ),
        measured(
            "tp4-tp4",
            Topology((ServerShape(tp=4, chunked_prefill_size=16384),), (ServerShape(tp=4),)),
            6000,
            1000,
            16,
            32,
        ),
        measured(
            "2p2d",
            Topology((ServerShape(tp=4, chunked_prefill_size=16384),) * 2, (ServerShape(tp=4),) * 2),
            6000,
            1000,
            32,
            64,
        ),
    ]
    errors = relative_errors(fitted.params, held_out)
    for label, per in errors.items():
        for stat in ("mean_ttft_ms", "mean_tpot_ms", "output_throughput"):
            assert abs(per[stat]) < 0.05, (label, stat, per)
    # and the seed calibration it started from would not have: the fit learned something
    before = relative_errors(SimParams(), held_out)
    assert max(abs(e) for per in before.values() for e in per.values()) > 0.10


def test_a_parameter_the_runs_do_not_exercise_is_refused_with_what_would():
    runs = [measured("tp8", TP8, 6000, 1000, 16, 32)]
    with pytest.raises(
        NotIdentifiable, match=r"do not exercise tp_scaling.*runs on topologies with different TP sizes"
    ):
        calibrate(runs, fit=["prefill_tokens_per_s", "tp_scaling"])
    with pytest.raises(ValueError, match="unknown timing parameter.*speedup"):
        calibrate(runs, fit=["speedup"])


def test_profiles_round_trip_and_bad_ones_are_named(tmp_path: Path):
    path = tmp_path / "p.yaml"
    save_profile(profile_of(HIDDEN, "hidden", fitted=["kv_bootstrap_s"]), path)
    back = load_profile(path)
    assert back.name == "hidden" and back.sim_params() == dataclasses.replace(HIDDEN, speedup=1.0)
    path.write_text("name: x\nparams: {prefill_tokens_per_s: 1.0, speedup: 3}\n")
    with pytest.raises(ProfileError, match=r"p\.yaml: params: .*unknown timing parameter\(s\) speedup"):
        load_profile(path)
    path.write_text("name: x\nparams: {decode_batch_exponent: 2.15}\n")
    with pytest.raises(ProfileError, match="earlier power-law decode model.*pytest-pd calibrate"):
        load_profile(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(path)
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(tmp_path / "missing.yaml")


def test_a_sim_cluster_takes_its_timing_from_a_profile(tmp_path: Path):
    from pytest_pd.cluster.commands import render_commands
    from pytest_pd.cluster.spec_file import load_cluster

    save_profile(profile_of(HIDDEN, "hidden"), tmp_path / "profiles" / "hidden.yaml")
    text = (REPO / "clusters" / "sim-pp2.yaml").read_text()
    text = text.replace(
        "sim:\n  speedup: 10", "sim:\n  speedup: 10\n  profile: profiles/hidden.yaml\n  kv_bootstrap_s: 0.5"
    )
    (tmp_path / "sim-pp2.yaml").write_text(text)
    (tmp_path / "models").symlink_to(REPO / "clusters" / "models")
    (tmp_path / "sim-tp8.yaml").write_text((REPO / "clusters" / "sim-tp8.yaml").read_text())
    commands = render_commands(load_cluster("sim-pp2", tmp_path), local_python="python")
    assert "--sim-prefill-tokens-per-s 12000.0" in commands and "--sim-tp-scaling 0.85" in commands
    assert "--sim-kv-bootstrap-s 0.5" in commands  # the cluster file's own value wins
    assert "profile" not in commands
    (tmp_path / "sim-pp2.yaml").write_text(text.replace("profiles/hidden.yaml", "profiles/nope.yaml"))
    with pytest.raises(ClusterFileError, match=r"sim\.profile: cannot read profile .*nope\.yaml"):
        load_cluster("sim-pp2", tmp_path)


def test_prediction_misses_and_the_marker_arguments():
    from pytest_pd.judge.thresholds import ThresholdError
    from pytest_pd.twin.predict import prediction_bound, prediction_line, prediction_misses

    pred = {
        "profile": "/p/h20.yaml",
        "stats": {
            "mean_ttft_ms": {"predicted": 110.0, "measured": 100.0, "error": 0.1},
            "output_throughput": {"predicted": 99.0, "measured": 100.0, "error": -0.01},
        },
    }
    assert prediction_misses(pred, 0.15, ("mean_ttft_ms", "output_throughput")) == []
    (miss,) = prediction_misses(pred, 0.05, ("mean_ttft_ms",))
    assert (
        miss
        == "prediction missed: mean_ttft_ms predicted 110 vs measured 100 (+10.0 %), bound ±5 % (profile /p/h20.yaml)"
    )
    assert prediction_misses(pred, 0.5, ("mean_tpot_ms",)) == ["pd_prediction: mean_tpot_ms was not measured"]
    assert "names no twin profile" in prediction_misses(None, 0.1)[0]
    assert (
        prediction_line(pred, ("mean_ttft_ms",))
        == "predicted vs measured (profile h20.yaml): mean_ttft_ms 110 vs 100 (+10.0 %)"
    )
    assert prediction_bound((), {}) == (0.1, ("mean_ttft_ms", "mean_tpot_ms", "output_throughput"))
    with pytest.raises(ThresholdError, match="max_error=…\\) must be a number > 0"):
        prediction_bound((), {"max_error": -1})
    with pytest.raises(ThresholdError, match="unknown statistic\\(s\\) p99_ttft_ms"):
        prediction_bound((), {"stats": ["p99_ttft_ms"]})
    with pytest.raises(ThresholdError, match="keyword arguments max_error= and stats= only"):
        prediction_bound((0.1,), {})


def test_a_random_routers_prediction_is_judged_by_its_range_of_draws():
    from pytest_pd.twin.predict import prediction_line, prediction_misses

    cell = {"predicted": 50.0, "measured": 58.0, "error": 50 / 58 - 1, "range": [45.0, 56.0]}
    pred = {"profile": "/p/h20.yaml", "stats": {"mean_tpot_ms": cell}}
    # 58 is 16 % off the mean, but within 5 % of the draws' 95th percentile: a draw the model allows
    assert prediction_misses(pred, 0.05, ("mean_tpot_ms",)) == []
    (miss,) = prediction_misses(pred, 0.02, ("mean_tpot_ms",))
    assert miss.startswith(
        "prediction missed: mean_tpot_ms measured 58 outside the model's range over the router's "
        "random draws 45–56 (5th–95th percentile, mean 50) ±2 %"
    )
    assert "mean_tpot_ms 50 [draws 45–56] vs 58 (-13.8 %)" in prediction_line(pred, ("mean_tpot_ms",))
