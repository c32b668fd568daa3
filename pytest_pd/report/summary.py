"""The seed-style comparison table as plain rows, then as terminal text and as markdown.

Columns follow the seed report: config, prefill strategy, TTFT (s), throughput (tok/s), TPOT (ms),
mean latency (s); rows for candidate and baseline, then the delta in %, the bound and the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_pd.comparison import Comparison, Side
from pytest_pd.thresholds import delta_percent


@dataclass(frozen=True)
class Column:
    title: str
    metric: str
    scale: float
    fmt: str


COLUMNS = (
    Column("TTFT (s)", "mean_ttft_ms", 1e-3, "{:.2f}"),
    Column("throughput (tok/s)", "output_throughput", 1.0, "{:.1f}"),
    Column("TPOT (ms)", "mean_tpot_ms", 1.0, "{:.1f}"),
    Column("mean latency (s)", "mean_e2e_latency_ms", 1e-3, "{:.2f}"),
)
HEADER = ("config", "prefill strategy", *(c.title for c in COLUMNS))


def _value(side: Side, col: Column) -> str:
    value = side.metrics.get(col.metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return col.fmt.format(value * col.scale)


def _side_label(side: Side, role: str) -> str:
    sim = f", simulated ×{side.speedup:g}" if side.simulated else ""
    return f"{side.cluster} ({role}{sim})"


def table_rows(comp: Comparison) -> list[tuple[str, ...]]:
    """Header first, then candidate, baseline, Δ %, bound and verdict rows."""
    rows: list[tuple[str, ...]] = [HEADER]
    rows.append((_side_label(comp.candidate, "candidate"), comp.candidate.prefill_strategy,
                 *(_value(comp.candidate, c) for c in COLUMNS)))
    if comp.baseline is None:
        return rows
    b = comp.baseline
    rows.append((_side_label(b, "baseline"), b.prefill_strategy, *(_value(b, c) for c in COLUMNS)))
    deltas = []
    for c in COLUMNS:
        cv, bv = comp.candidate.metrics.get(c.metric), b.metrics.get(c.metric)
        d = delta_percent(float(cv), float(bv)) if cv is not None and bv is not None else math.nan
        deltas.append("n/a" if math.isnan(d) else f"{d:+.1f} %")
    rows.append(("Δ vs baseline", "", *deltas))
    by_metric = {c.metric: [v for v in comp.verdicts if v.bound.metric == c.metric] for c in COLUMNS}
    rows.append(("bound", "", *("; ".join(v.bound.text() for v in by_metric[c.metric]) or "—"
                                for c in COLUMNS)))
    rows.append(("verdict", "", *(verdict_word(by_metric[c.metric]) for c in COLUMNS)))
    return rows


def verdict_word(verdicts: Sequence) -> str:
    if not verdicts:
        return "—"
    return "pass" if all(v.passed for v in verdicts) else "FAIL"


def other_verdicts(comp: Comparison) -> list[str]:
    """Verdicts on metrics outside the table's columns, and measurement problems."""
    shown = {c.metric for c in COLUMNS}
    out = [f"{'pass' if v.passed else 'FAIL'}: {v.message}" for v in comp.verdicts
           if v.bound.metric not in shown]
    return out + [f"FAIL: {p}" for p in comp.problems]


def _render(rows: list[tuple[str, ...]], line: Callable[[Sequence[str], list[int]], str]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [line(r, widths) for r in rows]


def terminal_lines(comp: Comparison) -> list[str]:
    title = f"{comp.test_id} — {comp.workload_id}: {'PASS' if comp.passed else 'FAIL'}"

    def line(cells: Sequence[str], widths: list[int]) -> str:
        padded = [c.ljust(w) if i < 2 else c.rjust(w)
                  for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(padded)

    return [title, *_render(table_rows(comp), line), *(f"  {t}" for t in other_verdicts(comp))]


def markdown(comps: Sequence[Comparison]) -> str:
    out = ["## pytest-pd results", ""]
    for comp in comps:
        out.append(f"### {comp.workload_id} — {'✅ pass' if comp.passed else '❌ FAIL'}")
        out.append(f"`{comp.test_id}`")
        out.append("")
        rows = table_rows(comp)
        out.append("| " + " | ".join(rows[0]) + " |")
        out.append("| " + " | ".join([":--", ":--"] + ["--:"] * (len(rows[0]) - 2)) + " |")
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        out += [f"- {t}" for t in other_verdicts(comp)]
        out.append("")
    return "\n".join(out)
