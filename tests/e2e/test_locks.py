"""Host locks: a second session waits for a host another one holds (saying who and since when),
gives up with a clear error after its timeout, and locks are released at teardown whatever
happened, and when their holder's connection dies."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pytest_pd.cluster.launchers.ssh import SSHConnection, resolve_target
from pytest_pd.cluster.launchers.ssh.lock import RemoteHostLock
from pytest_pd.cluster.locks import HostLockTimeout, LocalHostLock, holder_info
from pytest_pd.cluster.spec import HostSpec
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.cluster.topology import Topology
from pytest_pd.errors import BringUpError
from tests.helpers import assert_nothing_left, sim_cluster_copy
from tests.helpers.sshd import SshFarm, ssh_cluster_copy


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def connection(farm: SshFarm, index: int = 0) -> SSHConnection:
    spec = HostSpec.model_validate(
        {"address": farm.hosts[index].address, "ssh": farm.ssh_block(farm.hosts[index])}
    )
    return SSHConnection(resolve_target(f"node-{index}", spec), say=lambda _: None)


# ------------------------------------------------------------------ the lock primitives


def test_local_lock_waits_names_the_holder_and_times_out(tmp_path: Path):
    first = LocalHostLock(tmp_path, "localhost", "this machine", "session A since 12:00")
    second = LocalHostLock(tmp_path, "localhost", "this machine", "session B")
    said: list[str] = []
    first.acquire(1, said.append)
    assert said == []  # a free lock says nothing
    start = time.monotonic()
    with pytest.raises(HostLockTimeout) as err:
        second.acquire(0.5, said.append)
    assert 0.4 < time.monotonic() - start < 3
    assert "could not lock this machine within 0.5 s: it is held by session A since 12:00" in str(err.value)
    assert "lock_timeout_s" in str(err.value)
    assert said and "in use by session A since 12:00" in said[0]

    releaser = threading.Timer(0.5, first.release)
    releaser.start()
    second.acquire(10, said.append)  # waits until A lets go
    assert (tmp_path / "localhost.holder").read_text().strip() == "session B"
    second.release()
    assert (tmp_path / "localhost.holder").read_text() == ""


def test_remote_lock_is_tied_to_its_connection(sshd_farm: SshFarm, tmp_path: Path):
    a, b = connection(sshd_farm), connection(sshd_farm)
    lock_dir = str(tmp_path / "locks")
    info = holder_info("cluster-a", tmp_path / "run-a")
    first = RemoteHostLock(a, lock_dir, "127.0.0.2", "host node-0 (127.0.0.2)", info)
    second = RemoteHostLock(b, lock_dir, "127.0.0.2", "host node-0 (127.0.0.2)", "session B")
    said: list[str] = []
    try:
        first.acquire(5, said.append)
        assert first.held
        assert (tmp_path / "locks" / "127.0.0.2.holder").read_text().strip() == info
        with pytest.raises(HostLockTimeout) as err:
            second.acquire(0.5, said.append)
        text = str(err.value)
        assert f"could not lock host node-0 (127.0.0.2) within 0.5 s: it is held by {info}" in text
        assert "cluster cluster-a" in text and " since " in text
        assert any("waiting for host node-0 (127.0.0.2): in use by pytest-pd pid" in m for m in said)

        # the holder's connection dies without a release: the lock goes with it
        a.close()
        second.acquire(10, said.append)
        assert (tmp_path / "locks" / "127.0.0.2.holder").read_text().strip() == "session B"
        second.release()
        assert (tmp_path / "locks" / "127.0.0.2.holder").read_text() == ""
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------ topologies sharing hosts


def test_second_topology_waits_for_the_first_then_runs(sshd_farm: SshFarm, tmp_path: Path):
    folders = [tmp_path / f"clusters-{i}" for i in range(4)]
    paths = [
        ssh_cluster_copy("sim-tp8", folders[0], sshd_farm, tmp_path, baseline=None),
        ssh_cluster_copy(
            "sim-tp8", folders[1], sshd_farm, tmp_path, baseline=None, host_overrides={"lock_timeout_s": 0.5}
        ),
        ssh_cluster_copy(
            "sim-tp8", folders[2], sshd_farm, tmp_path, baseline=None, host_overrides={"lock_timeout_s": 60}
        ),
        ssh_cluster_copy(
            "sim-tp8",
            folders[3],
            sshd_farm,
            tmp_path,
            baseline=None,
            server_defaults={"health_timeout_s": 30, "extra_args": ["--port", "not-a-port"]},
        ),
    ]
    specs = [load_cluster(str(p), p.parent) for p in paths]
    said: list[str] = []
    runs = tmp_path / "runs"
    first = Topology(specs[0], runs / "a", say=said.append)
    first.up()
    try:
        # configured short: a clear error naming the holder, and nothing of its own started
        impatient = Topology(specs[1], runs / "b", say=said.append)
        with pytest.raises(HostLockTimeout) as err:
            impatient.up()
        assert "could not lock host prefill-node (127.0.0.2) within 0.5 s" in str(err.value)
        assert f"cluster sim-tp8, run {runs / 'a'}, since " in str(err.value)
        assert not impatient.running and not list((runs / "b").glob("*.pid"))

        # patient: waits (saying for whom) until the first one is torn down, then comes up
        patient = Topology(specs[2], runs / "c", say=said.append)
        thread = threading.Thread(target=patient.up)
        thread.start()
        wait_for(
            lambda: any(
                "waiting for host prefill-node (127.0.0.2): in use by" in m and str(runs / "a") in m
                for m in said
            ),
            what="the waiting message",
        )
        assert not patient.running
    finally:
        first.down()
    thread.join(60)
    assert patient.ready_at is not None and len(patient.running) == 3

    # launcher: attach: health checks only, no locks taken, nothing torn down
    attached = Topology(specs[2].model_copy(update={"launcher": "attach"}), runs / "e", say=said.append)
    attached.up()
    assert not attached.locks and not attached.running
    attached.down()
    assert all(r.host.alive(r.proc) for r in patient.running)
    patient.down()
    with pytest.raises(
        BringUpError,
        match=r"attached cluster sim-tp8 is not healthy: prefill-0 at "
        r"http://127.0.0.2:\d+/health answered nothing; decode-0 .*; router",
    ):
        attached.up()

    # a bring-up that fails still releases its locks
    crashing = Topology(specs[3], runs / "d", say=said.append)
    with pytest.raises(BringUpError, match="not-a-port"):
        crashing.up()
    assert not crashing.locks
    holders = sorted((tmp_path / "locks").glob("*.holder"))
    assert [p.name for p in holders] == ["127.0.0.2.holder", "127.0.0.3.holder"]
    assert all(p.read_text() == "" for p in holders)
    assert_nothing_left(runs)


def test_local_topology_releases_its_lock_after_a_failed_bring_up(tmp_path: Path):
    path = sim_cluster_copy(
        "sim-tp8",
        tmp_path / "clusters",
        baseline=None,
        server_defaults={"health_timeout_s": 30, "extra_args": ["--port", "not-a-port"]},
    )
    text = path.read_text().replace("    gpus: 8\n", f"    gpus: 8\n    lock_dir: {tmp_path / 'locks'}\n")
    path.write_text(text)
    spec = load_cluster(str(path), path.parent)
    topology = Topology(spec, tmp_path / "runs" / "x", say=lambda _: None)
    with pytest.raises(BringUpError):
        topology.up()
    probe = LocalHostLock(tmp_path / "locks", "localhost", "this machine", "probe")
    probe.acquire(0, lambda _: None)  # free again at once
    probe.release()
