"""A candidate vs baseline comparison for one workload: the rows of the seed table and the verdicts.
Pure data; the fixtures fill it, the reports render it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_pd.thresholds import Bound, Verdict, evaluate


@dataclass(frozen=True)
class Side:
    """One measured configuration, as a row of the seed table."""

    cluster: str
    prefill_strategy: str
    metrics: Mapping[str, Any]
    simulated: bool = False
    speedup: float = 1.0
    result_path: str | None = None


@dataclass
class Comparison:
    test_id: str
    workload_id: str
    candidate: Side
    baseline: Side | None
    bounds: list[Bound]
    verdicts: list[Verdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and all(v.passed for v in self.verdicts)

    def failure_message(self) -> str:
        lines = [f"{self.workload_id}: {self.candidate.cluster} vs "
                 f"{self.baseline.cluster if self.baseline else '(no baseline)'}"]
        lines += [f"  {p}" for p in self.problems]
        lines += [f"  {v.message}" for v in self.verdicts if not v.passed]
        return "\n".join(lines)


def health_problems(side: Side) -> list[str]:
    """Failures that make a measurement unusable, whatever the bounds say."""
    m = side.metrics
    out = []
    completed, failed = int(m.get("completed", 0)), int(m.get("failed", 0))
    if failed:
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(dict(m.get("errors_by_kind", {})).items()))
        out.append(f"{side.cluster}: {failed} of {completed + failed} requests failed ({kinds}); "
                   "its numbers are not comparable")
    elif completed == 0:
        out.append(f"{side.cluster}: no request completed")
    mismatches = int(m.get("output_len_mismatches", 0))
    if mismatches:
        out.append(f"{side.cluster}: {mismatches} requests returned a different number of output "
                   "tokens than requested (is ignore_eos honoured?)")
    return out


def compare(test_id: str, workload_id: str, candidate: Side, baseline: Side | None,
            bounds: list[Bound]) -> Comparison:
    comp = Comparison(test_id, workload_id, candidate, baseline, bounds)
    comp.problems += health_problems(candidate)
    if baseline is not None:
        comp.problems += health_problems(baseline)
    for bound in bounds:
        comp.verdicts.append(evaluate(bound, candidate.metrics,
                                      baseline.metrics if baseline else None))
    return comp

