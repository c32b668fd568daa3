"""Candidate PD topologies within a GPU budget, for evaluating them on the timing model: every
combination of a prefill shape (TP x PP, chunked-prefill size) repeated x times and a decode shape
(TP) repeated y times whose servers fit on the nodes (a server never spans nodes). Pure."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from .model import ServerShape
from .routing import Topology

TP_SIZES = (1, 2, 4, 8)
PP_SIZES = (1, 2, 4)
CHUNK_SIZES = (8192, 16384)


def gpu_count(topology: Topology) -> int:
    """GPUs a topology occupies: TP x PP per prefill server, TP x PP per decode server."""
    return sum(s.tp * s.pp for s in topology.prefill + topology.decode)


def describe(topology: Topology) -> str:
    """A topology in one short line, e.g. ``1P TP4xPP2 c16384 + 1D TP8``."""

    def shape(s: ServerShape, prefill: bool) -> str:
        text = f"TP{s.tp}" + (f"xPP{s.pp}" if s.pp > 1 else "")
        if prefill:
            text += f" c{s.chunked_prefill_size}"
        elif s.max_running_requests:
            text += f" max{s.max_running_requests}"
        return text

    p, d = topology.prefill, topology.decode
    pre = " ".join(sorted({shape(s, True) for s in p}))
    dec = " ".join(sorted({shape(s, False) for s in d}))
    return f"{len(p)}P {pre} + {len(d)}D {dec}"


def fits(sizes: Sequence[int], nodes: int, gpus_per_node: int) -> bool:
    """Whether servers of these GPU counts pack onto ``nodes`` nodes of ``gpus_per_node`` GPUs
    (first fit, largest first: exact for the power-of-two sizes used here)."""
    free = [gpus_per_node] * nodes
    for size in sorted(sizes, reverse=True):
        for i, room in enumerate(free):
            if room >= size:
                free[i] -= size
                break
        else:
            return False
    return True


def candidate_topologies(
    nodes: int,
    gpus_per_node: int,
    *,
    tp_sizes: Sequence[int] = TP_SIZES,
    pp_sizes: Sequence[int] = PP_SIZES,
    chunk_sizes: Sequence[int] = CHUNK_SIZES,
    routing: Topology | None = None,
) -> Iterator[Topology]:
    """Every xPyD topology that fits: prefill servers of one shape, decode servers of one shape
    (each decode told its prefills' PP size), in a fixed order (fewer GPUs first), each routed as
    ``routing`` is (its policies and polling; default: round robin)."""
    budget = nodes * gpus_per_node
    prefill_shapes = [
        ServerShape(tp=tp, pp=pp, chunked_prefill_size=chunk)
        for tp in tp_sizes
        for pp in pp_sizes
        for chunk in chunk_sizes
        if tp * pp <= gpus_per_node
    ]
    found = []
    for pre in prefill_shapes:
        size_p = pre.tp * pre.pp
        for tp_d in (tp for tp in tp_sizes if tp <= gpus_per_node):
            dec = ServerShape(tp=tp_d, prefill_pp=pre.pp)
            for x in range(1, budget // size_p + 1):
                for y in range(1, (budget - x * size_p) // tp_d + 1):
                    if fits([size_p] * x + [tp_d] * y, nodes, gpus_per_node):
                        pres, decs = (pre,) * x, (dec,) * y
                        t = replace(routing, prefill=pres, decode=decs) if routing else Topology(pres, decs)
                        found.append((x * size_p + y * tp_d, t))
    found.sort(key=lambda item: item[0])
    yield from (t for _, t in found)
