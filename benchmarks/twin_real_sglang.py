"""The digital twin against real SGLang on this machine's CPU, where the hardware is not the
confound: one topology (cpu-1p1d, the prefill pinned to core 0 and the decode to core 1 with
``cpus:``), five workloads measured in one bring-up; a profile calibrated on two of them predicts
the other three (other lengths, another concurrency, an open-loop rate), and the table prints
predicted against measured. Needs `make real-sglang` (the real-engine environment); takes
about 6 minutes.

    .venv/bin/python benchmarks/twin_real_sglang.py [--keep DIR]   # a table; nothing asserted
    .venv/bin/python benchmarks/twin_real_sglang.py --records DIR  # refit saved records

The starting profile describes the tiny Llama on a CPU (2.7 MB of weights, 512 bytes of KV per
token, ~10 GB/s of memory bandwidth, TP1); the fit moves the prefill rate and per-batch cost, the
KV hand-off and the decode step's fixed and per-request costs. The router and the client are not pinned: they
share both cores with the servers, which the model does not describe. The shipped cpu-1p1d file
(unpinned) is refused by the twin; the first line says why.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_pd.measure import Measurer  # noqa: E402
from pytest_pd.record import RunRecord  # noqa: E402
from pytest_pd.sim.model import SimParams  # noqa: E402
from pytest_pd.twin.calibrate import calibrate, relative_errors  # noqa: E402
from pytest_pd.twin.observed import NotModelled, observe, topology_of  # noqa: E402
from pytest_pd.workload.spec import Workload  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIT_ON = (
    Workload(input_len=1024, output_len=256, concurrency=8, num_requests=32),
    Workload(input_len=256, output_len=128, concurrency=2, num_requests=16),
)
HELD_OUT = (
    Workload(input_len=512, output_len=192, concurrency=4, num_requests=24),
    Workload(input_len=1536, output_len=128, concurrency=16, num_requests=32),
    Workload(input_len=768, output_len=128, concurrency=32, num_requests=32, request_rate=1.0),
)
STATS = ("mean_ttft_ms", "mean_tpot_ms", "output_throughput")
FIT = (
    "prefill_tokens_per_s",
    "prefill_batch_overhead_s",
    "kv_bootstrap_s",
    "decode_step_base_s",
    "decode_gflop_per_token",
)
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


def pinned_cluster(folder: Path) -> dict:
    data = yaml.safe_load((REPO / "clusters" / "cpu-1p1d.yaml").read_text())
    data.pop("baseline", None)
    print(f"twin on the shipped (unpinned) cpu-1p1d: {refusal(data)}")
    data["prefill"][0]["cpus"] = "0"
    data["decode"][0]["cpus"] = "1"
    (folder / "cpu-1p1d.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return data


def refusal(spec: dict) -> str:
    try:
        topology_of(spec)
    except NotModelled as exc:
        return f"not modelled: {exc}"
    return "modelled"


def measure(keep: Path | None) -> list[RunRecord]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"twin on the pinned one: {refusal(pinned_cluster(folder))}")
        measurer = Measurer(folder, folder / "runs", None, say=lambda t: print(t, file=sys.stderr))
        try:
            spec = measurer.spec("cpu-1p1d")
            records = [measurer.measure(spec, w) for w in (*FIT_ON, *HELD_OUT)]
        finally:
            measurer.close()
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for i, r in enumerate(records):
            (keep / f"{i}.json").write_text(r.to_json())
    return records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=Path, default=None, help="save the five records in this folder")
    ap.add_argument("--records", type=Path, default=None, help="fit and predict saved records instead")
    args = ap.parse_args()
    if args.records is not None:
        files = sorted(args.records.glob("*.json"), key=lambda p: int(p.stem))
        records = [RunRecord.model_validate_json(p.read_text()) for p in files]
    else:
        records = measure(args.keep)
    runs = [observe(r) for r in records]
    seen, unseen = runs[: len(FIT_ON)], runs[len(FIT_ON) :]
    cal = calibrate(seen, TINY_LLAMA_ON_CPU, FIT)
    print("fitted: " + ", ".join(f"{n} {getattr(cal.params, n):.4g}" for n in cal.fitted))
    print(f"{'run (predicted vs measured)':<52} " + " ".join(f"{s:>30}" for s in STATS))
    rows = [("fit", seen, cal.errors), ("held out", unseen, relative_errors(cal.params, unseen))]
    for kind, group, errors in rows:
        for run in group:
            cells = []
            for s in STATS:
                m, e = run.measured[s], errors[run.label][s]
                cells.append(f"{m * (1 + e):>10.4g} vs {m:>10.4g} {100 * e:+6.1f}%")
            print(f"{kind + ' ' + run.label.split('/')[1]:<52} " + " ".join(f"{c:>30}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
