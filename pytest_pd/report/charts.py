"""Charts for the HTML report: plain numbers in, base64 PNG out (matplotlib, Agg, no pyplot state).

Every function takes series already in the time of the cluster they stand for (simulated runs
scaled back) and returns a base64 string; :func:`img` wraps one in an escaped ``<img>`` tag.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CANDIDATE_COLOR = "#1f5fbf"
BASELINE_COLOR = "#d9822b"
BOUND_COLOR = "#b00020"


def _figure(**kwargs: Any) -> Figure:
    """A new figure; matplotlib is imported here, when a chart is drawn, not when pytest or the
    command line starts (0.4 s of every start)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def img(b64: str, alt: str, kind: str, **data: object) -> str:
    attrs = "".join(f' data-{escape(k.replace("_", "-"))}="{escape(str(v))}"' for k, v in data.items())
    return (
        f'<img class="pd-chart" data-chart="{escape(kind)}"{attrs} alt="{escape(alt)}" '
        f'src="data:image/png;base64,{b64}">'
    )


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def cdfs(panels: Sequence[tuple[str, Mapping[str, Sequence[float]]]]) -> str:
    """One panel per (title, {label: values}): the empirical CDF of each labelled series."""
    fig = _figure(figsize=(5.2 * len(panels), 3.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, series) in zip(axes, panels, strict=True):
        for n, (label, values) in enumerate(series.items()):
            xs = sorted(_finite(values))
            if not xs:
                continue
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(
                xs,
                ys,
                where="post",
                label=f"{label} (n={len(xs)})",
                color=CANDIDATE_COLOR if n == 0 else BASELINE_COLOR,
            )
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("share of requests")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def timelines(panels: Sequence[tuple[str, Sequence[tuple[float, float | None, float | None]]]]) -> str:
    """One panel per (title, [(send, first token, last token) per request]) in seconds from the
    first send: queue-to-first-token in orange, decoding in blue, one row per request."""
    fig = _figure(figsize=(10.4, 0.6 + 2.6 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, rows) in zip(axes, panels, strict=True):
        # one collection per kind of segment, not an artist per request (a 1000-request trace)
        waiting = [(i, send, first) for i, (send, first, _) in enumerate(rows) if first is not None]
        decoding = [(i, first, last) for i, (_, first, last) in enumerate(rows) if None not in (first, last)]
        for segments, color in ((waiting, BASELINE_COLOR), (decoding, CANDIDATE_COLOR)):
            if segments:
                ys, starts, ends = zip(*segments, strict=True)
                ax.hlines(ys, starts, ends, color=color, linewidth=2)
        if rows:
            ax.plot([r[0] for r in rows], range(len(rows)), "|", color="#444", markersize=5)
        ax.set_title(f"{title}: send → first token (orange) → last token (blue)", fontsize=10)
        ax.set_ylabel("request")
        ax.set_xlabel("s since first send")
        ax.grid(alpha=0.3)
    return _png(fig)


def rates(
    title: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    ylabel: str,
    xlabel: str = "s since first send",
) -> str:
    """Lines of (t, value) per label, e.g. output tokens/s per second of the run."""
    fig = _figure(figsize=(10.4, 3.0))
    ax = fig.subplots()
    for n, (label, points) in enumerate(series.items()):
        if points:
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                label=label,
                color=CANDIDATE_COLOR if n == 0 else BASELINE_COLOR if n == 1 else None,
                drawstyle="steps-post",
            )
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    return _png(fig)


def curves(
    panels: Sequence[tuple[str, Mapping[str, Sequence[tuple[float, float]]], float | None]],
    xlabel: str,
) -> str:
    """One panel per (title, {label: (x, y) points}, bound): a latency-throughput curve per side
    (candidate first), the bound drawn as a red dashed line."""
    fig = _figure(figsize=(10.4, 2.8 * math.ceil(len(panels) / 2)), layout="constrained")
    axes = fig.subplots(math.ceil(len(panels) / 2), 2, squeeze=False).ravel()
    for ax, (title, series, bound) in zip(axes, panels, strict=False):
        for n, (label, points) in enumerate(series.items()):
            pts = sorted(points)
            color = CANDIDATE_COLOR if n == 0 else BASELINE_COLOR if n == 1 else None
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label, color=color)
        if bound is not None and math.isfinite(bound):
            ax.axhline(bound, color=BOUND_COLOR, linestyle="--", linewidth=1.2, label="SLO")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return _png(fig)


def trend(
    panels: Sequence[tuple[str, Sequence[float], Sequence[float | None]]],
    labels: Sequence[str],
    bound_label: str = "bound",
    marks: Sequence[Sequence[tuple[int, str]]] = (),
) -> str:
    """One panel per (title, values of the last runs, bound lines): the metric per run, oldest
    first, with each bound drawn as a red dashed line (labelled ``bound_label``) and each change
    point of the panel's ``marks`` (position, text) as a vertical line labelled with its size."""
    fig = _figure(figsize=(10.4, 2.6 * math.ceil(len(panels) / 2)), layout="constrained")
    axes = fig.subplots(math.ceil(len(panels) / 2), 2, squeeze=False).ravel()
    xs = list(range(1, len(labels) + 1))
    for n, (ax, (title, values, bounds)) in enumerate(zip(axes, panels, strict=False)):
        ax.plot(xs, values, marker="o", color=CANDIDATE_COLOR)
        for x, text in marks[n] if n < len(marks) else ():
            ax.axvline(x - 0.5, color=BOUND_COLOR, linewidth=1.5, alpha=0.7)
            ax.annotate(
                text,
                (x - 0.5, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                color=BOUND_COLOR,
                ha="left",
                va="top",
                xytext=(3, -3),
                textcoords="offset points",
            )
        for b in bounds:
            if b is not None and math.isfinite(b):
                ax.axhline(b, color=BOUND_COLOR, linestyle="--", linewidth=1.2, label=bound_label)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        ax.grid(alpha=0.3)
        if any(b is not None for b in bounds):
            ax.legend(fontsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return _png(fig)


PART_COLORS = ("#8c8c8c", "#d9822b", "#1f5fbf", "#2e9e6a", "#9467bd", "#c44e52")


def stacked_bars(bars: Sequence[tuple[str, Sequence[float | None]]], parts: Sequence[str], unit: str) -> str:
    """One horizontal bar per (label, value of each part), the parts stacked left to right in
    the order of ``parts`` (a part without a value is left out of its bar)."""
    fig = _figure(figsize=(10.4, 0.9 + 0.7 * len(bars)), layout="constrained")
    ax = fig.subplots()
    labels = [label for label, _ in bars]
    for i, part in enumerate(parts):
        lefts: list[float] = []
        widths: list[float] = []
        rows: list[int] = []
        for row, (_, values) in enumerate(bars):
            value = values[i]
            if value is None:
                continue
            lefts.append(sum(v for v in values[:i] if v is not None))
            widths.append(value)
            rows.append(row)
        ax.barh(rows, widths, left=lefts, color=PART_COLORS[i % len(PART_COLORS)], label=part, height=0.6)
    ax.set_yticks(range(len(bars)))
    ax.set_yticklabels(labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.grid(alpha=0.3, axis="x")
    fig.legend(fontsize=8, ncol=min(len(parts), 5), loc="outside lower center")
    return _png(fig)
