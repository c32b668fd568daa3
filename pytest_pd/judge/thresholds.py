"""Threshold markers -> verdicts. Pure: numbers in, verdicts out.

``@pytest.mark.pd_threshold("mean_ttft_ms", max_ratio=1.5)`` bounds the candidate relative to the
baseline measured on the same workload; ``max=`` / ``min=`` are absolute bounds (SLOs) on the
candidate alone. Several bounds may be given in one marker and markers stack.

With repeats (``--pd-repeats N``) every verdict also carries a bootstrap confidence interval of the
judged value (the ratio, or the candidate's median): inside the bound → pass, outside → fail, and
straddling it → "within noise", which counts as the marker's ``noise=`` says ("fail" by default,
"pass", or "xfail").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_pd.errors import PdError
from pytest_pd.judge.noise import bootstrap_ci

BOUND_KINDS = ("max_ratio", "min_ratio", "max", "min")
NOISE_MODES = ("fail", "pass", "xfail")
PASS, FAIL, NOISE = "pass", "fail", "within noise"


class ThresholdError(PdError):
    """A marker that cannot be evaluated as written."""


@dataclass(frozen=True)
class Bound:
    metric: str
    kind: str  # one of BOUND_KINDS
    value: float
    noise: str = "fail"  # how a "within noise" verdict counts: one of NOISE_MODES

    @property
    def is_ratio(self) -> bool:
        return self.kind.endswith("_ratio")

    def text(self) -> str:
        op = "≤" if self.kind.startswith("max") else "≥"
        return f"{op} {self.value:g}× baseline" if self.is_ratio else f"{op} {self.value:g}"


@dataclass(frozen=True)
class Verdict:
    bound: Bound
    candidate: float
    baseline: float | None
    passed: bool
    message: str
    status: str = ""  # PASS, FAIL or NOISE ("" in comparisons stored before there was one)
    ci: tuple[float, float] | None = None  # bootstrap interval of the judged value (repeats)

    @property
    def word(self) -> str:
        """What the report shows: pass, FAIL, or "within noise"."""
        status = self.status or (PASS if self.passed else FAIL)
        return "FAIL" if status == FAIL else status

    @property
    def xfail(self) -> bool:
        return self.status == NOISE and self.bound.noise == "xfail"

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.candidate / self.baseline


def bounds_from_marker(
    args: tuple[object, ...], kwargs: Mapping[str, object], known_metrics: set[str]
) -> list[Bound]:
    """Validate one ``pd_threshold`` marker's arguments and return its bounds."""
    if len(args) != 1 or not isinstance(args[0], str):
        raise ThresholdError(
            f"pd_threshold takes one metric name then bounds, e.g. "
            f"pd_threshold('mean_ttft_ms', max_ratio=1.5); got args {args!r}"
        )
    metric = args[0]
    if metric not in known_metrics:
        raise ThresholdError(
            f"pd_threshold: unknown metric {metric!r}; known metrics: {', '.join(sorted(known_metrics))}"
        )
    unknown = set(kwargs) - set(BOUND_KINDS) - {"noise"}
    if unknown:
        raise ThresholdError(
            f"pd_threshold({metric!r}): unknown argument(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(BOUND_KINDS)}, noise"
        )
    noise = kwargs.get("noise", "fail")
    if noise not in NOISE_MODES:
        raise ThresholdError(
            f"pd_threshold({metric!r}, noise={noise!r}): noise must be one of "
            f"{', '.join(repr(m) for m in NOISE_MODES)}"
        )
    bounds = []
    for kind in BOUND_KINDS:
        if kind in kwargs:
            value = kwargs[kind]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ThresholdError(
                    f"pd_threshold({metric!r}, {kind}=...) needs a finite number, got {value!r}"
                )
            if kind.endswith("_ratio") and value <= 0:
                raise ThresholdError(f"pd_threshold({metric!r}, {kind}={value}) must be > 0")
            bounds.append(Bound(metric, kind, float(value), str(noise)))
    if not bounds:
        raise ThresholdError(
            f"pd_threshold({metric!r}) names no bound; give max_ratio=, min_ratio=, max= or min="
        )
    return bounds


def _within(bound: Bound, value: float) -> bool:
    limit = bound.value
    return value <= limit if bound.kind.startswith("max") else value >= limit


