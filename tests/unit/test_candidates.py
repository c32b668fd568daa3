"""Candidate topologies within a GPU budget (sim/candidates.py)."""

from __future__ import annotations

from pytest_pd.sim.candidates import candidate_topologies, describe, fits, gpu_count
from pytest_pd.sim.model import ServerShape
from pytest_pd.sim.routing import Topology


def test_servers_pack_onto_nodes_without_spanning_them():
    assert fits([8, 8], 2, 8) and fits([4, 4, 4, 2, 2], 2, 8)
    assert not fits([8, 8, 1], 2, 8) and not fits([16], 2, 8)


def test_every_candidate_fits_and_the_seed_topologies_are_among_them():
    found = list(candidate_topologies(2, 8))
    assert len(found) >= 500
    for t in found:
        sizes = [s.tp * s.pp for s in t.prefill] + [s.tp for s in t.decode]
        assert fits(sizes, 2, 8) and sum(sizes) <= 16
        assert all(d.prefill_pp == t.prefill[0].pp for d in t.decode)
    shapes = {
        ((p.tp, p.pp, p.chunked_prefill_size), len(t.prefill), t.decode[0].tp, len(t.decode))
        for t in found
        for p in t.prefill[:1]
    }
    assert ((4, 2, 16384), 1, 8, 1) in shapes  # the seed's PP2
    assert ((8, 1, 16384), 1, 8, 1) in shapes  # the seed's TP8
    gpus = [gpu_count(t) for t in found]
    assert gpus == sorted(gpus)
    assert describe(found[-1]).count("P ") == 1 and "D TP" in describe(found[-1])


def test_each_candidate_is_routed_as_the_template_is():
    shape = ServerShape(tp=8)
    routing = Topology((shape,), (shape,), "expected_wait", poll_interval_s=4.0)
    found = list(candidate_topologies(1, 8, routing=routing))
    assert found and all(t.policies == ("expected_wait",) * 2 and t.poll_interval_s == 4.0 for t in found)
    assert {t.policies for t in candidate_topologies(1, 8)} == {("round_robin", "round_robin")}
