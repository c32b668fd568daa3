"""The nightly history in the HTML report: the change points of the stored series (size, interval,
significance, open or not, what changed at each) as a table, and where they fall on the trend
chart. Pure: reads the comparison's findings (``Finding.to_dict()``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from pytest_pd.judge.comparison import Comparison
from pytest_pd.record import RunRecord

NOTHING = "nothing recorded changed (the machines, the network or the load?)"


def _change_text(change: Mapping[str, Any]) -> str:
    where = f" ({', '.join(change['where'])})" if change.get("where") else ""
    return f"{change['fact']}{where}: {change.get('before') or '(none)'} → {change.get('after') or '(none)'}"


def _word(finding: Mapping[str, Any]) -> tuple[str, str]:
    if finding["open"]:
        return "REGRESSION (open)", "pd-fail"
    return str(finding["word"]), "" if finding["worse"] else "pd-pass"


def series_section(comp: Comparison) -> str:
    """The table of the stored series' change points, newest first; a note when there are none."""
    if comp.history_mode == "off":
        return ""
    if not comp.findings:
        return '<p class="pd-note">history: no change point in the stored series.</p>'
    head = ("metric", "since", "change", "95 % interval", "p", "verdict", "what changed")
    rows = []
    for f in reversed(comp.findings):
        word, cls = _word(f)
        lo, hi = f["interval_pct"]
        changes = "<br>".join(escape(_change_text(c)) for c in f["changes"]) or escape(NOTHING)
        cells = [
            escape(f["metric"]),
            escape(f"{f['since']} ({f['per']} {f['position']} of {f['points']})"),
            f"{f['change_pct']:+.1f} %",
            f"{lo:+.1f} … {hi:+.1f} %",
            "&lt; 0.001" if f["pvalue"] < 0.001 else f"{f['pvalue']:.3f}",
            f'<span class="{cls}">{escape(word)}</span>' if cls else escape(word),
            changes,
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    mode = {"warn": "an open regression warns", "fail": "an open regression fails the test"}[
        comp.history_mode
    ]
    return (
        f"<h4>history: change points of the stored series ({escape(mode)})</h4>"
        f'<table class="pd-table pd-history-series"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def regressions_note(comp: Comparison) -> str:
    """The open regressions of the stored series, under the comparison table at the report's top
    (red when they fail the test, amber when they warn)."""
    if not comp.history_regressions:
        return ""
    cls = "pd-fail" if comp.history_mode == "fail" else "pd-warn"
    lines = "".join(
        f'<p class="{cls}">{escape(text).replace(chr(10), "<br>")}</p>' for text in comp.history_regressions
    )
    return f'<div class="pd-history-open">{lines}</div>'


def change_marks(comp: Comparison, trend: Sequence[RunRecord], metric: str) -> list[tuple[int, str]]:
    """(1-based position on the trend chart, "+4.1 %") of each change point of ``metric``'s own
    series whose first run after the change is one of the trend's runs."""
    where = {r.path: n + 1 for n, r in enumerate(trend) if r.path}
    marks = []
    for f in comp.findings:
        if f["metric"] == metric and f["first_run"] in where:
            marks.append((where[f["first_run"]], f"{f['change_pct']:+.1f} %"))
    return marks
