"""The twin under the router's default policy, with real parts: simulated workers with hidden
timing parameters behind the real sglang-router started without ``--policy`` (cache_aware, which
in sglang-router 0.3.2's PD mode routes at random until the loads are 64 apart). The model with
the hidden parameters — no fit: the router's model alone is under test — predicts the 2P2D run at
twice the seed's load as 32 draws of the router's choices; the measured run must lie within the
draws' 5th-95th percentile range, widened by ``BOUND``.

``BOUND`` is set from 20 runs of this experiment on this 2-core machine at speedup 10: against
the draws' mean the runs' TTFT erred by +0.3 % on average (sd 3.7 %, -6.4 to +9.1 %), TPOT +0.2 %
(sd 1.8 %), throughput -1.1 % (sd 3.7 %, down to -10.9 % for a 20/44 split of the decode
requests); outside the range they went by at most +5.3 % (TTFT), +3.1 % (TPOT) and -4.4 %
(throughput). Each bound is about twice that, over four standard deviations of the runs from the
range's edge. A least-load model (the earlier one) is 6.3 % above the 20 runs' mean throughput,
the draws' mean 1.1 %.

And smg 1.13's power_of_two weighing its own in-flight counts, which the model runs as least-load,
its default policy on the loads it polls, and that policy following the prefixes prompts share:
each run must come within ``SMG_BOUND``, ``SMG_DEFAULT_BOUND`` and ``SMG_PREFIX_BOUND`` of the
prediction."""

from __future__ import annotations

import dataclasses
import re
import urllib.request

import pytest

from pytest_pd.cluster.topology import Topology
from pytest_pd.measure import Measurer
from pytest_pd.sim.model import SimParams
from pytest_pd.twin.observed import expected_stats, observe, predict_spread
from pytest_pd.workload.spec import Workload
from tests.helpers.twin_truth import HIDDEN, SEED, TOPOLOGIES, Predicted, write_cluster

pytestmark = pytest.mark.serial  # timing judged

BOUND = {"mean_ttft_ms": 0.12, "mean_tpot_ms": 0.06, "output_throughput": 0.09}


def _decode_requests(topology: Topology) -> list[int]:
    """Requests each decode server has taken so far (its ``sglang:num_requests_total``)."""
    counts = []
    for item in topology.running:
        if item.command.role == "decode" and item.command.base_url:
            with urllib.request.urlopen(item.command.base_url + "/metrics", timeout=10) as resp:
                text = resp.read().decode()
            found = re.findall(r"^sglang:num_requests_total\{[^}]*\} (\S+)$", text, re.M)
            counts.append(int(sum(float(v) for v in found)))
    return counts


def test_the_routers_default_policy_is_predicted_as_the_range_of_its_draws(tmp_path):
    prefill, decode, prefill_pp, workload, _ = TOPOLOGIES["twin-2p2d"]
    write_cluster(tmp_path, "twin-2p2d", prefill, decode, prefill_pp, 10, policy=None)
    measurer = Measurer(tmp_path, tmp_path / "runs", None, say=lambda _: None)
    try:
        spec = measurer.spec("twin-2p2d")
        before = _decode_requests(measurer.up(spec))
        run = observe(measurer.measure(spec, workload))
        assert measurer.current is not None
        split = [b - a for a, b in zip(before, _decode_requests(measurer.current), strict=True)]
    finally:
        measurer.close()
    assert run.topology.policies == ("random_unless_imbalanced", "random_unless_imbalanced")
    assert workload.num_requests <= sum(split) <= workload.num_requests + 1  # and the run's warm-up
    got = Predicted(run, *predict_spread(dataclasses.replace(SimParams(), **HIDDEN), run))
    misses = {
        stat: (run.measured[stat], tuple(round(x, 4) for x in got.spread[stat]), round(got.mean[stat], 4))
        for stat, bound in BOUND.items()
        if abs(got.outside(stat)) > bound
    }
    assert not misses, (
        f"measured outside the draws' range (measured, range, mean): {misses}; decode split {split}"
    )


# smg 1.13 with power_of_two on its own in-flight counts over all workers (least_requests): the
# least-load model. 20 runs of this experiment here (benchmarks/twin_policies.py --router smg
# --policies power_of_two --topologies 2p2d --runs 20 --router-arg=--power-of-two-load-metric
# --router-arg=least_requests), measured against predicted: TTFT -3.3 % on average (sd 3.5 %,
# -6.9 to +3.1 %: two modes, about -6.5 % and 0), TPOT 0.0 % (sd 0.2 %), throughput 0.0 % (sd
# 0.2 %). TTFT's bound is the mean plus 3.3 standard deviations (0.1 % of runs beyond it, were
# they normal); TPOT's and throughput's are those of the test above: here they vary by 0.2 %,
# and what moves them is a loaded machine slowing the simulated steps (6-7 % once in CI).
SMG_BOUND = {"mean_ttft_ms": 0.15, "mean_tpot_ms": 0.06, "output_throughput": 0.09}


