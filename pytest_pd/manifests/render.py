"""Cluster spec -> Kubernetes objects (plain dicts), for ``kubectl apply``.

``lws``: a LeaderWorkerSet (leaderworkerset.x-k8s.io/v1) per server, with as many pods per group as
the server has nodes; a Deployment for the router. ``rbg``: one RoleBasedGroup
(workloads.x-k8s.io/v1alpha1) with a role per server (a LeaderWorkerSet workload for a multi-node
one) and a router role that depends on them all. Both add a Service per server and for the router,
whose in-cluster names the router's command and the attach cluster file use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import yaml

from pytest_pd.cluster import engines, launchers
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.errors import PdError
from pytest_pd.manifests.naming import Target, base_name, check_namespace, service_name, workload_name
from pytest_pd.manifests.pods import CLUSTER_LABEL, Obj, labels, pod_template, readiness_probe
from pytest_pd.manifests.processes import Process, processes

FORMATS = ("lws", "rbg")
LWS_API = "leaderworkerset.x-k8s.io/v1"
RBG_API = "workloads.x-k8s.io/v1alpha1"
LEADER_LABEL = {"leaderworkerset.sigs.k8s.io/worker-index": "0"}  # LWS labels its leader pods so


def render(spec: ClusterSpec, fmt: str, target: Target) -> list[Obj]:
    if fmt not in FORMATS:
        raise PdError(f"unknown manifest format {fmt!r}; choose {' or '.join(FORMATS)}.")
    if not launchers.launcher_of(spec).manages_processes:
        raise PdError(
            f"{spec.label} uses launcher: {spec.launcher}: it describes a cluster that runs already, "
            "not one to deploy. Render the manifests from the cluster file that starts it."
        )
    check_namespace(target.namespace)
    target = dataclasses.replace(target, image=target.image or engines.engine_of(spec).image)
    procs = processes(spec, target.namespace)
    workloads = lws_objects(spec, procs, target) if fmt == "lws" else [rbg_object(spec, procs, target)]
    leader_only = fmt == "lws"
    return workloads + [
        service(spec, p, target, leader_only=p.role != "router" and (leader_only or p.nodes > 1))
        for p in procs
    ]


def to_yaml(objects: Sequence[Obj]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def _metadata(spec: ClusterSpec, name: str, target: Target) -> Obj:
    return {"name": name, "namespace": target.namespace, "labels": {CLUSTER_LABEL: base_name(spec)}}


def lws_objects(spec: ClusterSpec, procs: Sequence[Process], target: Target) -> list[Obj]:
    return [router_deployment(spec, p, target) if p.role == "router" else lws(spec, p, target) for p in procs]


def lws(spec: ClusterSpec, process: Process, target: Target) -> Obj:
    base = base_name(spec)
    group: Obj = {"size": process.nodes, "restartPolicy": "RecreateGroupOnPodRestart"}
    if process.nodes > 1:  # only the leader serves HTTP
        group["leaderTemplate"] = pod_template(base, process, target, probe=True)
    group["workerTemplate"] = pod_template(base, process, target, probe=process.nodes == 1)
    return {
        "apiVersion": LWS_API,
        "kind": "LeaderWorkerSet",
        "metadata": _metadata(spec, workload_name(spec, process.name), target),
        "spec": {"replicas": 1, "leaderWorkerTemplate": group},
    }


def router_deployment(spec: ClusterSpec, process: Process, target: Target) -> Obj:
    base = base_name(spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, workload_name(spec, process.name), target),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels(base, process)},
            "template": pod_template(base, process, target, probe=True),
        },
    }


def rbg_object(spec: ClusterSpec, procs: Sequence[Process], target: Target) -> Obj:
    servers = [p.name for p in procs if p.role != "router"]
    roles = [rbg_role(spec, p, target, servers if p.role == "router" else []) for p in procs]
    return {
        "apiVersion": RBG_API,
        "kind": "RoleBasedGroup",
        "metadata": _metadata(spec, base_name(spec), target),
        "spec": {"roles": roles},
    }


def rbg_role(spec: ClusterSpec, process: Process, target: Target, dependencies: list[str]) -> Obj:
    base = base_name(spec)
    role: Obj = {"name": process.name, "replicas": 1}
    if dependencies:
        role["dependencies"] = dependencies
    if process.role == "router":
        role["workload"] = {"apiVersion": "apps/v1", "kind": "Deployment"}
    elif process.nodes > 1:
        role["workload"] = {"apiVersion": LWS_API, "kind": "LeaderWorkerSet"}
    else:
        role["workload"] = {"apiVersion": "apps/v1", "kind": "StatefulSet"}
    role["template"] = pod_template(base, process, target, probe=process.nodes == 1)
    if process.nodes > 1:  # the probe goes on the leader only: workers serve no HTTP
        probe = {"name": process.role, "readinessProbe": readiness_probe(process)}
        role["leaderWorkerSet"] = {
            "size": process.nodes,
            "patchLeaderTemplate": {"spec": {"containers": [probe]}},
        }
    return role


def service(spec: ClusterSpec, process: Process, target: Target, *, leader_only: bool) -> Obj:
    selector = labels(base_name(spec), process) | (LEADER_LABEL if leader_only else {})
    ports = [{"name": name, "port": port, "targetPort": port} for name, port in process.ports.items()]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, service_name(spec, process.name), target),
        "spec": {"selector": selector, "ports": ports},
    }
