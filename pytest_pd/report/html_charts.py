"""The report's charts as HTML: the trend over stored runs (with the history's change points), the
prediction trend, the capacity curve, where TTFT went, each run's distributions and timelines, and
the servers' and hosts' telemetry. Escaped like the rest of the report."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from pytest_pd.catalog import HISTORY_METRICS
from pytest_pd.judge.comparison import Comparison
from pytest_pd.prometheus import server_summary
from pytest_pd.record import RunRecord
from pytest_pd.report import charts, series
from pytest_pd.report.history_html import change_marks
from pytest_pd.report.html_table import table
from pytest_pd.report.summary import (
    COLUMNS,
)
from pytest_pd.telemetry import ROUTER
from pytest_pd.ttft_breakdown import INFERRED, MEASURED, PART_TITLES, PARTS, RUN_MEAN
from pytest_pd.twin.predict import JUDGED

WALL = "s since the measurement started"


def _display(metric: str, value: float) -> float:
    col = next((c for c in COLUMNS if c.metric == metric), None)
    return value * col.scale if col else value


def _title(metric: str) -> str:
    col = next((c for c in COLUMNS if c.metric == metric), None)
    return f"{col.title} — {metric}" if col else metric


def trend_chart(comp: Comparison, trend: Sequence[RunRecord]) -> str:
    """The seed table's metrics and every bounded one (a capacity, a p90, a hit rate) over the
    last stored runs of the same cluster and workload (or capacity search), bounds drawn."""
    if not trend:
        return '<p class="pd-note">No stored runs of this cluster and workload yet: no trend.</p>'
    labels = [time.strftime("%m-%d %H:%M", time.gmtime(r.started_at)) for r in trend]
    panels = []
    base = comp.baseline.metrics if comp.baseline else {}
    for metric in dict.fromkeys([*HISTORY_METRICS, *(b.metric for b in comp.bounds)]):
        values = [_display(metric, float(r.metrics.get(metric) or math.nan)) for r in trend]
        bounds = []
        for b in comp.bounds:
            if b.metric != metric:
                continue
            if b.is_ratio and isinstance(base.get(metric), (int, float)):
                bounds.append(_display(metric, b.value * float(base[metric])))
            elif not b.is_ratio:
                bounds.append(_display(metric, b.value))
        panels.append((metric, values, bounds))
    marks = [change_marks(comp, trend, m) for m, _, _ in panels]
    png = charts.trend([(_title(m), v, b) for m, v, b in panels], labels, marks=marks)
    return charts.img(
        png,
        f"trend of the last {len(trend)} runs of {comp.candidate.name}",
        "trend",
        points=len(trend),
        metrics=",".join(metric for metric, _, _ in panels),
    )


def prediction_trend_chart(name: str, trend: Sequence[RunRecord]) -> str:
    """The twin's prediction error per run (predicted vs measured, %), one panel per judged
    statistic: a jump is a finding even when performance did not regress. Empty when no run in
    the trend carries a prediction."""
    predicted = [r for r in trend if r.prediction and r.prediction.get("stats")]
    if not predicted:
        return ""
    labels = [time.strftime("%m-%d %H:%M", time.gmtime(r.started_at)) for r in predicted]
    panels = []
    for stat in JUDGED:
        errors = [
            100 * float(r.prediction["stats"][stat]["error"]) if stat in r.prediction["stats"] else math.nan
            for r in predicted
            if r.prediction
        ]
        panels.append((f"prediction error (%) — {stat}", errors, [0.0]))
    png = charts.trend(panels, labels, bound_label="exact")
    title = f"prediction error of the last {len(predicted)} predicted runs of {name}"
    return f"<h4>{escape(title)}</h4>" + charts.img(png, title, "prediction-trend", points=len(predicted))


CURVE_STATS = ("p90_ttft_ms", "p90_tpot_ms", "mean_ttft_ms", "mean_tpot_ms")


def capacity_chart(comp: Comparison) -> str:
    """Latency against output throughput at every load a capacity search measured, candidate
    and baseline on one chart per statistic (each SLO drawn); empty for an ordinary run."""
    sides = ((comp.candidate, "candidate"), (comp.baseline, "baseline"))
    searched = [
        (f"{r.name} ({role})", r.capacity) for r, role in sides if r is not None and r.capacity is not None
    ]
    if not searched:
        return ""
    slo = searched[0][1].slo
    shown = [s for s in CURVE_STATS if s in slo] or list(CURVE_STATS[:2])
    panels = []
    for stat in shown:
        series = {
            label: [
                (float(p["stats"]["output_throughput"]), _display(stat, float(p["stats"][stat])))
                for p in cap.points
                if isinstance(p["stats"].get(stat), (int, float)) and "output_throughput" in p["stats"]
            ]
            for label, cap in searched
        }
        bound = _display(stat, slo[stat]) if stat in slo else None
        panels.append((_title(stat), series, bound))
    png = charts.curves(panels, "output throughput (tok/s)")
    loads = "; ".join(
        label + ": " + ", ".join(f"{p['load']:g}" for p in sorted(cap.points, key=lambda p: p["load"]))
        for label, cap in searched
    )
    return (
        f"<h4>{escape(comp.workload_id)}: latency against throughput at each load ({escape(loads)})</h4>"
        + charts.img(png, "capacity search: latency against throughput", "capacity", points=len(searched))
    )


def breakdown_notes(b: dict[str, Any]) -> list[str]:
    """What one side's breakdown rests on: which parts were measured per request, which come
    from the servers' run means (fitted, if they were), and what was not measured."""
    by_source: dict[str, list[str]] = {}
    for part, source in (b.get("sources") or {}).items():
        by_source.setdefault(source, []).append(PART_TITLES[part])
    notes = []
    if by_source.get(MEASURED):
        notes.append(
            f"measured per request (the answering server's own timing in each of {b.get('requests')} "
            f"responses): {', '.join(by_source[MEASURED])}"
        )
    if by_source.get(INFERRED):
        notes.append(
            f"{', '.join(by_source[INFERRED])}: the prefill side the decode measured per request, split "
            "in proportion to the prefill servers' run means (/metrics)"
        )
    if by_source.get(RUN_MEAN):
        notes.append(f"from the servers' run means (/metrics): {', '.join(by_source[RUN_MEAN])}")
    if b.get("scaled") is not None:
        notes.append(
            "the prefill servers' queueing, prefill and KV transfer exceeded the time the decode "
            f"server measured for them: scaled by {b['scaled']:.2f} to fit"
        )
    return notes + [f"{PART_TITLES[p]} not measured: {why}" for p, why in (b.get("missing") or {}).items()]


