"""A profile: the timing model's parameters for one model x hardware x engine version, with where
they came from (the stored runs they were fitted to, when, how well). A YAML file; a simulated
cluster names one with ``sim: {profile: FILE}`` (its inline ``sim:`` values still win)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pytest_pd.cluster import safe_yaml
from pytest_pd.errors import ClusterFileError
from pytest_pd.sim.model import SimParams

NOT_TIMING = frozenset(
    {
        "speedup",
        "arrival_window_s",
        "startup_delay_s",
        "eos_after_tokens",
        "bootstrap_timeout_s",
        "seed",
        "ignore_continuous_usage",
        "fault",
        "fault_after_requests",
        "fault_share",
        "fault_status",
        "fault_drop_after_tokens",
        "fault_slowdown",
    }
)
"""SimParams fields that are the simulator's behaviour, not the modelled hardware's timing."""

TIMING_PARAMS = tuple(f.name for f in dataclasses.fields(SimParams) if f.name not in NOT_TIMING)
"""The parameters a profile holds, in SimParams order."""


REMOVED_PARAMS = frozenset({"decode_step_per_req_s", "decode_batch_exponent", "decode_step_per_kv_token_s"})
"""Parameters profiles held before the decode step became physical (refused with a hint)."""


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and what to fix."""


class SourceRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    cluster: str
    workload: str
    started_at: str = ""


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    params: dict[str, float | int | bool] = Field(default_factory=dict)
    fitted: list[str] = Field(default_factory=list)
    """The parameters calibrate fitted (the others kept their starting values)."""
    sources: list[SourceRun] = Field(default_factory=list)
    fit_error: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Per source run (``cluster/workload``), per metric: (predicted - measured) / measured."""
    created_at: str = ""

    @field_validator("params")
    @classmethod
    def _known(cls, params: dict[str, Any]) -> dict[str, Any]:
        removed = sorted(set(params) & REMOVED_PARAMS)
        if removed:
            raise ValueError(
                f"{', '.join(removed)}: parameters of the earlier power-law decode model, replaced "
                "by the physical one (weights and KV read per step, compute); fit a new profile "
                "with `pytest-pd calibrate` from the same stored runs"
            )
        unknown = sorted(set(params) - set(TIMING_PARAMS))
        if unknown:
            raise ValueError(
                f"unknown timing parameter(s) {', '.join(unknown)}; known: {', '.join(TIMING_PARAMS)}"
            )
        return params

    def sim_params(self, base: SimParams | None = None) -> SimParams:
        """``base`` (default: the seed calibration) with this profile's parameters."""
        changes: dict[str, Any] = dict(self.params)
        return dataclasses.replace(base or SimParams(), **changes)


def profile_of(params: SimParams, name: str, **fields: Any) -> Profile:
    """A profile holding every timing parameter of ``params``."""
    return Profile(name=name, params={k: getattr(params, k) for k in TIMING_PARAMS}, **fields)


def load_profile(path: Path) -> Profile:
    """Read a profile file with the cluster files' limits (a regular file, size, nesting, aliases)."""
    try:
        document = safe_yaml.load(safe_yaml.read_text(path), str(path))
    except ClusterFileError as exc:
        raise ProfileError(str(exc).replace("cluster file", "profile")) from exc
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from exc
    data = document.data
    if not isinstance(data, dict):
        raise ProfileError(f"profile {path} must be a mapping with 'name' and 'params'")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ProfileError(f"profile {path}: {where}") from exc


def save_profile(profile: Profile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(profile.model_dump(), sort_keys=False, allow_unicode=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
