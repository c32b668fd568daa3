"""The seed-style comparison table as plain rows, then as terminal text and as markdown.

Columns follow the seed report: config, prefill strategy, TTFT (s), throughput (tok/s), TPOT (ms),
mean latency (s); rows for candidate and baseline, then the delta in %, the bound and the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_pd.catalog import higher_is_better
from pytest_pd.failure import Failure
from pytest_pd.judge.comparison import Comparison
from pytest_pd.judge.thresholds import delta_percent
from pytest_pd.record import CapacitySearch, RunRecord
from pytest_pd.twin.predict import prediction_line
from pytest_pd.workload.chat import NO_TEMPLATE_NOTE
from pytest_pd.workload.record import TOKENS_ONE_PER_CHUNK, TOKENS_SERVER, TOKENS_TOKENIZER


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


def _value(run: RunRecord, col: Column) -> str:
    value = run.metrics.get(col.metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return col.fmt.format(value * col.scale)


def _side_label(run: RunRecord, role: str, engine: bool = False) -> str:
    """'cpu-1p1d (candidate, sglang 0.5.23)': the engine is named when the two sides differ in it."""
    sim = f", simulated ×{run.speedup:g}" if run.simulated else ""
    eng = f", {engine_of(run)}" if engine else ""
    return f"{run.name} ({role}{eng}{sim})"


def engines_differ(comp: Comparison) -> bool:
    return comp.baseline is not None and comp.baseline.cluster.engine != comp.candidate.cluster.engine


def table_rows(comp: Comparison) -> list[tuple[str, ...]]:
    """Header first, then candidate, baseline, Δ %, bound and verdict rows."""
    rows: list[tuple[str, ...]] = [HEADER]
    engine = engines_differ(comp)
    rows.append(
        (
            _side_label(comp.candidate, "candidate", engine),
            comp.candidate.cluster.prefill_strategy,
            *(_value(comp.candidate, c) for c in COLUMNS),
        )
    )
    if comp.baseline is None:
        return rows
    b = comp.baseline
    rows.append(
        (_side_label(b, "baseline", engine), b.cluster.prefill_strategy, *(_value(b, c) for c in COLUMNS))
    )
    deltas = []
    for c in COLUMNS:
        cv, bv = comp.candidate.metrics.get(c.metric), b.metrics.get(c.metric)
        d = delta_percent(float(cv), float(bv)) if cv is not None and bv is not None else math.nan
        deltas.append("n/a" if math.isnan(d) else f"{d:+.1f} %")
    rows.append(("Δ vs baseline", "", *deltas))
    by_metric = {c.metric: [v for v in comp.verdicts if v.bound.metric == c.metric] for c in COLUMNS}
    rows.append(
        ("bound", "", *("; ".join(v.bound.text() for v in by_metric[c.metric]) or "—" for c in COLUMNS))
    )
    rows.append(("verdict", "", *(verdict_word(by_metric[c.metric]) for c in COLUMNS)))
    return rows


def verdict_word(verdicts: Sequence) -> str:
    """One word for a column's verdicts: FAIL beats "within noise" beats pass."""
    if not verdicts:
        return "—"
    words = [v.word for v in verdicts]
    for word in ("FAIL", "within noise"):
        if word in words:
            return word
    return "pass"


def _baseline_source(comp: Comparison) -> str:
    base = comp.baseline
    if base is not None and base.session is not None and base.session == comp.candidate.session:
        why = comp.baseline_source.partition("no usable stored run: ")[2].removesuffix(")")
        # a stored run that exists but was launched otherwise: say why it was measured again
        return "measured in this session" + (f" ({why})" if "launched otherwise" in why else "")
    return f"stored run {base.path if base else None}"


def engine_of(run: RunRecord) -> str:
    """The versions its servers reported when they all name the cluster's engine ('vllm 0.32.0'),
    else the engine and those versions ('toy (toy on sim (pytest-pd))'), or the engine alone."""
    engine = run.cluster.engine or "unknown engine"
    versions = sorted(set(run.environment.engines.values()))
    if not versions:
        return engine
    if all(v.split(" ", 1)[0] == engine for v in versions):
        return ", ".join(versions)
    return f"{engine} ({', '.join(versions)})"


