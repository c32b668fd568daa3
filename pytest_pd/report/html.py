"""HTML for the pytest-html report: header, the seed-style comparison table, "vs last run",
charts, server-side metrics and host telemetry, cluster files and commands, and log tails for
failures. It only renders what it is given; every piece of text is escaped."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import yaml

from pytest_pd.catalog import HISTORY_METRICS
from pytest_pd.failure import Failure
from pytest_pd.judge.comparison import Comparison
from pytest_pd.prometheus import server_summary
from pytest_pd.record import RunRecord
from pytest_pd.report import charts, series
from pytest_pd.report.header import header_section
from pytest_pd.report.history_html import change_marks, regressions_note, series_section
from pytest_pd.report.summary import (
    COLUMNS,
    baseline_lines,
    history_table,
    other_verdicts,
    outcome_word,
    table_rows,
)
from pytest_pd.telemetry import ROUTER
from pytest_pd.ttft_breakdown import PART_TITLES, PARTS
from pytest_pd.twin.predict import JUDGED

STYLE = """<style>
.pd-report{font-size:13px}
table.pd-table{border-collapse:collapse;margin:6px 0 14px 0;font-size:13px}
table.pd-table th,table.pd-table td{border:1px solid #bbb;padding:3px 8px}
table.pd-table td.num{text-align:right;font-variant-numeric:tabular-nums}
table.pd-table tr.pd-candidate td{font-weight:bold}
td.pd-pass,span.pd-pass{background:#d8f5d0;color:#135b0c}
td.pd-fail,span.pd-fail,p.pd-fail,tr.pd-fail-row td{background:#f9d3d3;color:#8a0d0d}
td.pd-noise,span.pd-noise,tr.pd-noise-row td{background:#fcefc7;color:#6b4e00}
td.pd-warn,p.pd-warn{background:#fcefc7;color:#6b4e00}
h2.pd-title{margin-top:18px} p.pd-note{margin:2px 0;font-size:12px}
img.pd-chart{display:block;max-width:100%;height:auto;margin:6px 0;border:1px solid #ddd}
pre.pd-pre{background:#f6f6f6;border:1px solid #ddd;padding:6px;max-height:420px;overflow:auto;
font-size:11px;white-space:pre-wrap}
dl.pd-header{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:6px 0}
dl.pd-header dt{font-weight:bold} dl.pd-header dd{margin:0}
</style>"""

WALL = "s since the measurement started"
VERDICT_CLASS = {"pass": "pd-pass", "FAIL": "pd-fail", "within noise": "pd-noise"}


def _table(
    rows: Sequence[Sequence[str]],
    cls: str = "pd-table",
    row_classes: Sequence[str] = (),
    cell_classes: Mapping[tuple[int, int], str] | None = None,
    numeric_from: int = 1,
) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in rows[0])
    body = []
    for r, row in enumerate(rows[1:]):
        rc = row_classes[r] if r < len(row_classes) and row_classes[r] else ""
        cells = []
        for c, text in enumerate(row):
            classes = ["num"] if c >= numeric_from else []
            extra = (cell_classes or {}).get((r, c)) or VERDICT_CLASS.get(text)
            if extra:
                classes.append(extra)
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{escape(text)}</td>")
        body.append((f'<tr class="{rc}">' if rc else "<tr>") + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def comparison_table(comp: Comparison) -> str:
    """The seed table; a failing column is red from the candidate's value to the verdict."""
    rows = table_rows(comp)
    cell_classes: dict[tuple[int, int], str] = {}
    if len(rows) > 2:
        verdict_row = rows[-1]
        for c, word in enumerate(verdict_row):
            if c >= 2 and word in ("FAIL", "within noise"):
                for r in range(len(rows) - 1):
                    cell_classes[(r, c)] = VERDICT_CLASS[word]
    notes = "".join(f'<p class="pd-note">{escape(t)}</p>' for t in other_verdicts(comp))
    notes += "".join(f'<p class="pd-note">{escape(t)}</p>' for t in baseline_lines(comp))
    word = outcome_word(comp)
    cls = "pd-pass" if comp.passed else "pd-noise" if comp.xfail_reason else "pd-fail"
    return (
        f'<h3 class="pd-workload">{escape(comp.workload_id)} — <span class="{cls}">'
        f"{escape(word)}</span> <small>{escape(comp.test_id)}</small></h3>"
        + _table(
            rows,
            "pd-table pd-comparison",
            row_classes=["pd-candidate"],
            cell_classes=cell_classes,
            numeric_from=2,
        )
        + verdict_table(comp)
        + notes
    )


def verdict_table(comp: Comparison) -> str:
    """One row per bound: both values, the ratio, the bound, the interval and the verdict."""
    if not comp.verdicts:
        return ""
    rows: list[tuple[str, ...]] = [
        ("metric", "candidate", "baseline", "ratio", "bound", "95 % CI", "verdict")
    ]
    classes = []
    for v in comp.verdicts:
        ratio = v.ratio
        ci = (
            "—"
            if v.ci is None
            else (f"{v.ci[0]:.3f}×–{v.ci[1]:.3f}×" if v.bound.is_ratio else f"{v.ci[0]:.4g}–{v.ci[1]:.4g}")
        )
        rows.append(
            (
                v.bound.metric,
                f"{v.candidate:.4g}",
                "—" if v.baseline is None else f"{v.baseline:.4g}",
                "—" if ratio is None else f"{ratio:.3f}×",
                v.bound.text(),
                ci,
                v.word,
            )
        )
        classes.append({"FAIL": "pd-fail-row", "within noise": "pd-noise-row"}.get(v.word, ""))
    return _table(rows, "pd-table pd-verdicts", row_classes=classes)


def history_section(comp: Comparison) -> str:
    rows = history_table(comp)
    if not rows:
        return ""
    classes = {
        (r, 5): ("pd-fail" if comp.fail_on_regression else "pd-warn")
        for r, row in enumerate(rows[1:])
        if row[5] != "ok"
    }
    return (
        "<h4>vs last run</h4>"
        f'<p class="pd-note">last run: {escape(str(comp.last.path if comp.last else ""))}</p>'
        + _table(rows, "pd-table pd-history", cell_classes=classes)
    )


# ----------------------------------------------------------------------------- details (charts…)


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
    notes = [
        f"{label}: {PART_TITLES[p]} not measured: {why}"
        for label, b in shown
        for p, why in b.get("missing", {}).items()
    ]
    if any(r.simulated for _, r in sides):
        notes.append(
            "a simulated cluster's times are scaled back by its speedup, its client and router "
            "overhead too: that part is larger than a real cluster's would be"
        )
    note = "".join(f'<p class="pd-note">{escape(n)}.</p>' for n in notes)
    return (
        f"<h4>{escape(comp.workload_id)}: where the time to first token goes (mean, seconds; "
        "from the servers' /metrics)</h4>"
        + charts.img(png, "TTFT breakdown", "ttft-breakdown", sides=len(shown))
        + _table([head, *rows])
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
    return _table(rows)


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.6g}"


def log_section(tails: Mapping[str, Mapping[str, str]]) -> str:
    out = []
    for cluster, procs in tails.items():
        for proc, text in procs.items():
            out.append(
                f"<h5>{escape(cluster)}: {escape(proc)} (last lines of its log)</h5>"
                f'<pre class="pd-pre pd-log">{escape(text)}</pre>'
            )
    return "".join(out)


def details_section(
    comp: Comparison,
    candidate: RunRecord,
    baseline: RunRecord | None,
    trend: Sequence[RunRecord],
    tails: Mapping[str, Mapping[str, str]] | None = None,
    extras: Sequence[str | None] = (),
) -> str:
    """Charts, history, telemetry, (for failures) log tails and the suite's ``extras`` (trusted
    HTML from the ``pytest_pd_report_extras`` hook) of one comparison: ``candidate`` and
    ``baseline`` are the full records (with requests and telemetry) of its two sides."""
    runs = [(f"{comp.candidate.name} (candidate)", candidate)]
    if baseline is not None and comp.baseline is not None:
        runs.append((f"{comp.baseline.name} (baseline, {comp.baseline_source})", baseline))
    parts = [
        f'<div class="pd-details" data-workload="{escape(comp.workload_id)}">',
        f"<h3>{escape(comp.workload_id)}: charts</h3>",
        capacity_chart(comp),
        ttft_breakdown_chart(comp),
        run_charts(comp, candidate, baseline),
        f"<h4>trend: last {len(trend)} run(s) of {escape(comp.candidate.name)}</h4>",
        trend_chart(comp, trend),
        series_section(comp),
        prediction_trend_chart(comp.candidate.name, trend),
        f"<h3>{escape(comp.workload_id)}: server-side metrics and host telemetry</h3>",
        telemetry_section(runs),
    ]
    if tails:
        parts += [f"<h3>{escape(comp.workload_id)}: log tails</h3>", log_section(tails)]
    parts += [extra for extra in extras if extra]
    parts.append("</div>")
    return "".join(parts)


def cluster_files(runs: Sequence[RunRecord]) -> dict[str, dict[str, str]]:
    """{cluster: {"file", "yaml", "commands"}} from run records (already redacted)."""
    out = {}
    for run in runs:
        cluster = run.cluster
        if cluster.name in out:
            continue
        spec = _drop_none(cluster.spec)
        out[cluster.name] = {
            "file": cluster.file or "",
            "yaml": yaml.safe_dump(spec, sort_keys=False) if spec else "(not stored)",
            "commands": cluster.commands or "(not stored)",
        }
    return out


def _drop_none(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_drop_none(v) for v in data]
    return data


def clusters_section(clusters: Mapping[str, Mapping[str, str]]) -> str:
    out = []
    for name, c in clusters.items():
        out.append(
            f"<h4>{escape(name)} <small>{escape(c.get('file', ''))}</small></h4>"
            '<p class="pd-note">cluster file as resolved (defaults filled in, unset keys '
            "left out, secrets redacted):</p>"
            f'<pre class="pd-pre pd-cluster-file">{escape(c.get("yaml", ""))}</pre>'
            f'<p class="pd-note">rendered commands:</p>'
            f'<pre class="pd-pre pd-commands">{escape(c.get("commands", ""))}</pre>'
        )
    return "".join(out)


def failure_section(failures: Sequence[Failure]) -> str:
    """Failed bring-ups and runs: the cause, where logs and results files are, the log tails."""
    out = []
    for f in failures:
        out.append(
            f'<div class="pd-failure"><h3><span class="pd-fail">{escape(f.cluster)}: '
            f"{escape(f.stage)} failed</span> <small>{escape(f.kind)}"
            f'</small></h3><pre class="pd-pre pd-failure-message">{escape(f.message)}'
            f'</pre><p class="pd-note">logs kept in {escape(str(f.run_dir))}</p>'
        )
        out += [f'<p class="pd-note">recorded in {escape(path)}</p>' for path in f.recorded.values()]
        out.append(log_section({f.cluster: f.logs}) + "</div>")
    return "".join(out)


def summary_section(
    comps: Sequence[Comparison],
    header: Mapping[str, Any] | None = None,
    details: Sequence[str] = (),
    clusters: Mapping[str, Mapping[str, str]] | None = None,
    failures: Sequence[Failure] = (),
) -> str:
    """The report's top: failed bring-ups/runs, header, every comparison table, then details and
    cluster files. ``details`` are fragments from :func:`details_section` (already rendered and
    escaped)."""
    if not comps and not failures:
        return ""
    parts = [STYLE, '<div class="pd-report">']
    if failures:
        parts += ['<h2 class="pd-title">Cluster failures</h2>', failure_section(failures)]
    if comps:
        parts.append('<h2 class="pd-title">PD acceptance: candidate vs baseline</h2>')
    if header:
        parts.append(header_section(header))
    for comp in comps:
        parts.append(comparison_table(comp) + regressions_note(comp) + history_section(comp))
    if details:
        parts.append('<h2 class="pd-title">Charts, telemetry and logs</h2>')
        parts += list(details)
    if clusters:
        parts.append('<h2 class="pd-title">Cluster files and commands</h2>')
        parts.append(clusters_section(clusters))
    parts.append("</div>")
    return "".join(parts)
