"""``pytest-pd import``: a team's launch lines (a shell script or a markdown page, read by
:mod:`pytest_pd.cluster.script_lines`) as the cluster file that renders those commands back.

Each server line is read by its engine (:attr:`Engine.server_reader`, found by the module it runs),
the router line by its router kind; hosts come from where the lines run and the addresses they
listen on or the router reaches them at. Options every server shares go to ``server_defaults``,
the rest stay on each server; flags pytest-pd has no field for stay in ``extra_args``, in order.
The cluster file is then loaded as any other and rendered, and every command must come back flag
for flag: a flag that would be lost is an error, never a silent drop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from packaging.version import Version
from pydantic import ValidationError

from pytest_pd.cluster import engines, routers
from pytest_pd.cluster.commands import launch_plan
from pytest_pd.cluster.engines import ImportedServer
from pytest_pd.cluster.script_lines import Launch, Script, ScriptError, read_script
from pytest_pd.cluster.spec import RouterSpec, ServerSpec
from pytest_pd.cluster.spec_file import parse_cluster

_IDENTITY = ("port", "bootstrap_port", "prefill_pp", "dist_init_addr")  # never shared defaults
_FIRST = ("host", "hosts", "listen", "port", "bootstrap_port", "prefill_pp")
_ANY_ADDRESS = ("0.0.0.0", "::", "[::]")
_LOCAL = ("127.", "localhost", "::1")
_PLAIN_PYTHON = ("python", "python3")


class CannotImport(ValueError):
    """The launch lines cannot make a cluster file (what, and where)."""


def _server_engine(module: str) -> tuple[str, Any] | None:
    for name in engines.names():
        engine = engines.engine(name)
        if engine.server_module == module and engine.server_reader is not None:
            return name, engine
    return None


def _address_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 80


class _Hosts:
    """Host names and addresses as the lines say them, a name made up where none is given."""

    def __init__(self) -> None:
        self.address: dict[str, str | None] = {}
        self.python: dict[str, str] = {}

    def add(self, name: str | None, address: str | None) -> str:
        if name is None:
            known = [n for n, a in self.address.items() if address is not None and a == address]
            name = known[0] if known else f"node{len(self.address)}"
        if address is not None and self.address.get(name) in (None, address):
            self.address[name] = address
        elif address is not None and self.address[name] != address:
            raise CannotImport(f"host {name} is given two addresses: {self.address[name]} and {address}")
        self.address.setdefault(name, None)
        return name


def _typed(
    model: type[ServerSpec] | type[RouterSpec], entry: dict[str, Any], launch: Launch
) -> dict[str, Any]:
    """``entry`` (values as the command line spelled them) with each value read as the cluster
    file would read it (``4`` a number, ``fa3`` a word), or kept as spelled where the field wants
    text."""
    spelled = entry
    entry = {k: yaml.safe_load(v) if isinstance(v, str) and v else v for k, v in spelled.items()}
    for _ in range(2):
        try:
            return model.model_validate(entry).model_dump(include=set(entry))
        except ValidationError as exc:
            wrong = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            if not wrong - set(spelled) and any(entry[k] != spelled[k] for k in wrong):
                entry = {**entry, **{k: spelled[k] for k in wrong}}
                continue
            problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ScriptError(
                launch.line, f"python -m {launch.module}", f"a value pytest-pd cannot take ({problem})"
            ) from None
    raise AssertionError("unreachable")


def _servers(
    script: Script, hosts: _Hosts
) -> tuple[str, dict[str, list[dict[str, Any]]], list[str], str | None]:
    """(engine name, servers by role as cluster-file entries, model paths, newest version)."""
    by_role: dict[str, list[dict[str, Any]]] = {"prefill": [], "decode": []}
    engine_names: set[str] = set()
    models: list[str] = []
    newest: list[str] = []
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}  # a multi-node server's nodes
    for launch in script.launches:
        found = _server_engine(launch.module)
        if found is None:
            if launch.module in {kind.module for kind in routers.KINDS.values()}:
                continue
            readable = sorted(
                e.server_module for e in map(engines.engine, engines.names()) if e.server_reader
            )
            raise ScriptError(
                launch.line,
                f"python -m {launch.module}",
                f"neither a server pytest-pd can import ({', '.join(readable)}) nor a router "
                f"({', '.join(sorted(kind.module for kind in routers.KINDS.values()))})",
            )
        name, engine = found
        engine_names.add(name)
        try:
            read: ImportedServer = engine.server_reader(launch.args)
        except ValueError as exc:
            raise ScriptError(launch.line, f"python -m {launch.module}", str(exc)) from None
        if read.role not in by_role:
            raise ScriptError(
                launch.line, f"python -m {launch.module}", "no --disaggregation-mode prefill|decode"
            )
        if read.model_path:
            models.append(read.model_path)
        if read.newest_version:
            newest.append(read.newest_version)
        listens_anywhere = read.host in _ANY_ADDRESS
        host = hosts.add(launch.host, launch.address or (None if listens_anywhere else read.host))
        if launch.python not in _PLAIN_PYTHON:
            hosts.python[host] = launch.python
        entry: dict[str, Any] = {"host": host, **read.fields}
        if listens_anywhere:
            entry["listen"] = read.host
        if read.extra_args:
            entry["extra_args"] = read.extra_args
        if launch.env:
            entry["env"] = launch.env
        entry = _typed(ServerSpec, entry, launch)
        entry = {**{k: entry[k] for k in _FIRST if k in entry}, **entry}  # where it runs, first
        if read.nnodes > 1:
            key = (read.role, str(entry.get("port")), str(entry.get("dist_init_addr")))
            group = groups.get(key)
            if group is None:
                groups[key] = group = {**entry, "hosts": {}}
                del group["host"]
                by_role[read.role].append(group)
            group["hosts"][read.node_rank] = host
            continue
        by_role[read.role].append(entry)
    for group in groups.values():
        group["hosts"] = [group["hosts"][rank] for rank in sorted(group["hosts"])]
    if len(engine_names) != 1:
        raise CannotImport(
            "no server launch line found (python -m sglang.launch_server …)"
            if not engine_names
            else f"servers of several engines ({', '.join(sorted(engine_names))}): one cluster file runs one"
        )
    if not by_role["prefill"] or not by_role["decode"]:
        raise CannotImport(
            "a PD cluster needs prefill and decode servers; the lines start only "
            + next(r for r, s in by_role.items() if s)
        )
    return engine_names.pop(), by_role, models, min(newest, key=Version) if newest else None


def _first_host(entry: dict[str, Any]) -> str:
    return entry.get("host") or entry["hosts"][0]


def _router(script: Script, hosts: _Hosts, by_role: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The router's entry; the servers' addresses as the router reaches them, where their own
    lines listen on any address."""
    found: list[tuple[Launch, routers.ImportedRouter]] = []
    for launch in script.launches:
        try:
            read = routers.read_router_argv(launch.module, launch.args)
        except ValueError as exc:
            raise ScriptError(launch.line, f"python -m {launch.module}", str(exc)) from None
        if read is not None:
            found.append((launch, read))
    if len(found) > 1:
        raise ScriptError(found[1][0].line, "python -m " + found[1][0].module, "a second router")
    if not found:
        return None
    launch, read = found[0]
    for role, urls in (("prefill", [u for u, _ in read.prefill]), ("decode", read.decode)):
        for url in urls:
            address, port = _address_of(url)
            at_port = [e for e in by_role[role] if e.get("port") == port]
            entry = next((e for e in at_port if hosts.address[_first_host(e)] == address), None)
            entry = entry or next((e for e in at_port if hosts.address[_first_host(e)] is None), None)
            if entry is None:
                raise ScriptError(
                    launch.line, f"--{role} {url}", f"the router names a {role} server no line starts"
                )
            hosts.address[_first_host(entry)] = address
    listens_anywhere = read.host is None or read.host in _ANY_ADDRESS
    known = [h for h, a in hosts.address.items() if not listens_anywhere and a == read.host]
    if launch.host is not None:
        host = hosts.add(launch.host, launch.address or (None if listens_anywhere else read.host))
    else:
        host = known[0] if known else _first_host(by_role["prefill"][0])
    router: dict[str, Any] = {} if read.kind == routers.DEFAULT else {"kind": read.kind}
    router["host"] = host
    if read.host is not None and read.host != hosts.address.get(host):
        router["listen"] = read.host
    router.update(read.fields)
    if read.extra_args:
        router["extra_args"] = read.extra_args
    if launch.env:
        router["env"] = launch.env
    return _typed(RouterSpec, router, launch)


