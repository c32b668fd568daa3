"""Fault injection: every fault a cluster can throw, against a simulated cluster behind the real
sglang-router, brought up locally and over SSH (real sshd on 127.0.0.2/.3). Each case runs a small
pytest session in a subprocess and checks what a user would: the affected test fails or errors with
a message naming the fault and the server, within a bounded time; later tests that need the cluster
fail at once with the first cause; teardown completes and no process of the run is left on any host;
the run directory keeps every log; the results file records the failure; the HTML report shows it.

The README's Reliability table lists these cases by their ids."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import (
    assert_nothing_left,
    group_alive,
    session_args,
    sim_cluster_copy,
    started_pids,
    wait_for_text,
)
from tests.helpers.slurm import slurm_cluster_copy, tagged_processes

SUITE = """
import pytest
from pytest_pd.workload.spec import Workload

W = Workload(input_len=1000, output_len={output_len}, concurrency=4, num_requests=12,
             warmup_requests=0, request_timeout_s={timeout})

@pytest.mark.pd_threshold("mean_ttft_ms", max=600000)
@pytest.mark.parametrize("pd_workload", [W], ids=lambda w: w.id)
def test_workload(pd_run):
    pass

def test_cluster_again(pd_cluster):
    pass
"""
HUNG = {"fault": "hang", "fault_after_requests": 4}  # keeps a run going until something strikes
HOLD = "hold"  # a context key: objects the case keeps alive for the session (a busy port)


@dataclass
class Fault:
    id: str
    message: str  # regex the user must see (terminal), naming the fault and the server
    decode_sim: dict[str, Any] = field(default_factory=dict)
    prefill_sim: dict[str, Any] = field(default_factory=dict)
    setup: Callable[[dict[str, Any], dict[str, Any]], None] | None = None  # (cluster data, ctx)
    timeout_s: float = 600.0  # per-request timeout in model time (the sim runs ×10 faster)
    output_len: int = 24
    # who does it: None (the cluster file), "router" (killed mid-run), "SIGINT"/"SIGTERM" (to pytest)
    kill: str | None = None
    kill_when: str = "sim-tp8: running in1000"  # strike once the output shows this
    first: str = "failed"  # test_workload: failed (verdict on a finished run) or error (fixture)
    cluster_lost: bool = False  # test_cluster_again then errors at once with the first cause
    stage: str | None = None  # failure stage in the results file; None: a finished run's metrics
    failed_kind: str | None = None  # error kind counted in the stored metrics
    starts: bool = True  # whether any process was started (false: refused before bring-up)
    launchers: tuple[str, ...] = ("local", "ssh")  # the launchers it is injected under


def _busy_decode_port(data: dict[str, Any], ctx: dict[str, Any]) -> None:
    sock = socket.socket()
    sock.bind((data["hosts"]["decode-node"]["address"], data["decode"][0]["port"]))
    sock.listen()
    ctx[HOLD] = sock


def _stranger_key(data: dict[str, Any], ctx: dict[str, Any]) -> None:
    data["hosts"]["decode-node"]["ssh"]["key"] = str(ctx["farm"].stranger_key)


def _unreachable_host(data: dict[str, Any], ctx: dict[str, Any]) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.9", 0))  # a port nothing listens on, on an address no sshd serves
    port = probe.getsockname()[1]
    probe.close()
    data["hosts"]["decode-node"]["address"] = "127.0.0.9"
    data["hosts"]["decode-node"]["ssh"].update(port=port, connect_timeout_s=2)


FAULTS = [
    Fault(
        "prefill-crash-at-bring-up",
        r"BringUpError: .*prefill-0 on prefill-node exited with code 3.*\n(.*\n)*"
        r".*simulated fault: crash during start-up",
        prefill_sim={"fault": "crash_at_start"},
        first="error",
        cluster_lost=True,
        stage="bring-up",
        launchers=("local", "ssh", "slurm"),
    ),
    Fault(
        "decode-never-healthy",
        r"BringUpError: decode-0 on decode-node did not become healthy within 6 s "
        r"\(http://[\d.]+:\d+/health last answered 503\)",
        decode_sim={"fault": "never_healthy"},
        first="error",
        cluster_lost=True,
        stage="bring-up",
        setup=lambda d, ctx: d["decode"][0].update(health_timeout_s=6),
    ),
    Fault(
        "decode-crash-mid-run",
        r"BringUpError: cluster sim-tp8 lost a process while running in1000-\S+:\n"
        r"decode-0 on decode-node exited with code -?\d+(.*\n)*.*simulated fault: crash",
        decode_sim={"fault": "crash", "fault_after_requests": 4},
        first="error",
        cluster_lost=True,
        stage="run",
        launchers=("local", "ssh", "slurm"),
    ),
    Fault(
        "job-cancelled-mid-run",  # `scancel` from outside: every step dies with the job
        r"BringUpError: cluster sim-tp8 lost a process while running in1000-\S+:\n"
        r"\S+ on \S+ exited with code -?\d+(.*\n)*.*\[Slurm job \d+ \(pytest-pd:sim-tp8\) is CANCELLED",
        kill="scancel",
        decode_sim=HUNG,
        first="error",
        cluster_lost=True,
        stage="run",
        launchers=("slurm",),
    ),
    Fault(
        "router-dies-mid-run",
        r"BringUpError: cluster sim-tp8 lost a process while running in1000-\S+:\n"
        r"router on prefill-node exited with code -?\d+",
        kill="router",
        decode_sim=HUNG,
        first="error",
        cluster_lost=True,
        stage="run",
    ),
    Fault(
        "worker-hang-request-timeout",
        r"sim-tp8: 8 of 12 requests failed \(timeout: 8\); first timeout: no complete response "
        r"from http://[\d.]+:\d+/generate within 4 s",
        decode_sim={"fault": "hang", "fault_after_requests": 4},
        timeout_s=40.0,
        failed_kind="timeout",
    ),
    Fault(
        "http-5xx-on-a-share",
        r"sim-tp8: 6 of 12 requests failed \(http_status: 6\); first http_status: HTTP 503 from "
        r"http://[\d.]+:\d+/generate: .*simulated fault: HTTP 503",
        decode_sim={"fault": "error", "fault_status": 503, "fault_share": 0.5},
        failed_kind="http_status",
    ),
    Fault(
        "stream-dropped-midway",
        r"sim-tp8: 10 of 12 requests failed \(dropped_connection: 10\); first "
        r"dropped_connection: response body from http://[\d.]+:\d+/generate was cut",
        decode_sim={"fault": "drop", "fault_after_requests": 2},
        failed_kind="dropped_connection",
    ),
    Fault(
        "malformed-sse",
        r"sim-tp8: 10 of 12 requests failed \(malformed_stream: 10\); first malformed_stream: ",
        decode_sim={"fault": "malformed", "fault_after_requests": 2},
        failed_kind="malformed_stream",
    ),
    Fault(
        "port-already-in-use",
        r"BringUpError: cannot bring up sim-tp8: port already in use \(decode-0 wants "
        r"127.0.0.\d:\d+( on decode-node)?\)",
        setup=_busy_decode_port,
        first="error",
        cluster_lost=True,
        stage="bring-up",
        starts=False,
    ),
    Fault(
        "sigint-mid-run",
        r"KeyboardInterrupt",
        kill="SIGINT",
        decode_sim=HUNG,
        stage="interrupted",
        launchers=("local", "ssh", "slurm"),
    ),
    Fault("sigterm-mid-run", r"KeyboardInterrupt", kill="SIGTERM", decode_sim=HUNG, stage="interrupted"),
    Fault(
        "ssh-authentication-failure",
        r"HostError: host decode-node: authentication as user '\w+' on 127.0.0.3:\d+ failed",
        setup=_stranger_key,
        first="error",
        cluster_lost=True,
        stage="bring-up",
        starts=False,
        launchers=("ssh",),
    ),
    Fault(
        "ssh-host-unreachable",
        r"HostError: host decode-node: could not connect to \w+@127.0.0.9:\d+",
        setup=_unreachable_host,
        first="error",
        cluster_lost=True,
        stage="bring-up",
        starts=False,
        launchers=("ssh",),
    ),
]
CASES = [
    pytest.param(
        f,
        launcher,
        id=f"{f.id}-{launcher}",
        marks=[pytest.mark.serial] if launcher == "slurm" else [],  # one local Slurm per machine
    )
    for f in FAULTS
    for launcher in f.launchers
]


def fault_cluster(folder: Path, fault: Fault, ctx: dict[str, Any]) -> Path:
    if "slurm" in ctx:
        path = slurm_cluster_copy("sim-tp8", folder)
    elif "farm" not in ctx:
        path = sim_cluster_copy("sim-tp8", folder)
    else:
        from tests.helpers.sshd import ssh_cluster_copy

        path = ssh_cluster_copy("sim-tp8", folder, ctx["farm"], ctx["work"])
    data = yaml.safe_load(path.read_text())
    data["server_defaults"]["health_timeout_s"] = 30
    if fault.prefill_sim:
        data["prefill"][0]["sim"] = fault.prefill_sim
    if fault.decode_sim:
        data["decode"][0]["sim"] = fault.decode_sim
    if fault.setup:
        fault.setup(data, ctx)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_pytest(
    pytester: pytest.Pytester,
    folder: Path,
    fault: Fault,
    *args: str,
    cluster: str = "sim-tp8",
    out_name: str = "out",
) -> tuple[int, str, Path]:
    """The session in a subprocess; for ``kill`` faults, strike once the workload is running."""
    out = pytester.path / out_name
    argv = [sys.executable, "-m", "pytest", *session_args(folder, out, cluster), "-p", "no:randomly", *args]
    log = pytester.path / f"{out_name}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            argv,
            cwd=pytester.path,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            if fault.kill:
                wait_for_text(log, fault.kill_when, proc)
                time.sleep(0.5)  # a few tokens into the streams
                if fault.kill == "router":
                    pid = int(next((out / "runs").rglob("router.pid")).read_text())
                    os.killpg(pid, signal.SIGKILL)
                elif fault.kill == "scancel":  # someone else ends the job (SLURM_CONF: local_slurm's)
                    subprocess.run(["scancel", f"--name=pytest-pd:{cluster}"], check=True, timeout=30)
                else:
                    proc.send_signal(getattr(signal, fault.kill))
            code = proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, log.read_text(errors="replace"), out


@pytest.mark.parametrize(("fault", "launcher"), CASES)
def test_fault(
    pytester: pytest.Pytester, tmp_path: Path, request: pytest.FixtureRequest, fault: Fault, launcher: str
):
    ctx: dict[str, Any] = {}
    if launcher == "ssh":
        ctx.update(farm=request.getfixturevalue("sshd_farm"), work=tmp_path)
    if launcher == "slurm":
        ctx.update(slurm=request.getfixturevalue("local_slurm"))
    folder = tmp_path / "clusters"
    fault_cluster(folder, fault, ctx)
    pytester.makepyfile(test_suite=SUITE.format(timeout=fault.timeout_s, output_len=fault.output_len))
    t0 = time.monotonic()
    try:
        code, text, out = run_pytest(pytester, folder, fault)
    finally:
        if HOLD in ctx:
            ctx[HOLD].close()
    took = time.monotonic() - t0

    # what the user sees, and how soon
    assert re.search(fault.message, text), text
    assert "Traceback" not in text and "During handling" not in text, text
    assert took < 120, f"{fault.id} took {took:.0f} s"  # most take seconds; a loaded CI box is slow
    if fault.kill in ("SIGINT", "SIGTERM"):
        assert code == 2, text  # pytest's "interrupted"
        assert "sim-tp8: torn down" in text
    elif fault.cluster_lost:
        assert pytest.RunResult.parse_summary_nouns(text.splitlines()).get("errors") == 2, text
        assert "failed earlier in this session; not retrying" in text  # the next test: at once
    else:
        counts = pytest.RunResult.parse_summary_nouns(text.splitlines())
        assert counts.get("failed") == 1 and counts.get("passed") == 1, text  # cluster still fine

    # teardown done, nothing left on any host, logs kept
    runs = [p for p in (out / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    if fault.starts:
        assert_nothing_left(out / "runs")
        if launcher == "ssh":
            assert_nothing_left(tmp_path / "remote")
        if launcher == "slurm":  # the job ended, and every step's processes with it
            assert ctx["slurm"].jobs() == [], ctx["slurm"].jobs()
            assert tagged_processes(runs) == []
        logs = {p.stem for p in runs[0].glob("*.log")}
        assert {"prefill-0", "decode-0"} <= logs, logs
    else:
        assert not list(runs[0].glob("*.pid")), "nothing may start after a refused bring-up"

    # the results file records it; the report shows it
    stored = [json.loads(p.read_text()) for p in (out / "results").glob("*.json")]
    assert len(stored) == 1, stored
    data = stored[0]
    report = (out / "report.html").read_text()
    if fault.stage:
        failure = data["failure"]
        assert failure["stage"] == fault.stage and failure["cluster"] == "sim-tp8", failure
        assert failure["run_dir"] == str(runs[0])
        if fault.kill not in ("SIGINT", "SIGTERM"):
            assert re.search(fault.message, f"{failure['kind']}: {failure['message']}"), failure
        if fault.starts and launcher == "local":
            assert "decode-0" in failure["logs"], failure
        assert "pytest-pd: cluster failures" in text and "recorded in " in text
        assert "Cluster failures" in report and 'class="pd-failure"' in report
    else:
        assert data["failure"] is None
        m = data["metrics"]
        assert m["errors_by_kind"].get(fault.failed_kind, 0) == m["failed"] > 0, m
        assert m["completed"] + m["failed"] == 12
        assert 'class="pd-fail"' in report and fault.failed_kind in report


SECRET = "sk-planted-s3cr3t-value"
TOKEN = "hf_planted_t0ken_value"
PLANTED = '<script>window.__pdPlanted=1</script><img src=x onerror="window.__pdPlanted=2">'


def test_failure_report_escapes_server_logs_and_hides_secrets(pytester, tmp_path):
    """A server whose log holds markup and whose command and env hold secrets fails bring-up: the
    report shows the markup as text (headless Chromium runs none of it) and no secret appears in
    the terminal, the report, the results store or the log headers pytest-pd writes (the sim, like
    SGLang, prints its own arguments into its log: that part is the server's)."""
    from tests.helpers.browser import CHROMIUM, inspect_report

    folder = tmp_path / "clusters"
    path = sim_cluster_copy("sim-tp8", folder)
    data = yaml.safe_load(path.read_text())
    data["env"] = {"HF_TOKEN": TOKEN}
    data["prefill"][0].update(
        sim={"fault": "crash_at_start"}, extra_args=["--api-key", SECRET, "--served-model-name", PLANTED]
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    pytester.makepyfile(test_suite=SUITE.format(timeout=600.0, output_len=24))
    code, text, out = run_pytest(pytester, folder, Fault("markup", ""))
    assert code == 1 and "exited with code 3" in text, text
    assert PLANTED in text  # the terminal shows the log line as it is
    # server logs are the servers' own (SGLang prints its arguments too): only the header line
    # is pytest-pd's; everything else under out/ is pytest-pd's entirely
    ours = [
        p.read_text(errors="replace").splitlines()[0] if p.suffix == ".log" else p.read_text(errors="replace")
        for p in out.rglob("*")
        if p.is_file()
    ]
    assert len(ours) > 5
    for where in [text, *ours]:
        assert SECRET not in where and TOKEN not in where
    report = (out / "report.html").read_text()
    assert "***redacted***" in report and "window.__pdPlanted" in report
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (.ci/run installs it)")
    found = inspect_report(out / "report.html", tmp_path)
    assert found["planted_markup_ran"] is False
    assert found["console_errors"] == [], found["console_errors"]
    assert found["failure_sections"] and found["failure_sections"][0]["visible"], found
    assert any(PLANTED.replace('"', "") in s["text"].replace('"', "") for s in found["failure_sections"]), (
        found["failure_sections"]
    )


KEEP_CASES = [
    pytest.param("verdict-fails", "local", id="verdict-fails-local"),
    pytest.param("verdict-fails", "ssh", id="verdict-fails-ssh"),
    pytest.param("bring-up-fails", "local", id="bring-up-fails-local"),
]


@pytest.mark.parametrize(("case", "launcher"), KEEP_CASES)
def test_keep_cluster_on_failure_then_attach_and_tear_down(pytester, tmp_path, request, case, launcher):
    """--pd-keep-cluster-on-failure: a failed test (or bring-up) leaves the cluster up and says how
    to attach and how to tear down; attaching runs tests against it; `pytest-pd down RUN_DIR`
    then stops everything, over SSH too."""
    ctx: dict[str, Any] = {}
    if launcher == "ssh":
        ctx.update(farm=request.getfixturevalue("sshd_farm"), work=tmp_path)
    never_healthy = Fault(
        "keep",
        "",
        decode_sim={"fault": "never_healthy"},
        setup=lambda d, c: d["decode"][0].update(health_timeout_s=4),
    )
    fault = never_healthy if case == "bring-up-fails" else Fault("keep", "")
    folder = tmp_path / "clusters"
    fault_cluster(folder, fault, ctx)
    pytester.makepyfile(
        test_suite=SUITE.replace("max=600000", "max=0.001").format(timeout=600.0, output_len=24)
    )
    code, text, out = run_pytest(pytester, folder, fault, "--pd-keep-cluster-on-failure")
    run_dir = next(p for p in (out / "runs").iterdir() if p.is_dir())
    down = [sys.executable, "-m", "pytest_pd.cli", "down", str(run_dir)]
    try:
        assert code == 1, text
        assert "sim-tp8 is left running for debugging (--pd-keep-cluster-on-failure)" in text, text
        assert f"tear down:  pytest-pd down {run_dir}" in text and "torn down" not in text
        pids = started_pids(out / "runs")
        assert pids and all(group_alive(pid) for pid in pids)
        if case == "verdict-fails":  # attach: the same cluster, no bring-up, no teardown
            attach = run_dir / "attach" / "sim-tp8.yaml"
            assert f"attach:     pytest suites/ --cluster={attach}" in text
            pytester.makepyfile(test_suite=SUITE.format(timeout=600.0, output_len=24))
            code2, text2, _ = run_pytest(pytester, folder, fault, cluster=str(attach), out_name="att")
            assert code2 == 0 and "2 passed" in text2, text2
            assert "sim-tp8: attached; prefill-0, decode-0, router healthy" in text2
            assert all(group_alive(pid) for pid in pids)
    finally:  # whatever failed above, leave nothing running
        done = subprocess.run(down, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"sim-tp8: torn down; logs in {run_dir}" in done.stderr
    assert_nothing_left(out / "runs")
    again = subprocess.run(down, capture_output=True, text=True, timeout=60)  # nothing to re-kill
    assert again.returncode == 2 and "nothing of that run is left running" in again.stderr
    if launcher == "ssh":
        assert_nothing_left(tmp_path / "remote")
        assert (run_dir / "decode-0.log").read_text().startswith("# decode-0 on decode-node")


def test_ctrl_c_tears_down_even_when_keeping_clusters_on_failure(pytester, tmp_path):
    """--pd-keep-cluster-on-failure after a failed test, then Ctrl-C: the cluster still goes."""
    folder = tmp_path / "clusters"
    fault_cluster(folder, Fault("keep-then-interrupt", ""), {})
    pytester.makepyfile(
        test_suite="""
        import time
        import pytest
        from pytest_pd.workload.spec import Workload
        SHORT = Workload(input_len=1000, output_len=8, concurrency=4, num_requests=4, warmup_requests=0)
        @pytest.mark.pd_threshold("mean_ttft_ms", max=0.001)
        @pytest.mark.parametrize("pd_workload", [SHORT], ids=lambda w: w.id)
        def test_fails(pd_run):
            pass
        def test_debugging_by_hand(pd_cluster):
            print("now-debugging-by-hand", flush=True)
            time.sleep(60)
    """
    )
    ctrl_c = Fault("sigint", "", kill="SIGINT", kill_when="now-debugging-by-hand")
    code, text, out = run_pytest(pytester, folder, ctrl_c, "--pd-keep-cluster-on-failure", "-s")
    try:
        assert code == 2 and "KeyboardInterrupt" in text and "1 failed" in text, text
        assert "sim-tp8: torn down" in text and "left running" not in text, text
        assert_nothing_left(out / "runs")
    finally:  # if it was kept after all, do not leave it behind
        for run_dir in (out / "runs").iterdir():
            if (run_dir / "topology.json").exists() and any(map(group_alive, started_pids(run_dir))):
                subprocess.run(
                    [sys.executable, "-m", "pytest_pd.cli", "down", str(run_dir)],
                    capture_output=True,
                    timeout=120,
                )
