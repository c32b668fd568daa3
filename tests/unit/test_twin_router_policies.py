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


@pytest.mark.parametrize(
    ("router", "message"),
    [
        ({"kind": "vllm-router"}, "vllm-router's --policy cache_aware is not modelled"),
        ({"kind": "smg", "policy": "power_of_two"}, "smg's --policy power_of_two is not modelled"),
        ({"kind": "smg"}, "smg's --policy cache_aware is not modelled"),  # its default
        # its default load metric: expected wait on loads polled every 10 s
        (
            {
                "kind": "smg",
                "policy": "power_of_two",
                "extra_args": ["--power-of-two-load-metric", "expected_wait"],
            },
            r"power_of_two is not modelled \(modelled: .*power_of_two with --power-of-two-load-metric requests",
        ),
    ],
)
def test_a_policy_the_model_does_not_know_is_said_not_guessed(router, message):
    with pytest.raises(NotModelled, match=message):
        _policies(router)
