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
    "cache_affinity",
)
"""How the modelled router picks a prefill and a decode server for each request. Load is the
router's own count of each server's requests in flight, from dispatch to completion (on the
prefill side of ``cache_affinity``: to the end of its prefill).

- ``round_robin``: in turn.
- ``least_load``: the fewest in flight (lowest index on a tie).
- ``random``: uniformly.
- ``power_of_two``: two distinct servers drawn at random, the less loaded (the first on a tie).
- ``random_unless_imbalanced``: sglang-router 0.3.2's ``cache_aware`` in PD mode (its prefix
  trees are never filled there): the least loaded when the loads are imbalanced (max - min >
  ``BALANCE_ABS`` and max > ``BALANCE_REL`` x min), else random.
- ``cache_affinity``: smg 1.13's ``cache_aware`` in PD mode. Each side keeps which prompt blocks
  it sent where. A request whose longest match (as a share of its prompt) is above
  ``CACHE_THRESHOLD`` goes to the least loaded of the servers holding that match, unless each is
  over the spill gate (load above ``BALANCE_REL`` x the mean and above the mean + a margin that
  grows with its square root, at most ``BALANCE_ABS``); every other request goes to the least
  loaded server, ties drawn at random. The chosen server then holds the request's blocks. A
  prefill's load ends when its prefill does (smg counts the prefill leg's response)."""

RANDOM_POLICIES = frozenset({"random", "power_of_two", "random_unless_imbalanced", "cache_affinity"})
BALANCE_ABS = 64
BALANCE_REL = 1.5
"""The routers' defaults for ``--balance-abs-threshold`` and ``--balance-rel-threshold``."""
CACHE_THRESHOLD = 0.3
"""smg's default ``--cache-threshold``: the matched share of a prompt above which it follows the
match."""
PREFILL_LOAD_TO_PREFILL_END = frozenset({"cache_affinity"})
"""Policies whose prefill-side load ends with the request's prefill, not with the request."""


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
    def random(self) -> bool:
        """Whether a run depends on the router's random draws (a side with a random policy and
        more than one server to draw from)."""
        pre, dec = self.policies
        return (pre in RANDOM_POLICIES and len(self.prefill) > 1) or (
            dec in RANDOM_POLICIES and len(self.decode) > 1
        )


def spills(load: int, mean: float) -> bool:
    """smg's per-request gate: a server holding a request's prefix is passed over when its load
    is well above the mean load of its side."""
    margin = min(BALANCE_ABS, max(math.ceil(2 * math.sqrt(mean)), 4))
    return load > BALANCE_REL * mean and load > mean + margin


class Router:
    """One side's choices under one policy: ``pick`` a server for a request, ``done`` when its
    load on that server ends."""

    def __init__(self, n: int, policy: str, rng: random.Random) -> None:
        self.load = [0] * n
        self.turn = 0
        self.policy = policy
        self.rng = rng
        self.held: list[set[int]] = [set() for _ in range(n)]  # cache_affinity: blocks sent there

    def _least(self, among: Sequence[int] | None = None, random_ties: bool = False) -> int:
        among = range(len(self.load)) if among is None else among
        low = min(self.load[i] for i in among)
        tied = [i for i in among if self.load[i] == low]
        return self.rng.choice(tied) if random_ties and len(tied) > 1 else tied[0]

    def _matched(self, i: int, keys: Sequence[int]) -> int:
        n = 0
        for key in keys:
            if key not in self.held[i]:
                break
            n += 1
        return n

    def _affinity(self, keys: Sequence[int], prompt_tokens: int) -> int:
        n = len(self.load)
        matched = [self._matched(i, keys) for i in range(n)]
        best = max(matched)
        if prompt_tokens and best * BLOCK / prompt_tokens > CACHE_THRESHOLD:
            mean = sum(self.load) / n
            holders = [i for i in range(n) if matched[i] == best]
            open_ = [i for i in holders if not spills(self.load[i], mean)]
            if not open_:
                open_ = [i for i in range(n) if not spills(self.load[i], mean)] or list(range(n))
            return self._least(open_, random_ties=True)
        return self._least(random_ties=True)

    def pick(self, keys: Sequence[int] = (), prompt_tokens: int = 0) -> int:
        """The server for a request (``keys``: its prompt's block keys, for ``cache_affinity``)."""
        n, policy = len(self.load), self.policy
        if policy == "cache_affinity":
            i = self._affinity(keys, prompt_tokens) if n > 1 else 0
            self.held[i].update(keys)
        elif n == 1:
            i = 0
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
        return i

    def done(self, i: int) -> None:
        self.load[i] -= 1
