"""Options and ini keys: every value is parsed as pytest starts, so a bad one is a usage error
naming the option before any cluster comes up."""

from __future__ import annotations

import argparse
import math
import time

import pytest

from pytest_pd import option_values as options


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("0.05", 0.05), ("0", 0.0), (" 12.5% ", 0.125)])
def test_share(text, value):
    assert options.share(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "5 percent", "150%", "-1%", "1"])
def test_bad_share(text):
    with pytest.raises(argparse.ArgumentTypeError):
        options.share(text)


def test_slos_and_their_errors():
    assert options.slos("ttft_ms=2000, tpot_ms=50") == {"ttft_ms": 2000.0, "tpot_ms": 50.0}
    assert options.slos("") == {}
    for bad, says in (
        ("latency=5", "NAME=MILLISECONDS"),
        ("ttft_ms", "NAME=MILLISECONDS"),
        ("ttft_ms=x", "not a number"),
        ("ttft_ms=0", "must be > 0"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            options.slos(bad)


def test_ages_counts_and_numbers():
    assert options.age("7d") == 7 * 86400 and math.isinf(options.age("0"))
    assert options.count("0") == 0 and options.positive_int("3") == 3
    assert options.positive_number("0.5") == 0.5
    for parse, bad in (
        (options.age, "soon"),
        (options.count, "-1"),
        (options.positive_int, "0"),
        (options.positive_number, "0"),
        (options.positive_number, "inf"),
    ):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


@pytest.mark.parametrize(
    ("args", "ini", "says"),
    [
        (["--pd-noise-band=abc"], "", "argument --pd-noise-band: 'abc' is not a number"),
        (["--pd-slo=latency=5"], "", "argument --pd-slo: 'latency=5': write NAME=MILLISECONDS"),
        (["--pd-baseline-max-age=soon"], "", "argument --pd-baseline-max-age: not an age: 'soon'"),
        (["--pd-trend-runs=-2"], "", "argument --pd-trend-runs: '-2': must be 0 or more"),
        ([], "pd_noise_band = lots", "ini pd_noise_band: 'lots' is not a number"),
        ([], "pd_telemetry_interval_s = 0", "ini pd_telemetry_interval_s: '0': must be a number > 0"),
        ([], "pd_baseline_max_age = forever-ish", "ini pd_baseline_max_age: not an age"),
    ],
)
def test_a_bad_value_stops_the_session_before_anything_starts(pytester, args, ini, says):
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_x="def test_needs_cluster(pd_cluster):\n    pass\n")
    t0 = time.monotonic()
    result = pytester.runpytest_subprocess("--cluster=sim-tp8", "--cluster-dir=/nonexistent", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    assert says in result.stderr.str(), result.stderr.str()
    assert "started prefill" not in result.stdout.str()
    assert time.monotonic() - t0 < 60
