"""`pytest-pd manifests` as a user runs it: manifests on stdout, or written with the attach
cluster file beside them; bad input is one line naming what to change."""

from __future__ import annotations

from pathlib import Path

import yaml

from pytest_pd.cluster.spec_file import load_cluster
from tests.helpers import pd_cli
from tests.helpers.k8s_schemas import validate


def test_manifests_print_to_stdout_and_validate():
    done = pd_cli("manifests", "h20-pp2", "--format", "lws", "--namespace", "llm", "--image", "sglang:dev")
    assert done.returncode == 0, done.stderr
    objs = list(yaml.safe_load_all(done.stdout))
    assert [o["kind"] for o in objs] == ["LeaderWorkerSet"] * 2 + ["Deployment"] + ["Service"] * 3
    for obj in objs:
        validate(obj)
    assert (
        objs[0]["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["image"]
        == "sglang:dev"
    )


def test_manifests_written_with_an_attach_file_that_loads(tmp_path: Path):
    out = tmp_path / "k8s"
    done = pd_cli(
        "manifests", "h20-tp8", "--format", "rbg", "-o", str(out), "--router-url", "http://localhost:8000"
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["h20-tp8-k8s.yaml", "h20-tp8.rbg.yaml"]
    assert f"kubectl apply -f {out / 'h20-tp8.rbg.yaml'}" in done.stdout
    assert f"pytest suites/ --cluster={out / 'h20-tp8-k8s.yaml'}" in done.stdout
    objs = list(yaml.safe_load_all((out / "h20-tp8.rbg.yaml").read_text()))
    assert [o["kind"] for o in objs] == ["RoleBasedGroup"] + ["Service"] * 3
    spec = load_cluster(str(out / "h20-tp8-k8s.yaml"), out)
    assert spec.launcher == "attach" and spec.router_url == "http://localhost:8000"


def test_bad_input_fails_with_one_line(tmp_path: Path):
    cases = [
        (["h20-pp2", "--format", "helm"], "unknown manifest format 'helm'; choose lws or rbg"),
        (["nope", "--format", "lws"], "unknown cluster 'nope'"),
        (["h20-pp2", "--format", "lws", "--namespace", "Bad_NS"], "is not a Kubernetes namespace name"),
        (["h20-pp2", "--format", "lws", "-o", str(tmp_path), "--router-url", "ftp://x"], "http://HOST:PORT"),
    ]
    for args, message in cases:
        done = pd_cli("manifests", *args)
        assert done.returncode == 2, (args, done.stdout)
        assert done.stderr.startswith("pytest-pd manifests: ") and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
