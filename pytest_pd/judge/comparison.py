"""A candidate vs baseline comparison for one workload: the rows of the seed table and the verdicts.
Pure data; the fixtures fill it, the reports render it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_pd.judge.catalog import HISTORY_METRICS, higher_is_better
from pytest_pd.judge.noise import bootstrap_ci
from pytest_pd.judge.thresholds import Bound, Verdict, delta_percent, evaluate
from pytest_pd.workload.metrics import run_problems

DEFAULT_NOISE_BAND = 0.05


@dataclass(frozen=True)
class Side:
    """One measured configuration, as a row of the seed table."""

    cluster: str
    prefill_strategy: str
    metrics: Mapping[str, Any]
    simulated: bool = False
    speedup: float = 1.0
    result_path: str | None = None
    samples: Mapping[str, list[float]] = field(default_factory=dict)  # per-repeat values
    source: str = "live"  # live, or "stored" for a run read from the results store
    started_at: float | None = None
    model: str | None = None


@dataclass(frozen=True)
class HistoryRow:
    """One metric of this run against the previous run of the same cluster and workload."""

    metric: str
    current: float
    last: float
    change_pct: float
    band_pct: float
    regression: bool
    ci: tuple[float, float] | None = None  # bootstrap interval of current / last (repeats)


@dataclass
class Comparison:
    test_id: str
    workload_id: str
    candidate: Side
    baseline: Side | None
    bounds: list[Bound]
    verdicts: list[Verdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    last: Side | None = None  # the previous run of the candidate (--pd-compare-last)
    history: list[HistoryRow] = field(default_factory=list)
    fail_on_regression: bool = False

    @property
    def regressions(self) -> list[HistoryRow]:
        return [h for h in self.history if h.regression]

    @property
    def passed(self) -> bool:
        return (
            not self.problems
            and all(v.passed for v in self.verdicts)
            and not (self.fail_on_regression and self.regressions)
        )

    @property
    def xfail_reason(self) -> str | None:
        """Set when the only thing wrong is a "within noise" verdict whose marker says xfail."""
        failing = [v for v in self.verdicts if not v.passed]
        if self.passed or self.problems or not failing or not all(v.xfail for v in failing):
            return None
        if self.fail_on_regression and self.regressions:
            return None
        return "within noise: " + "; ".join(v.message for v in failing)

    def warnings(self) -> list[str]:
        """Regressions against the last run that do not fail the test."""
        if self.fail_on_regression:
            return []
        return [regression_text(h) for h in self.regressions]

    def failure_message(self) -> str:
        lines = [
            f"{self.workload_id}: {self.candidate.cluster} vs "
            f"{self.baseline.cluster if self.baseline else '(no baseline)'}"
        ]
        lines += [f"  {p}" for p in self.problems]
        lines += [f"  {v.message}" for v in self.verdicts if not v.passed]
        if self.fail_on_regression:
            lines += [f"  {regression_text(h)}" for h in self.regressions]
        return "\n".join(lines)


def regression_text(h: HistoryRow) -> str:
    return (
        f"regression vs last run: {h.metric} {h.last:.4g} → {h.current:.4g} "
        f"({h.change_pct:+.1f} %, noise band ±{h.band_pct:.1f} %)"
    )


def history_rows(
    current: Side, last: Side, metrics: Sequence[str], band: float = DEFAULT_NOISE_BAND
) -> list[HistoryRow]:
    """Each metric now vs the last run. A regression is a change in the worse direction beyond
    the noise band: ``band`` (relative), widened by the bootstrap interval of the change when both
    runs have repeats (the interval's end nearest no change must be beyond the band)."""
    rows = []
    for metric in metrics:
        cur, old = current.metrics.get(metric), last.metrics.get(metric)
        if not isinstance(cur, (int, float)) or not isinstance(old, (int, float)):
            continue
        cur, old = float(cur), float(old)
        if not (math.isfinite(cur) and math.isfinite(old)) or old == 0:
            continue
        ci = None
        cs, ls = current.samples.get(metric), last.samples.get(metric)
        if cs and ls:
            ci = bootstrap_ci(cs, ls)
        ratio_lo, ratio_hi = ci if ci else (cur / old, cur / old)
        # how much worse, at the least, the current run is
        worse = (1.0 - ratio_hi) if higher_is_better(metric) else (ratio_lo - 1.0)
        rows.append(HistoryRow(metric, cur, old, delta_percent(cur, old), band * 100.0, worse > band, ci))
    return rows


def health_problems(side: Side, max_mismatch_share: float = 0.0) -> list[str]:
    """Failures that make a measurement unusable, whatever the bounds say."""
    return [
        f"{side.cluster}: {p}; its numbers are not comparable"
        for p in run_problems(side.metrics, max_mismatch_share)
    ]


def compare(
    test_id: str,
    workload_id: str,
    candidate: Side,
    baseline: Side | None,
    bounds: list[Bound],
    *,
    last: Side | None = None,
    noise_band: float = DEFAULT_NOISE_BAND,
    fail_on_regression: bool = False,
    max_mismatch_share: float = 0.0,
) -> Comparison:
    comp = Comparison(
        test_id, workload_id, candidate, baseline, bounds, last=last, fail_on_regression=fail_on_regression
    )
    comp.problems += health_problems(candidate, max_mismatch_share)
    if baseline is not None:
        comp.problems += health_problems(baseline, max_mismatch_share)
    for bound in bounds:
        comp.verdicts.append(
            evaluate(
                bound,
                candidate.metrics,
                baseline.metrics if baseline else None,
                candidate.samples,
                baseline.samples if baseline else None,
            )
        )
    if last is not None:
        metrics = list(dict.fromkeys([*HISTORY_METRICS, *(b.metric for b in bounds)]))
        comp.history = history_rows(candidate, last, metrics, noise_band)
    return comp


def to_dict(comp: Comparison) -> dict[str, Any]:
    """Plain data (JSON-safe apart from NaN) so a comparison can travel in a test report, e.g.
    from a pytest-xdist worker to the controller that writes the summaries."""
    return asdict(comp)


def from_dict(data: dict[str, Any]) -> Comparison:
    def side(d: dict[str, Any] | None) -> Side | None:
        return None if d is None else Side(**d)

    def ci(value: Any) -> tuple[float, float] | None:
        return None if value is None else (float(value[0]), float(value[1]))

    bounds = [Bound(**b) for b in data["bounds"]]
    verdicts = [
        Verdict(**{**v, "bound": Bound(**v["bound"]), "ci": ci(v.get("ci"))}) for v in data["verdicts"]
    ]
    history = [HistoryRow(**{**h, "ci": ci(h.get("ci"))}) for h in data.get("history", [])]
    candidate = side(data["candidate"])
    assert candidate is not None
    return Comparison(
        data["test_id"],
        data["workload_id"],
        candidate,
        side(data["baseline"]),
        bounds,
        verdicts,
        list(data["problems"]),
        side(data.get("last")),
        history,
        bool(data.get("fail_on_regression", False)),
    )
