"""``host_agent`` on an SSH host: listing and stopping pytest-pd's processes there."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from pytest_pd.cluster.launchers.ssh.connection import SSHConnection
from pytest_pd.cluster.stale_runs import AGENT_SOURCE, STOP_GRACE_S
from pytest_pd.errors import HostError


@dataclass
class RemoteAgent:
    """``host_agent`` run on an SSH host by that host's Python (source sent on stdin)."""

    conn: SSHConnection
    python: str

    def call(self, command: str, **kwargs: Any) -> Any:
        script = f"{shlex.quote(self.python)} - {command} {shlex.quote(json.dumps(kwargs))}"
        timeout = float(kwargs.get("grace_s", STOP_GRACE_S)) + 60.0  # stop, kill_group wait that long
        res = self.conn.run_script(script, stdin=AGENT_SOURCE.encode(), timeout=timeout)
        try:
            if res.returncode != 0:
                raise ValueError(f"exit code {res.returncode}")
            return json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise HostError(
                f"host {self.conn.target.name}: cannot list or stop pytest-pd's processes with "
                f"{self.python!r} ({exc}: {(res.stderr or res.stdout).strip()[-300:]}). Set "
                "hosts.NAME.python in the cluster file to a Python 3 on that host."
            ) from None
