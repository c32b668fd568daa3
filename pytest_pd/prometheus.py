"""Prometheus text and the arithmetic on it, pure: parsing a scrape (``prometheus_client``'s
parser), a run's change per worker from its first and last samples, and sums over workers by
label. Engine-neutral: the metric names are each engine's (:mod:`pytest_pd.cluster.engines`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def _label_text(labels: Mapping[str, str]) -> str:
    shown = {k: v for k, v in labels.items() if k != "model_name"}
    return "{" + ",".join(f"{k}={v}" for k, v in sorted(shown.items())) + "}" if shown else ""


def parse_prometheus(text: str, families: Collection[str] = ()) -> dict[str, float]:
    """Prometheus text → {sample name (with labels other than model_name): value}; histogram
    buckets and ``_created`` timestamps are left out (sums and counts stay). With ``families``,
    only samples of those names (a counter's with its ``_total``) are kept."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_bucket", "_created")):
                continue
            if families and sample.name not in families and family.name not in families:
                continue
            out[sample.name + _label_text(sample.labels)] = float(sample.value)
    return out


def server_summary(server: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per worker, the change of every counter/sum over the run and the last value of everything
    else, plus histogram means (``…_seconds_mean``) from sum and count deltas. Pure."""
    out: dict[str, dict[str, float]] = {}
    for name, entry in server.items():
        samples = entry.get("samples") or []
        if not samples:
            continue
        first, last = samples[0]["values"], samples[-1]["values"]
        row: dict[str, float] = {}
        for key, value in last.items():
            base = key.split("{", 1)[0]
            if base.endswith(("_total", "_sum", "_count")):
                row[key] = value - first.get(key, 0.0)
            else:
                row[key] = value
        for key in list(row):
            if key.split("{", 1)[0].endswith("_sum"):
                count_key = key.replace("_sum", "_count", 1)
                count = row.get(count_key)
                if count:
                    row[key.replace("_sum", "_mean", 1)] = row[key] / count
        out[name] = row
    return out


def series_labels(key: str) -> dict[str, str]:
    """The labels of a sample key as :func:`parse_prometheus` writes it (``name{a=1,b=2}``)."""
    _, _, rest = key.partition("{")
    return dict(p.split("=", 1) for p in rest.rstrip("}").split(",") if "=" in p)


def series_total(
    rows: Mapping[str, Mapping[str, float]], name: str, engines: Collection[str], **labels: str
) -> float:
    """The sum of sample ``name`` over every worker's row of :func:`server_summary` (a
    counter's change over the run) whose ``engine_type`` is one of ``engines`` and whose labels
    include ``labels``."""
    total = 0.0
    for row in rows.values():
        for key, value in row.items():
            if key.partition("{")[0] != name:
                continue
            have = series_labels(key)
            if have.get("engine_type") in engines and all(have.get(k) == v for k, v in labels.items()):
                total += value
    return total
