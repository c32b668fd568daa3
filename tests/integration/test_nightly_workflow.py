"""The nightly workflow is a valid GitHub Actions workflow (checked against the parts of the
workflow schema it uses) and runs what it says: the PP cluster, a stored TP baseline, options
that exist, report and results uploaded as artifacts whatever the outcome."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
import yaml

from tests.helpers import CLUSTERS, REPO

WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"

# Keys GitHub's workflow schema allows (https://json.schemastore.org/github-workflow.json).
TOP_KEYS = {"name", "run-name", "on", "permissions", "env", "defaults", "concurrency", "jobs"}
JOB_KEYS = {
    "name",
    "needs",
    "permissions",
    "runs-on",
    "environment",
    "concurrency",
    "outputs",
    "env",
    "defaults",
    "if",
    "steps",
    "timeout-minutes",
    "strategy",
    "continue-on-error",
    "container",
    "services",
    "uses",
    "with",
    "secrets",
}
STEP_KEYS = {
    "id",
    "if",
    "name",
    "uses",
    "run",
    "working-directory",
    "shell",
    "with",
    "env",
    "continue-on-error",
    "timeout-minutes",
}
EVENTS = {"schedule", "workflow_dispatch", "push", "pull_request", "workflow_call"}
CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    if True in data:  # YAML 1.1 reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


def _cron_field_ok(text: str, lo: int, hi: int) -> bool:
    for part in text.split(","):
        base, _, step = part.partition("/")
        if step and not step.isdigit():
            return False
        if base == "*":
            continue
        ends = base.split("-")
        if not all(e.isdigit() and lo <= int(e) <= hi for e in ends) or len(ends) > 2:
            return False
    return True


def test_schema(workflow):
    assert set(workflow) <= TOP_KEYS and {"on", "jobs"} <= set(workflow)
    assert set(workflow["on"]) <= EVENTS
    for entry in workflow["on"]["schedule"]:
        fields = entry["cron"].split()
        assert len(fields) == 5 and all(
            _cron_field_ok(f, lo, hi) for f, (lo, hi) in zip(fields, CRON_RANGES, strict=True)
        )
    assert workflow["permissions"] == {"contents": "read"}
    for job_id, job in workflow["jobs"].items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", job_id)
        assert set(job) <= JOB_KEYS and {"runs-on", "steps"} <= set(job)
        for step in job["steps"]:
            assert set(step) <= STEP_KEYS, step
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]
    text = WORKFLOW.read_text()
    for expr in re.findall(r"\$\{\{(.*?)\}\}", text):  # expressions use known contexts only
        assert re.match(r"\s*(inputs|vars|github|env|secrets|runner)\.", expr), expr


def test_self_hosted_gpu_runner_and_artifacts(workflow):
    (job,) = workflow["jobs"].values()
    labels = job["runs-on"]
    assert "self-hosted" in labels and any("gpu" in label for label in labels)
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    paths = upload["with"]["path"].split()
    assert "report.html" in paths and "artifacts/results/" in paths and "junit.xml" in paths


def test_runs_pp_cluster_against_stored_tp_baseline_with_real_options(workflow):
    (job,) = workflow["jobs"].values()
    run = next(s["run"] for s in job["steps"] if "pytest suites/" in s.get("run", ""))
    argv = shlex.split(run.split(".venv/bin/pytest", 1)[1].replace("\\\n", " "))
    assert argv[0] == "suites/" and "--pd-baseline=stored" in argv
    assert job["env"]["CLUSTER"].endswith("'h20-pp2' }}")
    pp2 = yaml.safe_load((CLUSTERS / "h20-pp2.yaml").read_text())
    assert pp2["baseline"] == "h20-tp8" and (CLUSTERS / "h20-tp8.yaml").exists()
    # every option it passes is one pytest (with pytest-pd and pytest-html) knows
    helptext = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    ).stdout
    for arg in argv[1:]:
        option = arg.split("=", 1)[0]
        assert option.startswith("--") and f"{option}" in helptext, option
