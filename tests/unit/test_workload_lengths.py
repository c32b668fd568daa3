"""Request lengths (workload/lengths.py): uniform, normal and log-normal spreads, and a length
histogram file; their workload ids and how bad values are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pytest_pd.workload.lengths import draw_lengths
from pytest_pd.workload.spec import Workload, WorkloadError


def draw(w: Workload) -> tuple[np.ndarray, np.ndarray]:
    return draw_lengths(w, np.random.default_rng(w.seed))


def test_normal_and_lognormal_spreads_have_the_asked_mean_and_deviation():
    for dist in ("normal", "lognormal"):
        w = Workload(2000, 400, 4, 4000, length_distribution=dist, input_std=300, output_std=100)
        ins, outs = draw(w)
        assert ins.mean() == pytest.approx(2000, rel=0.03) and ins.std() == pytest.approx(300, rel=0.08)
        assert outs.mean() == pytest.approx(400, rel=0.03) and outs.std() == pytest.approx(100, rel=0.08)
        assert ins.min() >= 1 and outs.min() >= 1
        assert np.array_equal(draw(w)[0], ins)  # the seed decides
    skewed = draw(Workload(1000, 10, 4, 4000, length_distribution="lognormal", input_std=900, output_std=0))
    assert np.median(skewed[0]) < 1000 < skewed[0].max() and set(skewed[1]) == {10}
    assert Workload.from_id(w.id) == w and w.id.endswith("-lognormal300x100")


def test_a_shared_prefix_keeps_spread_prompts_longer_than_the_prefix():
    w = Workload(
        600, 10, 4, 500, length_distribution="normal", input_std=400, prefix_groups=2, prefix_len=100
    )
    assert draw(w)[0].min() == 101


def test_a_length_histogram_is_sampled_by_its_counts(tmp_path: Path):
    path = tmp_path / "lengths.csv"
    path.write_text("input_len,output_len,count\n100,10,3\n5000,500,1\n7,7,0\n")
    w = Workload(num_requests=4000, lengths_path=str(path))
    ins, outs = draw(w)
    assert set(zip(ins.tolist(), outs.tolist(), strict=True)) == {(100, 10), (5000, 500)}
    assert (ins == 100).mean() == pytest.approx(0.75, abs=0.03)
    assert w.id.endswith("-lhlengths")
    with pytest.raises(WorkloadError, match="give the file"):
        Workload.from_id(w.id)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("in,out\n1,2\n", "must name input_len and output_len"),
        ("input_len,output_len\n1,x\n", "line 2: input_len and output_len must be whole numbers"),
        ("input_len,output_len\n0,5\n", "line 2: lengths must be >= 1"),
        ("input_len,output_len,count\n5,5,0\n", "no rows with a count > 0"),
    ],
)
def test_a_bad_length_histogram_names_the_file_and_line(tmp_path: Path, text: str, why: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(WorkloadError, match=why) as info:
        draw(Workload(lengths_path=str(path)))
    assert str(path) in str(info.value)
    with pytest.raises(WorkloadError, match="cannot read lengths file"):
        draw(Workload(lengths_path=str(tmp_path / "missing.csv")))


def test_inconsistent_length_settings_are_refused():
    with pytest.raises(WorkloadError, match="length_distribution must be one of uniform, normal, lognormal"):
        Workload(length_distribution="zipf")
    with pytest.raises(WorkloadError, match="need length_distribution='normal' or 'lognormal'"):
        Workload(input_std=10)
    with pytest.raises(WorkloadError, match="must be >= 0"):
        Workload(length_distribution="normal", input_std=-1)
    with pytest.raises(WorkloadError, match="excludes a dataset file"):
        Workload(lengths_path="x.csv", length_distribution="normal", input_std=5)
