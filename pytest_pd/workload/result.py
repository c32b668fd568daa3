"""The records of one measured run, as the runner hands them on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .record import RequestRecord
from .spec import Workload


@dataclass
class RunResult:
    """Records of one measured run. ``started``/``finished`` are perf_counter values of the first
    dispatch (first request start) and the last completion of the measured requests."""

    workload: Workload
    records: list[RequestRecord]
    started: float
    finished: float
    base_url: str
    warmup: list[RequestRecord] = field(default_factory=list)
    model: str | None = None
    not_sent: int = 0
    """Requests never sent because the duration limit was reached."""
    client_processes: int = 1
    client_cpu_s: float | None = None
    """CPU seconds the client used while driving the measured requests (all processes)."""

    @property
    def duration(self) -> float:
        return self.finished - self.started

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload.to_dict(),
            "records": [r.to_dict(texts=False) for r in self.records],
            "started": self.started,
            "finished": self.finished,
            "base_url": self.base_url,
            "warmup": [r.to_dict(texts=False) for r in self.warmup],
            "model": self.model,
            "not_sent": self.not_sent,
            "client_processes": self.client_processes,
            "client_cpu_s": self.client_cpu_s,
        }
