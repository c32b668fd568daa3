"""HTML for the pytest-html report: header, the seed-style comparison table, "vs last run",
charts, server-side metrics and host telemetry, cluster files and commands, and log tails for
failures. It only renders what it is given; every piece of text is escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import yaml

from pytest_pd.failure import Failure
from pytest_pd.judge.comparison import Comparison
from pytest_pd.record import RunRecord
from pytest_pd.report.header import header_section
from pytest_pd.report.history_html import regressions_note, series_section
from pytest_pd.report.html_charts import (
    capacity_chart,
    prediction_trend_chart,
    run_charts,
    telemetry_section,
    trend_chart,
    ttft_breakdown_chart,
)
from pytest_pd.report.html_table import VERDICT_CLASS, table
from pytest_pd.report.summary import (
    baseline_lines,
    history_table,
    other_verdicts,
    outcome_word,
    table_rows,
)

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
        + table(
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
    return table(rows, "pd-table pd-verdicts", row_classes=classes)


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
        + table(rows, "pd-table pd-history", cell_classes=classes)
    )


# ----------------------------------------------------------------------------- details (charts…)


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
