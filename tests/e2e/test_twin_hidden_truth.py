"""The digital twin's identifiability on hidden ground truth, with real parts: simulated SGLang
workers behind the real router, on its default policy (what clusters run: in sglang-router
0.3.2's PD mode, random until the loads are 64 apart), run timing parameters the fit is never
told; calibrated on the stored runs of two topologies, the profile predicts three held-out ones
(2P1D, TP4/TP4, and 2P2D at twice the load), each as the mean of 32 draws of the router's choices.

Bounds from 20 runs of this experiment at speedup 5 on this 2-core machine with one core kept
busy by a spinning shell loop (``benchmarks/twin_identifiability.py --speedup 5 --policy default
--runs 20``), predicted against measured: the fit's own runs within 0.3-6.1 % (mean 2.7 %, sd
1.7 %); held out, TTFT -3.1 to +20.7 % (the 2P2D: mean +8.4 %, sd 7.3 %; one run is one draw of
the router's choices, and a loaded machine slows the simulated steps unevenly), TPOT -7.2 to
+1.5 % (worst mean 3.3 %, sd at most 2.1 %), throughput -1.9 to +11.8 % (the 2P2D: mean +2.3 %,
sd 4.0 %). Each bound is the worst mean plus 3.3 standard deviations (0.1 % of runs beyond it,
were they normal): TTFT 32.4 % -> 33 %, throughput 15.7 % -> 16 %, the fit's own 8.4 % -> 9 %;
TPOT's 9.6 % stays at 12 %, as once in CI, right after the 1000-request trace replay, the held-out
runs measured 6-7 % slower TPOT than the fit's runs had. The 12 earlier runs on an idle machine
went TTFT -3.3 to +9.3 %, TPOT -5.4 to +0.8 %, throughput -0.9 to +7.2 % and set 18 %, 12 %, 12 %,
which two of these 20 loaded runs broke (TTFT +20.7 %; the fit's own 6.1 % against 6 %)."""

from __future__ import annotations

import pytest

from tests.helpers.twin_truth import HIDDEN, run_experiment

pytestmark = pytest.mark.serial  # a model fitted to measured runs

BOUND = {"mean_ttft_ms": 0.33, "mean_tpot_ms": 0.12, "output_throughput": 0.16}
FIT_BOUND = 0.09  # the fit's own largest error on the two runs it saw


def test_calibration_recovers_hidden_parameters_well_enough_to_predict_unseen_topologies(tmp_path):
    out = run_experiment(tmp_path, speedup=5.0, policy=None, say=lambda _: None)
    # the fit reproduces its own runs (a broken one misses by far more)
    assert out.calibration.max_error < FIT_BOUND, out.calibration.errors
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
