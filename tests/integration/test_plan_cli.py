"""`pytest-pd plan` as a user runs it: a template cluster file in, the Pareto table out, and the
best candidates written as cluster files that validate, with their predictions beside them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pytest_pd.cluster.spec_file import load_cluster
from tests.helpers import pd_cli, sim_cluster_copy


def test_plan_ranks_candidates_and_writes_runnable_cluster_files(tmp_path: Path):
    out = tmp_path / "plans"
    done = pd_cli(
        "plan",
        "--template",
        "sim-pp2",
        "--gpus",
        "16",
        "--workload",
        "in6000-out1000-c16-n32",
        "--slo",
        "ttft_p90_ms=12000,p90_tpot_ms=40",
        "--top",
        "2",
        "-o",
        str(out),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert "do not fit in memory" in text and "on the Pareto front" in text, text
    assert "template sim-pp2" in text and "baseline sim-tp8" in text, text  # the seed's two, marked
    assert (out / "pareto.png").stat().st_size > 10_000
    rows = json.loads((out / "plan.json").read_text())
    assert len(rows) > 500 and sum(r["pareto"] for r in rows) >= 1
    plans = sorted(out.glob("plan[0-9]*-*.yaml"))
    plans = [p for p in plans if not p.name.endswith(".prediction.yaml")]
    assert [p.name[:5] for p in plans] == ["plan1", "plan2"]
    for path in plans:
        spec = load_cluster(str(path), out)  # validates, with its baseline (copied) beside it
        assert spec.baseline == "sim-tp8" and (out / "sim-tp8.yaml").is_file()
        assert spec.twin is not None and Path(spec.resolve_path(spec.twin.profile)).is_file()
        assert Path(spec.model_path).is_dir() and spec.engine_options["sim"]["speedup"] == 10
        prediction = yaml.safe_load(path.with_name(path.stem + ".prediction.yaml").read_text())
        assert prediction["workload"] == "in6000-out1000-c16-n32"
        assert prediction["predicted"]["output_throughput"] > 0
        assert prediction["predicted"]["p90_tpot_ms"] <= 40


def test_plan_refuses_what_it_cannot_do_and_says_what_to_change(tmp_path: Path):
    cases = [
        (["--slo", "ttft=5"], "SLO 'ttft': unknown statistic"),
        (["--gpus", "40"], "40 GPUs need 5 nodes of 8"),
        (["--workload", "six-thousand"], "is not a workload id"),
        (["--template", "nope"], "nope"),
    ]
    for extra, message in cases:
        args = ["plan", "--template", "sim-pp2", "-o", str(tmp_path / "p"), *extra]
        done = pd_cli(*args)
        assert done.returncode == 2, (extra, done.stdout, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (extra, done.stderr)


def test_a_budget_nothing_fits_in_writes_no_plan_and_says_so(tmp_path: Path):
    out = tmp_path / "plans"
    done = pd_cli("plan", "--template", "sim-pp2", "--gpus", "8", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "no candidate meets the SLOs and fits in memory" in done.stdout, done.stdout
    assert "template sim-pp2" not in done.stdout  # its 16 GPUs are over this budget
    assert not list(out.glob("plan[0-9]*.yaml"))


def test_plan_takes_a_trace_as_its_workload(tmp_path: Path):
    trace = Path(__file__).resolve().parents[2] / "suites" / "traces" / "synthetic-1000.jsonl"
    args = ["plan", "--template", "sim-pp2", "--gpus", "16", "--top", "1", "--trace", str(trace)]
    done = pd_cli(*args, "--trace-requests", "80", "-o", str(tmp_path / "p"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plan: trsynthetic_1000-c80-n80 on 16 GPUs" in done.stdout, done.stdout
    (plan,) = [p for p in (tmp_path / "p").glob("plan1-*.prediction.yaml")]
    prediction = yaml.safe_load(plan.read_text())
    assert prediction["workload"] == "trsynthetic_1000-c80-n80"
    assert 0 < prediction["predicted"]["mean_ttft_ms"] < 10_000  # half the prompt tokens cached
    done = pd_cli(*args, "--trace-requests", "5000", "-o", str(tmp_path / "q"))
    assert done.returncode == 2 and "--trace-requests 5000: the trace" in done.stderr, done.stderr
    # behind smg's cache_aware, which follows the shared prefixes, every candidate is routed by
    # its prefix trees: the shared prefixes go where they were computed
    smg = sim_cluster_copy("sim-pp2", tmp_path / "clusters")
    data = yaml.safe_load(smg.read_text())
    data["router"]["kind"] = "smg"
    data.pop("baseline")
    smg.write_text(yaml.safe_dump(data))
    smg_args = ["--gpus", "16", "--top", "1", "--trace", str(trace), "--trace-requests", "80"]
    done = pd_cli("plan", "--template", str(smg), *smg_args, "-o", str(tmp_path / "r"))
    assert done.returncode == 0, done.stdout + done.stderr
    (plan,) = [p for p in (tmp_path / "r").glob("plan1-*.prediction.yaml")]
    assert yaml.safe_load(plan.read_text())["predicted"]["mean_ttft_ms"] > 0
