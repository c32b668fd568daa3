"""smg's expected-wait routing in the timing model (``sim/routing.py``'s polled policies): its
score of each server from the load the router last polled, what it sent since, and what that
does to a run (``sim/closed_loop.simulate``) depending on what the last poll saw. Pure."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pytest_pd.sim.closed_loop import SEED_TOPOLOGIES, simulate
from pytest_pd.sim.model import SimParams
from pytest_pd.sim.routing import Polled, Router, Topology, expected_wait

PRE, DEC = SEED_TOPOLOGIES["tp8"]


def test_the_expected_wait_is_smgs_score():
    # 3 running or queued requests as 1024 tokens each, plus 1024 sent since the poll, over the
    # reported 512 tokens/s; plus the KV term 0.15 * u / (1 - u) at half the pool used
    busy = Polled(running=2, waiting=1, token_usage=0.5, gen_throughput=512.0)
    assert expected_wait(busy, in_flight=3, since_tokens=1024, since_requests=1) == pytest.approx(8.15)
    # a server that reports no generation drains at smg's default 2000 tokens/s
    assert expected_wait(Polled(), in_flight=1, since_tokens=6000, since_requests=1) == pytest.approx(3.0)
    # the router's own in-flight count is the floor: 5 held, 1 reported, 1 sent since -> 3 more
    assert expected_wait(Polled(waiting=1), 5, 0, 1) == pytest.approx(4 * 1024 / 2000)


def test_a_server_that_reported_a_trickle_of_generation_gets_nothing_until_the_next_poll():
    # the warm-up's 16 tokens over the reporting window: about 0.3 tokens/s against an idle
    # server's 2000, so once it holds one request every other goes to the other server
    router = Router(2, "expected_wait", random.Random(0))
    router.poll([Polled(gen_throughput=0.3), Polled()])
    assert Counter(router.pick(6000) for _ in range(20))[0] <= 1
    for i, held in enumerate(router.load):  # all done; both idle at the next poll: alternate again
        for _ in range(held):
            router.done(i)
    router.poll([Polled(), Polled()])
    assert Counter(router.pick(6000) for _ in range(20)) == {0: 10, 1: 10}


def test_ties_are_drawn_at_random():
    firsts = {Router(2, "expected_wait", random.Random(seed)).pick(6000) for seed in range(20)}
    assert firsts == {0, 1}


def test_power_of_two_scores_only_the_two_it_drew():
    router = Router(3, "power_of_two_expected_wait", random.Random(0))
    router.poll([Polled(gen_throughput=0.3), Polled(), Polled()])
    picks = Counter(router.pick(6000) for _ in range(60))
    assert picks[0] <= 1 and picks[1] > 10 and picks[2] > 10


def _run(seed: int, poll_interval_s: float) -> dict:
    topology = Topology(
        (PRE, PRE), (DEC, DEC), "expected_wait", poll_interval_s=poll_interval_s, gen_window_s=5.0
    )
    out = simulate(
        SimParams(), topology, [6000] * 32, [200] * 32, concurrency=16, seed=seed, warmup=[(6000, 16)]
    )
    assert len(out["requests"]) == 32  # the warm-up is not part of the run
    return out


def test_a_run_the_router_polled_idle_before_splits_evenly():
    # polled every 100 s (smg's 10 s on a cluster simulated 10x faster), a run of about 13 s
    # mostly sees no poll: what it sends since the last one, 6000 tokens a request, alternates
    for seed in range(12):
        split = sorted(Counter(d for _, d in _run(seed, 100.0)["servers"]).values())
        assert split[1] - split[0] <= 4, (seed, split)
    assert _run(3, 100.0) == _run(3, 100.0)  # one draw per seed


def test_the_polls_during_a_run_steer_it():
    # polled every half second, the router weighs what each server reports as it goes
    rare, often = _run(0, 100.0), _run(0, 0.5)
    assert rare["servers"] != often["servers"]
