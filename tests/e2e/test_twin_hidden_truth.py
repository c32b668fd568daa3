"""The digital twin's identifiability on hidden ground truth, with real parts: simulated SGLang
workers behind the real router, on its default policy (what clusters run: in sglang-router
0.3.2's PD mode, random until the loads are 64 apart), run timing parameters the fit is never
told; calibrated on the stored runs of two topologies, the profile predicts three held-out ones
(2P1D, TP4/TP4, and 2P2D at twice the load), each as the mean of 32 draws of the router's choices.

Bounds from 12 runs of this experiment at speedup 5 on this 2-core machine
(``benchmarks/twin_identifiability.py --speedup 5 --policy default --runs 12``), predicted
against measured: the fit's own runs within 1.6 %; held out, TTFT -3.3 to +9.3 % (sd 3.4 % on
the 2P1D, 3.9 % on the 2P2D: one run is one draw of the router's choices), TPOT -5.4 to +0.8 %
(sd at most 1.5 %), throughput -0.9 to +7.2 % (sd at most 2.1 %). TTFT's bound, 18 %, is the
worst mean plus 3.8 standard deviations. TPOT's and throughput's stay at 12 %: about their
worst mean plus 3.3 standard deviations (11 %), and once in CI, right after the 1000-request
trace replay, the held-out runs measured 6-7 % slower TPOT than the fit's runs had (the
simulator's per-step overhead grows with the machine's load and the fit absorbed it into
``decode_step_base_s``). Round robin, before: 25 % on TTFT, set from that busy CI run."""

from __future__ import annotations

import pytest

from tests.helpers.twin_truth import HIDDEN, run_experiment

pytestmark = pytest.mark.serial  # a model fitted to measured runs

BOUND = {"mean_ttft_ms": 0.18, "mean_tpot_ms": 0.12, "output_throughput": 0.12}


def test_calibration_recovers_hidden_parameters_well_enough_to_predict_unseen_topologies(tmp_path):
    out = run_experiment(tmp_path, speedup=5.0, policy=None, say=lambda _: None)
    # the fit reproduces its own runs (a broken one misses by far more; CI saw 3.6 % on a loaded
    # machine, a p90 TTFT)
    assert out.calibration.max_error < 0.06, out.calibration.errors
    assert {r.label.split("/")[0] for r in out.held_out} == {"twin-2p1d", "twin-tp4", "twin-2p2d"}
    misses = {
        (label, stat): round(per[stat], 3)
        for label, per in out.errors.items()
        for stat, bound in BOUND.items()
        if abs(per[stat]) > bound
    }
    assert not misses, out.errors
    # it was not handed the answer: the fit started from the seed calibration and moved each one
    assert set(out.calibration.fitted) >= set(HIDDEN)
