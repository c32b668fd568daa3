"""The worker's endpoints besides generation: health, model and server info, load, cache flush,
Prometheus metrics, and the sim's own server-side trace (``/sim/trace``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from pytest_pd.sim.worker import SimWorker

VERSION = "sim (pytest-pd)"


class InfoAPI:
    def __init__(self, worker: SimWorker) -> None:
        self.worker = worker

    async def health(self, request: web.Request) -> web.Response:
        if not self.worker.is_ready():
            return web.Response(status=503)  # SGLang: empty body while starting
        return web.Response(status=200)

    async def model_info(self, request: web.Request) -> web.Response:
        w = self.worker
        cfg = w.files.config()
        return web.json_response(
            {
                "model_path": w.files.model_path,
                "served_model_name": w.files.served_name,
                "tokenizer_path": w.files.tokenizer_path,
                "is_generation": True,
                "preferred_sampling_params": None,
                "weight_version": "default",
                "load_format": "auto",
                "reasoning_parser": None,
                "tool_call_parser": None,
                "disaggregation_mode": w.role,
                "has_image_understanding": False,
                "has_audio_understanding": False,
                "model_type": cfg.get("model_type"),
                "architectures": cfg.get("architectures"),
            }
        )

    def server_args(self) -> dict[str, Any]:
        """The parsed flags, as SGLang lists its ServerArgs."""
        w = self.worker
        d = {k: v for k, v in vars(w.args).items() if not k.startswith("sim_")}
        d["model_path"] = w.files.model_path
        d["tokenizer_path"] = w.files.tokenizer_path
        d["served_model_name"] = w.files.served_name
        d["context_length"] = w.context_length
        if d.get("mem_fraction_static") is None:
            d["mem_fraction_static"] = 0.88  # nominal: SGLang derives it from the GPU's memory
        return d

    async def server_info(self, request: web.Request) -> web.Response:
        w = self.worker
        info = self.server_args()
        info["max_total_num_tokens"] = w.max_total_tokens
        info["max_req_input_len"] = w.context_length - 1
        # what sglang-router shows as the worker's load_balance_method
        info["load_balance_method"] = "follow_bootstrap_room" if w.role == "prefill" else "round_robin"
        info.update(
            {
                "version": VERSION,
                "simulated": True,
                "sim": dataclasses.asdict(w.params),
                # SGLang: the scheduler's view (its server args, memory, last throughput)
                "internal_states": [
                    {
                        **self.server_args(),
                        "effective_max_running_requests_per_dp": w.scheduler.max_running,
                        "last_gen_throughput": float(w.metrics.gen_throughput()),
                    }
                ],
            }
        )
        return web.json_response(info)

    async def models(self, request: web.Request) -> web.Response:
        w = self.worker
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": w.files.served_name,
                        "object": "model",
                        "created": int(w.clock.epoch),
                        "owned_by": "sglang",
                        "root": w.files.model_path,
                        "parent": None,
                        "max_model_len": w.context_length,
                    }
                ],
            }
        )

    async def trace(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"role": self.worker.role, "requests": [r.trace() for r in self.worker.trace_buf]}
        )

    async def load(self, request: web.Request) -> web.Response:
        s = self.worker.scheduler
        return web.json_response(
            [
                {
                    "dp_rank": 0,
                    "num_reqs": len(s.running) + len(s.waiting),
                    "num_waiting_reqs": s.queued(),
                    "num_tokens": s.used_tokens(),
                }
            ]
        )

    async def flush_cache(self, request: web.Request) -> web.Response:
        if not self.worker.scheduler.idle():
            return web.Response(status=400, text="Cache not flushed: requests are running.")
        if self.worker.prefix_cache is not None:
            self.worker.prefix_cache.flush()
        return web.Response(text="Cache flushed.")

    async def metrics(self, request: web.Request) -> web.Response:
        if not self.worker.args.enable_metrics:
            return web.Response(status=404, text="metrics disabled (--enable-metrics)")
        return web.Response(
            body=self.worker.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )
