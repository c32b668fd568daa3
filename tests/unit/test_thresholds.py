"""Threshold markers: argument validation, direction-aware verdicts, the seed's own numbers."""

from __future__ import annotations

import math

import pytest

from pytest_pd.judge.comparison import compare
from pytest_pd.judge.thresholds import Bound, ThresholdError, bounds_from_marker, evaluate
from pytest_pd.report.summary import markdown, table_rows, terminal_lines
from tests.helpers.records import run_record

KNOWN = {"mean_ttft_ms", "output_throughput", "mean_tpot_ms", "mean_e2e_latency_ms"}

# The seed report's table (PP=2 candidate, TP=8 baseline), in bench_serving units.
SEED_PP2 = {
    "mean_ttft_ms": 5010.0,
    "output_throughput": 492.9,
    "mean_tpot_ms": 26.4,
    "mean_e2e_latency_ms": 31350.0,
    "completed": 32,
    "failed": 0,
}
SEED_TP8 = {
    "mean_ttft_ms": 3590.0,
    "output_throughput": 488.7,
    "mean_tpot_ms": 27.6,
    "mean_e2e_latency_ms": 31150.0,
    "completed": 32,
    "failed": 0,
}
SUITE_BOUNDS = [
    ("mean_ttft_ms", {"max_ratio": 1.5}),
    ("output_throughput", {"min_ratio": 0.97}),
    ("mean_tpot_ms", {"max_ratio": 1.05}),
]


def bounds(*markers):
    out = []
    for metric, kwargs in markers:
        out += bounds_from_marker((metric,), kwargs, KNOWN)
    return out


@pytest.mark.parametrize(
    ("args", "kwargs", "needle"),
    [
        ((), {"max": 1}, "takes one metric name"),
        (("ttft",), {"max": 1}, "unknown metric 'ttft'"),
        (("mean_ttft_ms",), {}, "names no bound"),
        (("mean_ttft_ms",), {"max_ration": 1.5}, "unknown argument(s) max_ration"),
        (("mean_ttft_ms",), {"max_ratio": "1.5"}, "needs a finite number"),
        (("mean_ttft_ms",), {"max_ratio": 0}, "must be > 0"),
        (("mean_ttft_ms",), {"max": math.nan}, "needs a finite number"),
    ],
)
def test_bad_markers_are_explained(args, kwargs, needle):
    with pytest.raises(ThresholdError) as info:
        bounds_from_marker(args, kwargs, KNOWN)
    assert needle in str(info.value)


def test_seed_result_satisfies_the_suite_bounds():
    comp = compare(
        "t",
        "in6000-out1000-c16-n32",
        run_record("pp2", "TP=4, PP=2", SEED_PP2),
        run_record("tp8", "TP=8", SEED_TP8),
        bounds(*SUITE_BOUNDS),
    )
    assert comp.passed, comp.failure_message()
    ttft = comp.verdicts[0]
    assert ttft.ratio == pytest.approx(5010 / 3590)
    assert "5010 vs baseline 3590 = 1.396×" in ttft.message and "+39.6 %" in ttft.message


@pytest.mark.parametrize(
    ("metric", "kwargs", "candidate", "passed"),
    [
        ("mean_ttft_ms", {"max_ratio": 1.5}, 5400.0, False),  # 1.504× > 1.5
        ("mean_ttft_ms", {"max_ratio": 1.5}, 5385.0, True),  # exactly 1.5× passes
        ("output_throughput", {"min_ratio": 0.97}, 470.0, False),  # throughput must not drop
        ("output_throughput", {"min_ratio": 0.97}, 600.0, True),
        ("mean_tpot_ms", {"max": 27.0}, 26.4, True),
        ("mean_tpot_ms", {"min": 27.0}, 26.4, False),
    ],
)
def test_direction_aware_verdicts(metric, kwargs, candidate, passed):
    (bound,) = bounds((metric, kwargs))
    verdict = evaluate(bound, {**SEED_PP2, metric: candidate}, SEED_TP8)
    assert verdict.passed is passed
    assert metric in verdict.message


