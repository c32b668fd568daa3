"""The modelled router of a PD topology: which prefill and which decode server each request goes
to, as sglang-router and smg choose in PD mode (each side with its own policy and state), and the
topology it routes over."""

from __future__ import annotations

import random
from dataclasses import dataclass

from pytest_pd.sim.model import ServerShape

POLICIES = (
    "round_robin",
    "least_load",
    "random",
    "power_of_two",
    "random_unless_imbalanced",
    "expected_wait",
    "power_of_two_expected_wait",
)
"""How the modelled router picks a prefill and a decode server for each request. Load is the
router's own count of each server's requests in flight, from dispatch to completion.

- ``round_robin``: in turn.
- ``least_load``: the fewest in flight (lowest index on a tie).
- ``random``: uniformly.
- ``power_of_two``: two distinct servers drawn at random, the less loaded (the first on a tie).
- ``random_unless_imbalanced``: sglang-router 0.3.2's ``cache_aware`` in PD mode (its prefix
  trees are never filled there): the least loaded when the loads are imbalanced (max - min >
  ``BALANCE_ABS`` and max > ``BALANCE_REL`` x min), else random.
- ``expected_wait``: smg's score over every server (its ``cache_aware`` on a prompt matching no
  server's prefix tree), the least *expected wait* as smg reckons it from each server's load
  polled every ``poll_interval_s`` (:class:`Polled`, :func:`expected_wait`); ties at random.
- ``power_of_two_expected_wait``: two distinct servers drawn at random, scored so (smg's
  ``power_of_two`` with its default ``--power-of-two-load-metric expected_wait``)."""

POLLED_POLICIES = frozenset({"expected_wait", "power_of_two_expected_wait"})
"""Policies that score the servers' loads as last polled: the poll's phase against the run's
start is a random draw, and the router's own load of a prefill ends with its prefill (smg holds
it for the prefill phase only)."""
RANDOM_POLICIES = frozenset({"random", "power_of_two", "random_unless_imbalanced"}) | POLLED_POLICIES
BALANCE_ABS = 64
BALANCE_REL = 1.5
"""The routers' defaults for ``--balance-abs-threshold`` and ``--balance-rel-threshold``."""

MEAN_PREFILL_TOKENS = 1024
DEFAULT_THROUGHPUT = 2000.0
KV_PRESSURE_WEIGHT = 0.15
TIE_S = 1e-6
"""smg 1.13's expected-wait constants: the tokens it counts for each running, queued or
unaccounted request, the drain rate of a server that reports no generation throughput (tokens/s),
the weight of its KV-pressure term (seconds), and the score difference below which two servers
tie."""


@dataclass(frozen=True)
class Polled:
    """One server's load as the router's poll reads it from its ``/metrics``: requests running
    and queued, the KV pool's used share, and its generation throughput (tokens/s)."""

    running: int = 0
    waiting: int = 0
    token_usage: float = 0.0
    gen_throughput: float = 0.0


def expected_wait(polled: Polled, in_flight: int, since_tokens: int, since_requests: int) -> float:
    """smg's expected wait (seconds) of a server whose last poll read ``polled``: every running,
    queued and unaccounted request (the router's ``in_flight`` there beyond what the poll saw and
    what it sent since) as :data:`MEAN_PREFILL_TOKENS` tokens, plus the prompt tokens sent there
    since the poll, over its generation throughput; plus a KV-pressure term growing as
    u / (1 - u) of the pool's used share u."""
    unaccounted = max(0, in_flight - (polled.running + polled.waiting + since_requests))
    queued = (polled.running + polled.waiting + unaccounted) * MEAN_PREFILL_TOKENS
    rate = polled.gen_throughput if polled.gen_throughput > 0 else DEFAULT_THROUGHPUT
    usage = min(max(polled.token_usage, 0.0), 0.999)
    return (queued + since_tokens) / rate + KV_PRESSURE_WEIGHT * usage / (1.0 - usage)