def ttft_breakdown_chart(comp: Comparison) -> str:
    """Where the mean TTFT went on each side (stacked bars) and the parts in a table with the
    candidate's difference; empty when neither side has a breakdown."""
    sides = [
        (f"{r.name} ({role})", r)
        for r, role in ((comp.candidate, "candidate"), (comp.baseline, "baseline"))
        if r is not None
    ]
    shown = [(label, r.ttft_breakdown) for label, r in sides if r.ttft_breakdown]
    if not shown:
        return ""
    titles = [PART_TITLES[p] for p in PARTS]
    png = charts.stacked_bars(
        [(label, [b["parts"].get(p) for p in PARTS]) for label, b in shown], titles, "seconds"
    )
    head = ["part", *(label for label, _ in shown)] + (["difference"] if len(shown) == 2 else [])
    rows = []
    for part, title in zip(PARTS, titles, strict=True):
        values = [b["parts"].get(part) for _, b in shown]
        cells = [title, *("—" if v is None else f"{v:.3f}" for v in values)]
        if len(shown) == 2:
            a, b = values
            cells.append(f"{a - b:+.3f}" if a is not None and b is not None else "")
        rows.append(cells)
    rows.append(
        ["TTFT (client, mean)", *(f"{b['ttft_s']:.3f}" for _, b in shown)] + ([""] if len(shown) == 2 else [])
    )
    said: dict[str, list[str]] = {}  # a note → the sides it holds for, said once
    for label, b in shown:
        for note in breakdown_notes(b):
            said.setdefault(note, []).append(label)
    notes = [f"{' and '.join(labels)}: {note}" for note, labels in said.items()]
    if any(r.simulated for _, r in sides):
        notes.append(
            "a simulated cluster's times are scaled back by its speedup, its client and router "
            "overhead too: that part is larger than a real cluster's would be"
        )
    note = "".join(f'<p class="pd-note">{escape(n)}.</p>' for n in notes)
    return (
        f"<h4>{escape(comp.workload_id)}: where the time to first token goes (mean, seconds; "
        "from the servers' own timing)</h4>"
        + charts.img(png, "TTFT breakdown", "ttft-breakdown", sides=len(shown))
        + table([head, *rows])
        + note
    )


