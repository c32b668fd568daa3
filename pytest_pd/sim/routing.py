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
)
"""How the modelled router picks a prefill and a decode server for each request. Load is the
router's own count of each server's requests in flight, from dispatch to completion.

- ``round_robin``: in turn.
- ``least_load``: the fewest in flight (lowest index on a tie).
- ``random``: uniformly.
- ``power_of_two``: two distinct servers drawn at random, the less loaded (the first on a tie).
- ``random_unless_imbalanced``: sglang-router 0.3.2's ``cache_aware`` in PD mode (its prefix
  trees are never filled there): the least loaded when the loads are imbalanced (max - min >
  ``BALANCE_ABS`` and max > ``BALANCE_REL`` x min), else random."""

RANDOM_POLICIES = frozenset({"random", "power_of_two", "random_unless_imbalanced"})
BALANCE_ABS = 64
BALANCE_REL = 1.5
"""The routers' defaults for ``--balance-abs-threshold`` and ``--balance-rel-threshold``."""


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


class Router:
    """One side's choices under one policy: ``pick`` a server for a request, ``done`` when its
    load on that server ends."""

    def __init__(self, n: int, policy: str, rng: random.Random) -> None:
        self.load = [0] * n
        self.turn = 0
        self.policy = policy
        self.rng = rng

    def _least(self) -> int:
        return min(range(len(self.load)), key=self.load.__getitem__)

    def pick(self) -> int:
        n, policy = len(self.load), self.policy
        if n == 1:
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
