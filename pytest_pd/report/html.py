"""HTML fragments for pytest-html: the seed-style comparison table. Everything is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from pytest_pd.comparison import Comparison
from pytest_pd.report.summary import other_verdicts, table_rows

STYLE = """<style>
table.pd-table{border-collapse:collapse;margin:6px 0 14px 0;font-size:13px}
table.pd-table th,table.pd-table td{border:1px solid #bbb;padding:3px 8px}
table.pd-table td.num{text-align:right;font-variant-numeric:tabular-nums}
table.pd-table tr.pd-candidate td{font-weight:bold}
td.pd-pass{background:#d8f5d0;color:#135b0c} td.pd-fail{background:#f9d3d3;color:#8a0d0d}
h2.pd-title{margin-top:18px} p.pd-note{margin:2px 0;font-size:12px}
</style>"""


def _cell(text: str, index: int) -> str:
    classes = []
    if index >= 2:
        classes.append("num")
    if text == "pass":
        classes.append("pd-pass")
    elif text == "FAIL":
        classes.append("pd-fail")
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attr}>{escape(text)}</td>"


def comparison_table(comp: Comparison) -> str:
    rows = table_rows(comp)
    head = "".join(f"<th>{escape(h)}</th>" for h in rows[0])
    body = []
    for n, row in enumerate(rows[1:]):
        cls = ' class="pd-candidate"' if n == 0 else ""
        body.append(f"<tr{cls}>" + "".join(_cell(c, i) for i, c in enumerate(row)) + "</tr>")
    notes = "".join(f'<p class="pd-note">{escape(t)}</p>' for t in other_verdicts(comp))
    verdict = "pass" if comp.passed else "FAIL"
    return (f'<h3>{escape(comp.workload_id)} — <span class="pd-{verdict.lower()}">{verdict}</span> '
            f"<small>{escape(comp.test_id)}</small></h3>"
            f'<table class="pd-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            f"</table>{notes}")


def summary_section(comps: Sequence[Comparison]) -> str:
    if not comps:
        return ""
    return (STYLE + '<h2 class="pd-title">PD acceptance: candidate vs baseline</h2>'
            + "".join(comparison_table(c) for c in comps))
