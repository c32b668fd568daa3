"""The nightly history's pure parts: series from stored runs, change points (Apache Otava), what
changed between two runs, the verdict and the pd_history marker."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_pd.history.changepoints import change_points
from pytest_pd.history.changes import summary_line
from pytest_pd.history.series import build_series, night_of, ratio_series
from pytest_pd.history.verdict import HistorySettings, history_findings, marker_settings, open_regressions
from pytest_pd.results import load_result
from pytest_pd.store.changes import diff_facts
from pytest_pd.store.summary import StoredRun, command_flags, command_lines, summarize
from tests.helpers.records import run_record

DAY = 86400.0
T0 = 1_790_000_000.0  # 2026-09-21


def night(i: int, value: float, metric: str = "mean_tpot_ms", **kw: object) -> StoredRun:
    facts = kw.pop("facts", {"engine": "sim"})
    return StoredRun(
        path=f"r{i}.json", cluster="c", key="w", model="m", started_at=T0 + i * DAY + 3600,
        metrics={metric: value}, facts=facts, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def noisy(n: int, mean: float, sd: float, seed: int = 0) -> list[float]:
    return list(mean * (1 + np.random.default_rng(seed).normal(0, sd, n)))


# ---------------------------------------------------------------------------- series


def test_a_rerun_joins_its_night_and_unsound_runs_are_left_out_and_said():
    runs = [
        night(0, 10.0),
        night(1, 20.0),
        StoredRun("r1b.json", "c", "w", "m", T0 + DAY + 7200, metrics={"mean_tpot_ms": 30.0}),
        StoredRun(
            "bad.json", "c", "w", "m", T0 + 2 * DAY, metrics={"mean_tpot_ms": 99.0}, problems=("3 failed",)
        ),
        night(3, 12.0),
    ]
    series = build_series(runs, "mean_tpot_ms", per="night")
    assert [p.value for p in series.points] == [10.0, 25.0, 12.0]  # night 1: median of 20 and 30
    assert [len(p.runs) for p in series.points] == [1, 2, 1]
    assert len(series.excluded) == 1 and "bad.json" in series.excluded[0] and "3 failed" in series.excluded[0]
    per_run = build_series(runs, "mean_tpot_ms", per="run")
    assert per_run.values == [10.0, 20.0, 30.0, 12.0]


def test_a_points_interval_spans_its_repeats():
    run = night(0, 10.0, samples={"mean_tpot_ms": (9.0, 10.0, 12.0)})
    (point,) = build_series([run], "mean_tpot_ms").points
    assert (point.value, point.low, point.high) == (10.0, 9.0, 12.0)


def test_ratio_series_pairs_the_nights_both_sides_have():
    cand = build_series([night(i, 10.0 + i) for i in range(4)], "mean_tpot_ms")
    base = build_series([night(i, 5.0) for i in (1, 3)], "mean_tpot_ms")
    ratio = ratio_series(cand, base)
    assert ratio.values == [11.0 / 5.0, 13.0 / 5.0] and ratio.metric == "mean_tpot_ms/c"


def test_a_ratio_change_names_what_changed_on_the_baseline_side_too():
    cand = [night(i, 27.0 * (1 + 0.002 * (i % 3))) for i in range(24)]
    base = [
        night(
            i,
            27.0 if i < 20 else 25.0,
            facts={"version decode-0": "a" if i < 20 else "b"},
            baseline_mark=i == 20,
        )
        for i in range(24)
    ]
    findings = history_findings(
        cand, [], HistorySettings(), baseline_runs=base, ratio_metrics=["mean_tpot_ms"]
    )
    (reg,) = open_regressions(findings)  # TPOT / baseline's TPOT up 8 %: worse
    assert reg.metric == "mean_tpot_ms/c" and reg.position == 21
    assert [c.text for c in reg.changes] == [
        "baseline engine version (decode-0): a -> b",
        "baseline marked (--pd-save-baseline): no -> yes",
    ]


# ---------------------------------------------------------------------------- change points


def test_a_3_percent_step_is_found_where_it_is_with_its_size():
    values = noisy(40, 100.0, 0.005) + noisy(5, 103.0, 0.005, seed=1)
    (cp,) = change_points(values)
    assert cp.index == 40 and cp.pvalue < 0.001
    lo, hi = cp.interval
    assert lo < cp.change < hi and lo < 0.03 < hi and 0.02 < cp.change < 0.04


def test_a_stable_series_has_no_change_point_and_short_ones_none_at_all():
    # noise well below the smallest change that counts (1 %)
    assert change_points(noisy(60, 100.0, 0.002)) == []
    assert change_points([1.0, 2.0]) == []


def test_series_longer_than_the_window_find_the_change_at_its_place():
    # otava's windows read the whole array when given one; a list is sliced per window
    values = noisy(100, 50.0, 0.005) + noisy(20, 53.0, 0.005, seed=2)
    found = change_points(values, window=30)
    assert [cp.index for cp in found] == [100]


# ---------------------------------------------------------------------------- what changed

CMD = (
    "# environment exported on every host before each launch\n"
    "export NCCL_IB_HCA=mlx5_1\n"
    "# decode-0 on decode-node (127.0.0.1)\n"
    "python -m sglang.launch_server --tp-size 8 --enable-metrics --prefill http://a:1 8998\n"
)


def test_command_lines_and_flags_of_rendered_commands():
    lines = command_lines(CMD)
    assert lines["env NCCL_IB_HCA"] == "mlx5_1"
    flags = command_flags(lines["command decode-0"])
    assert flags == {
        "program": "python -m sglang.launch_server",
        "--tp-size": "8",
        "--enable-metrics": "",
        "--prefill": "http://a:1 8998",
    }


def test_what_changed_groups_versions_and_diffs_flags():
    before = {
        "version decode-0": "0.5.23",
        "version prefill-0": "0.5.23",
        "command decode-0": "python -m x --tp-size 8 --page-size 64",
        "commit": "aaa",
    }
    after = {
        "version decode-0": "0.5.24",
        "version prefill-0": "0.5.24",
        "command decode-0": "python -m x --tp-size 8 --page-size 32 --enable-metrics",
        "commit": "bbb",
    }
    texts = [c.text for c in diff_facts(before, after)]
    assert texts == [
        "engine version (decode-0, prefill-0): 0.5.23 -> 0.5.24",
        "--page-size (decode-0): 64 -> 32",
        "--enable-metrics (decode-0): (none) -> on",
        "commit: aaa -> bbb",
    ]
    assert "nothing recorded changed" in summary_line(diff_facts(before, before))


def test_a_stored_record_summarises_with_its_facts():
    path = "tests/data/results/20261201T233938Z-sim-tp8-in6000-out1000-c16-n32.json"
    run = summarize(load_result(path), path)
    assert run.cluster == "sim-tp8" and run.key == "in6000-out1000-c16-n32" and run.sound
    assert run.metrics["mean_ttft_ms"] > 0
    assert any(k.startswith("command ") for k in run.facts) and "pytest-pd" in run.facts
    assert StoredRun.from_dict(run.to_dict()) == run


# ---------------------------------------------------------------------------- verdict


def test_an_open_regression_names_its_night_size_and_what_changed():
    values = noisy(20, 27.0, 0.005) + noisy(3, 28.1, 0.005, seed=3)
    runs = [night(i, v, facts={"commit": "a" if i < 20 else "b"}) for i, v in enumerate(values)]
    findings = history_findings(runs, ["mean_tpot_ms"], HistorySettings())
    (reg,) = open_regressions(findings)
    since, before = night_of(runs[20].started_at), night_of(runs[19].started_at)
    assert reg.position == 21 and reg.points == 23 and reg.since == since
    assert reg.headline.startswith(
        f"REGRESSION since {since} (night 21 of 23; 3 nights since): mean_tpot_ms +4."
    )
    assert "(p < 0.001)" in reg.headline
    assert reg.changed_line == f"what changed between {before} and {since}: commit: a -> b"
    assert reg.to_dict()["changes"] == [{"fact": "commit", "before": "a", "after": "b", "where": []}]


def test_an_improvement_or_an_old_change_is_no_open_regression():
    faster = noisy(20, 27.0, 0.005) + noisy(5, 25.0, 0.005, seed=4)  # TPOT down: better
    runs = [night(i, v) for i, v in enumerate(faster)]
    findings = history_findings(runs, ["mean_tpot_ms"], HistorySettings())
    assert findings and not findings[0].worse and open_regressions(findings) == []
    old = noisy(10, 27.0, 0.005) + noisy(20, 28.5, 0.005, seed=5)  # worse, but 20 nights ago
    findings = history_findings(
        [night(i, v) for i, v in enumerate(old)], ["mean_tpot_ms"], HistorySettings(recent=7)
    )
    assert findings and findings[0].worse and not findings[0].recent and open_regressions(findings) == []
    # throughput goes the other way: down is worse
    drop = noisy(20, 490.0, 0.005) + noisy(3, 470.0, 0.005, seed=6)
    thr = [night(i, v, metric="output_throughput") for i, v in enumerate(drop)]
    assert open_regressions(history_findings(thr, ["output_throughput"], HistorySettings()))


def test_mode_off_judges_nothing():
    values = noisy(20, 27.0, 0.005) + noisy(3, 29.0, 0.005, seed=3)
    runs = [night(i, v) for i, v in enumerate(values)]
    assert history_findings(runs, ["mean_tpot_ms"], HistorySettings(mode="off")) == []


def test_marker_settings_override_the_session_and_reject_nonsense():
    base = HistorySettings()
    assert marker_settings(base, ("fail",), {"recent": 3}).mode == "fail"
    assert marker_settings(base, (), {"min_change": 0.02, "per": "run"}).min_magnitude == 0.02
    with pytest.raises(ValueError, match="unknown argument"):
        marker_settings(base, (), {"nights": 3})
    with pytest.raises(ValueError, match="mode"):
        marker_settings(base, ("loud",), {})


def test_comparison_warns_or_fails_on_open_history_regressions():
    from pytest_pd.judge.comparison import compare

    rec = run_record("pp2", "", {"mean_ttft_ms": 1.0, "completed": 1, "failed": 0})
    comp = compare("t", "w", rec, None, [])
    comp.history_regressions = ["REGRESSION since X: mean_tpot_ms +4.1 %\n  what changed: nothing"]
    comp.history_mode = "warn"
    assert comp.passed and comp.warnings() == comp.history_regressions
    comp.history_mode = "fail"
    assert not comp.passed and comp.warnings() == []
    assert "REGRESSION since X" in comp.failure_message()


def test_one_odd_night_is_to_be_confirmed_not_a_regression():
    values = noisy(20, 27.0, 0.003) + [29.0]  # +7 % on the newest night alone
    runs = [night(i, v) for i, v in enumerate(values)]
    findings = history_findings(runs, ["mean_tpot_ms"], HistorySettings(confirm=2))
    assert findings and findings[-1].worse and not findings[-1].confirmed
    assert "possible regression (to be confirmed)" in findings[-1].headline
    assert open_regressions(findings) == []
    runs.append(night(21, 29.1))  # the next night confirms it
    (reg,) = open_regressions(history_findings(runs, ["mean_tpot_ms"], HistorySettings(confirm=2)))
    assert reg.position == 21


def test_the_report_shows_open_regressions_the_change_point_table_and_marks():
    from pytest_pd.judge.comparison import compare
    from pytest_pd.report.history_html import change_marks, regressions_note, series_section

    values = noisy(20, 27.0, 0.003) + noisy(3, 28.5, 0.003, seed=7)
    runs = [
        night(i, v, facts={"command decode-0": f"sim --x {'<1>' if i < 20 else '<2>'}"})
        for i, v in enumerate(values)
    ]
    findings = history_findings(runs, ["mean_tpot_ms"], HistorySettings())
    comp = compare("t", "w", run_record("pp2", "", {"completed": 1, "failed": 0}), None, [])
    comp.history_mode = "fail"
    comp.findings = [f.to_dict() for f in findings]
    comp.history_regressions = [f.text for f in open_regressions(findings)]
    table = series_section(comp)
    assert "REGRESSION (open)" in table and "--x (decode-0): &lt;1&gt; → &lt;2&gt;" in table  # escaped
    assert 'class="pd-fail"' in regressions_note(comp) and "<br>" in regressions_note(comp)
    trend = [run_record("pp2", "", {"completed": 1}) for _ in range(4)]
    for n, rec in enumerate(trend):
        rec.path = f"r{19 + n}.json"  # the trend holds runs 19..22: the change is at run 20
    assert change_marks(comp, trend, "mean_tpot_ms") == [(2, f"{findings[0].change * 100:+.1f} %")]
    assert change_marks(comp, trend, "mean_ttft_ms") == []
    comp.history_mode, comp.findings = "warn", []
    assert "no change point" in series_section(comp)


@pytest.mark.parametrize(
    ("levels", "open_at"),
    [
        ([100] * 12 + [110] * 5 + [125], 13),  # worse again on the newest night: still open
        ([100] * 12 + [120] * 3 + [110] * 3, 13),  # a partial recovery: still 10 % worse
        ([100] * 12 + [120] * 3 + [100] * 3, None),  # back where it was: closed
    ],
    ids=["newer-unconfirmed-change", "partial-recovery", "full-recovery"],
)
def test_a_later_change_does_not_hide_an_open_regression(levels, open_at):
    values = [v * (1 + 0.001 * ((i * 7) % 3 - 1)) for i, v in enumerate(levels)]
    findings = history_findings(
        [night(i, v) for i, v in enumerate(values)], ["mean_tpot_ms"], HistorySettings()
    )
    assert len(findings) >= 2
    found = open_regressions(findings)
    assert [f.position for f in found] == ([] if open_at is None else [open_at])
    assert sum(f.open for f in findings) == len(found)  # the table says what the verdict says


def test_ratio_per_run_pairs_each_candidate_run_with_its_sessions_baseline():
    cand = [night(i, 10.0, session=f"s{i}") for i in range(4)]
    base = [
        StoredRun(
            f"b{i}.json", "b", "w", "m", r.started_at + 40, metrics={"mean_tpot_ms": 5.0}, session=f"s{i}"
        )
        for i, r in enumerate(cand)
    ]  # measured 40 s after its candidate, in the same session
    ratio = ratio_series(
        build_series(cand, "mean_tpot_ms", "run"), build_series(base, "mean_tpot_ms", "run"), "run"
    )
    assert ratio.values == [2.0] * 4


def test_metrics_without_a_better_direction_are_not_judged_and_bad_settings_refused():
    values = [1000.0] * 10 + [1500.0] * 4
    runs = [night(i, v, metric="total_output_tokens") for i, v in enumerate(values)]
    assert history_findings(runs, ["total_output_tokens"], HistorySettings()) == []
    with pytest.raises(ValueError, match="min_change"):
        HistorySettings(min_magnitude="1%")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_change"):
        marker_settings(HistorySettings(), (), {"min_change": 5})
