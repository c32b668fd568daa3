"""Every request's prompt and output length for a workload: spread uniformly (bench_serving's
random dataset), normally or log-normally around the workload's lengths, or drawn from a length
histogram file. Deterministic for a workload's seed."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from .spec import Workload, WorkloadError


def draw_lengths(workload: Workload, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every request's (prompt, output) length, drawn from ``rng`` (the prompt builder's, seeded
    with ``workload.seed``: lengths first). A shared-prefix workload's prompts stay longer than
    the prefix. In a multi-turn workload a later turn's prompt length is its new tokens only
    (``turn_input_len``; the conversation so far comes before them when it is sent)."""
    input_lens, output_lens = _draw(workload, rng)
    if workload.turns > 1:
        input_lens = np.where(
            np.arange(len(input_lens)) % workload.turns == 0, input_lens, workload.turn_input_len
        )
    return input_lens, output_lens


def _draw(workload: Workload, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = workload.num_requests
    if workload.lengths_path:
        pairs, weights = read_length_histogram(Path(workload.lengths_path))
        rows = rng.choice(len(pairs), size=n, p=weights)
        return pairs[rows, 0], pairs[rows, 1]
    if workload.length_distribution == "uniform":
        input_lens = sample_lengths(rng, workload.input_len, workload.range_ratio, n)
        output_lens = sample_lengths(rng, workload.output_len, workload.range_ratio, n)
        return input_lens, output_lens
    floor = workload.prefix_len + 1
    input_lens = _spread(rng, workload.length_distribution, workload.input_len, workload.input_std, n, floor)
    output_lens = _spread(rng, workload.length_distribution, workload.output_len, workload.output_std, n, 1)
    return input_lens, output_lens


def _spread(rng: np.random.Generator, dist: str, mean: int, std: float, n: int, floor: int) -> np.ndarray:
    """n whole lengths with this mean and standard deviation (normal, or log-normal with that
    mean and deviation), at least ``floor``."""
    if std <= 0:
        return np.full(n, max(mean, floor), dtype=np.int64)
    if dist == "normal":
        values = rng.normal(mean, std, n)
    else:
        sigma2 = math.log1p((std / mean) ** 2)
        values = rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), n)
    return np.maximum(np.rint(values), floor).astype(np.int64)


def read_length_histogram(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rows of [input_len, output_len], their probabilities) from a CSV file with a header
    naming ``input_len``, ``output_len`` and optionally ``count``. WorkloadError naming the file,
    the line and what to fix."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"input_len", "output_len"} - set(reader.fieldnames or [])
            if missing:
                raise WorkloadError(
                    f"lengths file {path}: the header must name input_len and output_len (and "
                    f"optionally count); missing {', '.join(sorted(missing))}"
                )
            pairs, counts = [], []
            for line, row in enumerate(reader, start=2):
                try:
                    pair = (int(row["input_len"]), int(row["output_len"]))
                    count = float(row.get("count") or 1)
                except (TypeError, ValueError):
                    raise WorkloadError(
                        f"lengths file {path}, line {line}: input_len and output_len must be whole "
                        f"numbers and count a number, got {dict(row)}"
                    ) from None
                if min(pair) < 1 or not count >= 0:
                    raise WorkloadError(f"lengths file {path}, line {line}: lengths must be >= 1, count >= 0")
                pairs.append(pair)
                counts.append(count)
    except OSError as exc:
        raise WorkloadError(f"cannot read lengths file {path}: {exc.strerror or exc}") from None
    total = sum(counts)
    if not pairs or total <= 0:
        raise WorkloadError(f"lengths file {path}: no rows with a count > 0")
    return np.array(pairs, dtype=np.int64), np.array(counts) / total


def sample_lengths(rng: np.random.Generator, length: int, ratio: float, n: int) -> np.ndarray:
    """n lengths uniform over the integers in [max(int(length*ratio), 1), length]."""
    low = max(int(length * ratio), 1)
    if low >= length:
        return np.full(n, length, dtype=np.int64)
    return rng.integers(low, length, size=n, endpoint=True)
