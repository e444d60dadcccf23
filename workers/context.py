"""What a job handler sees: progress, streaming, outputs, cancellation and memory leases.

Handlers are plain functions ``run(ctx: JobContext, request)`` in ``workers/jobs/<kind>.py``.
They call ``ctx.step(i)`` at every denoising step or generated token: that single call is
where a cancel takes effect and where an arbiter revoke is honoured, so both happen only at
step boundaries, never in the middle of a kernel.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from workers.errors import JobCancelled
from workers.protocol import JobStatus, Metric, Output, Priority, Progress, TextDelta

PREVIEW_MAX_SIDE = 256


class CancelToken:
    """Set by the worker's reader thread when a ``Cancel`` arrives; read by the job at each step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@dataclass
class MemoryTier:
    """One way to run a model: its device footprint and how to switch the model to it.

    ``apply`` moves/reshapes the loaded model into this tier (e.g. resident, sliced, offloaded);
    it returns False when it cannot (the arbiter's offer of a larger tier is then declined).
    Tiers are listed fastest/largest first, as the arbiter expects.
    """

    name: str
    bytes: int
    est_step_s: float
    apply: Callable[[], bool | None] = lambda: None
    pause_every_s: float = 0.0
    """Work between two pause points inside a step (``workers/pause_points.py``); 0: none."""


@dataclass
class HeldLease:
    lease: Any
    tiers: list[MemoryTier]
    priority: Priority
    job: str
    on_release: Callable[[], None] = lambda: None
    in_use: Callable[[], bool] = lambda: False
    """True while the model cannot be shrunk or dropped (a chat's weights under a running
    ``generate``): a revoke then waits for the next boundary where it is free, rather than
    being answered before the memory is really gone."""


@dataclass
class JobContext:
    """Handed to a job handler; every method is safe to call from the job thread."""

    job_id: str
    priority: Priority
    send: Callable[[Any], None]
    cancel_token: CancelToken
    runtime: Any
    """The owning ``WorkerRuntime`` (warm model cache and arbiter client)."""
    metrics: list[Metric] = field(default_factory=list)
    last_step: int = -1

    # -- progress and results -------------------------------------------------------------

    def step(self, step: int, total: int | None = None, message: str = "", preview: Any = None) -> None:
        """Mark a step boundary: report progress, honour a cancel or a revoke."""
        self.last_step = step
        if self.cancel_token.is_set():
            raise JobCancelled(step)
        if total is not None:
            self.progress(step, total, message, preview)
        self.runtime.honour_revokes(self)
        if self.cancel_token.is_set():
            raise JobCancelled(step)

    def check_cancelled(self) -> None:
        if self.cancel_token.is_set():
            raise JobCancelled(self.last_step)

    def pause_point(self, flush: Callable[[], None] | None = None) -> None:
        """Inside a step: stop for a cancel, or wait out a throttle with the memory held.

        ``flush`` (``torch.cuda.synchronize``) runs first when there is something to wait for,
        so the GPU work already queued does not keep running through the pause.
        """
        self.check_cancelled()
        self.runtime.pause_point(self, flush)
        self.check_cancelled()

    def progress(self, step: int, total: int, message: str = "", preview: Any = None) -> None:
        self.send(
            Progress(
                job_id=self.job_id, step=step, total=total, message=message, preview_png=_preview_png(preview)
            )
        )

    def text(self, delta: str) -> None:
        if delta:
            self.send(TextDelta(job_id=self.job_id, text=delta))

    def output(self, path: str, media_type: str) -> None:
        self.send(Output(job_id=self.job_id, path=str(path), media_type=media_type))

    def metric(self, name: str, value: float) -> None:
        self.metrics.append(Metric(name=name, value=float(value)))

    def status(self, message: str) -> None:
        """A status line without a step count (loading a model, waiting for memory)."""
        self.send(JobStatus(job_id=self.job_id, message=message))

    # -- memory ---------------------------------------------------------------------------

    def lease_memory(
        self,
        key: str,
        tiers: Sequence[MemoryTier],
        on_release: Callable[[], None] = lambda: None,
        *,
        can_grow: bool = False,
        in_use: Callable[[], bool] = lambda: False,
    ) -> MemoryTier:
        """Hold an arbiter lease for model ``key`` (kept warm across jobs); returns the granted tier.

        Blocks while the arbiter queues the request (reporting why), raises ``OutOfMemory``
        when no tier can ever fit, ``JobCancelled`` if the job is cancelled while waiting.
        ``can_grow``: the job's tiers switch between steps without reloading, so a shrunk job
        may be moved back to a faster tier (its ``apply``) once memory is free again. ``in_use``:
        while true, revokes wait (see ``HeldLease.in_use``).
        """
        return self.runtime.lease_memory(self, key, list(tiers), on_release, can_grow=can_grow, in_use=in_use)

    @property
    def cache(self):
        return self.runtime.cache


def _preview_png(preview: Any) -> bytes | None:
    if preview is None or isinstance(preview, bytes):
        return preview
    image = preview.copy()
    image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def elapsed_since(start: float) -> float:
    return time.perf_counter() - start
