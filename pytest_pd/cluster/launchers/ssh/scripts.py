"""The shell and Python an SSH host runs for its processes: start wrapper, status, port check,
environment exports (stopping a process group is ``host_agent.kill_group``'s). Values are quoted
with ``shlex.quote``, so values from the cluster file arrive verbatim and are never executed."""

from __future__ import annotations

import re
import shlex

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
