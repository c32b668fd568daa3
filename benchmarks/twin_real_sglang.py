"""The digital twin against real SGLang on this machine's CPU: measure the CPU workload on
cpu-1p1d and cpu-2p1d, calibrate a profile on those two runs, predict a 1P2D topology it never
saw (cpu-1p1d with a second decode server), measure that too, and print predicted against
measured. Needs `make real-sglang` (the real-engine environment); takes ~5 minutes.

    .venv/bin/python benchmarks/twin_real_sglang.py     # a table; nothing asserted

The starting profile describes the tiny Llama on a CPU (2.7 MB of weights, 512 bytes of KV per
token, ~10 GB/s of memory bandwidth, TP1); the fit moves the prefill rate and per-batch cost, the
KV hand-off and the decode step's fixed cost. Every server shares the same two cores, which the
model (each server on its own hardware) does not describe: expect large errors.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_pd.measure import Measurer  # noqa: E402
from pytest_pd.sim.model import SimParams  # noqa: E402
from pytest_pd.twin.calibrate import calibrate, relative_errors  # noqa: E402
from pytest_pd.twin.observed import observe  # noqa: E402
from pytest_pd.workload.spec import Workload  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CPU = Workload(input_len=1024, output_len=256, concurrency=8, num_requests=32)
STATS = ("mean_ttft_ms", "mean_tpot_ms", "output_throughput")
FIT = ("prefill_tokens_per_s", "prefill_batch_overhead_s", "kv_bootstrap_s", "decode_step_base_s")
TINY_LLAMA_ON_CPU = dataclasses.replace(
    SimParams(),
    reference_tp=1,
    prefill_tokens_per_s=20000.0,
    prefill_attn_s_per_token2=1e-9,
    prefill_batch_overhead_s=0.02,
    kv_bytes_per_token=512.0,  # 2 layers x 2 KV heads x 32 dims x (K, V) x 2 bytes
    kv_bandwidth_gb_s=1.0,
    kv_bootstrap_s=0.05,
    decode_step_base_s=0.01,
    weights_dense_gb=0.0027,
    weights_experts_gb=0.0,
    kv_read_per_rank=False,
    hbm_gb_s=10.0,
    decode_gflop_per_token=0.0027,
    decode_attn_mflop_per_context_token=0.0005,
    gpu_tflops=0.05,
    gpu_memory_gb=16.0,
)


def write_clusters(folder: Path) -> None:
    for name in ("cpu-1p1d", "cpu-2p1d"):
        data = yaml.safe_load((REPO / "clusters" / f"{name}.yaml").read_text())
        data.pop("baseline", None)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    data = yaml.safe_load((REPO / "clusters" / "cpu-1p1d.yaml").read_text())
    data.pop("baseline", None)
    data["name"] = "cpu-1p2d"
    data["decode"].append({**data["decode"][0], "port": data["decode"][0]["port"] + 1})
    (folder / "cpu-1p2d.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_clusters(folder)
        measurer = Measurer(folder, folder / "runs", None, say=lambda t: print(t, file=sys.stderr))
        try:
            records = {
                n: measurer.measure(measurer.spec(n), CPU) for n in ("cpu-1p1d", "cpu-2p1d", "cpu-1p2d")
            }
        finally:
            measurer.close()
    seen = [observe(records["cpu-1p1d"]), observe(records["cpu-2p1d"])]
    unseen = [observe(records["cpu-1p2d"])]
    cal = calibrate(seen, TINY_LLAMA_ON_CPU, FIT)
    print(f"workload {CPU.id}; fitted: " + ", ".join(f"{n} {getattr(cal.params, n):.4g}" for n in cal.fitted))
    print(f"{'run':<32} " + " ".join(f"{s:>30}" for s in STATS))
    rows = [("fit", seen, cal.errors), ("held out", unseen, relative_errors(cal.params, unseen))]
    for kind, runs, errors in rows:
        for run in runs:
            cells = []
            for s in STATS:
                m, e = run.measured[s], errors[run.label][s]
                cells.append(f"{m * (1 + e):>10.4g} vs {m:>10.4g} {100 * e:+6.1f}%")
            print(f"{kind + ' ' + run.label:<32} " + " ".join(f"{c:>30}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
