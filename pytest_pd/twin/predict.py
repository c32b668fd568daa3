"""A run's prediction by its cluster's twin profile (``twin: {profile: FILE}``), stored in the
record beside what the run measured, and judged by ``@pytest.mark.pd_prediction``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_pd.cluster.engines.sim.profile import ProfileError, load_profile
from pytest_pd.cluster.safe_yaml import Loc
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.judge.thresholds import ThresholdError
from pytest_pd.record import RunRecord

from .observed import HIT_RATE, STATS, NotModelled, observe, predict_spread

MARKER = "pd_prediction"
JUDGED = ("mean_ttft_ms", "mean_tpot_ms", "output_throughput")
"""What ``pd_prediction`` checks unless told otherwise."""


def prediction_of(record: RunRecord, profile_path: str) -> dict[str, Any]:
    """``{"profile", "stats": {stat: {"predicted", "measured", "error"}}}``, or ``{"profile",
    "unavailable": why}`` when the run cannot be predicted."""
    out: dict[str, Any] = {"profile": profile_path}
    try:
        profile = load_profile(Path(profile_path))
        run = observe(record)
    except (ProfileError, NotModelled) as exc:
        return {**out, "unavailable": str(exc)}
    got, spread = predict_spread(profile.sim_params(), run)
    out["stats"] = {
        k: {"predicted": got[k], "measured": v, "error": got[k] / v - 1.0}
        for k, v in run.measured.items()
        if k in got and v > 0
    }
    if run.topology.random:  # one run is one draw of the router's choices: say their range
        for k, cell in out["stats"].items():
            cell["range"] = list(spread[k])
    return out


def prediction_misses(
    prediction: Mapping[str, Any] | None, max_error: float, stats: Sequence[str] = JUDGED
) -> list[str]:
    """Why the prediction fails a ``pd_prediction(max_error=…)`` marker; empty when it holds."""
    if prediction is None:
        return ["pd_prediction: the cluster file names no twin profile (add twin: {profile: FILE})"]
    if "unavailable" in prediction:
        return [f"pd_prediction: no prediction: {prediction['unavailable']}"]
    misses = []
    for stat in stats:
        cell = prediction.get("stats", {}).get(stat)
        if cell is None:
            misses.append(f"pd_prediction: {stat} was not measured")
        elif "range" in cell:  # a random router: the measured draw must lie in the model's range
            lo, hi = cell["range"]
            if not lo * (1 - max_error) <= cell["measured"] <= hi * (1 + max_error):
                misses.append(
                    f"prediction missed: {stat} measured {cell['measured']:.4g} outside the model's "
                    f"range over the router's random draws {lo:.4g}–{hi:.4g} (5th–95th percentile, "
                    f"mean {cell['predicted']:.4g}) ±{100 * max_error:g} % (profile {prediction['profile']})"
                )
        elif abs(cell["error"]) > max_error:
            misses.append(
                f"prediction missed: {stat} predicted {cell['predicted']:.4g} vs measured "
                f"{cell['measured']:.4g} ({100 * cell['error']:+.1f} %), bound ±{100 * max_error:g} % "
                f"(profile {prediction['profile']})"
            )
    return misses


def prediction_line(prediction: Mapping[str, Any], stats: Sequence[str] = JUDGED) -> str:
    """One line for the report: each judged statistic's prediction error."""
    if "unavailable" in prediction:
        return f"no prediction: {prediction['unavailable']}"
    cells = prediction.get("stats", {})
    parts = [
        f"{s} {cells[s]['predicted']:.4g}{_draws(cells[s])} vs {cells[s]['measured']:.4g} "
        f"({100 * cells[s]['error']:+.1f} %)"
        for s in stats
        if s in cells
    ]
    return f"predicted vs measured (profile {Path(str(prediction['profile'])).name}): " + ", ".join(parts)


def _draws(cell: Mapping[str, Any]) -> str:
    """A random router's range of draws, where the prediction has one."""
    return f" [draws {cell['range'][0]:.4g}–{cell['range'][1]:.4g}]" if "range" in cell else ""


def prediction_bound(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[float, tuple[str, ...]]:
    """``pd_prediction``'s (max_error, statistics), checked."""
    unknown = sorted(set(kwargs) - {"max_error", "stats"})
    if args or unknown:
        raise ThresholdError(
            f"{MARKER} takes keyword arguments max_error= and stats= only, e.g. "
            f"{MARKER}(max_error=0.1); got {args!r} {', '.join(unknown)}"
        )
    max_error = kwargs.get("max_error", 0.1)
    if isinstance(max_error, bool) or not isinstance(max_error, (int, float)) or not max_error > 0:
        raise ThresholdError(f"{MARKER}(max_error=…) must be a number > 0 (0.1 = 10 %), got {max_error!r}")
    stats = tuple(kwargs.get("stats", JUDGED))
    known = (*STATS, HIT_RATE)
    bad = [x for x in stats if x not in known]
    if bad:
        raise ThresholdError(
            f"{MARKER}: unknown statistic(s) {', '.join(map(str, bad))}; known: {', '.join(known)}"
        )
    return float(max_error), stats


def twin_problems(spec: ClusterSpec) -> list[tuple[Loc, str]]:
    """The cluster file's ``twin: {profile: FILE}`` names a profile that can be read."""
    if spec.twin is None:
        return []
    try:
        load_profile(Path(spec.resolve_path(spec.twin.profile)))
    except ProfileError as exc:
        return [(("twin", "profile"), str(exc))]
    return []