@dataclass(frozen=True)
class Topology:
    """The servers a modelled run spreads over: any number of prefill and decode servers (xPyD),
    each with its own shape, behind a router with one of :data:`POLICIES` for both sides, or one
    per side."""

    prefill: tuple[ServerShape, ...]
    decode: tuple[ServerShape, ...]
    policy: str = "round_robin"
    prefill_policy: str | None = None
    decode_policy: str | None = None
    # polled policies: model seconds between the router's load polls, and over which a decode
    # server reports its generation throughput (the simulated server: 5 s of wall time)
    poll_interval_s: float = 10.0
    gen_window_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.prefill or not self.decode:
            raise ValueError("a topology needs at least one prefill and one decode server")
        for name in (self.policy, self.prefill_policy, self.decode_policy):
            if name is not None and name not in POLICIES:
                raise ValueError(f"unknown routing policy {name!r}; known: {', '.join(POLICIES)}")

    @property
    def policies(self) -> tuple[str, str]:
        """(prefill side, decode side)."""
        return (self.prefill_policy or self.policy, self.decode_policy or self.policy)

    @property
    def polled(self) -> bool:
        """Whether a side's policy scores the servers' polled loads."""
        return any(p in POLLED_POLICIES for p in self.policies)

    @property
    def random(self) -> bool:
        """Whether a run depends on the router's random draws (a side with a random policy and
        more than one server to draw from)."""
        pre, dec = self.policies
        return (pre in RANDOM_POLICIES and len(self.prefill) > 1) or (
            dec in RANDOM_POLICIES and len(self.decode) > 1
        )


class Router:
    """One side's choices under one policy: ``pick`` a server for a request, ``done`` when its
    load on that server ends."""

    def __init__(self, n: int, policy: str, rng: random.Random) -> None:
        self.load = [0] * n
        self.turn = 0
        self.policy = policy
        self.rng = rng
        # polled policies: each server's last poll (idle before the run) and what was sent since
        self.polled = [Polled()] * n
        self.since_tokens = [0] * n
        self.since_requests = [0] * n

    def poll(self, loads: list[Polled]) -> None:
        """The router's poll read ``loads``: what it sent since counts from now."""
        self.polled = list(loads)
        self.since_tokens = [0] * len(loads)
        self.since_requests = [0] * len(loads)

    def _least_wait(self, candidates: list[int]) -> int:
        """The least expected wait among ``candidates``, ties drawn uniformly."""
        scores = [
            expected_wait(self.polled[i], self.load[i], self.since_tokens[i], self.since_requests[i])
            for i in candidates
        ]
        best = min(scores)
        return self.rng.choice([i for i, s in zip(candidates, scores, strict=True) if s <= best + TIE_S])

    def _least(self) -> int:
        return min(range(len(self.load)), key=self.load.__getitem__)

    def pick(self, tokens: int = MEAN_PREFILL_TOKENS) -> int:
        """A server for a request of ``tokens`` prompt tokens (weighed by polled policies)."""
        n, policy = len(self.load), self.policy
        if n == 1:
            i = 0
        elif policy == "expected_wait":
            i = self._least_wait(list(range(n)))
        elif policy == "power_of_two_expected_wait":
            i = self._least_wait(self.rng.sample(range(n), 2))
        elif policy == "round_robin":
            i = self.turn % n
            self.turn += 1
        elif policy == "least_load":
            i = self._least()
        elif policy == "power_of_two":
            a, b = self.rng.sample(range(n), 2)
            i = b if self.load[b] < self.load[a] else a
        else:
            lo, hi = min(self.load), max(self.load)
            imbalanced = hi - lo > BALANCE_ABS and hi > BALANCE_REL * lo
            balancing = policy == "random_unless_imbalanced" and imbalanced
            i = self._least() if balancing else self.rng.randrange(n)
        self.load[i] += 1
        self.since_tokens[i] += tokens
        self.since_requests[i] += 1
        return i

    def done(self, i: int) -> None:
        self.load[i] -= 1
