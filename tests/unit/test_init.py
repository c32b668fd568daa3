"""`pytest-pd init`: the starter's files, never overwritten without --force, a team's own pytest
configuration respected, and --from importing the team's launch lines (the green run of what it
writes is tests/e2e/test_packaging.py's)."""

from __future__ import annotations

from pathlib import Path

import yaml

from pytest_pd.cli import main as cli_main
from pytest_pd.cluster.spec_file import load_cluster
from tests.helpers.seed import seed_blocks

STARTER = {
    "clusters/sim-pp2.yaml",
    "clusters/sim-tp8.yaml",
    "clusters/models/sim-tiny/config.json",
    "clusters/models/sim-tiny/tokenizer.json",
    "clusters/models/sim-tiny/tokenizer_config.json",
    "suites/test_pd_acceptance.py",
    "pytest.ini",
    ".github/workflows/pytest-pd-nightly.yml",
}


def written(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_the_starter_is_complete_and_loads(tmp_path, capsys):
    assert cli_main(["init", str(tmp_path)]) == 0
    assert written(tmp_path) == STARTER
    spec = load_cluster("sim-pp2", tmp_path / "clusters")
    assert spec.source == (tmp_path / "clusters" / "sim-pp2.yaml").resolve()  # its own copy
    assert Path(spec.model_path) == (tmp_path / "clusters" / "models" / "sim-tiny").resolve()
    assert "pd_cluster = sim-pp2" in (tmp_path / "pytest.ini").read_text()
    workflow = yaml.safe_load((tmp_path / ".github/workflows/pytest-pd-nightly.yml").read_text())
    run = workflow["jobs"]["acceptance"]["steps"][2]["run"]
    assert "--pd-baseline=stored" in run and "--pd-history=fail" in run
    assert workflow["jobs"]["acceptance"]["env"]["CLUSTER"] == "${{ inputs.cluster || 'sim-pp2' }}"
    compile((tmp_path / "suites/test_pd_acceptance.py").read_text(), "starter", "exec")


def test_nothing_is_overwritten_without_force(tmp_path, capsys):
    suite = tmp_path / "suites" / "test_pd_acceptance.py"
    suite.parent.mkdir()
    suite.write_text("# ours\n")
    assert cli_main(["init", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert suite.read_text() == "# ours\n" and f"kept  {suite} (exists; --force overwrites it)" in out
    assert cli_main(["init", str(tmp_path), "--force"]) == 0
    assert "def test_within_bounds_of_baseline" in suite.read_text()


def test_a_pytest_configuration_of_the_team_is_left_alone(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.pytest.ini_options]\naddopts = "-q"\n'
    )
    assert cli_main(["init", str(tmp_path)]) == 0
    assert "pytest.ini" not in written(tmp_path)
    assert "pyproject.toml configures pytest here; add `pd_cluster = sim-pp2`" in capsys.readouterr().out


def test_from_the_teams_launch_lines(tmp_path, capsys):
    blocks = seed_blocks()
    script = tmp_path / "launch-pp2.sh"
    script.write_text(
        blocks["env"]
        + "\n# on qjhs0\n" + blocks["h20-pp2 prefill"]
        + "\n# on qjhs2\n" + blocks["h20-pp2 decode"]
        + "\n" + blocks["router"] + "\n"
    )  # fmt: skip
    repo = tmp_path / "repo"
    assert cli_main(["init", str(repo), "--from", str(script), "--baseline", "h20-tp8"]) == 0
    data = yaml.safe_load((repo / "clusters" / "launch-pp2.yaml").read_text())
    assert data["baseline"] == "h20-tp8" and data["prefill"][0]["pp"] == 2
    assert "'launch-pp2'" in (repo / ".github/workflows/pytest-pd-nightly.yml").read_text()
    assert "pd_cluster = sim-pp2" in (repo / "pytest.ini").read_text()  # the first run stays simulated
