"""Offline validation of rendered Kubernetes objects.

Core kinds (Service, Deployment) and every embedded pod template (wrapped in a core/v1
PodTemplate) are validated, strictly (no unknown fields), against the Kubernetes OpenAPI schemas
that the PyPI package kubernetes-validate bundles. No PyPI package ships the LeaderWorkerSet or
RoleBasedGroup CRD schemas, so their fields above the pod templates are checked against the JSON
schemas below, written from the documented Go API types:

- LeaderWorkerSet, leaderworkerset.x-k8s.io/v1: kubernetes-sigs/lws,
  api/leaderworkerset/v1/leaderworkerset_types.go (LeaderWorkerSetSpec, LeaderWorkerTemplate).
- RoleBasedGroup, workloads.x-k8s.io/v1alpha1: sgl-project/rbg,
  api/workloads/v1alpha1/rolebasedgroup_types.go (RoleBasedGroupSpec, RoleSpec, WorkloadSpec,
  LeaderWorkerTemplate).

Each lists every field of its type (so a misspelt one fails) and constrains the ones rendered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate

K8S_VERSION = "1.30.0"  # LeaderWorkerSet needs 1.26+; RBG's releases test on 1.28+

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_OBJECT = {"type": "object"}  # a core type validated separately (pod templates) or not rendered
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _NAME, "namespace": _NAME, "labels": {"type": "object"}},
}


def _strict(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _top(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _strict(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
            "status": _OBJECT,
        },
        ["apiVersion", "kind", "metadata", "spec"],
    )


LWS_SCHEMA = _top(
    "leaderworkerset.x-k8s.io/v1",
    "LeaderWorkerSet",
    _strict(
        {
            "replicas": {"type": "integer", "minimum": 0},
            "leaderWorkerTemplate": _strict(
                {
                    "leaderTemplate": _OBJECT,
                    "workerTemplate": _OBJECT,
                    "size": {"type": "integer", "minimum": 1},
                    "restartPolicy": {
                        "enum": ["Default", "RecreateGroupOnPodRestart", "RecreateGroupAfterStart", "None"]
                    },
                    "subGroupPolicy": _OBJECT,
                    "volumeClaimTemplates": {"type": "array"},
                    "persistentVolumeClaimRetentionPolicy": _OBJECT,
                },
                ["workerTemplate"],
            ),
            "rolloutStrategy": _OBJECT,
            "startupPolicy": {"enum": ["LeaderCreated", "LeaderReady"]},
            "networkConfig": _OBJECT,
        },
        ["leaderWorkerTemplate"],
    ),
)

_RBG_ROLE = _strict(
    {
        "name": {"type": "string", "minLength": 1},
        "labels": {"type": "object"},
        "annotations": {"type": "object"},
        "replicas": {"type": "integer", "minimum": 0},
        "rolloutStrategy": _OBJECT,
        "restartPolicy": {"enum": ["None", "RecreateRBGOnPodRestart", "RecreateRoleInstanceOnPodRestart"]},
        "dependencies": {"type": "array", "items": {"type": "string"}},
        "workload": _strict(
            {
                "apiVersion": {
                    "type": "string",
                    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/v[0-9]+((alpha|beta)[0-9]+)?$",
                },
                "kind": {"type": "string"},
            },
            ["apiVersion", "kind"],
        ),
        "template": _OBJECT,
        "templateRef": _OBJECT,
        "templatePatch": _OBJECT,
        "leaderWorkerSet": _strict(
            {
                "size": {"type": "integer", "minimum": 1},
                "patchLeaderTemplate": _OBJECT,
                "patchWorkerTemplate": _OBJECT,
            },
            [],
        ),
        "components": {"type": "array"},
        "servicePorts": {"type": "array"},
        "engineRuntimes": {"type": "array"},
        "scalingAdapter": _OBJECT,
        "minReadySeconds": {"type": "integer"},
    },
    ["name", "replicas"],
)

RBG_SCHEMA = _top(
    "workloads.x-k8s.io/v1alpha1",
    "RoleBasedGroup",
    _strict(
        {
            "roles": {"type": "array", "minItems": 1, "items": _RBG_ROLE},
            "roleTemplates": {"type": "array"},
            "podGroupPolicy": _OBJECT,
            "coordination": {"type": "array"},
        },
        ["roles"],
    ),
)

CRD_SCHEMAS = {"LeaderWorkerSet": LWS_SCHEMA, "RoleBasedGroup": RBG_SCHEMA}


def pod_templates(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, PodTemplateSpec) of every pod template an object embeds."""
    kind, spec = obj["kind"], obj["spec"]
    if kind == "Deployment":
        yield "spec.template", spec["template"]
    elif kind == "LeaderWorkerSet":
        group = spec["leaderWorkerTemplate"]
        for key in ("leaderTemplate", "workerTemplate"):
            if key in group:
                yield f"spec.leaderWorkerTemplate.{key}", group[key]
    elif kind == "RoleBasedGroup":
        for role in spec["roles"]:
            yield f"spec.roles[{role['name']}].template", role["template"]


def validate_pod_template(template: dict[str, Any], name: str = "template") -> None:
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": template},
        K8S_VERSION,
        strict=True,
    )


def validate(obj: dict[str, Any]) -> None:
    """Raise if ``obj`` (or a pod template in it) does not match its schema."""
    schema = CRD_SCHEMAS.get(obj["kind"])
    if schema is None:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    else:
        jsonschema.validate(obj, schema)
    for where, template in pod_templates(obj):
        validate_pod_template(template, f"{obj['metadata']['name']}-{where.rsplit('.', 1)[-1]}".lower())