def baseline_lines(comp: Comparison) -> list[str]:
    """Where the baseline came from, whether it runs another engine, and the last run compared
    with."""
    out = []
    if comp.baseline is not None:
        out.append(f"baseline: {comp.baseline.name}, {_baseline_source(comp)}")
        if engines_differ(comp):
            out.append(
                f"engines differ: candidate {engine_of(comp.candidate)}, baseline "
                f"{engine_of(comp.baseline)}; the ratios compare engines as well as topologies"
            )
    if comp.last is not None:
        out.append(f"last run: {comp.last.path or '(not stored)'}")
    return out


HISTORY_HEADER = ("metric", "this run", "last run", "vs last run", "noise band", "vs last")


def _num(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def history_table(comp: Comparison) -> list[tuple[str, ...]]:
    """Header, then one row per metric: this run, the last run, the change ("vs last run"), the
    noise band and whether it is a regression. Empty without a last run."""
    if not comp.history:
        return []
    rows: list[tuple[str, ...]] = [HISTORY_HEADER]
    for h in comp.history:
        change = "n/a" if math.isnan(h.change_pct) else f"{h.change_pct:+.1f} %"
        if h.ci is not None:
            change += f" (CI {(h.ci[0] - 1) * 100:+.1f}…{(h.ci[1] - 1) * 100:+.1f} %)"
        word = ("REGRESSION" if comp.fail_on_regression else "regression (warning)") if h.regression else "ok"
        rows.append((h.metric, _num(h.current), _num(h.last), change, f"±{h.band_pct:.1f} %", word))
    return rows


def other_verdicts(comp: Comparison) -> list[str]:
    """Verdicts on metrics outside the table's columns, measurement problems, and how to read
    simulated numbers."""
    shown = {c.metric for c in COLUMNS}
    out = [f"{v.word}: {v.message}" for v in comp.verdicts if v.bound.metric not in shown or v.ci is not None]
    out += [f"warning: {w}" for w in comp.warnings()]
    out += [f"FAIL: {p}" for p in comp.problems]
    sims = [r for r in (comp.candidate, comp.baseline) if r and r.simulated and r.speedup != 1.0]
    if sims:
        names = " and ".join(f"{r.name} (×{r.speedup:g})" for r in sims)
        out.append(
            f"note: {names} simulated faster than real time; times and rates above are "
            "scaled back to real time"
        )
    for run in (comp.candidate, comp.baseline):
        if run is not None:
            out += [f"note: {run.name}: {n}" for n in measurement_notes(run.metrics)]
            if run.prediction is not None:
                out.append(f"note: {run.name}: {prediction_line(run.prediction)}")
            if run.capacity is not None:
                out.append(f"note: {run.name}: {capacity_line(run.capacity)}")
    return out


def capacity_line(cap: CapacitySearch) -> str:
    """What a capacity search found, in one line: the figure, the SLOs, the bracket, the model's."""
    unit = "requests in flight" if cap.over == "concurrency" else "requests/s"
    slo = ", ".join(f"{k} {'≥' if higher_is_better(k) else '≤'} {v:g}" for k, v in cap.slo.items())
    low, high = (cap.bracket + [None, None])[:2]
    if cap.capacity is None:
        found = f"no load met {slo} (lowest tried: {min((p['load'] for p in cap.points), default=0):g})"
    elif cap.limited_by_search:
        found = f"capacity at least {cap.capacity:g} {unit} under {slo} (every load tried met them)"
    else:
        found = f"capacity {cap.capacity:g} {unit} under {slo}; the knee lies below {high:g}"
    model = f"; the timing model says {cap.predicted:g}" if cap.predicted is not None else ""
    return f"{found} ({len(cap.points)} loads measured){model}"


def measurement_notes(metrics: Mapping[str, Any]) -> list[str]:
    """How a run's numbers were counted where that is not the server's own per-token count: the
    per-chunk token counts behind ITL/TPOT, and input lengths the client could not check."""
    notes = []
    source = metrics.get("token_count_source")
    if source and source != TOKENS_SERVER:
        how = {
            TOKENS_TOKENIZER: "counted with the tokenizer from each chunk's text (no per-chunk usage)",
            TOKENS_ONE_PER_CHUNK: "one per chunk (no per-chunk usage, no tokenizer): ITL/TPOT may be off",
        }.get(source, source)
        notes.append(f"tokens per chunk {how}")
    unchecked = metrics.get("input_len_unchecked") or 0
    if unchecked:
        notes.append(f"{NO_TEMPLATE_NOTE} ({unchecked:.0f} requests)")
    return notes


def _render(rows: list[tuple[str, ...]], line: Callable[[Sequence[str], list[int]], str]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [line(r, widths) for r in rows]


def outcome_word(comp: Comparison) -> str:
    if comp.passed:
        return "PASS"
    return "XFAIL (within noise)" if comp.xfail_reason else "FAIL"


def terminal_lines(comp: Comparison) -> list[str]:
    title = f"{comp.test_id} — {comp.workload_id}: {outcome_word(comp)}"

    def line(cells: Sequence[str], widths: list[int]) -> str:
        padded = [
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded)

    def hline(cells: Sequence[str], widths: list[int]) -> str:
        padded = [
            c.ljust(w) if i in (0, 5) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded)

    out = [title, *_render(table_rows(comp), line), *(f"  {t}" for t in other_verdicts(comp))]
    out += [f"  {t}" for t in baseline_lines(comp)]
    history = history_table(comp)
    if history:
        out += ["  vs last run:", *(f"    {t}" for t in _render(history, hline))]
    out += [f"  {t}" for t in series_lines(comp)]
    return out


def series_lines(comp: Comparison) -> list[str]:
    """What the stored series say (--pd-history): each open regression with what changed, else
    how many change points the series hold."""
    if comp.history_mode == "off":
        return []
    if comp.history_regressions:
        return [line for text in comp.history_regressions for line in text.splitlines()]
    if comp.findings:
        return [f"history: {len(comp.findings)} change point(s) in the stored series, no regression open"]
    return ["history: no change point in the stored series"]


def markdown(comps: Sequence[Comparison]) -> str:
    out = ["## pytest-pd results", ""]
    for comp in comps:
        word = "✅ pass" if comp.passed else "⚠️ xfail (within noise)" if comp.xfail_reason else "❌ FAIL"
        out.append(f"### {comp.workload_id} — {word}")
        out.append(f"`{comp.test_id}`")
        out.append("")
        rows = table_rows(comp)
        out.append("| " + " | ".join(rows[0]) + " |")
        out.append("| " + " | ".join([":--", ":--"] + ["--:"] * (len(rows[0]) - 2)) + " |")
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        out += [f"- {t}" for t in other_verdicts(comp)]
        out += [f"- {t}" for t in baseline_lines(comp)]
        out.append(f"- {versions_line(comp.candidate)}")
        out += [f"- {t.strip()}" for t in series_lines(comp)]
        history = history_table(comp)
        if history:
            out += ["", "| " + " | ".join(history[0]) + " |", "| :-- | --: | --: | --: | --: | :-- |"]
            out += ["| " + " | ".join(r) + " |" for r in history[1:]]
        out.append("")
    return "\n".join(out)


def versions_line(run: RunRecord) -> str:
    """'versions: engine …; router …; pytest-pd …' of a run, for the step summary."""
    engines = ", ".join(sorted(set(run.environment.engines.values()))) or "unknown"
    router = run.environment.router or "unknown"
    harness = run.environment.pytest_pd
    return f"versions: engine {engines}; router {router}; pytest-pd {harness}"


def failure_lines(failure: Failure) -> list[str]:
    """A failed bring-up or run for the terminal: what, where the logs and the results files are."""
    stage = {
        "bring-up": "bring-up failed",
        "run": "failed while running",
        "interrupted": "interrupted while running",
    }.get(failure.stage, failure.stage)
    lines = [f"{failure.cluster}: {stage} ({failure.kind})"]
    message = failure.message.splitlines()
    lines += [f"  {line}" for line in message[:3]]
    if len(message) > 3:
        lines.append(f"  … ({len(message) - 3} more lines in the report)")
    lines.append(f"  logs kept in {failure.run_dir}")
    lines += [f"  recorded in {path}" for path in failure.recorded.values()]
    return lines
