"""SSHHost against real OpenSSH servers on loopback addresses (no mocks): commands, detached
processes, host-key checks, authentication and connection errors, reconnects, ssh config."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pytest_pd.cluster.launchers.ssh import HostKeyError, SSHConnection, SSHHost, resolve_target
from pytest_pd.cluster.spec import HostSpec
from pytest_pd.errors import HostError
from tests.helpers import free_port, group_alive
from tests.helpers.sshd import SSH_KEYGEN, SshFarm, remote_python

ARGV_ECHO = "import json, sys; print(json.dumps(sys.argv[1:]))"
HOSTILE = [
    "two words",
    "it's",
    'say "hi"',
    "a; touch PWNED",
    "$(touch PWNED2)",
    "`touch PWNED3`",
    "*",
    "~",
    "$HOME",
    "back\\slash",
    "new\nline",
    "",
    "--flag=x y",
    "|| true &",
]


def make_host(
    farm: SshFarm, tmp_path: Path, index: int = 0, messages: list[str] | None = None, **ssh: object
) -> SSHHost:
    host = farm.hosts[index]
    spec = HostSpec.model_validate(farm.host_block(host, tmp_path / "remote", tmp_path / "locks", **ssh))
    conn = SSHConnection(
        resolve_target(f"node-{index}", spec), say=messages.append if messages is not None else lambda _: None
    )
    return SSHHost(f"node-{index}", spec, conn, python=remote_python())


@pytest.fixture
def node(sshd_farm: SshFarm, tmp_path: Path):
    host = make_host(sshd_farm, tmp_path)
    yield host
    host.conn.close()


def ssh_fingerprint(pub: Path) -> str:
    out = subprocess.run([SSH_KEYGEN, "-lf", str(pub)], check=True, capture_output=True, text=True)
    return out.stdout.split()[1]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------ commands


def test_hostile_argv_and_env_arrive_verbatim(node: SSHHost, tmp_path: Path):
    cwd = tmp_path / "cwd with space; $(x)"
    cwd.mkdir()
    res = node.run([node.python, "-c", ARGV_ECHO, *HOSTILE], cwd=str(cwd))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == HOSTILE
    assert not list(cwd.iterdir()) and not list(Path.home().glob("PWNED*"))

    value = "v a l; $(touch PWNED4) 'q' \"d\" `x`"
    show = "import os; print(os.environ.get('PD_TEST_VAR', '<unset>'))"
    with_env = node.run([node.python, "-c", show], env={"PD_TEST_VAR": value}, cwd=str(cwd))
    assert with_env.stdout.rstrip("\n") == value
    without = node.run([node.python, "-c", show])  # per process: nothing leaks into the next one
    assert without.stdout.strip() == "<unset>"
    assert not list(cwd.iterdir())
    with pytest.raises(HostError, match="environment variable names"):
        node.run(["true"], env={"BAD;NAME": "x"})


def test_start_detached_survives_the_connection_and_kill_tree_takes_the_group(
    sshd_farm: SshFarm, node: SSHHost, tmp_path: Path
):
    run_dir = tmp_path / "runs" / "r1"
    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print('hello', os.environ['PD_X'], sys.argv[1:], 'child', child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = node.start_detached("srv", (node.python, "-c", script, "a b", "$(c)"), {"PD_X": "x; y"}, run_dir)
    assert (run_dir / "srv.pid").read_text().strip() == str(proc.pid)  # local copy of the pid file
    remote_dir = Path(node.remote_run_dir(run_dir))
    assert remote_dir == tmp_path / "remote" / "runs" / "r1"
    assert (remote_dir / "srv.pid").read_text().strip() == str(proc.pid)
    assert os.getsid(proc.pid) == proc.pid  # its own session and process group (setsid)
    line = wait_for(
        lambda: [ln for ln in node.tail_log(proc, 5).splitlines() if ln.startswith("hello")],
        what="the log line",
    )[0]
    assert line.startswith("hello x; y ['a b', '$(c)'] child ")
    child = int(line.rsplit(" ", 1)[1])
    assert node.alive(proc) and node.exit_code(proc) is None

    # drop the whole connection: the process lives on; a new connection finds it
    node.conn.close()
    time.sleep(0.3)
    assert group_alive(proc.pid)
    again = make_host(sshd_farm, tmp_path)
    again._remote = node._remote
    assert again.alive(proc)

    again.kill_tree(proc, grace_s=5)
    assert not group_alive(proc.pid) and not group_alive(child)
    assert not again.alive(proc) and again.exit_code(proc) == -1
    local = again.fetch_log(proc, run_dir)
    text = local.read_text()
    assert local == run_dir / "srv.log" and text.startswith("# srv on node-0 (127.0.0.2): ")
    assert "hello x; y" in text
    again.kill_tree(proc)  # idempotent: a gone group is fine
    again.conn.close()


def test_exit_code_and_log_of_a_crashing_process(node: SSHHost, tmp_path: Path):
    run_dir = tmp_path / "runs" / "r2"
    proc = node.start_detached(
        "crash", (node.python, "-c", "import sys; print('boom'); sys.exit(3)"), {}, run_dir
    )
    assert wait_for(lambda: node.exit_code(proc) is not None, what="the exit") and node.exit_code(proc) == 3
    assert "boom" in node.tail_log(proc)
    missing = node.start_detached("missing", ("/nonexistent/python", "-V"), {}, run_dir)
    wait_for(lambda: node.exit_code(missing) is not None, what="the exit")
    assert node.exit_code(missing) == 127
    assert "/nonexistent/python" in node.tail_log(missing)


def test_ports_in_use_are_checked_on_the_host(node: SSHHost):
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        s.listen()
        taken = s.getsockname()[1]
        free = free_port()
        assert node.ports_in_use([("127.0.0.2", taken), ("127.0.0.2", free)]) == [("127.0.0.2", taken)]


# ------------------------------------------------------------------ host keys and auth


def test_unknown_host_key_is_an_error_with_fingerprint_and_fix(sshd_farm: SshFarm, tmp_path: Path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = make_host(sshd_farm, tmp_path, known_hosts=str(empty))
    with pytest.raises(HostKeyError) as err:
        host.run(["true"])
    text = str(err.value)
    sshd = sshd_farm.hosts[0]
    assert ssh_fingerprint(sshd.folder / "host_key.pub") in text
    assert "not in known_hosts" in text and str(empty) in text
    assert sshd.known_hosts_line in text  # the exact line to append
    assert "insecure_accept_unknown_host_keys: true" in text and "hosts.node-0.ssh" in text
    assert empty.read_text() == ""  # nothing accepted behind our back


def test_changed_host_key_is_an_error(sshd_farm: SshFarm, tmp_path: Path):
    sshd = sshd_farm.hosts[0]
    wrong = tmp_path / "known_hosts"
    kind, b64 = (sshd_farm.stranger_key.with_suffix(".pub")).read_text().split()[:2]
    wrong.write_text(f"[{sshd.address}]:{sshd.port} {kind} {b64}\n")
    host = make_host(sshd_farm, tmp_path, known_hosts=str(wrong), insecure_accept_unknown_host_keys=True)
    with pytest.raises(HostKeyError) as err:
        host.run(["true"])
    text = str(err.value)
    assert "HOST KEY CHANGED" in text
    assert ssh_fingerprint(sshd.folder / "host_key.pub") in text
    assert ssh_fingerprint(sshd_farm.stranger_key.with_suffix(".pub")) in text
    assert f"ssh-keygen -R '[{sshd.address}]:{sshd.port}'" in text


def test_insecure_opt_in_accepts_unknown_key_with_a_warning(sshd_farm: SshFarm, tmp_path: Path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    messages: list[str] = []
    host = make_host(
        sshd_farm, tmp_path, 0, messages, known_hosts=str(empty), insecure_accept_unknown_host_keys=True
    )
    assert host.run(["echo", "ok"]).stdout == "ok\n"
    assert any(
        "WARNING" in m and ssh_fingerprint(sshd_farm.hosts[0].folder / "host_key.pub") in m for m in messages
    ), messages
    assert empty.read_text() == ""
    host.conn.close()


def test_wrong_key_names_host_and_user(sshd_farm: SshFarm, tmp_path: Path):
    host = make_host(sshd_farm, tmp_path, key=str(sshd_farm.stranger_key))
    with pytest.raises(HostError) as err:
        host.run(["true"])
    text = str(err.value)
    assert f"host node-0: authentication as user {sshd_farm.user!r} on 127.0.0.2:" in text
    assert str(sshd_farm.stranger_key) in text and "authorized_keys" in text


def test_password_env_must_be_set(sshd_farm: SshFarm, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("PD_NO_SUCH_PASSWORD", raising=False)
    host = make_host(sshd_farm, tmp_path, password_env="PD_NO_SUCH_PASSWORD")
    with pytest.raises(HostError, match="PD_NO_SUCH_PASSWORD, which is not set"):
        host.run(["true"])


def test_unreachable_host_fails_within_the_connect_timeout(sshd_farm: SshFarm, tmp_path: Path):
    closed = free_port()
    spec = HostSpec.model_validate(
        {
            "address": "127.0.0.9",
            "ssh": sshd_farm.ssh_block(sshd_farm.hosts[0], port=closed, connect_timeout_s=2),
        }
    )
    host = SSHHost("ghost", spec, SSHConnection(resolve_target("ghost", spec)))
    start = time.monotonic()
    with pytest.raises(HostError) as err:
        host.run(["true"])
    assert time.monotonic() - start < 2.5
    assert f"host ghost: could not connect to {sshd_farm.user}@127.0.0.9:{closed}" in str(err.value)

    # a port that accepts TCP but never speaks SSH: the timeout bounds the wait
    with socket.socket() as silent:
        silent.bind(("127.0.0.9", 0))
        silent.listen()
        spec = HostSpec.model_validate(
            {
                "address": "127.0.0.9",
                "ssh": sshd_farm.ssh_block(
                    sshd_farm.hosts[0], port=silent.getsockname()[1], connect_timeout_s=1
                ),
            }
        )
        host = SSHHost("mute", spec, SSHConnection(resolve_target("mute", spec)))
        start = time.monotonic()
        with pytest.raises(HostError, match="host mute: could not connect"):
            host.run(["true"])
        assert time.monotonic() - start < 3


# ------------------------------------------------------------------ connection reuse


def test_reconnects_once_after_the_connection_drops(sshd_farm: SshFarm, tmp_path: Path):
    messages: list[str] = []
    host = make_host(sshd_farm, tmp_path, 1, messages)
    assert host.run(["echo", "one"]).stdout == "one\n"
    assert host.run(["echo", "two"]).stdout == "two\n"
    assert host.conn.reconnects == 0  # one connection, reused
    assert sshd_farm.hosts[1].drop_connections() >= 1
    time.sleep(0.2)
    assert host.run(["echo", "three"]).stdout == "three\n"
    assert host.conn.reconnects == 1
    assert any("connection lost" in m and "reconnecting once" in m for m in messages), messages
    host.conn.close()


def test_ssh_config_alias_and_proxy_jump(sshd_farm: SshFarm, tmp_path: Path):
    jump, target = sshd_farm.hosts
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jumpbox\n  HostName {jump.address}\n  Port {jump.port}\n  User {sshd_farm.user}\n"
        f"  IdentityFile {sshd_farm.client_key}\n"
        f"Host decode-box\n  HostName {target.address}\n  Port {target.port}\n  User {sshd_farm.user}\n"
        f"  IdentityFile {sshd_farm.client_key}\n  ProxyJump jumpbox\n  ConnectTimeout 4\n"
    )
    spec = HostSpec.model_validate(
        {
            "address": target.address,
            "workdir": str(tmp_path),
            "ssh": {"alias": "decode-box", "config": str(config), "known_hosts": str(sshd_farm.known_hosts)},
        }
    )
    t = resolve_target("decode-node", spec)
    assert (t.hostname, t.port, t.user, t.key_files, t.proxy_jump, t.connect_timeout_s) == (
        target.address,
        target.port,
        sshd_farm.user,
        (str(sshd_farm.client_key),),
        ("jumpbox",),
        4.0,
    )
    conn = SSHConnection(t)
    host = SSHHost("decode-node", spec, conn)
    try:
        assert host.run(["echo", "via", "jump"]).stdout == "via jump\n"
        assert len(conn._hops) == 1 and conn._hops[0].get_transport().getpeername()[0] == jump.address
    finally:
        conn.close()
    # the cluster file wins over the ssh config where it sets a key
    spec2 = HostSpec.model_validate(
        {
            "address": target.address,
            "ssh": {"alias": "decode-box", "config": str(config), "port": 2222, "user": "someone"},
        }
    )
    t2 = resolve_target("decode-node", spec2)
    assert (t2.port, t2.user) == (2222, "someone")


def test_local_and_ssh_hosts_run_the_same_way(node: SSHHost, tmp_path: Path):
    from pytest_pd.cluster.launchers.local import LocalHost

    local = LocalHost("here")
    argv = [node.python, "-c", ARGV_ECHO, *HOSTILE]
    assert local.run(argv, cwd=str(tmp_path)).stdout == node.run(argv, cwd=str(tmp_path)).stdout
    assert local.ports_in_use([("127.0.0.2", free_port())]) == []


def test_a_start_whose_answer_is_lost_leaves_no_process_behind(
    sshd_farm: SshFarm, node: SSHHost, tmp_path: Path, monkeypatch
):
    """The connection drops right after the remote shell started the process: start_detached
    fails, and the process it cannot report is stopped rather than orphaned."""
    real = node.conn.run_script

    def run_then_drop(script: str, **kw: object):
        result = real(script, **kw)
        if kw.get("private"):  # the start script ran; its answer never arrives
            raise HostError("host node-0: the SSH connection dropped while running a command")
        return result

    monkeypatch.setattr(node.conn, "run_script", run_then_drop)
    run_dir = tmp_path / "runs" / "lost"
    with pytest.raises(HostError, match="connection dropped"):
        node.start_detached("srv", (node.python, "-c", "import time; time.sleep(120)"), {"A": "b"}, run_dir)
    pid = int((Path(node.remote_run_dir(run_dir)) / "srv.pid").read_text())
    assert not group_alive(pid)
