"""A bring-up or run that did not complete, as the results store, the terminal and the report say
it. A leaf (pydantic only): the errors carry one, the record stores one."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Failure(BaseModel):
    """A bring-up or run that did not complete: what the results store, the terminal and the
    report say of it."""

    cluster: str
    stage: str  # "bring-up", "run" or "interrupted"
    kind: str  # the exception's class name
    message: str
    run_dir: str | None = None
    at: float = 0.0
    logs: dict[str, str] = Field(default_factory=dict)  # process → last lines of its log
    recorded: dict[str, str] = Field(default_factory=dict)  # workload id → results file saying so

    @property
    def key(self) -> tuple[str, float]:
        """One failure, however many test reports carry it."""
        return self.cluster, self.at
