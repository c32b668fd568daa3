"""What a cluster file's router does, in the timing model's terms (``twin/observed.topology_of``):
per router kind and policy, as the installed routers implement them in PD mode."""

from __future__ import annotations

import pytest

from pytest_pd.sim.routing import Thresholds
from pytest_pd.twin.observed import NotModelled, topology_of

SERVERS = {"prefill": [{"tp": 1}, {"tp": 1}], "decode": [{"tp": 1}, {"tp": 1}]}


def _policies(router: dict) -> tuple[str, str]:
    return topology_of({**SERVERS, "router": router}).policies


def test_each_router_kinds_policies_as_the_model_runs_them():
    # sglang-router 0.3.2 never fills its PD prefix trees: its default is random until imbalanced
    assert _policies({}) == ("random_unless_imbalanced",) * 2
    assert _policies({"kind": "sglang-router", "policy": "round_robin"}) == ("round_robin",) * 2
    assert _policies({"policy": "power_of_two"}) == ("random",) * 2  # its polled loads tie
    assert _policies({"kind": "smg", "policy": "random", "decode_policy": "round_robin"}) == (
        "random",
        "round_robin",
    )


def test_a_policy_given_as_an_extra_argument_counts():
    assert _policies({"extra_args": ["--policy", "round_robin"]}) == ("round_robin",) * 2
    assert _policies({"extra_args": ["--prefill-policy=random"]}) == ("random", "random_unless_imbalanced")


def test_a_flag_that_chooses_what_a_policy_weighs_chooses_its_model():
    # smg's power_of_two on its own in-flight counts: of two drawn, or of all
    metric = "--power-of-two-load-metric"
    smg = {"kind": "smg", "policy": "power_of_two"}
    assert _policies({**smg, "extra_args": [metric, "requests"]}) == ("power_of_two",) * 2
    assert _policies({**smg, "extra_args": [f"{metric}=least_requests"]}) == ("least_load",) * 2
    mixed = {**smg, "prefill_policy": "round_robin", "extra_args": [metric, "requests"]}
    assert _policies(mixed) == ("round_robin", "power_of_two")
    # its default metric: the expected wait, on loads it polls, of the two drawn
    assert _policies(smg) == ("power_of_two_expected_wait",) * 2


def test_smgs_default_policy_routes_by_its_prefix_tree_then_the_expected_wait():
    assert _policies({"kind": "smg"}) == ("prefix_expected_wait",) * 2
    # the thresholds it weighs, as flags or smg's aliases set them (the routers' defaults else)
    assert topology_of({**SERVERS, "router": {"kind": "smg"}}).thresholds == Thresholds(0.3, 64, 1.5)
    args = ["--cache-threshold=0.5", "--spill-abs-threshold", "8", "--balance-rel-threshold", "1.2"]
    given = topology_of({**SERVERS, "router": {"kind": "smg", "extra_args": args}}).thresholds
    assert given == Thresholds(0.5, 8, 1.2)
    # a value the router would refuse at launch leaves the default
    bad = topology_of({**SERVERS, "router": {"kind": "smg", "extra_args": ["--cache-threshold", "x"]}})
    assert bad.thresholds.cache == 0.3


def test_the_routers_poll_interval_is_model_time():
    # a simulated cluster's model runs `speedup` times the router's wall clock
    smg = {"kind": "smg", "extra_args": ["--load-monitor-interval", "4"]}
    topology = topology_of({**SERVERS, "router": smg, "sim": {"speedup": 10}})
    assert (topology.poll_interval_s, topology.gen_window_s) == (40.0, 50.0)
    assert topology_of({**SERVERS, "router": {"kind": "smg"}}).poll_interval_s == 10.0


@pytest.mark.parametrize(
    ("router", "message"),
    [
        ({"kind": "vllm-router"}, "vllm-router's --policy cache_aware is not modelled"),
        ({"kind": "smg", "policy": "prefix_hash"}, "smg's --policy prefix_hash is not modelled"),
        # a load metric it does not know
        (
            {"kind": "smg", "policy": "power_of_two", "extra_args": ["--power-of-two-load-metric", "kv"]},
            r"power_of_two is not modelled \(modelled: .*power_of_two with --power-of-two-load-metric requests",
        ),
    ],
)
def test_a_policy_the_model_does_not_know_is_said_not_guessed(router, message):
    with pytest.raises(NotModelled, match=message):
        _policies(router)
