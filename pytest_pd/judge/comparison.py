"""A candidate vs baseline comparison for one workload: the rows of the seed table and the verdicts.
Pure data; the fixtures fill it, the reports render it. Each side is a run's record without its
bulky parts (``RunRecord.brief()``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from pytest_pd.catalog import HISTORY_METRICS, higher_is_better
from pytest_pd.judge.noise import bootstrap_ci
from pytest_pd.judge.thresholds import Bound, Verdict, delta_percent, evaluate
from pytest_pd.record import RunRecord
from pytest_pd.workload.metrics import run_problems

DEFAULT_NOISE_BAND = 0.05


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
    candidate: RunRecord
    baseline: RunRecord | None
    bounds: list[Bound]
    verdicts: list[Verdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    last: RunRecord | None = None  # the previous run of the candidate (--pd-compare-last)
    history: list[HistoryRow] = field(default_factory=list)
    fail_on_regression: bool = False
    baseline_source: str = ""  # where the baseline came from (--pd-baseline), for the report
    history_mode: str = "off"  # --pd-history: off, warn or fail
    findings: list[dict[str, Any]] = field(default_factory=list)  # the series' change points
    history_regressions: list[str] = field(default_factory=list)  # the open ones, as text

    @property
    def history_fails(self) -> bool:
        return self.history_mode == "fail" and bool(self.history_regressions)

    @property
    def regressions(self) -> list[HistoryRow]:
        return [h for h in self.history if h.regression]

    @property
    def passed(self) -> bool:
        return (
            not self.problems
            and all(v.passed for v in self.verdicts)
            and not (self.fail_on_regression and self.regressions)
            and not self.history_fails
        )

    @property
    def xfail_reason(self) -> str | None:
        """Set when the only thing wrong is a "within noise" verdict whose marker says xfail."""
        failing = [v for v in self.verdicts if not v.passed]
        if self.passed or self.problems or not failing or not all(v.xfail for v in failing):
            return None
        if (self.fail_on_regression and self.regressions) or self.history_fails:
            return None
        return "within noise: " + "; ".join(v.message for v in failing)

    def warnings(self) -> list[str]:
        """Open regressions of the stored series that do not fail the test (--pd-history=warn).
        The last-run comparison is a view: it warns of nothing unless --pd-fail-on-regression."""
        return list(self.history_regressions) if self.history_mode == "warn" else []

    def failure_message(self) -> str:
        lines = [
            f"{self.workload_id}: {self.candidate.name} vs "
            f"{self.baseline.name if self.baseline else '(no baseline)'}"
        ]
        lines += [f"  {p}" for p in self.problems]
        lines += [f"  {v.message}" for v in self.verdicts if not v.passed]
        if self.fail_on_regression:
            lines += [f"  {regression_text(h)}" for h in self.regressions]
        if self.history_fails:
            lines += ["  " + t.replace("\n", "\n  ") for t in self.history_regressions]
        return "\n".join(lines)


def regression_text(h: HistoryRow) -> str:
    return (
        f"regression vs last run: {h.metric} {h.last:.4g} → {h.current:.4g} "
        f"({h.change_pct:+.1f} %, noise band ±{h.band_pct:.1f} %)"
    )


def history_rows(
    current: RunRecord, last: RunRecord, metrics: Sequence[str], band: float = DEFAULT_NOISE_BAND
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


def health_problems(run: RunRecord, max_mismatch_share: float = 0.0) -> list[str]:
    """Failures that make a measurement unusable, whatever the bounds say."""
    problems = run_problems(run.metrics, max_mismatch_share)
    return [f"{run.name}: {p}; its numbers are not comparable" for p in problems]


def compare(
    test_id: str,
    workload_id: str,
    candidate: RunRecord,
    baseline: RunRecord | None,
    bounds: list[Bound],
    *,
    last: RunRecord | None = None,
    noise_band: float = DEFAULT_NOISE_BAND,
    fail_on_regression: bool = False,
    max_mismatch_share: float = 0.0,
    baseline_source: str = "",
) -> Comparison:
    """Judge ``candidate`` against ``baseline`` (and its ``last`` run) on ``bounds``."""
    comp = Comparison(
        test_id,
        workload_id,
        candidate.brief(),
        baseline.brief() if baseline else None,
        bounds,
        last=last.brief() if last else None,
        fail_on_regression=fail_on_regression,
        baseline_source=baseline_source,
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
                candidate.capacity_range,
                baseline.capacity_range if baseline else None,
            )
        )
    if last is not None:
        metrics = list(dict.fromkeys([*HISTORY_METRICS, *(b.metric for b in bounds)]))
        comp.history = history_rows(candidate, last, metrics, noise_band)
    return comp


_ADAPTER = TypeAdapter(Comparison)


def to_dict(comp: Comparison) -> dict[str, Any]:
    """Plain data (JSON-safe apart from NaN) so a comparison can travel in a test report, e.g.
    from a pytest-xdist worker to the controller that writes the summaries."""
    data: dict[str, Any] = _ADAPTER.dump_python(comp)
    return data


def from_dict(data: dict[str, Any]) -> Comparison:
    return _ADAPTER.validate_python(data)
