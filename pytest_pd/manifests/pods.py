"""Pod templates (core/v1 PodTemplateSpec) for the processes of :mod:`.processes`.

A server pod runs on the node's network (``hostNetwork``): the cluster file's ports, NCCL/Gloo
interface names and InfiniBand devices are the node's. It mounts the model from the node at the
path its command names (``hostPath``) and a memory-backed ``/dev/shm`` for NCCL; a server that
moves KV over InfiniBand (``ib_device``) runs privileged to reach the node's RDMA devices. Its
readiness probe is the plan's health check, on the leader only: other nodes serve no HTTP.
"""

from __future__ import annotations

from typing import Any

from pytest_pd.manifests.naming import Target
from pytest_pd.manifests.processes import Process

GPU = "nvidia.com/gpu"
CLUSTER_LABEL = "pytest-pd/cluster"
PROCESS_LABEL = "pytest-pd/process"

Obj = dict[str, Any]
DSHM_MOUNT = {"name": "dshm", "mountPath": "/dev/shm"}  # NCCL's shared memory: more than Docker's 64 MB


def labels(base: str, process: Process) -> dict[str, str]:
    return {CLUSTER_LABEL: base, PROCESS_LABEL: process.name}


def readiness_probe(process: Process) -> Obj:
    return {"httpGet": {"path": process.health_path, "port": process.ports["http"]}, "periodSeconds": 10}


def container(process: Process, target: Target, *, probe: bool) -> Obj:
    c: Obj = {
        "name": process.role,
        "image": target.image,
        "command": list(process.argv),
        "env": [{"name": k, "value": v} for k, v in process.env.items()],
        "ports": [{"name": name, "containerPort": port} for name, port in process.ports.items()],
    }
    if probe:
        c["readinessProbe"] = readiness_probe(process)
    if process.gpus:
        c["resources"] = {"limits": {GPU: process.gpus}}
    if process.role != "router":
        c["volumeMounts"] = [{"name": "model", "mountPath": model_path(process)}, DSHM_MOUNT]
    if process.rdma:
        c["securityContext"] = {"privileged": True}
    return c


def model_path(process: Process) -> str:
    return process.argv[process.argv.index("--model-path") + 1]


def pod_template(base: str, process: Process, target: Target, *, probe: bool) -> Obj:
    spec: Obj = {"containers": [container(process, target, probe=probe)]}
    if process.role != "router":
        spec = {
            "hostNetwork": True,
            "dnsPolicy": "ClusterFirstWithHostNet",
            **spec,
            "volumes": [
                {"name": "model", "hostPath": {"path": model_path(process), "type": "Directory"}},
                {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            ],
        }
    return {"metadata": {"labels": labels(base, process)}, "spec": spec}