def _judge(bound: Bound, point_ok: bool, ci: tuple[float, float] | None) -> tuple[str, bool]:
    """(status, passed) from the point value and, with repeats, its interval."""
    if ci is None:
        return (PASS, True) if point_ok else (FAIL, False)
    lo_ok, hi_ok = _within(bound, ci[0]), _within(bound, ci[1])
    if lo_ok and hi_ok:
        return PASS, True
    if not lo_ok and not hi_ok:
        return FAIL, False
    return NOISE, bound.noise == "pass"


def _ci_text(ci: tuple[float, float] | None, ratio: bool, label: str = "95 % CI") -> str:
    if ci is None:
        return ""
    return f" [{label} {ci[0]:.3f}×–{ci[1]:.3f}×]" if ratio else f" [{label} {ci[0]:.4g}–{ci[1]:.4g}]"


KNEE = "knee between"
"""How a capacity's interval is shown: the search bracketed the true knee, it did not sample it."""


def _ratio_range(
    value: float, base: float, cand: tuple[float, float] | None, basis: tuple[float, float] | None
) -> tuple[float, float]:
    """The range of candidate / baseline when each lies in its range (a point where none)."""
    c_lo, c_hi = cand or (value, value)
    b_lo, b_hi = basis or (base, base)
    lo = c_lo / b_hi if b_hi > 0 else 0.0
    hi = c_hi / b_lo if b_lo > 0 else math.inf
    return lo, hi


def evaluate(
    bound: Bound,
    candidate: Mapping[str, float],
    baseline: Mapping[str, float] | None,
    candidate_samples: Mapping[str, Sequence[float]] | None = None,
    baseline_samples: Mapping[str, Sequence[float]] | None = None,
    candidate_ranges: Mapping[str, tuple[float, float]] | None = None,
    baseline_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> Verdict:
    """One bound against the candidate's (and, for ratios, the baseline's) numbers. The samples
    are per-repeat values of each metric; with two or more, the verdict uses a bootstrap interval.
    The ranges are where a capacity's knee lies (the search's bracket): the verdict uses the
    range of the value (or ratio) they allow instead."""
    value = float(candidate.get(bound.metric, math.nan))  # not measured: "no data" below
    cand_s = (candidate_samples or {}).get(bound.metric)
    cand_r = (candidate_ranges or {}).get(bound.metric)
    base_r = (baseline_ranges or {}).get(bound.metric)
    label = KNEE if (cand_r or base_r) else "95 % CI"
    if not bound.is_ratio:
        base = None if baseline is None else float(baseline.get(bound.metric, math.nan))
        if not math.isfinite(value):
            return Verdict(
                bound,
                value,
                base,
                False,
                f"{bound.metric} = {value} (no data) violates bound {bound.text()}",
                FAIL,
            )
        ci = cand_r or (bootstrap_ci(cand_s) if cand_s else None)
        status, ok = _judge(bound, _within(bound, value), ci)
        word = {PASS: "within", FAIL: "violates", NOISE: "is within noise of"}[status]
        msg = f"{bound.metric} = {value:.4g}{_ci_text(ci, False, label)} {word} bound {bound.text()}"
        return Verdict(bound, value, base, ok, msg, status, ci)
    if baseline is None:
        raise ThresholdError(f"{bound.metric}: a ratio bound needs a baseline measurement")
    base = float(baseline.get(bound.metric, math.nan))
    if not (math.isfinite(value) and math.isfinite(base)) or base == 0:
        return Verdict(
            bound,
            value,
            base,
            False,
            f"{bound.metric}: cannot form a ratio (candidate {value:.4g}, baseline {base:.4g})",
            FAIL,
        )
    ratio = value / base
    base_s = (baseline_samples or {}).get(bound.metric)
    if cand_r or base_r:
        ci = _ratio_range(value, base, cand_r, base_r)
    else:
        ci = bootstrap_ci(cand_s or [value], base_s or [base]) if (cand_s or base_s) else None
    status, ok = _judge(bound, _within(bound, ratio), ci)
    outcome = {PASS: "pass", FAIL: "FAIL", NOISE: f"within noise (counts as {bound.noise})"}[status]
    msg = (
        f"{bound.metric}: candidate {value:.4g} vs baseline {base:.4g} = {ratio:.3f}× "
        f"({delta_percent(value, base):+.1f} %){_ci_text(ci, True, label)}, bound {bound.text()} → "
        f"{outcome}"
    )
    return Verdict(bound, value, base, ok, msg, status, ci)


def delta_percent(candidate: float, baseline: float) -> float:
    if baseline == 0 or not (math.isfinite(candidate) and math.isfinite(baseline)):
        return math.nan
    return (candidate - baseline) / baseline * 100.0
