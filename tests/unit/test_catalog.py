"""The metric catalog: the one table that says what each metric means (unit, direction, scaling
with a simulated speedup, title, history)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pytest_pd.catalog import CATALOG, HISTORY_METRICS, higher_is_better, judgeable, to_model_time
from pytest_pd.judge.capacity import LOADS
from pytest_pd.record import capacity_metric
from pytest_pd.report.summary import COLUMNS
from pytest_pd.workload.metrics import RunSummary


def test_every_number_a_run_reports_is_catalogued_and_nothing_else():
    numeric = {f.name for f in dataclasses.fields(RunSummary) if f.type in ("float", "int")}
    capacities = {capacity_metric(over) for over in LOADS}  # what a capacity search records
    servers = {"prefix_cache_hit_rate"}  # what the record adds from the servers' /metrics
    assert numeric | capacities | servers == set(CATALOG)
    assert judgeable() == numeric | capacities | servers  # what pd_threshold may bound


def test_history_follows_the_seed_table_columns_in_their_order():
    assert HISTORY_METRICS == tuple(c.metric for c in COLUMNS)
    assert HISTORY_METRICS == ("mean_ttft_ms", "output_throughput", "mean_tpot_ms", "mean_e2e_latency_ms")


@pytest.mark.parametrize(
    ("name", "higher"),
    [
        ("output_throughput", True),
        ("request_throughput", True),
        ("peak_output_throughput", True),
        ("goodput", True),
        ("goodput_ratio", True),
        ("completed", True),
        ("mean_ttft_ms", False),
        ("p99_itl_ms", False),
        ("failed", False),
        ("mismatch_share", False),
        ("total_output_tokens", False),
        ("concurrency", False),
        ("not_a_metric", False),
    ],
)
def test_direction(name, higher):
    assert higher_is_better(name) is higher


def test_neutral_counts_have_no_better_direction():
    for name in ("total_input_tokens", "total_output_tokens", "max_concurrency", "repeats", "concurrency"):
        assert CATALOG[name].better is None


def test_simulated_runs_scale_back_times_and_rates_only():
    measured = {
        "mean_ttft_ms": 10.0,
        "max_itl_ms": 2.0,
        "duration": 3.0,
        "output_throughput": 500.0,
        "goodput": 4.0,
        "goodput_ratio": 0.5,
        "completed": 32,
        "mismatch_share": 0.0,
        "errors_by_kind": {"timeout": 1},
        "p99_queue_ms": math.nan,
    }
    model = to_model_time(measured, 10.0)
    assert model["mean_ttft_ms"] == 100.0 and model["max_itl_ms"] == 20.0 and model["duration"] == 30.0
    assert model["output_throughput"] == 50.0 and model["goodput"] == 0.4
    assert model["goodput_ratio"] == 0.5 and model["completed"] == 32
    assert model["errors_by_kind"] == {"timeout": 1} and math.isnan(model["p99_queue_ms"])
    assert to_model_time(measured, 1.0) == measured


def test_titles_and_units_read_as_words():
    assert CATALOG["p99_ttft_ms"].title == "p99 TTFT" and CATALOG["p99_ttft_ms"].unit == "ms"
    assert CATALOG["output_throughput"].unit == "tok/s"
