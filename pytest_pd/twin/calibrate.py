"""Fitting the timing model to measured runs: the parameters named are moved (in log space,
within x1/20..x20 of their starting values) by scipy's bounded least squares until the model's
TTFT/TPOT distributions and throughput (:data:`observed.STATS`) match each run's, relative error
by relative error. Before fitting, the runs are checked to identify every named parameter: one
they do not exercise, or two they cannot tell apart, is refused with a message naming them and
the kind of run that would. Pure but for the optimiser's CPU time."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_pd.cluster.engines.sim.profile import TIMING_PARAMS
from pytest_pd.sim.model import SimParams

from .observed import STATS, Observed, predict

DEFAULT_FIT = (
    "prefill_tokens_per_s",
    "prefill_batch_overhead_s",
    "kv_bootstrap_s",
    "tp_scaling",
    "decode_step_base_s",
    "decode_memory_efficiency",
)
"""What ``pytest-pd calibrate`` fits unless told otherwise: the prefill rate and per-batch cost,
the KV hand-off, TP scaling, and the decode step's fixed cost and achieved memory bandwidth."""

SPAN = math.log(20.0)
STEP = 0.02  # finite-difference step in log space: 2 % of a parameter
FLAT = 0.02  # a parameter moving no prediction by this much (log) per e-fold is not seen
COLLINEAR = 0.995  # |cos| between two parameters' effects above this: they cannot be told apart
STARTS = 6  # descents from different starting points
START_SPREAD = math.log(2.0)
# a fit this close (RMS of the log errors: 0.5 %, under run-to-run noise) needs no further start
GOOD_RMS = 0.005
WEAK = 0.02  # smallest / largest singular value of the normalised effects below this: a blind spot

WHAT_SHOWS_IT = {
    "prefill_tokens_per_s": "runs with different input lengths",
    "prefill_attn_s_per_token2": "runs with long and short inputs (attention grows with the square)",
    "prefill_batch_overhead_s": "runs with different input lengths or chunked-prefill sizes",
    "pp_stage_overhead_s": "a run on a topology whose prefill uses PP > 1",
    "tp_scaling": "runs on topologies with different TP sizes",
    "kv_bootstrap_s": "runs whose prefill PP sizes differ",
    "kv_bandwidth_gb_s": "runs with very different input lengths",
    "decode_step_base_s": "runs at different concurrencies (decode batch sizes)",
    "decode_memory_efficiency": "runs at different concurrencies (decode batch sizes)",
    "decode_compute_efficiency": "runs whose decode batches are large enough to be compute-bound",
    "gpu_tflops": "runs whose decode batches are large enough to be compute-bound",
    "hbm_gb_s": "runs at different concurrencies (decode batch sizes)",
}


class NotIdentifiable(ValueError):
    """The runs cannot identify a parameter; the message names it and what run would."""


@dataclass(frozen=True)
class Calibration:
    params: SimParams
    fitted: tuple[str, ...]
    errors: dict[str, dict[str, float]]
    """Per run label, per statistic: (predicted - measured) / measured."""

    @property
    def max_error(self) -> float:
        return max((abs(e) for per in self.errors.values() for e in per.values()), default=0.0)


def relative_errors(params: SimParams, runs: Sequence[Observed]) -> dict[str, dict[str, float]]:
    out = {}
    for run in runs:
        got = predict(params, run)
        out[run.label] = {k: got[k] / v - 1.0 for k, v in run.measured.items() if k in got and v > 0}
    return out


def _residuals(params: SimParams, runs: Sequence[Observed]) -> np.ndarray:
    res = []
    for run in runs:
        got = predict(params, run)
        for k, v in sorted(run.measured.items()):
            if k not in STATS:  # the prefix cache's hit rate: no timing parameter moves it
                continue
            if v > 0 and got.get(k, 0) > 0:
                res.append(math.log(got[k] / v))
            elif v > 0:
                res.append(math.log(1e-3))  # the model produced nothing for it: far off
    return np.asarray(res)


def _with(base: SimParams, names: Sequence[str], z: np.ndarray) -> SimParams:
    changes: dict[str, Any] = {
        n: _typed(base, n, getattr(base, n) * math.exp(float(x))) for n, x in zip(names, z, strict=True)
    }
    return dataclasses.replace(base, **changes)


def _typed(base: SimParams, name: str, value: float) -> float | int:
    return int(round(value)) if isinstance(getattr(base, name), int) else value