def test_nan_never_passes():
    (bound,) = bounds(("mean_ttft_ms", {"max_ratio": 1.5}))
    assert not evaluate(bound, {**SEED_PP2, "mean_ttft_ms": math.nan}, SEED_TP8).passed
    (absolute,) = bounds(("mean_ttft_ms", {"max": 1e9}))
    assert not evaluate(absolute, {**SEED_PP2, "mean_ttft_ms": math.nan}, None).passed
    # a metric the run does not have (a capacity bound on an ordinary run): no data, not a crash
    (capacity,) = bounds_from_marker(("capacity_concurrency",), {"min_ratio": 0.9}, {"capacity_concurrency"})
    missing = evaluate(capacity, SEED_PP2, SEED_TP8)
    assert not missing.passed and "cannot form a ratio" in missing.message


def test_failed_requests_fail_the_comparison_even_within_bounds():
    broken = {**SEED_PP2, "completed": 30, "failed": 2, "errors_by_kind": {"timeout": 2}}
    comp = compare(
        "t",
        "w",
        run_record("pp2", "TP=4, PP=2", broken),
        run_record("tp8", "TP=8", SEED_TP8),
        bounds(*SUITE_BOUNDS),
    )
    assert not comp.passed
    assert "2 of 32 requests failed (timeout: 2)" in comp.failure_message()


def test_seed_table_rows():
    comp = compare(
        "t",
        "w",
        run_record("pp2", "TP=4, PP=2", SEED_PP2),
        run_record("tp8", "TP=8", SEED_TP8),
        bounds(*SUITE_BOUNDS),
    )
    rows = table_rows(comp)
    assert rows[0] == (
        "config",
        "prefill strategy",
        "TTFT (s)",
        "throughput (tok/s)",
        "TPOT (ms)",
        "mean latency (s)",
    )
    assert rows[1][1:] == ("TP=4, PP=2", "5.01", "492.9", "26.4", "31.35")
    assert rows[2][1:] == ("TP=8", "3.59", "488.7", "27.6", "31.15")
    assert rows[3][2:] == ("+39.6 %", "+0.9 %", "-4.3 %", "+0.6 %")  # the seed's own deltas
    assert rows[4][2:] == ("≤ 1.5× baseline", "≥ 0.97× baseline", "≤ 1.05× baseline", "—")
    assert rows[5][2:] == ("pass", "pass", "pass", "—")
    assert any("TP=4, PP=2" in line for line in terminal_lines(comp))
    assert "| pp2 (candidate) | TP=4, PP=2 | 5.01 | 492.9 | 26.4 | 31.35 |" in markdown([comp])


# ---------------------------------------------------------------------------------- noise (repeats)


def test_noise_marker_argument_is_validated():
    (bound,) = bounds_from_marker(("mean_ttft_ms",), {"max_ratio": 1.5, "noise": "xfail"}, KNOWN)
    assert bound.noise == "xfail"
    with pytest.raises(ThresholdError, match="noise must be one of"):
        bounds_from_marker(("mean_ttft_ms",), {"max_ratio": 1.5, "noise": "maybe"}, KNOWN)


@pytest.mark.parametrize(
    ("candidate_repeats", "status"),
    [
        ([5000.0, 5010.0, 5020.0], "pass"),  # 1.39–1.40× < 1.5: clearly inside
        ([5600.0, 5610.0, 5620.0], "fail"),  # 1.56× > 1.5: clearly outside
        ([4700.0, 5400.0, 5600.0], "within noise"),  # the interval straddles 1.5×
    ],
)
def test_bootstrap_interval_decides_pass_fail_or_within_noise(candidate_repeats, status):
    (bound,) = bounds(("mean_ttft_ms", {"max_ratio": 1.5}))
    base = [3590.0, 3590.0, 3590.0]
    cand = {**SEED_PP2, "mean_ttft_ms": sorted(candidate_repeats)[1]}
    v = evaluate(bound, cand, SEED_TP8, {"mean_ttft_ms": candidate_repeats}, {"mean_ttft_ms": base})
    assert v.status == status and v.ci is not None
    assert v.passed is (status == "pass")  # "within noise" counts as fail by default
    assert "95 % CI" in v.message


