"""A run's requests as the timing model takes them (:class:`Requests`): lengths, arrivals, the
client's cap, the prefixes the prompts share and the conversations they form, built from a
workload as a run sends it (:func:`workload_requests`), and one run of them on the model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_pd.sim.closed_loop import simulate
from pytest_pd.sim.model import SimParams
from pytest_pd.sim.routing import Topology
from pytest_pd.workload.conversation import turn_lengths
from pytest_pd.workload.lengths import draw_lengths
from pytest_pd.workload.runner import arrival_offsets
from pytest_pd.workload.spec import WARMUP_OUTPUT_LEN, Workload
from pytest_pd.workload.trace import trace_rows

from .prefixes import workload_keys


@dataclass(frozen=True)
class Requests:
    input_lens: tuple[int, ...]
    """Every request's whole prompt (a later turn's includes the conversation so far)."""
    output_lens: tuple[int, ...]
    arrivals: tuple[float, ...] | None = None
    """Model seconds after the first send (None: a closed loop)."""
    concurrency: int | None = None
    prefix_keys: tuple[tuple[int, ...], ...] | None = None
    """The prompts as the prefix cache sees them (:mod:`.prefixes`); None: they share nothing."""
    turns: int = 1
    think_s: float = 0.0
    warmup: tuple[tuple[int, int], ...] = ()
    """The warm-up requests sent before the run, (prompt, output) lengths."""

    def simulate(self, params: SimParams, topology: Topology, seed: int = 0) -> dict[str, Any]:
        """One run of these requests on the model (:func:`pytest_pd.sim.closed_loop.simulate`)."""
        return simulate(
            params,
            topology,
            self.input_lens,
            self.output_lens,
            concurrency=self.concurrency,
            arrivals=self.arrivals,
            seed=seed,
            prefix_keys=self.prefix_keys,
            turns=self.turns,
            think_s=self.think_s,
            warmup=self.warmup,
        )


def workload_requests(
    workload: Workload, lengths: tuple[Sequence[int], Sequence[int]] | None = None
) -> Requests:
    """The requests a run of ``workload`` sends, in model time: with ``lengths`` (every request's
    measured prompt and output length, in index order) or as the run draws them (a trace's rows;
    a multi-turn workload's prompts growing by the answers). Raises
    :class:`~pytest_pd.workload.spec.WorkloadError` for a trace it cannot read."""
    if lengths is not None:
        ins, outs = [int(x) for x in lengths[0]], [int(x) for x in lengths[1]]
    elif workload.trace_path:
        rows = trace_rows(workload)
        ins, outs = [r.input_len for r in rows], [r.output_len for r in rows]
    else:
        drawn = draw_lengths(workload, np.random.default_rng(workload.seed))
        ins, outs = [int(x) for x in drawn[0]], [int(x) for x in drawn[1]]
        if workload.turns > 1:
            ins = turn_lengths(ins, outs, workload.turns)
    arrivals = None
    if workload.trace_path or not math.isinf(workload.request_rate):
        arrivals = tuple(float(t) for t in arrival_offsets(workload, len(ins)))
    keys = workload_keys(workload, ins)
    return Requests(
        tuple(ins),
        tuple(outs),
        arrivals,
        int(workload.concurrency),
        None if keys is None else tuple(tuple(k) for k in keys),
        workload.turns,
        float(workload.think_time_s),
        tuple((ins[i % len(ins)], WARMUP_OUTPUT_LEN) for i in range(workload.warmup_requests)) if ins else (),
    )
