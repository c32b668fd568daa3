"""The planner's loop closed in a real session: `pytest-pd plan` writes the best candidate as a
cluster file from a template; the suite brings it up (simulated workers, real router), measures
it, and `pd_prediction` holds the plan's prediction to what was
measured, the report saying predicted vs measured."""

from __future__ import annotations

import json

import pytest

from tests.helpers import PREDICTION_SUITE, pd_cli, run_session, sim_cluster_copy

pytestmark = pytest.mark.serial  # a run's measured figures against the plan's prediction


def test_the_top_plan_runs_and_meets_its_prediction(pytester: pytest.Pytester):
    clusters = pytester.path / "clusters"
    for name in ("sim-pp2", "sim-tp8"):
        sim_cluster_copy(name, clusters, sim={"speedup": 2})
    plans = pytester.path / "plans"
    done = pd_cli(
        "plan", "--template", str(clusters / "sim-pp2.yaml"), "--workload", "in2000-out50-c4-n8",
        "--top", "1", "-o", str(plans),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (plan,) = (p for p in plans.glob("plan1-*.yaml") if not p.name.endswith(".prediction.yaml"))
    pytester.makepyfile(test_suite=PREDICTION_SUITE)
    result, out = run_session(pytester, plans, cluster=plan.stem)
    text = result.stdout.str()
    assert result.ret == 0, text
    assert f"note: {plan.stem}: predicted vs measured (profile seed-h20.yaml)" in text, text
    stored = [json.loads(p.read_text()) for p in (out / "results").glob("*.json")]
    (candidate,) = (r for r in stored if r["cluster"]["name"] == plan.stem)
    assert abs(candidate["prediction"]["stats"]["output_throughput"]["error"]) < 0.25
