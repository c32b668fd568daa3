"""What a cluster file's router does, in the timing model's terms (``twin/observed.topology_of``):
per router kind and policy, as the installed routers implement them in PD mode."""

from __future__ import annotations

import pytest

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


def test_smg_cache_aware_is_modelled_with_its_load_monitor_off():
    off = ["--disable-load-monitoring"]
    assert _policies({"kind": "smg", "extra_args": off}) == ("cache_affinity",) * 2
    # round robin needs no switch, and a cache threshold does not change it
    rr = {"kind": "smg", "policy": "round_robin", "extra_args": ["--cache-threshold", "0.5"]}
    assert _policies(rr) == ("round_robin",) * 2


def test_a_policy_given_as_an_extra_argument_counts():
    assert _policies({"extra_args": ["--policy", "round_robin"]}) == ("round_robin",) * 2
    assert _policies({"extra_args": ["--prefill-policy=random"]}) == ("random", "random_unless_imbalanced")


@pytest.mark.parametrize(
    ("router", "message"),
    [
        ({"kind": "vllm-router"}, "vllm-router's --policy cache_aware is not modelled"),
        ({"kind": "smg", "policy": "power_of_two"}, "smg's --policy power_of_two is not modelled"),
        # its default, routing by loads it polls every 10 s
        ({"kind": "smg"}, "smg's --policy cache_aware is modelled only with --disable-load-monitoring"),
        (
            {"kind": "smg", "extra_args": ["--disable-load-monitoring", "--cache-threshold=0.5"]},
            "smg's --cache-threshold changes what its policy decides",
        ),
    ],
)
def test_a_policy_the_model_does_not_know_is_said_not_guessed(router, message):
    with pytest.raises(NotModelled, match=message):
        _policies(router)
