"""The shell and Python an SSH host runs for its processes: start wrapper, status, port check,
environment exports (stopping a process group is ``host_agent.kill_group``'s). Values are quoted
with ``shlex.quote``, so values from the cluster file arrive verbatim and are never executed."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence

from pytest_pd.cluster.hosts import CommandResult
from pytest_pd.errors import HostError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Runs the process, writing its pid before and its exit code after (argv: pid file, exit file, argv)
WRAPPER = 'p=$1; e=$2; shift 2; echo $$ > "$p"; "$@"; echo $? > "$e"'

# Prints "running", "exit CODE" or "gone" (killed by a signal, no exit code written)
STATUS = """
pid={pid}; ef={exit}
if [ -s "$ef" ]; then echo "exit $(cat "$ef")"; exit 0; fi
st=$(ps -o stat= -p "$pid" 2>/dev/null || true)
case "$st" in
  ""|Z*) if [ -s "$ef" ]; then echo "exit $(cat "$ef")"; else echo gone; fi ;;
  *) echo running ;;
esac
"""

# Run by the host's Python with ADDR:PORT arguments; prints those that cannot be bound
PORTS = """
import socket, sys
for item in sys.argv[1:]:
    addr, port = item.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((addr, int(port)))
    except OSError:
        print(item)
    finally:
        sock.close()
"""


def ports_in_use(
    run: Callable[[list[str]], CommandResult],
    python: str,
    wanted: Sequence[tuple[str, int]],
    where: str,
    host: str,
) -> list[tuple[str, int]]:
    """Which of (address, port) cannot be bound on a host right now: ``PORTS`` run there by its
    Python (``run``: the host's way to run a command; ``where``: the host as messages name it)."""
    if not wanted:
        return []
    items = [f"{addr}:{port}" for addr, port in wanted]
    res = run([python, "-c", PORTS, *items])
    if res.returncode != 0:
        raise HostError(
            f"{where}: cannot run {python!r} to check ports ({(res.stderr or res.stdout).strip()[-300:]}). "
            f"Set hosts.{host}.python in the cluster file to the interpreter that runs the servers there."
        )
    busy = set(res.stdout.split())
    return [(addr, port) for (addr, port), item in zip(wanted, items, strict=True) if item in busy]


def env_exports(env: dict[str, str], host: str) -> str:
    """``export K=V`` lines for the start script of one process (its own shell): values
    verbatim, never on a command line."""
    bad = [k for k in env if not _ENV_NAME.match(k)]
    if bad:
        raise HostError(
            f"host {host}: {', '.join(map(repr, bad))} cannot be environment variable "
            "names (letters, digits and _ only); fix the env block of the cluster file."
        )
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