def _behind_smg(
    tmp_path,
    policy: str | None,
    args: list[str],
    servers: tuple | None = None,
    workload: Workload | None = None,
) -> Predicted:
    """The run behind smg (``policy`` None: its default) on ``servers`` (prefill, decode; default
    2P2D) with ``workload`` (default: twice the seed's load), with the model's prediction."""
    prefill, decode, prefill_pp, double, _ = TOPOLOGIES["twin-2p2d"]
    prefill, decode = servers or (prefill, decode)
    args = [*args, "--shutdown-grace-period-secs", "1"]  # smg's SIGTERM drain holds teardown ~5 s
    write_cluster(tmp_path, "twin-smg", prefill, decode, prefill_pp, 10, policy, "smg", args)
    measurer = Measurer(tmp_path, tmp_path / "runs", None, say=lambda _: None)
    try:
        run = observe(measurer.measure(measurer.spec("twin-smg"), workload or double))
    finally:
        measurer.close()
    return Predicted(run, *predict_spread(dataclasses.replace(SimParams(), **HIDDEN), run))


def _assert_within(got: Predicted, bounds: dict[str, float]) -> None:
    errors = {stat: round(got.error(stat), 4) for stat in bounds}
    assert all(abs(errors[stat]) <= bound for stat, bound in bounds.items()), (
        f"measured against predicted (measured / the draws' mean - 1): {errors}; bounds {bounds}"
    )


def test_smgs_power_of_two_on_in_flight_counts_is_predicted_as_least_load(tmp_path):
    got = _behind_smg(tmp_path, "power_of_two", ["--power-of-two-load-metric", "least_requests"])
    assert got.run.topology.policies == ("least_load", "least_load")
    _assert_within(got, SMG_BOUND)


# smg 1.13's default policy, cache_aware, on prompts sharing no prefix: the least expected wait
# on the loads it polls (the model's expected_wait), as 32 draws of the poll's phase. 40 runs of
# this experiment here (benchmarks/twin_policies.py --router smg --policies default --topologies
# 2p2d --runs 20, twice: idle, and with one of the two cores kept busy), measured against the
# draws' mean: TTFT 0.0 % on average (sd 1.7 %, -3.2 to +2.8 %) idle, -0.5 % (sd 2.1 %, -3.3 to
# +4.3 %) loaded; TPOT -3.0 % (sd 0.4 % and 0.2 %); throughput +2.1 % and +2.0 % (sd 0.6 % and
# 0.4 %). TTFT's bound is the worst mean plus 3.3 standard deviations (7.4 %); TPOT's and
# throughput's (4.3 % and 4.1 % so) are those of the tests above, for what a loaded machine does
# to the simulated steps (6-7 % once in CI).
SMG_DEFAULT_BOUND = {"mean_ttft_ms": 0.08, "mean_tpot_ms": 0.06, "output_throughput": 0.09}


def test_smgs_default_policy_is_predicted_from_the_loads_it_polls(tmp_path):
    got = _behind_smg(tmp_path, None, [])
    assert got.run.topology.policies == ("prefix_expected_wait", "prefix_expected_wait")
    assert got.run.topology.poll_interval_s == 100.0  # smg's 10 s at speedup 10
    _assert_within(got, SMG_DEFAULT_BOUND)


# smg 1.13's default policy with prompts sharing prefixes: its prefix trees, then the expected
# wait (the model's prefix_expected_wait). Two system prompts of 5000 of the 6000 tokens over
# three prefill servers: each keeps to the server that took it first, the third prefill server
# idles, and TTFT is 27 % above what routing by load alone predicts (3727 ms against 2939). 57 runs
# of this experiment here (benchmarks/twin_policies.py --router smg --policies default --topologies
# 3p1d --shared-prefix 2 5000 --runs 20, and 37 more with each prefill server's requests counted):
# 56 measured TTFT +1.9 % on average above the prediction (sd 1.5 %, -2.6 to +3.9 %), each group on
# one server; one, whose routing was not caught, -14.6 %. TTFT's bound takes that one in (1 in 57
# would fail a nightly bound under it one night in two months) and still tells this model from the
# load-only one, whose prediction is 21 % below it. TPOT (-0.1 %, sd 0.4 %) and throughput (0.0 %, sd 0.2 %) over 20 runs keep
# the bounds of the tests above.
SMG_PREFIX_BOUND = {"mean_ttft_ms": 0.16, "mean_tpot_ms": 0.06, "output_throughput": 0.09}
THREE_ONE = ([{"tp": 4, "chunked_prefill_size": 16384}] * 3, [{"tp": 4}])


def test_smgs_default_policy_follows_the_prefixes_the_prompts_share(tmp_path):
    two_prompts = dataclasses.replace(SEED, prefix_groups=2, prefix_len=5000)
    got = _behind_smg(tmp_path, None, [], THREE_ONE, two_prompts)
    assert got.run.topology.policies == ("prefix_expected_wait", "prefix_expected_wait")
    _assert_within(got, SMG_PREFIX_BOUND)
    # the bound tells this model from routing by load alone
    by_load = dataclasses.replace(
        got.run.topology, prefill_policy="expected_wait", decode_policy="expected_wait"
    )
    params = dataclasses.replace(SimParams(), **HIDDEN)
    load_only = expected_stats(params, by_load, got.run.requests)[0]["mean_ttft_ms"]
    assert 1 - load_only / got.mean["mean_ttft_ms"] > SMG_PREFIX_BOUND["mean_ttft_ms"]
