"""SGLang, the engine the seed cluster runs: every option is a launch flag of its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SGLang:
    name = "sglang"
    server_module = "sglang.launch_server"
    options_key = None
    simulated = False

    def server_args(self, options: Mapping[str, Any]) -> list[str]:
        return []

    def option_problems(self, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        return []

    def time_scale(self, options: Mapping[str, Any]) -> float:
        return 1.0


ENGINE = SGLang()
