"""The modelled router of a PD topology: which prefill and which decode server each request goes
to, as sglang-router and smg choose in PD mode (each side with its own policy and state), and the
topology it routes over."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_pd.sim.model import ServerShape
from pytest_pd.sim.prefix_cache import BLOCK

POLICIES = (
    "round_robin",
    "least_load",
    "random",
    "power_of_two",
    "random_unless_imbalanced",
    "expected_wait",
    "power_of_two_expected_wait",
    "prefix_expected_wait",
)
"""How the modelled router picks a prefill and a decode server for each request. Load is the
router's own count of each server's requests in flight, from dispatch to completion.

- ``round_robin``: in turn.
- ``least_load``: the fewest in flight (lowest index on a tie).
- ``random``: uniformly.
- ``power_of_two``: two distinct servers drawn at random, the less loaded (the first on a tie).
- ``random_unless_imbalanced``: sglang-router 0.3.2's ``cache_aware`` in PD mode (its prefix
  trees are never filled there): the least loaded when the loads are imbalanced
  (:meth:`Thresholds.imbalanced`), else random.
- ``expected_wait``: smg's score over every server (its ``cache_aware`` on a prompt matching no
  server's prefix tree), the least *expected wait* as smg reckons it from each server's load
  polled every ``poll_interval_s`` (:class:`Polled`, :func:`expected_wait`); ties at random.
- ``power_of_two_expected_wait``: two distinct servers drawn at random, scored so (smg's
  ``power_of_two`` with its default ``--power-of-two-load-metric expected_wait``).
- ``prefix_expected_wait``: smg's ``cache_aware`` (its token tree, one per side): when the
  longest prefix of the prompt that an earlier one sent to this side holds, in whole
  :data:`~pytest_pd.sim.prefix_cache.BLOCK`-token pages, is more than ``cache_threshold`` of the
  prompt, the least expected wait among the servers that earlier prompt went to, unless one is
  over the pressure gate (:meth:`Thresholds.gated`); otherwise (and for prompts sharing
  nothing) as ``expected_wait``. Every prompt is then recorded for the server chosen."""

POLLED_POLICIES = frozenset({"expected_wait", "power_of_two_expected_wait", "prefix_expected_wait"})
"""Policies that score the servers' loads as last polled: the poll's phase against the run's
start is a random draw, and the router's own load of a prefill ends with its prefill (smg holds
it for the prefill phase only)."""
RANDOM_POLICIES = frozenset({"random", "power_of_two", "random_unless_imbalanced"}) | POLLED_POLICIES


@dataclass(frozen=True)
class Thresholds:
    """The router's ``--cache-threshold``, ``--balance-abs-threshold`` and
    ``--balance-rel-threshold`` (the defaults are both routers')."""

    cache: float = 0.3
    balance_abs: int = 64
    balance_rel: float = 1.5

    def imbalanced(self, loads: list[int]) -> bool:
        """sglang-router's test of a side's in-flight counts: max - min over the absolute and
        max over the relative threshold times min."""
        lo, hi = min(loads), max(loads)
        return hi - lo > self.balance_abs and hi > self.balance_rel * lo

    def gated(self, load: int, mean: float) -> bool:
        """smg 1.13's pressure gate on a prefix holder with ``load`` in flight, the side's mean
        ``mean``: over the relative threshold times the mean and over the mean by the absolute
        margin (the absolute threshold, capped at 2 sqrt(mean) rounded up, at least 4)."""
        margin = min(float(self.balance_abs), max(math.ceil(2.0 * math.sqrt(mean)), 4.0))
        return load > mean * self.balance_rel and load > mean + margin


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
    thresholds: Thresholds = Thresholds()

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


class PrefixTree:
    """Which servers of one side the router sent each prompt prefix to, page by page: smg's token
    tree, kept as the prompts' chained block keys (a key names the whole prefix up to its block)."""

    def __init__(self) -> None:
        self.holders: dict[int, set[int]] = {}

    def match(self, keys: Sequence[int]) -> tuple[int, set[int]]:
        """How many leading blocks of a prompt with ``keys`` an earlier prompt shares, and the
        servers those earlier prompts went to."""
        blocks, held = 0, set()
        for key in keys:
            servers = self.holders.get(key)
            if not servers:
                break
            blocks, held = blocks + 1, servers
        return blocks, held

    def insert(self, keys: Sequence[int], server: int) -> None:
        for key in keys:
            self.holders.setdefault(key, set()).add(server)


class Router:
    """One side's choices under one policy: ``pick`` a server for a request, ``done`` when its
    load on that server ends."""

    def __init__(
        self, n: int, policy: str, rng: random.Random, thresholds: Thresholds = Thresholds()
    ) -> None:
        self.load = [0] * n
        self.turn = 0
        self.policy = policy
        self.rng = rng
        self.thresholds = thresholds
        self.tree = PrefixTree()
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

    def _by_prefix(self, tokens: int, keys: Sequence[int]) -> int:
        """smg's ``cache_aware``: the holders of a long enough prefix match unless all are over
        the pressure gate (then the servers under it), else every server; the least expected wait
        among them. The prompt is recorded for the server chosen."""
        everyone = list(range(len(self.load)))
        blocks, held = self.tree.match(keys)
        candidates = everyone
        if held and blocks * BLOCK > self.thresholds.cache * tokens:
            mean = sum(self.load) / len(self.load)
            safe = [i for i in everyone if not self.thresholds.gated(self.load[i], mean)]
            candidates = [i for i in safe if i in held] or safe or everyone
        i = self._least_wait(candidates)
        self.tree.insert(keys, i)
        return i

    def _least(self) -> int:
        return min(range(len(self.load)), key=self.load.__getitem__)

    def pick(self, tokens: int = MEAN_PREFILL_TOKENS, keys: Sequence[int] = ()) -> int:
        """A server for a request of ``tokens`` prompt tokens (weighed by polled policies) whose
        prompt has the chained block ``keys`` (:mod:`pytest_pd.sim.prefix_cache`; prefix policies)."""
        n, policy = len(self.load), self.policy
        if n == 1:
            i = 0
        elif policy == "prefix_expected_wait":
            i = self._by_prefix(tokens, keys)
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
            balancing = policy == "random_unless_imbalanced" and self.thresholds.imbalanced(self.load)
            i = self._least() if balancing else self.rng.randrange(n)
        self.load[i] += 1
        self.since_tokens[i] += tokens
        self.since_requests[i] += 1
        return i

    def done(self, i: int) -> None:
        self.load[i] -= 1
