"""The ``launcher: attach`` cluster file for a deployed cluster: its servers at their Services'
in-cluster names (the URLs the router was started with, which its ``/workers`` must list) and its
router at ``router_url`` (its Service, or wherever it was port-forwarded or exposed)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.errors import PdError
from pytest_pd.manifests.naming import service_host
from pytest_pd.redaction import redact_env

ROUTER_HOST = "router"


def attach_name(spec: ClusterSpec) -> str:
    return f"{spec.label}-k8s"


def default_router_url(spec: ClusterSpec, namespace: str) -> str:
    return f"http://{service_host(spec, 'router', namespace)}:{spec.router.port}"


def _router_address(router_url: str) -> tuple[str, int]:
    parts = urlsplit(router_url)
    try:
        port = parts.port or 80
    except ValueError:
        port = 0
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or not port:
        raise PdError(f"router URL {router_url!r} must look like http://HOST:PORT (no path).")
    return parts.hostname, port


def _beside_anywhere(spec: ClusterSpec, path: str) -> str:
    """A path of the cluster file that still holds from another folder: a relative one made
    absolute, ``~`` left for whoever runs the tests."""
    return path if path.startswith(("/", "~")) else spec.resolve_path(path)


def attach_cluster(spec: ClusterSpec, namespace: str, router_url: str) -> dict[str, Any]:
    """The attach cluster file's data (``attach_name(spec)`` is its name and file stem)."""
    address, port = _router_address(router_url)
    data = redact_env(spec.model_dump(mode="json", exclude_unset=True))
    data.pop("baseline", None)  # its file lives next to the original
    data.update(name=attach_name(spec), launcher="attach")
    data["description"] = f"{spec.label} deployed on Kubernetes (namespace {namespace})"
    data["model"]["path"] = _beside_anywhere(spec, spec.model.path)
    if spec.model.tokenizer:
        data["model"]["tokenizer"] = _beside_anywhere(spec, spec.model.tokenizer)
    if spec.twin is not None:
        data["twin"]["profile"] = _beside_anywhere(spec, spec.twin.profile)
    hosts = {ROUTER_HOST: {"address": address}}
    for role in ("prefill", "decode"):
        for i, server in enumerate(data[role]):
            name = f"{role}-{i}"
            hosts[name] = {"address": service_host(spec, name, namespace)}
            for key in ("hosts", "listen", "dist_init_addr"):
                server.pop(key, None)
            server["host"] = name
    data["hosts"] = hosts
    router = data.setdefault("router", {})
    for key in ("listen", "prometheus_host"):
        router.pop(key, None)
    router.update(host=ROUTER_HOST, port=port)
    return dict(data)


def attach_yaml(spec: ClusterSpec, namespace: str, router_url: str) -> str:
    header = (
        f"# {attach_name(spec)}: {spec.label} as deployed by `pytest-pd manifests`, launcher: attach.\n"
        "# The servers are named by their Services' in-cluster DNS names (as the router knows them);\n"
        "# run pytest where those resolve, e.g. in a pod of the namespace.\n"
    )
    return header + yaml.safe_dump(attach_cluster(spec, namespace, router_url), sort_keys=False)