def check_identifiable(base: SimParams, runs: Sequence[Observed], names: Sequence[str]) -> None:
    """Raise :class:`NotIdentifiable` when the runs do not exercise a named parameter, or two
    named parameters move the predictions the same way (measured at ``base``)."""
    tp_sizes = {s.tp for r in runs for s in (*r.topology.prefill, *r.topology.decode)}
    if "tp_scaling" in names and len(tp_sizes) < 2:
        raise NotIdentifiable(
            f"the runs ({', '.join(r.label for r in runs)}) do not exercise tp_scaling: every "
            f"server in them has TP={tp_sizes.pop()}, so its TP factor is one constant the other "
            "rates absorb. Leave it out of --fit, or add runs on topologies with different TP sizes."
        )
    r0 = _residuals(base, runs)
    cols = []
    for i in range(len(names)):
        z = np.zeros(len(names))
        z[i] = STEP
        cols.append((_residuals(_with(base, names, z), runs) - r0) / STEP)
    labels = ", ".join(r.label for r in runs)
    for name, col in zip(names, cols, strict=True):
        if float(np.max(np.abs(col))) < FLAT:
            raise NotIdentifiable(
                f"the runs ({labels}) do not exercise {name}: doubling it moves none of their "
                f"predicted TTFT, TPOT or throughput statistics by {100 * FLAT * math.log(2):.1f} %. "
                f"Leave it out of --fit, or add {WHAT_SHOWS_IT.get(name, 'runs that vary what it governs')}."
            )
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = cols[i], cols[j]
            cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            if abs(cos) > COLLINEAR:
                raise NotIdentifiable(
                    f"the runs ({labels}) cannot tell {names[i]} from {names[j]}: both move the "
                    f"predictions the same way (correlation {cos:+.3f}). Fit only one of them, or "
                    f"add {WHAT_SHOWS_IT.get(names[j], 'runs that separate them')}."
                )
    # three or more may still cancel out together: the weakest direction of the normalised effects
    unit = np.column_stack([c / np.linalg.norm(c) for c in cols])
    _, sv, vt = np.linalg.svd(unit, full_matrices=False)
    if len(names) > 2 and sv[-1] < WEAK * sv[0]:
        weights = np.abs(vt[-1])
        involved = [names[k] for k in np.argsort(-weights) if weights[k] > 0.3]
        raise NotIdentifiable(
            f"the runs ({labels}) cannot separate {', '.join(involved)}: together they can change "
            f"without changing the predictions. Fit fewer of them, or add "
            f"{WHAT_SHOWS_IT.get(involved[0], 'runs that separate them')}."
        )


def calibrate(
    runs: Sequence[Observed],
    base: SimParams | None = None,
    fit: Sequence[str] = DEFAULT_FIT,
    starts_n: int = STARTS,
) -> Calibration:
    """Fit the ``fit`` parameters of ``base`` (default: the seed calibration) to ``runs``."""
    base = dataclasses.replace(base or SimParams(), speedup=1.0)
    unknown = [n for n in fit if n not in TIMING_PARAMS]
    if unknown:
        raise ValueError(
            f"unknown timing parameter(s) {', '.join(unknown)}; known: {', '.join(TIMING_PARAMS)}"
        )
    if not runs:
        raise ValueError("no runs to calibrate on")
    from scipy.optimize import least_squares  # imported when fitting, not at every command's start

    names = list(fit)
    check_identifiable(base, runs, names)
    # the simulated statistics are piecewise smooth (requests change order, batches change
    # membership), so a single descent can stop in a local minimum: start from the given values
    # and from seeded perturbations of them (x1/2..x2), keep the best
    rng = np.random.default_rng(0)
    starts = [np.zeros(len(names))] + [
        rng.uniform(-START_SPREAD, START_SPREAD, len(names)) for _ in range(starts_n - 1)
    ]
    best = None
    for z0 in starts:
        result = least_squares(
            lambda z: _residuals(_with(base, names, z), runs), z0, bounds=(-SPAN, SPAN), diff_step=STEP
        )
        if best is None or result.cost < best.cost:
            best = result
        if best.cost < 0.5 * best.fun.size * GOOD_RMS**2:  # least_squares' cost: half the sum of squares
            break
    assert best is not None
    params = _with(base, names, best.x)
    return Calibration(params, tuple(names), relative_errors(params, runs))
