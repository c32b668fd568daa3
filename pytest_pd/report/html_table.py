"""One HTML table of the report: escaped cells, numbers right-aligned, verdict cells coloured."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

VERDICT_CLASS = {"pass": "pd-pass", "FAIL": "pd-fail", "within noise": "pd-noise"}


def table(
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
