"""router.kind: validated against the kinds of cluster/routers.py, rendered as each kind's exact
command line (golden), gated on /workers (check_workers), scraped for telemetry."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from pytest_pd.cli import main as cli_main
from pytest_pd.cluster import routers
from pytest_pd.cluster.commands import launch_plan, render_commands
from pytest_pd.cluster.router_workers import check_loads, check_workers
from pytest_pd.cluster.spec_file import load_cluster, parse_cluster
from pytest_pd.errors import ClusterFileError

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = REPO / "clusters"

# The seed report's router command (tests/data/seed_commands.sh) for h20-pp2, for both kinds:
# every flag the file renders exists in both with the same meaning; only the module differs.
H20_ROUTER_TAIL = (
    "--pd-disaggregation --prefill http://172.31.0.5:30000 8998 --decode http://172.31.0.4:30001 "
    "--host 0.0.0.0 --port 8000 --worker-startup-timeout-secs 1200 --worker-startup-check-interval 30"
)
GOLDEN_ROUTER = {
    "sglang-router": "python -m sglang_router.launch_router " + H20_ROUTER_TAIL,
    "smg": "python -m smg.launch_router " + H20_ROUTER_TAIL,
}


def with_kind(name: str, kind: str | None, tmp_path: Path) -> Path:
    """A copy of a shipped cluster file with ``router.kind`` set (left out when None)."""
    data = yaml.safe_load((CLUSTERS / f"{name}.yaml").read_text())
    if kind is not None:
        data["router"]["kind"] = kind
    data.pop("baseline", None)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def router_line(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """The router's line as `pytest-pd commands FILE` prints it."""
    assert cli_main(["commands", str(path), "--cluster-dir", str(path.parent)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == render_commands(load_cluster(str(path), path.parent)).splitlines()
    return lines[lines.index(next(x for x in lines if x.startswith("# router on"))) + 1]


def test_default_kind_is_sglang_router_and_renders_the_seed_command(tmp_path, capsys):
    spec = load_cluster("h20-pp2", CLUSTERS)
    assert spec.router.kind == "sglang-router" == routers.DEFAULT
    assert router_line(with_kind("h20-pp2", None, tmp_path), capsys) == GOLDEN_ROUTER["sglang-router"]


@pytest.mark.parametrize("kind", ["sglang-router", "smg"])
def test_golden_router_command_per_kind(kind, tmp_path, capsys):
    assert router_line(with_kind("h20-pp2", kind, tmp_path), capsys) == GOLDEN_ROUTER[kind]


def test_smg_keeps_every_router_key_and_extra_args(tmp_path):
    """sim-pp2's router block (prometheus, startup interval, extra_args) under smg, with this
    venv's interpreter for launcher: local."""
    path = with_kind("sim-pp2", "smg", tmp_path)
    spec = load_cluster(str(path), tmp_path)
    router = launch_plan(spec, local_python="/venv/bin/python")[-1]
    assert shlex.join(router.argv) == (
        "/venv/bin/python -m smg.launch_router --pd-disaggregation "
        "--prefill http://127.0.0.1:31000 31998 --decode http://127.0.0.1:31001 "
        "--host 127.0.0.1 --port 31100 --worker-startup-timeout-secs 60 "
        "--worker-startup-check-interval 1 --prometheus-host 127.0.0.1 --prometheus-port 31200 "
        "--disable-circuit-breaker --retry-max-retries 1"
    )


@pytest.mark.parametrize("kind", ["sglang-router", "smg"])
def test_router_gates_on_readiness_then_workers(kind, tmp_path):
    spec = load_cluster(str(with_kind("sim-pp2", kind, tmp_path)), tmp_path)
    router = launch_plan(spec)[-1]
    assert router.health_url == "http://127.0.0.1:31100/readiness"
    assert router.workers_url == "http://127.0.0.1:31100/workers"
    assert router.expected_workers == (
        ("prefill", "http://127.0.0.1:31000"),
        ("decode", "http://127.0.0.1:31001"),
    )
    assert spec.router_metrics_url == "http://127.0.0.1:31200/metrics"


def test_unknown_kind_is_refused_listing_the_choices(tmp_path):
    path = with_kind("sim-pp2", "nginx", tmp_path)
    with pytest.raises(ClusterFileError) as info:
        parse_cluster(path.read_text(), path)
    message = str(info.value)
    assert "router.kind: expected 'sglang-router', 'smg' or 'vllm-router', got 'nginx'" in message
    assert f"{path}" in message and "line " in message


def test_router_metrics_url_only_with_a_port(tmp_path):
    spec = load_cluster("h20-pp2", CLUSTERS)
    assert spec.router_metrics_url is None  # h20-pp2 sets no prometheus_port
    data = yaml.safe_load((CLUSTERS / "h20-pp2.yaml").read_text())
    data.pop("baseline")
    data["router"].update(prometheus_port=29000, prometheus_host="0.0.0.0")
    path = tmp_path / "h20-pp2.yaml"
    path.write_text(yaml.safe_dump(data))
    # all interfaces: scraped at the router host's address
    assert load_cluster(str(path), tmp_path).router_metrics_url == "http://172.31.0.5:29000/metrics"


# ---------------------------------------------------------------- the /workers check (pure)

P, D, D2 = "http://127.0.0.1:31000", "http://127.0.0.1:31001", "http://127.0.0.1:31002"
EXPECTED = [("prefill", P), ("decode", D)]


def worker(kind: str, url: str, healthy: object = True) -> dict[str, object]:
    return {"worker_type": kind, "url": url, "is_healthy": healthy, "model_id": "sim-tiny"}


def workers(*listed: dict[str, object]) -> dict[str, object]:
    return {"workers": list(listed), "total": len(listed), "stats": {}}


def test_every_worker_registered_and_healthy():
    view = check_workers(workers(worker("prefill", P), worker("decode", D + "/")), EXPECTED)
    assert view.ok
    assert view.text == "router sees 1 of 1 prefill and 1 of 1 decode workers healthy"


def test_unhealthy_worker_is_named():
    view = check_workers(workers(worker("prefill", P), worker("decode", D, False)), EXPECTED)
    assert not view.ok
    assert view.text == (
        "router sees 1 of 1 prefill and 0 of 1 decode workers healthy: "
        "http://127.0.0.1:31001 (decode) is_healthy=false"
    )


def test_missing_and_misfiled_workers_are_named():
    view = check_workers(workers(worker("decode", P), worker("decode", D)), [*EXPECTED, ("decode", D2)])
    assert not view.ok
    assert view.text == (
        "router sees 0 of 1 prefill and 1 of 2 decode workers healthy: "
        "http://127.0.0.1:31000 is registered as 'decode', not prefill; "
        "http://127.0.0.1:31002 (decode) is not registered"
    )


@pytest.mark.parametrize(
    "payload, needle",
    [
        ({"error": "URLError: <urlopen error [Errno 111] Connection refused>"}, "Connection refused"),
        ({"workers": "nope"}, "no 'workers' list"),
        ({}, "no 'workers' list in {}"),
    ],
)
def test_unreadable_worker_list(payload, needle):
    view = check_workers(payload, EXPECTED)
    assert not view.ok
    assert view.text.startswith("router's worker list could not be read (") and needle in view.text


def test_a_router_routing_by_polled_loads_must_have_polled_every_worker():
    # smg's /loads: one row per worker whose load it has polled
    row = lambda url: {"worker": url, "worker_type": "decode", "num_running_reqs": 0}  # noqa: E731
    assert check_loads({"loads": [row(P), row(D + "/")]}, EXPECTED).text == (
        "router has polled the load of 2 of 2 workers"
    )
    partial = check_loads({"loads": [row(P)]}, [*EXPECTED, ("decode", D2)])
    assert not partial.ok and partial.text == (
        "router has polled the load of 1 of 3 workers: not yet "
        "http://127.0.0.1:31001 (decode), http://127.0.0.1:31002 (decode)"
    )
    unread = check_loads({"error": "HTTP 404"}, EXPECTED)
    assert not unread.ok and unread.text == "router's polled loads could not be read (HTTP 404)"


def test_bring_up_waits_for_smgs_polled_loads_unless_it_polls_none(tmp_path):
    def router_command(kind: str, extra: list[str]):
        path = with_kind("sim-pp2", kind, tmp_path)
        data = yaml.safe_load(path.read_text())
        data["router"]["extra_args"] = [*data["router"].get("extra_args", []), *extra]
        path.write_text(yaml.safe_dump(data))
        return next(c for c in launch_plan(load_cluster(str(path), tmp_path)) if c.role == "router")

    smg = router_command("smg", ["--load-monitor-interval", "3"])
    assert smg.loads_url and smg.loads_url.endswith("/loads") and smg.loads_wait_s == 5.0
    assert router_command("smg", ["--disable-load-monitoring"]).loads_url is None
    assert router_command("sglang-router", []).loads_url is None
