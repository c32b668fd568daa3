"""`pytest-pd manifests`: the Kubernetes objects a cluster file renders to are schema-valid (the
Kubernetes OpenAPI schemas for core kinds and pod templates, the LWS and RBG API fields above them:
tests/helpers/k8s_schemas.py), run exactly the commands of the cluster's launch plan but for the
documented address substitutions, ask for the GPUs the servers use, probe the plan's health
paths, expose the servers' ports, and come with an attach cluster file that loads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from pytest_pd.cluster.commands import launch_plan
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.spec_file import load_cluster, parse_cluster
from pytest_pd.errors import PdError
from pytest_pd.manifests.attach import attach_name, attach_yaml, default_router_url
from pytest_pd.manifests.naming import Target
from pytest_pd.manifests.render import render, to_yaml
from tests.helpers import CLUSTERS
from tests.helpers.k8s_schemas import validate, validate_pod_template

FORMATS = ("lws", "rbg")
REAL = ("h20-pp2", "h20-tp8")
ALL = (*REAL, "sim-pp2", "sim-tp8", "cpu-1p1d", "cpu-2p1d")
NS = "llm"


def cluster(name: str) -> ClusterSpec:
    return load_cluster(name, CLUSTERS)


def multi_node() -> ClusterSpec:
    """h20-tp8 with a two-node prefill server (TP=16 over qjhs0 and qjhs1)."""
    data = yaml.safe_load((CLUSTERS / "h20-tp8.yaml").read_text())
    data["name"] = "h20-2node"
    data["hosts"]["qjhs1"] = {"address": "172.31.0.6", "gpus": 8}
    data["prefill"][0].pop("host")
    data["prefill"][0].update(hosts=["qjhs0", "qjhs1"], tp=16, dist_init_addr="172.31.0.5:5757")
    return parse_cluster(yaml.safe_dump(data), CLUSTERS / "h20-2node.yaml")


def objects(spec: ClusterSpec, fmt: str) -> list[dict[str, Any]]:
    return render(spec, fmt, Target(namespace=NS))


def server_pods(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """process name -> the pod template of its leader (probe merged in for an RBG LWS role)."""
    pods = {}
    for obj in objs:
        if obj["kind"] == "LeaderWorkerSet":
            group = obj["spec"]["leaderWorkerTemplate"]
            pods[obj["metadata"]["name"]] = group.get("leaderTemplate", group["workerTemplate"])
        elif obj["kind"] == "Deployment":
            pods[obj["metadata"]["name"]] = obj["spec"]["template"]
        elif obj["kind"] == "RoleBasedGroup":
            for role in obj["spec"]["roles"]:
                pods[f"{obj['metadata']['name']}-{role['name']}"] = leader_of(role)
    return pods


def leader_of(role: dict[str, Any]) -> dict[str, Any]:
    """An RBG role's pod template as its leader gets it (the leader patch's containers merged by
    name, as a strategic merge patch does)."""
    template = copy.deepcopy(role["template"])
    patch = role.get("leaderWorkerSet", {}).get("patchLeaderTemplate", {})
    for patched in patch.get("spec", {}).get("containers", []):
        target = next(c for c in template["spec"]["containers"] if c["name"] == patched["name"])
        target.update(patched)
    return template


def container(pod: dict[str, Any]) -> dict[str, Any]:
    [only] = pod["spec"]["containers"]
    return only


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


# ------------------------------------------------------------------ schema validity


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", [*ALL, "multi-node"])
def test_every_object_and_pod_template_is_schema_valid(name: str, fmt: str):
    spec = multi_node() if name == "multi-node" else cluster(name)
    objs = objects(spec, fmt)
    for obj in objs:
        validate(obj)
        assert obj["metadata"]["namespace"] == NS
    for rbg in by_kind(objs, "RoleBasedGroup").values():
        for role in rbg["spec"]["roles"]:
            validate_pod_template(leader_of(role))  # the leader's template after its patch
    kinds = sorted(o["kind"] for o in objs)
    workloads = ["LeaderWorkerSet"] * (len(spec.prefill) + len(spec.decode)) + ["Deployment"]
    services = ["Service"] * (len(spec.prefill) + len(spec.decode) + 1)
    assert kinds == sorted((workloads if fmt == "lws" else ["RoleBasedGroup"]) + services)
    assert yaml.safe_load_all(to_yaml(objs)) is not None and list(yaml.safe_load_all(to_yaml(objs))) == objs


def test_the_validators_reject_what_the_apis_would():
    objs = objects(cluster("h20-pp2"), "lws")
    lws = copy.deepcopy(objs[0])
    lws["spec"]["leaderWorkerTemplate"]["sise"] = 2  # misspelt field
    with pytest.raises(jsonschema.ValidationError):
        validate(lws)
    pod = copy.deepcopy(objs[0]["spec"]["leaderWorkerTemplate"]["workerTemplate"])
    container(pod)["readinessProbe"]["httpGet"]["port"] = [30000]  # not an int or a name
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_pod_template(pod)
    service = copy.deepcopy(by_kind(objs, "Service")["h20-pp2-router-svc"])
    service["spec"]["ports"][0]["prot"] = 8000
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(service)
    rbg = copy.deepcopy(objects(cluster("h20-pp2"), "rbg")[0])
    rbg["spec"]["roles"][0]["workload"]["apiVersion"] = "LeaderWorkerSet"
    with pytest.raises(jsonschema.ValidationError):
        validate(rbg)


# ------------------------------------------------------------------ commands


def expected_argv(argv: tuple[str, ...], routes: dict[str, str] | None = None) -> list[str]:
    """The plan's argv with the documented substitutions written out: python3 for the
    interpreter, 0.0.0.0 for what --host binds, each worker URL after --prefill/--decode by
    ``routes[URL]``."""
    out = ["python3"]
    for before, arg in zip(argv, argv[1:], strict=False):
        if before in ("--prefill", "--decode"):
            out.append((routes or {})[arg])
        else:
            out.append("0.0.0.0" if before == "--host" else arg)
    return out


EXPECTED_ROUTES = {
    "h20-pp2": {
        "http://172.31.0.5:30000": f"http://h20-pp2-prefill-0-svc.{NS}.svc:30000",
        "http://172.31.0.4:30001": f"http://h20-pp2-decode-0-svc.{NS}.svc:30001",
    },
    "h20-tp8": {
        "http://172.31.0.5:30000": f"http://h20-tp8-prefill-0-svc.{NS}.svc:30000",
        "http://172.31.0.4:30001": f"http://h20-tp8-decode-0-svc.{NS}.svc:30001",
    },
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", REAL)
def test_containers_run_the_plan_commands_with_only_the_documented_substitutions(name: str, fmt: str):
    spec = cluster(name)
    pods = server_pods(objects(spec, fmt))
    plan = launch_plan(spec)
    assert len(plan) == len(pods) == 3
    for cmd in plan:
        got = container(pods[f"{name}-{cmd.name}"])
        assert got["command"] == expected_argv(cmd.argv, EXPECTED_ROUTES[name]), cmd.name
        assert {e["name"]: e["value"] for e in got["env"]} == cmd.env
        assert got["image"] == "lmsysorg/sglang:latest"
    router = container(pods[f"{name}-router"])["command"]
    assert router[router.index("--prefill") + 1 : router.index("--prefill") + 3] == [
        f"http://{name}-prefill-0-svc.{NS}.svc:30000",
        "8998",
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_multi_node_server_runs_each_rank_s_command_through_lws_variables(fmt: str):
    spec = multi_node()
    objs = objects(spec, fmt)
    pod = server_pods(objs)["h20-2node-prefill-0"]
    command = container(pod)["command"]
    ranks = [c for c in launch_plan(spec) if c.name.startswith("prefill-0")]
    assert [c.name for c in ranks] == ["prefill-0", "prefill-0-rank1"]
    for rank, cmd in enumerate(ranks):
        expanded = [
            a.replace("$(LWS_WORKER_INDEX)", str(rank)).replace("$(LWS_LEADER_ADDRESS)", "172.31.0.5")
            for a in command
        ]
        assert expanded == expected_argv(cmd.argv), cmd.name
    assert command[command.index("--dist-init-addr") + 1] == "$(LWS_LEADER_ADDRESS):5757"
    assert command[command.index("--nnodes") + 1] == "2"
    assert container(pod)["resources"]["limits"] == {"nvidia.com/gpu": 8}  # TP=16 over 2 nodes
    if fmt == "lws":
        group = by_kind(objs, "LeaderWorkerSet")["h20-2node-prefill-0"]["spec"]["leaderWorkerTemplate"]
        assert group["size"] == 2
        assert "readinessProbe" not in container(group["workerTemplate"])  # workers serve no HTTP
        assert container(group["leaderTemplate"])["command"] == command
    else:
        role = next(r for r in objs[0]["spec"]["roles"] if r["name"] == "prefill-0")
        assert role["leaderWorkerSet"]["size"] == 2
        assert role["workload"] == {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"}
        assert "readinessProbe" not in container(role["template"])
    service = by_kind(objs, "Service")["h20-2node-prefill-0-svc"]
    assert service["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"


def test_base_gpu_id_is_dropped_and_binds_are_all_interfaces():
    data = yaml.safe_load((CLUSTERS / "h20-tp8.yaml").read_text())
    data["name"] = "h20-split"
    data["prefill"] = [
        {"host": "qjhs0", "port": 30000, "bootstrap_port": 8998, "tp": 4},
        {"host": "qjhs0", "port": 30002, "bootstrap_port": 8999, "tp": 4, "base_gpu_id": 4},
    ]
    spec = parse_cluster(yaml.safe_dump(data), CLUSTERS / "h20-split.yaml")
    pods = server_pods(objects(spec, "lws"))
    second = container(pods["h20-split-prefill-1"])
    assert "--base-gpu-id" not in second["command"]
    assert second["resources"]["limits"] == {"nvidia.com/gpu": 4}
    [plan] = [c for c in launch_plan(spec) if c.name == "prefill-1"]
    assert plan.argv[plan.argv.index("--base-gpu-id") + 1] == "4"
    sim = server_pods(objects(cluster("sim-pp2"), "lws"))["sim-pp2-router"]
    command = container(sim)["command"]
    assert command[command.index("--prometheus-host") + 1] == "0.0.0.0"
    assert command[command.index("--host") + 1] == "0.0.0.0"


# ------------------------------------------------------------------ resources, probes, Services


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("name", "prefill_gpus"), [("h20-pp2", 8), ("h20-tp8", 8)])
def test_gpus_probes_and_services_follow_the_cluster_file(name: str, prefill_gpus: int, fmt: str):
    spec = cluster(name)
    objs = objects(spec, fmt)
    pods = server_pods(objs)
    services = by_kind(objs, "Service")
    prefill, decode, router = (container(pods[f"{name}-{p}"]) for p in ("prefill-0", "decode-0", "router"))
    assert prefill["resources"]["limits"] == {"nvidia.com/gpu": prefill_gpus}  # tp × pp
    assert decode["resources"]["limits"] == {"nvidia.com/gpu": 8}
    assert "resources" not in router
    assert prefill["readinessProbe"]["httpGet"] == {"path": "/health", "port": 30000}
    assert decode["readinessProbe"]["httpGet"] == {"path": "/health", "port": 30001}
    assert router["readinessProbe"]["httpGet"] == {"path": "/readiness", "port": 8000}
    ports = {
        n: {p["name"]: (p["port"], p["targetPort"]) for p in s["spec"]["ports"]} for n, s in services.items()
    }
    assert ports == {
        f"{name}-prefill-0-svc": {"http": (30000, 30000), "bootstrap": (8998, 8998)},
        f"{name}-decode-0-svc": {"http": (30001, 30001)},
        f"{name}-router-svc": {"http": (8000, 8000)},
    }
    for process, pod in (("prefill-0", prefill), ("decode-0", decode), ("router", router)):
        assert {p["containerPort"] for p in pod["ports"]} == {
            p for p, _ in ports[f"{name}-{process}-svc"].values()
        }
    # each Service selects its process's pods (and, inside an LWS, the leader only)
    for process in ("prefill-0", "decode-0", "router"):
        selector = services[f"{name}-{process}-svc"]["spec"]["selector"]
        pod_labels = pods[f"{name}-{process}"]["metadata"]["labels"]
        in_lws = fmt == "lws" and process != "router"
        lws_labels = {"leaderworkerset.sigs.k8s.io/worker-index": "0"} if in_lws else {}
        assert selector == pod_labels | lws_labels
    assert pods[f"{name}-prefill-0"]["spec"]["hostNetwork"] is True


def test_rbg_router_role_depends_on_every_server_role():
    [rbg] = by_kind(objects(cluster("cpu-2p1d"), "rbg"), "RoleBasedGroup").values()
    roles = {r["name"]: r for r in rbg["spec"]["roles"]}
    assert list(roles) == ["prefill-0", "prefill-1", "decode-0", "router"]
    assert roles["router"]["dependencies"] == ["prefill-0", "prefill-1", "decode-0"]
    assert roles["router"]["workload"] == {"apiVersion": "apps/v1", "kind": "Deployment"}
    assert all("dependencies" not in r for n, r in roles.items() if n != "router")


# ------------------------------------------------------------------ the attach cluster file


@pytest.mark.parametrize("name", REAL)
def test_the_attach_file_loads_and_names_the_workers_as_the_router_knows_them(name: str, tmp_path: Path):
    spec = cluster(name)
    url = default_router_url(spec, NS)
    assert url == f"http://{name}-router-svc.{NS}.svc:8000"
    path = tmp_path / f"{attach_name(spec)}.yaml"
    path.write_text(attach_yaml(spec, NS, "http://127.0.0.1:18000"))
    attached = load_cluster(str(path), tmp_path)
    assert attached.launcher == "attach" and attached.label == f"{name}-k8s"
    assert attached.router_url == "http://127.0.0.1:18000"
    [router] = [c for c in launch_plan(attached) if c.role == "router"]
    command = container(server_pods(objects(spec, "lws"))[f"{name}-router"])["command"]
    told = [
        ("prefill", command[command.index("--prefill") + 1]),
        ("decode", command[command.index("--decode") + 1]),
    ]
    assert list(router.expected_workers) == told
    assert router.health_url == "http://127.0.0.1:18000/readiness"
    assert attached.prefill_strategy() == spec.prefill_strategy()
    assert attached.model_path == spec.model_path and attached.model_name == spec.model_name
    default = tmp_path / "default" / f"{attach_name(spec)}.yaml"
    default.parent.mkdir()
    default.write_text(attach_yaml(spec, NS, url))
    assert load_cluster(str(default), default.parent).router_url == url


# ------------------------------------------------------------------ bad input


def test_bad_input_is_refused_with_what_to_do(tmp_path: Path):
    spec = cluster("h20-pp2")
    with pytest.raises(PdError, match="unknown manifest format 'helm'; choose lws or rbg"):
        render(spec, "helm", Target())
    with pytest.raises(PdError, match="namespace 'Prod_1' is not a Kubernetes namespace name"):
        render(spec, "lws", Target(namespace="Prod_1"))
    with pytest.raises(PdError, match="must look like http://HOST:PORT"):
        attach_yaml(spec, NS, "https://router:8000/v1")
    path = tmp_path / "h20-pp2-k8s.yaml"
    path.write_text(attach_yaml(spec, NS, default_router_url(spec, NS)))
    with pytest.raises(PdError, match="uses launcher: attach: it describes a cluster that runs already"):
        render(load_cluster(str(path), tmp_path), "lws", Target())
    data = yaml.safe_load((CLUSTERS / "h20-tp8.yaml").read_text())
    data["name"] = "H20_TP8"
    upper = parse_cluster(yaml.safe_dump(data), CLUSTERS / "H20_TP8.yaml")
    with pytest.raises(PdError, match="cluster name 'H20_TP8' cannot name Kubernetes objects"):
        render(upper, "rbg", Target())