@pytest.mark.parametrize(
    ("mode", "passed", "xfail"), [("pass", True, False), ("fail", False, False), ("xfail", False, True)]
)
def test_marker_chooses_how_within_noise_counts(mode, passed, xfail):
    b = bounds_from_marker(("mean_ttft_ms",), {"max_ratio": 1.5, "noise": mode}, KNOWN)
    samples = {"mean_ttft_ms": [4700.0, 5400.0, 5600.0]}
    comp = compare(
        "t",
        "w",
        run_record("pp2", "", {**SEED_PP2, "mean_ttft_ms": 5400.0}, samples=samples),
        run_record("tp8", "", SEED_TP8, samples={"mean_ttft_ms": [3590.0] * 3}),
        b,
    )
    assert comp.verdicts[0].word == "within noise"
    assert comp.passed is passed
    assert (comp.xfail_reason is not None) is xfail
    assert table_rows(comp)[-1][2] == "within noise"


def test_single_run_has_no_interval():
    (bound,) = bounds(("mean_ttft_ms", {"max_ratio": 1.5}))
    v = evaluate(bound, SEED_PP2, SEED_TP8, {}, {})
    assert v.ci is None and v.status == "pass"


def test_last_run_regression_is_a_view_unless_fail_on_regression():
    last = run_record("pp2", "", {**SEED_PP2, "output_throughput": 492.9, "mean_tpot_ms": 26.4})
    now = run_record("pp2", "", {**SEED_PP2, "output_throughput": 440.0, "mean_tpot_ms": 26.9})
    comp = compare("t", "w", now, run_record("tp8", "", SEED_TP8), [], last=last, noise_band=0.05)
    by_metric = {h.metric: h for h in comp.history}
    assert by_metric["output_throughput"].regression  # −10.7 % throughput, beyond ±5 %
    assert not by_metric["mean_tpot_ms"].regression  # +1.9 % TPOT, within the band
    # the fixed band is shown, no longer warned of: the stored series' verdict does that
    assert comp.passed and comp.warnings() == []
    strict = compare("t", "w", now, run_record("tp8", "", SEED_TP8), [], last=last, fail_on_regression=True)
    assert not strict.passed and "regression vs last run: output_throughput" in strict.failure_message()
    rows = terminal_lines(comp)
    assert any("vs last run" in r for r in rows)


def test_comparison_survives_the_trip_through_a_report():
    from pytest_pd.judge.comparison import from_dict, to_dict

    b = bounds_from_marker(("mean_ttft_ms",), {"max_ratio": 1.5, "noise": "xfail"}, KNOWN)
    comp = compare(
        "t",
        "w",
        run_record("pp2", "", SEED_PP2, samples={"mean_ttft_ms": [5000.0, 5020.0]}),
        run_record("tp8", "", SEED_TP8, samples={"mean_ttft_ms": [3590.0, 3600.0]}),
        b,
        last=run_record("pp2", "", SEED_PP2),
    )
    back = from_dict(to_dict(comp))
    assert back.verdicts == comp.verdicts and back.history == comp.history
    assert back.passed == comp.passed


def test_a_capacity_is_judged_on_where_its_knee_lies():
    """A capacity search bracketed the knee, [capacity, lowest load that missed): the verdict
    holds for every ratio the two brackets allow, or is within noise."""
    bound = Bound("capacity_concurrency", "min_ratio", 0.75)
    cand, base = {"capacity_concurrency": 20.0}, {"capacity_concurrency": 24.0}
    clear = evaluate(
        bound,
        cand,
        base,
        None,
        None,
        {"capacity_concurrency": (20.0, 22.0)},
        {"capacity_concurrency": (24.0, 26.0)},
    )
    assert clear.status == "pass" and clear.ci == pytest.approx((20 / 26, 22 / 24))
    assert "[knee between 0.769×–0.917×]" in clear.message
    wide = evaluate(
        bound,
        cand,
        base,
        None,
        None,
        {"capacity_concurrency": (20.0, 40.0)},
        {"capacity_concurrency": (24.0, 32.0)},
    )
    assert wide.ci == pytest.approx((20 / 32, 40 / 24)) and wide.status == "within noise" and not wide.passed
    unbounded = evaluate(bound, cand, base, None, None, {"capacity_concurrency": (20.0, math.inf)}, None)
    assert unbounded.status == "pass" and unbounded.ci == (20 / 24, math.inf)  # at least 20: enough
    absolute = evaluate(
        Bound("capacity_concurrency", "min", 21.0),
        cand,
        None,
        None,
        None,
        {"capacity_concurrency": (20.0, 22.0)},
    )
    assert absolute.status == "within noise" and "knee between 20–22" in absolute.message