def _share(by_role: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The options every server states alike, taken out of each into ``server_defaults``."""
    entries = [e for role in by_role.values() for e in role]
    keys = set.intersection(*(set(e) for e in entries)) - {
        "host",
        "hosts",
        "listen",
        "env",
        "extra_args",
        *_IDENTITY,
    }
    shared = {k: entries[0][k] for k in sorted(keys) if all(e[k] == entries[0][k] for e in entries)}
    for entry in entries:
        for key in shared:
            del entry[key]
    # the arguments every server's extra_args starts with (server_defaults' come first)
    lists = [e.get("extra_args", []) for e in entries]
    common = 0
    while all(len(a) > common and a[common] == lists[0][common] for a in lists):
        common += 1
    if common:
        shared["extra_args"] = lists[0][:common]
        for entry in entries:
            entry["extra_args"] = entry["extra_args"][common:]
            if not entry["extra_args"]:
                del entry["extra_args"]
    return shared


def import_cluster(
    text: str, *, name: str, source: str, baseline: str | None = None, engine_version: str | None = None
) -> str:
    """The cluster file (YAML text) of the launch lines in ``text`` (from ``source``, named in
    its header). Raises ``ValueError`` (:class:`ScriptError`, :class:`CannotImport`) naming what
    cannot be placed, or what would not render back."""
    script = read_script(text)
    hosts = _Hosts()
    engine, by_role, models, newest = _servers(script, hosts)
    if len(set(models)) != 1:
        raise CannotImport(
            f"the servers load different models ({', '.join(sorted(set(models))) or 'none given'})"
        )
    router = _router(script, hosts, by_role)
    unplaced = [h for h, a in hosts.address.items() if a is None]
    if unplaced:
        raise CannotImport(
            f"no address for host {', '.join(unplaced)}: say it in a comment above its line "
            f"(`# {unplaced[0]} (ADDRESS)`) or in its --host"
        )
    remote = any(not str(a).startswith(_LOCAL) for a in hosts.address.values())
    data: dict[str, Any] = {"name": name, "description": f"imported from {source}"}
    if baseline:
        data["baseline"] = baseline
    data.update(launcher="ssh" if remote else "local", engine=engine)
    if engine_version or newest:
        data["engine_version"] = engine_version or newest
    data["model"] = {"path": models[0], "name": Path(models[0].rstrip("/")).name}
    data["hosts"] = {
        h: {"address": a, **({"python": hosts.python[h]} if h in hosts.python else {})}
        for h, a in hosts.address.items()
    }
    if script.env:
        data["env"] = dict(script.env)
    shared = _share(by_role)
    if shared:
        data["server_defaults"] = shared
    data.update(prefill=by_role["prefill"], decode=by_role["decode"])
    if router:
        data["router"] = router
    out = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)
    header = f"# Imported by `pytest-pd import` from {source}: renders those commands back, flag for flag.\n"
    if newest and not engine_version:
        header += (
            f"# engine_version: {newest} is the newest {engine} that takes every flag below; "
            "pin the one you run.\n"
        )
    # the baseline's file is the team's to write: the commands are checked without it
    _check_round_trip(yaml.safe_dump({k: v for k, v in data.items() if k != "baseline"}), name, script)
    return header + out


def _number_or_word(word: str) -> str:
    """``0.90`` and ``0.9`` alike (the cluster file holds numbers as numbers)."""
    try:
        return repr(float(word))
    except ValueError:
        return word


def _flag_values(args: Sequence[str]) -> Counter[tuple[str, ...]]:
    """Each flag with the values that follow it (the words before the first flag as one), the
    order of flags ignored; ``--flag=value`` as ``--flag value``."""
    out: Counter[tuple[str, ...]] = Counter()
    current: list[str] = []
    for arg in args:
        if arg.startswith("--") and current:
            out[tuple(current)] += 1
            current = []
        words = arg.split("=", 1) if arg.startswith("--") else [arg]
        current.extend(_number_or_word(w) for w in words)
    if current:
        out[tuple(current)] += 1
    return out


def _check_round_trip(text: str, name: str, script: Script) -> None:
    """Load the written file as any cluster file, render it, and hold every command to its line."""
    spec = parse_cluster(text, Path(f"{name}.yaml"))
    rendered = [_flag_values(cmd.argv[3:]) for cmd in launch_plan(spec)]
    for launch in script.launches:
        given = _flag_values(launch.args)
        if given not in rendered:
            closest = min(rendered, key=lambda r: sum(((r - given) + (given - r)).values()))
            lost = sorted(" ".join(f) for f in (given - closest).elements())
            added = sorted(" ".join(f) for f in (closest - given).elements())
            raise ScriptError(
                launch.line,
                f"python -m {launch.module}",
                f"would not render back (lost: {', '.join(lost) or 'nothing'}; "
                f"added: {', '.join(added) or 'nothing'})",
            )