def run_charts(comp: Comparison, candidate: RunRecord, baseline: RunRecord | None) -> str:
    cname = f"{comp.candidate.name} (candidate)"
    bname = f"{comp.baseline.name} (baseline)" if comp.baseline else "baseline"
    runs = [(cname, candidate)] + ([(bname, baseline)] if baseline else [])
    with_records = [(n, r) for n, r in runs if r.runs()]
    missing = [n for n, r in runs if not r.runs()]
    out = []
    if missing:
        out.append(
            f'<p class="pd-note">No per-request records stored for {escape(", ".join(missing))}'
            "; its distributions and timeline are not shown.</p>"
        )
    if not with_records:
        return "".join(out)
    lat = {n: series.latencies(v) for n, v in with_records}
    png = charts.cdfs(
        [
            ("TTFT (s), CDF", {n: t for n, (t, _) in lat.items()}),
            ("E2E latency (s), CDF", {n: e for n, (_, e) in lat.items()}),
        ]
    )
    out.append(charts.img(png, "TTFT and E2E latency distributions", "cdf"))
    png = charts.timelines([(n, series.timeline(v)) for n, v in with_records])
    out.append(charts.img(png, "per-request timeline", "timeline"))
    png = charts.rates(
        "output tokens/s over time", {n: series.output_rate(v) for n, v in with_records}, "tokens/s"
    )
    out.append(charts.img(png, "output tokens per second over time", "tokens-per-s"))
    return "".join(out)


def telemetry_section(runs: Sequence[tuple[str, RunRecord]]) -> str:
    out = []
    for name, run in runs:
        tele = run.telemetry
        out.append(f"<h5>{escape(name)}</h5>")
        if not tele:
            out.append('<p class="pd-note">No telemetry recorded for this run.</p>')
            continue
        gauges = series.server_gauges(tele)
        if gauges:
            png = charts.rates(
                "server-side: running and queued requests (from /metrics)", gauges, "requests", xlabel=WALL
            )
            out.append(charts.img(png, f"server metrics of {name}", "server-metrics"))
        summary = server_summary(tele.get("server") or {})
        router = summary.pop(ROUTER, None)
        if summary:
            out.append(
                '<p class="pd-note">Server-side metrics over the run (counters: change; '
                "histograms: mean; gauges: last value):</p>" + _summary_table(summary)
            )
        if router:
            out.append(
                '<p class="pd-note">Router-side metrics over the run, from its Prometheus port '
                "(counters: change; gauges: last value; smg_worker_health 1 = healthy; "
                "smg_worker_cb_state 0 = circuit closed, 1 = open, 2 = half-open):</p>"
                + _summary_table({ROUTER: router})
            )
        for worker, entry in (tele.get("server") or {}).items():
            if entry.get("errors"):
                why = escape(str(entry.get("last_error")))
                out.append(
                    f'<p class="pd-note">{escape(worker)}: {entry["errors"]} scrape(s) of '
                    f"{escape(entry.get('url', ''))} failed: {why}</p>"
                )
        gpu = series.gpu_series(tele)
        if gpu:
            out.append(
                charts.img(
                    charts.rates("GPU utilisation (nvidia-smi)", gpu, "%", xlabel=WALL),
                    f"GPU utilisation of {name}",
                    "gpu",
                )
            )
            mem = series.gpu_series(tele, "memory_used_mib")
            power = series.gpu_series(tele, "power_w")
            out.append(
                charts.img(
                    charts.rates("GPU memory used (MiB)", mem, "MiB", xlabel=WALL),
                    f"GPU memory of {name}",
                    "gpu-memory",
                )
            )
            out.append(
                charts.img(
                    charts.rates("GPU power (W)", power, "W", xlabel=WALL),
                    f"GPU power of {name}",
                    "gpu-power",
                )
            )
        for host, entry in (tele.get("gpu") or {}).items():
            if not entry.get("available"):
                out.append(
                    f'<p class="pd-note">GPU telemetry not available on {escape(host)}: '
                    f"{escape(str(entry.get('reason')))}</p>"
                )
    return "".join(out)


def _summary_table(summary: Mapping[str, Mapping[str, float]]) -> str:
    """One row per metric, one column per scraped target (sums and counts left out)."""
    keys = sorted(
        {k for row in summary.values() for k in row if not k.split("{", 1)[0].endswith(("_sum", "_count"))}
    )
    rows = [("metric", *summary)] + [(k, *(_num(summary[w].get(k)) for w in summary)) for k in keys]
    return table(rows)


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.6g}"
