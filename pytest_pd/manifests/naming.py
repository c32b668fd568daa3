"""Kubernetes names of a cluster's objects, and the in-cluster DNS name of each Service."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.errors import PdError

# RFC 1035 label: what a Service name must be (and so every name here, which a Service's extends)
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_MAX_LABEL = 63
SERVICE_SUFFIX = "-svc"  # LWS and RBG name their own headless Services after their workloads
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Target:
    """Where and with what the manifests run (``image``: the engine's own unless given)."""

    namespace: str = DEFAULT_NAMESPACE
    image: str | None = None


def check_namespace(namespace: str) -> str:
    if not _DNS_LABEL.fullmatch(namespace) or len(namespace) > _MAX_LABEL:
        raise PdError(
            f"namespace {namespace!r} is not a Kubernetes namespace name "
            "(lowercase letters, digits and '-', starting with a letter, at most 63 characters)."
        )
    return namespace


def base_name(spec: ClusterSpec) -> str:
    """The cluster's label, which prefixes every object's name."""
    label = spec.label
    longest = f"{label}-prefill-{max(len(spec.prefill), len(spec.decode)) - 1}{SERVICE_SUFFIX}"
    if not _DNS_LABEL.fullmatch(label) or len(longest) > _MAX_LABEL:
        raise PdError(
            f"cluster name {label!r} cannot name Kubernetes objects: it must be lowercase letters, "
            f"digits and '-', start with a letter, and keep names like {longest!r} within 63 "
            "characters. Copy the cluster file under such a name."
        )
    return label


def workload_name(spec: ClusterSpec, process: str) -> str:
    """The LeaderWorkerSet or Deployment of ``process`` (prefill-0, decode-0, router); a
    RoleBasedGroup named after the cluster names its role workloads the same way."""
    return f"{base_name(spec)}-{process}"


def service_name(spec: ClusterSpec, process: str) -> str:
    return workload_name(spec, process) + SERVICE_SUFFIX


def service_host(spec: ClusterSpec, process: str, namespace: str) -> str:
    """The Service's DNS name inside the cluster (the search list completes the cluster domain)."""
    return f"{service_name(spec, process)}.{namespace}.svc"
