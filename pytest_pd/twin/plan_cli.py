"""`pytest-pd plan`: rank candidate topologies on the timing model before GPUs are spent.

    pytest-pd plan --profile profiles/h20-dsv32.yaml --gpus 16 --workload in6000-out1000-c16-n32 \\
        --slo p90_ttft_ms=8000,p90_tpot_ms=40 --template clusters/h20-pp2.yaml -o plans/

Enumerates every xPyD topology within the GPU budget (prefill TP x PP x chunked-prefill size,
decode TP, any counts; no server spans a node), drops those whose weights or KV cache do not fit
in memory, simulates the rest on the workload, marks SLO misses and the Pareto front (output
throughput per GPU against mean TTFT and mean TPOT), prints the front with the template's (and
its baseline's) topology for comparison, draws it (pareto.png), and writes the best --top ones as
cluster files made from the template, each with its prediction beside it (NAME.prediction.yaml)
and a `twin: {profile: …}` key, so that `pytest suites/ --cluster=plans/NAME.yaml` reports
predicted against measured. Exit status: 0 written, 2 for a usage error."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from pytest_pd.cluster import safe_yaml
from pytest_pd.cluster.engines.sim.profile import ProfileError, load_profile, profile_of, save_profile
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.spec_file import find_cluster_file, load_cluster
from pytest_pd.errors import PdError
from pytest_pd.judge.slo import parse_slos
from pytest_pd.sim.candidates import (
    CHUNK_SIZES,
    PP_SIZES,
    TP_SIZES,
    candidate_topologies,
    describe,
    gpu_count,
)
from pytest_pd.sim.model import SimParams
from pytest_pd.sim.routing import Topology
from pytest_pd.workload.spec import Workload
from pytest_pd.workload.trace import read_trace

from .observed import topology_of
from .plan import DEFAULT_MEM_FRACTION, SLO_STATS, Candidate, PlanError, evaluate, ranked, same_servers
from .plan_output import chart, dump, plan_cluster, rebase_paths, summary, table


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated whole numbers") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated numbers >= 1")
    return sizes


def _csv(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "plan",
        help="rank candidate topologies on the timing model; write the best as cluster files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--template", required=True, help="cluster file (name or path) the plans are made from")
    p.add_argument("--cluster-dir", type=Path, default=Path("clusters"), help="where cluster names are found")
    p.add_argument(
        "--profile", type=Path, default=None, help="timing profile (default: the seed's H20 calibration)"
    )
    p.add_argument(
        "--gpus", type=int, default=None, help="GPU budget (default: all the template's hosts have)"
    )
    p.add_argument(
        "--gpus-per-node", type=int, default=None, help="default: the template hosts' `gpus`, else 8"
    )
    p.add_argument("--workload", default=Workload().id, help="workload id (default: %(default)s)")
    p.add_argument(
        "--trace",
        type=Path,
        default=None,
        help="a request trace (Mooncake format) as the workload instead: its rows at their "
        "timestamps, sharing the prefixes its hash ids name (the prefill's prefix cache modelled)",
    )
    p.add_argument(
        "--trace-requests", type=int, default=None, help="replay the trace's first N rows (default: all)"
    )
    p.add_argument(
        "--slo", default="", help="bounds, e.g. p90_ttft_ms=8000,p90_tpot_ms=40,output_throughput=400"
    )
    p.add_argument("--top", type=int, default=3, help="cluster files to write (default: 3)")
    p.add_argument("--tp-sizes", type=_sizes, default=TP_SIZES, help=f"default: {_csv(TP_SIZES)}")
    p.add_argument(
        "--pp-sizes", type=_sizes, default=PP_SIZES, help=f"prefill PP sizes (default: {_csv(PP_SIZES)})"
    )
    p.add_argument("--chunk-sizes", type=_sizes, default=CHUNK_SIZES, help=f"default: {_csv(CHUNK_SIZES)}")
    p.add_argument(
        "--mem-fraction",
        type=float,
        default=None,
        help="share of GPU memory for weights + KV "
        f"(default: the template's mem_fraction_static, else {DEFAULT_MEM_FRACTION})",
    )
    p.add_argument(
        "-o", "--output", type=Path, default=Path("plans"), help="folder to write (default: plans)"
    )
    return p


def run(args: argparse.Namespace) -> int:
    try:
        return _plan(args)
    except (PdError, PlanError, ProfileError, ValueError) as exc:
        print(f"pytest-pd plan: {exc}", file=sys.stderr)
        return 2


def _trace_workload(path: Path, requests: int | None) -> Workload:
    """Every row of the trace at ``path`` (or its first ``requests``), uncapped."""
    rows = len(read_trace(path))
    n = rows if requests is None else requests
    if not 1 <= n <= rows:
        raise PlanError(f"--trace-requests {requests}: the trace {path} holds {rows} requests")
    return Workload(trace_path=str(path), num_requests=n, concurrency=n)


def _plan(args: argparse.Namespace) -> int:
    template_path = find_cluster_file(args.template, args.cluster_dir)
    template = load_cluster(str(template_path), template_path.parent)
    raw = safe_yaml.load(safe_yaml.read_text(template_path), str(template_path)).data
    profile = load_profile(args.profile) if args.profile else None
    params = profile.sim_params() if profile else SimParams()
    workload = Workload.from_id(args.workload)
    if args.trace:
        workload = _trace_workload(args.trace, args.trace_requests)
    slos = parse_slos(args.slo, SLO_STATS)
    host_gpus = _host_gpus(template, args.gpus_per_node)
    per_node = args.gpus_per_node or min(g for _, g in host_gpus)
    budget = args.gpus if args.gpus is not None else sum(g for _, g in host_gpus)
    nodes = math.ceil(budget / per_node)
    if nodes > len(host_gpus):
        raise PlanError(
            f"{budget} GPUs need {nodes} nodes of {per_node}; the template {template_path} has "
            f"{len(host_gpus)} host(s): add hosts to it or lower --gpus"
        )
    mem_fraction = args.mem_fraction or template.server_defaults.mem_fraction_static or DEFAULT_MEM_FRACTION

    marked = _marked_topologies(template, template_path)
    topologies = [
        t
        for t in candidate_topologies(
            nodes,
            per_node,
            tp_sizes=args.tp_sizes,
            pp_sizes=args.pp_sizes,
            chunk_sizes=args.chunk_sizes,
            routing=marked[0][1],
        )
        if gpu_count(t) <= budget
    ]
    # the template's and baseline's topologies for comparison, when they fit the budget
    topologies += [
        t for _, t in marked if gpu_count(t) <= budget and not any(same_servers(t, c) for c in topologies)
    ]
    candidates = evaluate(params, topologies, workload, slos, mem_fraction)
    marks = {id(c): label for c in candidates for label, t in marked if same_servers(c.topology, t)}

    best = ranked(candidates)
    shown = [(str(i + 1), c) for i, c in enumerate(best)]
    shown += [("-", c) for c in candidates if id(c) in marks and not c.pareto]
    print(f"plan: {workload.id} on {budget} GPUs ({per_node} per node), profile {args.profile or 'seed H20'}")
    print(summary(candidates))
    print(table(shown, marks))

    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    chart(candidates, marks, out / "pareto.png")
    profile_path = args.profile
    if profile_path is None:
        profile_path = out / "seed-h20.yaml"
        save_profile(
            profile_of(
                params, "seed-h20", description="the simulator's built-in calibration to the seed's H20 table"
            ),
            profile_path,
        )
    baseline = _copy_baseline(template, template_path, raw, out)
    written = []
    for rank, c in enumerate(best[: max(0, args.top)], start=1):
        name = f"plan{rank}-{_slug(c.topology)}"
        written.append(
            _write_plan(
                raw, template, template_path, host_gpus, c, name, out, profile_path, baseline, workload, slos
            )
        )
    (out / "plan.json").write_text(
        json.dumps([_row(c, marks.get(id(c), "")) for c in candidates], indent=1), encoding="utf-8"
    )
    print(f"chart: {out / 'pareto.png'}; every candidate: {out / 'plan.json'}")
    for path in written:
        print(f"wrote {path}  (pytest suites/ --cluster={path})")
    if not best:
        print("no candidate meets the SLOs and fits in memory: loosen --slo or add GPUs")
    return 0


def _host_gpus(template: ClusterSpec, per_node: int | None) -> list[tuple[str, int]]:
    return [(name, per_node or host.gpus or 8) for name, host in template.hosts.items()]


def _marked_topologies(template: ClusterSpec, path: Path) -> list[tuple[str, Topology]]:
    """The template's topology, and its baseline's when that file is beside it."""
    out = [(f"template {template.label}", topology_of(template.model_dump(mode="json")))]
    if template.baseline:
        try:
            base = load_cluster(template.baseline, path.parent)
        except PdError:
            return out
        out.append((f"baseline {base.label}", topology_of(base.model_dump(mode="json"))))
    return out


def _slug(topology: Topology) -> str:
    p, d = topology.prefill[0], topology.decode[0]
    pre = (
        f"{len(topology.prefill)}p-tp{p.tp}"
        + (f"pp{p.pp}" if p.pp > 1 else "")
        + f"-c{p.chunked_prefill_size // 1024}k"
    )
    return f"{pre}-{len(topology.decode)}d-tp{d.tp}"


def _copy_baseline(template: ClusterSpec, template_path: Path, raw: dict[str, Any], out: Path) -> str:
    """The plans' baseline: the template's own baseline (else, or when its file is missing, the
    template), copied beside them."""
    name = template.baseline or template_path.stem
    source = template_path.parent / f"{name}.yaml"
    if not source.is_file():
        name, source = template_path.stem, template_path
    target = out / f"{name}.yaml"
    if target.resolve() == source.resolve():
        return name
    data = rebase_paths(safe_yaml.load(safe_yaml.read_text(source), str(source)).data, source.parent, out)
    if data.get("baseline") and not (out / f"{data['baseline']}.yaml").is_file():
        data.pop("baseline")
    dump(
        data, target, f"Copied from {source} by pytest-pd plan: the baseline the plans beside it compare to."
    )
    return name


def _write_plan(
    raw: dict[str, Any],
    template: ClusterSpec,
    template_path: Path,
    host_gpus: list[tuple[str, int]],
    c: Candidate,
    name: str,
    out: Path,
    profile_path: Path,
    baseline: str,
    workload: Workload,
    slos: dict[str, float],
) -> Path:
    data = plan_cluster(
        rebase_paths(raw, template_path.parent, out),
        c.topology,
        name,
        host_gpus,
        {h: spec.address or "" for h, spec in template.hosts.items()},
        {
            "description": f"Planned from {template.label}: {describe(c.topology)}",
            "baseline": baseline,
            "twin": {"profile": _rel(profile_path, out)},
        },
    )
    path = out / f"{name}.yaml"
    dump(
        data,
        path,
        f"Written by pytest-pd plan from {template_path} on {dt.date.today()}: {describe(c.topology)}",
    )
    load_cluster(str(path), out)  # a plan that does not validate is a bug: say so now, not at launch
    prediction = {
        "cluster": name,
        "topology": describe(c.topology),
        "workload": workload.id,
        "profile": str(profile_path),
        "slo": slos,
        "predicted": {k: round(v, 3) for k, v in c.stats.items()},
        "note": "model time (what the real cluster would take)",
    }
    dump(prediction, out / f"{name}.prediction.yaml", "The timing model's prediction for this plan.")
    return path


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path.resolve(), start.resolve())


def _row(c: Candidate, mark: str) -> dict[str, Any]:
    return {
        "topology": describe(c.topology),
        "gpus": c.gpus,
        "stats": c.stats,
        "problem": c.problem,
        "pareto": c.pareto,
        "mark": mark,
    }
