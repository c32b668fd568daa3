"""The values of pytest-pd's options, pure: argparse ``type=`` parsers shared by the pytest options
(:mod:`pytest_pd.options`) and the command line (``pytest-pd bench``), and :class:`Settings`, a
session's options resolved and typed."""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path

from pytest_pd.history.verdict import MODES as HISTORY_MODES
from pytest_pd.history.verdict import HistorySettings
from pytest_pd.results import parse_age
from pytest_pd.workload.metrics import SLO_KEYS

BASELINE_MODES = ("live", "stored")


# --------------------------------------------------------------------------- parsers


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _whole(text: str, least: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < least:
        raise argparse.ArgumentTypeError(f"{text!r}: must be {least} or more")
    return n


def positive_int(text: str) -> int:
    return _whole(text, 1)


def count(text: str) -> int:
    """A whole number ≥ 0."""
    return _whole(text, 0)


def positive_number(text: str) -> float:
    value = _number(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number > 0")
    return value


def share(text: str) -> float:
    """'5%' or '0.05' → 0.05."""
    text = str(text).strip()
    value = _number(text[:-1]) / 100.0 if text.endswith("%") else _number(text)
    if not (0 <= value < 1):
        raise argparse.ArgumentTypeError(f"{text!r}: write a share between 0 and 1 (e.g. 5% or 0.05)")
    return value


def age(text: str) -> float:
    """'12h', '7d', '2w' → seconds; '0' → no limit."""
    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def slos(text: str) -> dict[str, float]:
    """``ttft_ms=2000,tpot_ms=50`` → {"ttft_ms": 2000.0, "tpot_ms": 50.0} (milliseconds, > 0)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in SLO_KEYS:
            raise argparse.ArgumentTypeError(
                f"{part!r}: write NAME=MILLISECONDS with NAME one of {', '.join(sorted(SLO_KEYS))} "
                "(e.g. ttft_ms=2000,tpot_ms=50)"
            )
        bound = _number(value)
        if not bound > 0:
            raise argparse.ArgumentTypeError(f"{part!r}: the bound must be > 0 ms")
        out[name.strip()] = bound
    return out


def history_mode(text: str) -> str:
    text = str(text).strip().lower()
    if text not in HISTORY_MODES:
        raise argparse.ArgumentTypeError(f"{text!r}: use one of {', '.join(HISTORY_MODES)}")
    return text


def history_per(text: str) -> str:
    text = str(text).strip().lower()
    if text not in ("night", "run"):
        raise argparse.ArgumentTypeError(f"{text!r}: use night (a point per UTC day) or run")
    return text


def pvalue(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a significance level between 0 and 1, e.g. 0.001")
    return value


def results_url(text: str) -> str:
    """A results index URL; "" (as an unset CI secret expands to) means none."""
    schemes = ("postgresql://", "postgres://", "postgresql+psycopg://", "sqlite:///")
    if text.strip() and not text.startswith(schemes):
        shown = re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", text)  # never print a password
        raise argparse.ArgumentTypeError(
            f"{shown!r}: write postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or leave it out for the "
            "SQLite index in the results folder)"
        )
    return text


def baseline_mode(text: str) -> str:
    if text in BASELINE_MODES or Path(text).exists():
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use live, stored, or the path of a results file or folder")


# --------------------------------------------------------------------------- pytest wiring


@dataclass(frozen=True)
class Settings:
    """Every option of a session, resolved (command line over ini) and typed."""

    cluster: str
    cluster_dir: Path
    run_dir: Path
    results_dir: Path
    baseline: str  # "auto", "live", "stored" or a path
    baseline_max_age_s: float
    save_baseline: bool
    compare_last: bool
    fail_on_regression: bool
    noise_band: float
    repeats: int
    slo: dict[str, float]
    trend_runs: int
    keep_on_failure: bool
    store_requests: bool
    telemetry_interval_s: float
    history: HistorySettings
    results_url: str | None  # None: the SQLite index in results_dir
    results_origin: str | None  # this runner's name in a shared index (None: HOST:/abs/dir)
