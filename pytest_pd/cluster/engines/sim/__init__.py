"""The simulator as a pytest-pd engine (entry point ``sim`` of ``pytest_pd.engines``): launched
like SGLang, tuned by the cluster file's ``sim:`` blocks (``profile: FILE`` in one brings in a
twin profile's timing parameters), running ``speedup`` times faster than the cluster it simulates.
The simulator's server (:mod:`pytest_pd.sim`) imports nothing of the harness; this adapter is the
harness's view of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_pd.cluster.engines.sglang import SGLang
from pytest_pd.cluster.engines.sim.profile import ProfileError, load_profile
from pytest_pd.sim.model import sim_cli_args


class SimEngine(SGLang):
    """Speaks SGLang's API, flags and metrics; launched as another module with its own options."""

    name = "sim"
    server_module = "pytest_pd.sim"
    distribution = "pytest-pd"
    options_key = "sim"
    simulated = True
    flags_probe = None  # its parser is pytest-pd's own, whatever the version
    server_reader = None  # its commands are not imported (pytest-pd import)

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

    def read_option_files(self, options: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
        """``profile: FILE`` (relative to the cluster file's folder) is replaced by the profile's
        timing parameters; the block's own values win."""
        if "profile" not in options:
            return []
        path = Path(str(options.pop("profile"))).expanduser()
        try:
            profile = load_profile(path if path.is_absolute() else folder / path)
        except ProfileError as exc:
            return [("profile", str(exc))]
        merged = {**profile.params, **options}
        options.clear()
        options.update(merged)
        return []

    def uses_gpus(self, argv: Sequence[str]) -> bool:
        return False

    def takes_prefill_pp(self, version: str | None) -> bool:
        return True  # the simulator keeps the seed's flag: it times the KV bootstrap per prefill stage

    def version_of(self, info: Mapping[str, Any]) -> str | None:
        return str(info["version"]) if info.get("version") else None  # "sim (pytest-pd)"

    def time_scale(self, options: Mapping[str, Any]) -> float:
        return float(options.get("speedup", 1.0))


ENGINE = SimEngine()
