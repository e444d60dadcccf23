"""A worker's own check that it holds no more device memory than its leases allow.

Run by the worker runtime after every step. On CUDA it measures what the process really holds
(``torch.cuda.memory_reserved``); elsewhere there is no device memory to measure, so it checks
what the worker runs: the declared bytes of the tier each model is in must fit that model's
lease. A violation is logged as an error and shows in the job's metrics, because an arbiter that
is lied to cannot prevent out-of-memory errors.

Imported only by workers (never by the arbiter process); torch is read from ``sys.modules`` so
this module never imports it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from workers.arbiter.units import format_bytes

log = logging.getLogger(__name__)

CHECKED_METRIC = "lease_checked_steps"
OVERRUN_METRIC = "lease_overrun_bytes"


@dataclass(frozen=True, slots=True)
class Usage:
    """What the worker holds (``used``) against what its leases allow (``leased``)."""

    used: int
    leased: int
    source: str

    @property
    def overrun(self) -> int:
        return max(0, self.used - self.leased)


def declared_bytes(held: Any) -> int:
    """Bytes of the tier a held lease runs at, as the job declared it (``MemoryTier.bytes``)."""
    tier = next((t for t in held.tiers if t.name == held.lease.tier), None)
    return int(tier.bytes) if tier is not None else int(held.lease.bytes)


def measure(held_leases: Iterable[Any]) -> Usage:
    """This process's device usage against the sum of its leases."""
    held = list(held_leases)
    leased = sum(int(h.lease.bytes) for h in held)
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_available() and cuda.is_initialized():
        return Usage(used=int(cuda.memory_reserved()), leased=leased, source="torch.cuda.memory_reserved")
    return Usage(used=sum(declared_bytes(h) for h in held), leased=leased, source="declared tier bytes")


class LeaseAudit:
    """Counts one job's checks and its worst overrun; keeps two metrics up to date in place."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.checked = 0
        self.worst = 0

    def check(self, held_leases: Iterable[Any], metrics: list) -> Usage:
        usage = measure(held_leases)
        self.checked += 1
        if usage.overrun > 0:
            if usage.overrun > self.worst:
                log.error(
                    "job %s holds %s beyond its leases (%s %s > leased %s)",
                    self.job_id,
                    format_bytes(usage.overrun),
                    usage.source,
                    format_bytes(usage.used),
                    format_bytes(usage.leased),
                )
            self.worst = max(self.worst, usage.overrun)
        self._record(metrics)
        return usage

    def _record(self, metrics: list) -> None:
        from workers.protocol import Metric

        values = {CHECKED_METRIC: self.checked, OVERRUN_METRIC: self.worst}
        metrics[:] = [m for m in metrics if m.name not in values]
        metrics += [Metric(name=name, value=float(value)) for name, value in values.items()]
