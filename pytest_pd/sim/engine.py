"""The simulator as a pytest-pd engine (entry point ``sim`` of ``pytest_pd.engines``): launched
like SGLang, tuned by the cluster file's ``sim:`` blocks, running ``speedup`` times faster than the
cluster it simulates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_pd.sim.model import sim_cli_args


class SimEngine:
    name = "sim"
    server_module = "pytest_pd.sim"
    options_key = "sim"
    simulated = True

    def server_args(self, options: Mapping[str, Any]) -> list[str]:
        return sim_cli_args(dict(options))

    def option_problems(self, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = []
        for key, value in options.items():
            try:
                sim_cli_args({key: value})
            except ValueError as exc:
                problems.append((key, str(exc)))
        return problems

    def time_scale(self, options: Mapping[str, Any]) -> float:
        return float(options.get("speedup", 1.0))


ENGINE = SimEngine()
