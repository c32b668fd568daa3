"""Every command-line option and ini key of pytest-pd, with the parsers that turn their text into
values (:mod:`pytest_pd.option_values`): a bad value fails as pytest starts (a usage error naming
the option), before any cluster comes up."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from pytest_pd.history.verdict import HistorySettings
from pytest_pd.option_values import (
    Settings,
    age,
    baseline_mode,
    count,
    history_mode,
    history_per,
    positive_int,
    positive_number,
    pvalue,
    results_url,
    share,
    slos,
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("pytest-pd", "PD-disaggregated serving acceptance (pytest-pd)")
    group.addoption(
        "--cluster",
        dest="pd_cluster",
        metavar="NAME",
        help="cluster to test: file stem in --cluster-dir or a path (default: ini pd_cluster, else sim-pp2)",
    )
    group.addoption(
        "--cluster-dir",
        dest="pd_cluster_dir",
        metavar="DIR",
        help="folder of cluster YAML files (default: ini pd_cluster_dir, else clusters/)",
    )
    group.addoption(
        "--pd-run-dir",
        dest="pd_run_dir",
        metavar="DIR",
        help="where server logs and pid files go, one folder per bring-up (default: runs/)",
    )
    group.addoption(
        "--pd-results-dir",
        dest="pd_results_dir",
        metavar="DIR",
        help="results store, one JSON per measured run (default: results/)",
    )
    group.addoption(
        "--pd-baseline",
        dest="pd_baseline",
        metavar="live|stored|PATH",
        type=baseline_mode,
        help="where the baseline comes from: live (measured in this session), stored "
        "(newest marked, else newest sound run of the baseline cluster in the "
        "results store), or a results JSON file / folder. Default: stored when "
        "a matching stored run younger than --pd-baseline-max-age exists, else live",
    )
    group.addoption(
        "--pd-baseline-max-age",
        dest="pd_baseline_max_age",
        metavar="AGE",
        type=age,
        help="oldest stored baseline to use, e.g. 12h, 7d, 2w; 0 for no limit "
        "(default: ini pd_baseline_max_age, else 7d)",
    )
    group.addoption(
        "--pd-save-baseline",
        dest="pd_save_baseline",
        action="store_true",
        help="mark the runs of this session as the baselines to use from now on",
    )
    group.addoption(
        "--pd-compare-last",
        dest="pd_compare_last",
        action="store_true",
        default=None,
        help="also compare with the previous run of the same cluster and workload "
        "(the default, ini pd_compare_last)",
    )
    group.addoption(
        "--pd-no-compare-last",
        dest="pd_compare_last",
        action="store_false",
        help="do not compare with the previous run",
    )
    group.addoption(
        "--pd-fail-on-regression",
        dest="pd_fail_on_regression",
        action="store_true",
        help="a regression vs the last run beyond the noise band fails the test (otherwise it is a warning)",
    )
    group.addoption(
        "--pd-noise-band",
        dest="pd_noise_band",
        metavar="SHARE",
        type=share,
        help="change vs the last run that counts as noise, e.g. 5%% (default: ini pd_noise_band, else 5%%)",
    )
    group.addoption(
        "--pd-repeats",
        dest="pd_repeats",
        metavar="N",
        type=positive_int,
        default=1,
        help="run each workload N times per cluster in one bring-up; verdicts use the "
        "median and, with N > 1, a bootstrap confidence interval (default 1)",
    )
    group.addoption(
        "--pd-slo",
        dest="pd_slo",
        metavar="ttft_ms=…,tpot_ms=…",
        type=slos,
        default={},
        help="SLOs in milliseconds for goodput (ttft_ms, tpot_ms, e2e_ms, itl_ms)",
    )
    group.addoption(
        "--pd-trend-runs",
        dest="pd_trend_runs",
        metavar="N",
        type=count,
        default=20,
        help="how many stored runs the trend chart shows (default 20)",
    )
    group.addoption(
        "--pd-keep-cluster-on-failure",
        dest="pd_keep_cluster_on_failure",
        action="store_true",
        help="when a test failed or a bring-up failed, leave the cluster running for "
        "debugging and print how to attach to it and how to tear it down "
        "(pytest-pd down RUN_DIR); Ctrl-C still tears down",
    )
    group.addoption(
        "--pd-history",
        dest="pd_history",
        metavar="off|warn|fail",
        type=history_mode,
        help="judge the stored series: a change point in the worse direction within the last "
        "--pd-history-recent nights warns or fails the test (default: ini pd_history, else warn)",
    )
    group.addoption(
        "--pd-history-recent",
        dest="pd_history_recent",
        metavar="N",
        type=positive_int,
        help="a regression stays open for N nights (runs) after its change point (default: ini, else 7)",
    )
    group.addoption(
        "--pd-history-min-change",
        dest="pd_history_min_change",
        metavar="SHARE",
        type=share,
        help="smallest change of a series' mean that counts, e.g. 1%% (default: ini, else 1%%)",
    )
    group.addoption(
        "--pd-history-pvalue",
        dest="pd_history_pvalue",
        metavar="P",
        type=pvalue,
        help="significance a change point needs (default: ini pd_history_pvalue, else 0.001)",
    )
    group.addoption(
        "--pd-history-per",
        dest="pd_history_per",
        metavar="night|run",
        type=history_per,
        help="a point of the series per night (UTC day: reruns join their night) or per run "
        "(default: ini pd_history_per, else night)",
    )
    group.addoption(
        "--pd-results",
        dest="pd_results",
        metavar="URL",
        type=results_url,
        help="the results index a team shares, postgresql://USER:PASSWORD@HOST:PORT/DB (default: "
        "ini pd_results, else an SQLite index in the results folder); the JSON files are still written",
    )
    group.addoption(
        "--pd-results-origin",
        dest="pd_results_origin",
        metavar="NAME",
        help="this runner's name in a shared --pd-results index (default: HOST:/abs/results/dir); "
        "give a stable one where host names change at every job (containers) but the results "
        "folder persists: a sync drops the rows of its origin whose files are gone",
    )
    parser.addini("pd_cluster", "default cluster name", default="sim-pp2")
    parser.addini("pd_cluster_dir", "folder of cluster files, relative to rootdir", default="clusters")
    parser.addini("pd_run_dir", "folder for run logs, relative to rootdir", default="runs")
    parser.addini("pd_results_dir", "results store, relative to rootdir", default="results")
    parser.addini("pd_baseline_max_age", "oldest stored baseline to use (e.g. 7d)", default="7d")
    parser.addini("pd_compare_last", "compare with the previous run", type="bool", default=True)
    parser.addini("pd_noise_band", "change vs the last run that counts as noise", default="5%")
    parser.addini(
        "pd_store_requests",
        "store per-request records (compressed) in results files",
        type="bool",
        default=True,
    )
    parser.addini("pd_telemetry_interval_s", "seconds between telemetry samples", default="1.0")
    parser.addini("pd_history", "history verdict: off, warn or fail", default="warn")
    parser.addini("pd_history_recent", "nights a regression stays open", default="7")
    parser.addini("pd_history_min_change", "smallest change of a series that counts", default="1%")
    parser.addini("pd_history_pvalue", "significance of a change point", default="0.001")
    parser.addini("pd_history_per", "a history point per night or per run", default="night")
    parser.addini(
        "pd_results", "results index URL (PostgreSQL); empty: SQLite in the results folder", default=""
    )
    parser.addini("pd_results_origin", "this runner's name in a shared results index", default="")


def _ini(config: pytest.Config, name: str, parse: Any) -> Any:
    """An ini value through its parser; a bad one is a usage error naming the key."""
    try:
        return parse(config.getini(name))
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini {name}: {exc}") from None


def settings(config: pytest.Config) -> Settings:
    def option(name: str, ini_parse: Any) -> Any:
        value = config.getoption(name)
        return _ini(config, name, ini_parse) if value is None else value

    def folder(name: str) -> Path:
        path = Path(config.getoption(name) or config.getini(name))
        return path if path.is_absolute() else config.rootpath / path

    compare = config.getoption("pd_compare_last")
    return Settings(
        cluster=config.getoption("pd_cluster") or config.getini("pd_cluster"),
        cluster_dir=folder("pd_cluster_dir"),
        run_dir=folder("pd_run_dir"),
        results_dir=folder("pd_results_dir"),
        baseline=config.getoption("pd_baseline") or "auto",
        baseline_max_age_s=option("pd_baseline_max_age", age),
        save_baseline=bool(config.getoption("pd_save_baseline")),
        compare_last=bool(config.getini("pd_compare_last")) if compare is None else bool(compare),
        fail_on_regression=bool(config.getoption("pd_fail_on_regression")),
        noise_band=option("pd_noise_band", share),
        repeats=config.getoption("pd_repeats"),
        slo=dict(config.getoption("pd_slo") or {}),
        trend_runs=config.getoption("pd_trend_runs"),
        keep_on_failure=bool(config.getoption("pd_keep_cluster_on_failure")),
        store_requests=bool(config.getini("pd_store_requests")),
        telemetry_interval_s=_ini(config, "pd_telemetry_interval_s", positive_number),
        history=HistorySettings(
            mode=option("pd_history", history_mode),
            recent=option("pd_history_recent", positive_int),
            min_magnitude=option("pd_history_min_change", share),
            max_pvalue=option("pd_history_pvalue", pvalue),
            per=option("pd_history_per", history_per),
        ),
        results_url=config.getoption("pd_results") or _ini(config, "pd_results", _url_or_none),
        results_origin=config.getoption("pd_results_origin") or config.getini("pd_results_origin") or None,
    )


def _url_or_none(text: str) -> str | None:
    return results_url(text) if text.strip() else None
