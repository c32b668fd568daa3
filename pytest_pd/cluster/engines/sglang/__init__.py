"""SGLang, the engine the seed cluster runs: every option is a launch flag of its own. What pytest-pd
knows of SGLang lives in this package: its metrics (:mod:`.metrics`), …"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_pd.cluster.engines.sglang import metrics
from pytest_pd.ttft_breakdown import ServerTimes


class SGLang:
    name = "sglang"
    server_module = "sglang.launch_server"
    options_key: str | None = None
    simulated = False

    def server_args(self, options: Mapping[str, Any]) -> list[str]:
        return []

    def option_problems(self, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        return []

    def read_option_files(self, options: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
        return []

    def time_scale(self, options: Mapping[str, Any]) -> float:
        return 1.0

    # ---------------------------------------------------------------- metrics (/metrics)
    gauges: Mapping[str, str] = metrics.GAUGES

    def server_times(self, rows: metrics.Rows) -> ServerTimes | None:
        return metrics.server_times(rows)

    def prefix_cache_hit_rate(self, rows: metrics.Rows) -> float | None:
        return metrics.prefix_cache_hit_rate(rows)


ENGINE = SGLang()
