"""The API's side of the supervisor: submit a job, then await its events in asyncio.

The supervisor calls its listeners on its monitor thread; :class:`JobHub` hands each event of a
job the API submitted to the event loop of the request awaiting it (``call_soon_threadsafe``),
so a request handler simply ``await``s the next event. Events of the window's own jobs pass by.

Lock order: the hub's lock is never held while calling into the supervisor (whose lock is held
while it calls the hub), so the two cannot deadlock. An event that arrives between the
supervisor returning a job id and the hub registering it is kept aside and handed over.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field

from workers.protocol import JOB_END_EVENTS, JobOrigin, JobRequest, Priority

MAX_QUEUED_PER_CLIENT = 8
"""Jobs one client may have queued or running at once: a script cannot flood the queue."""


class TooManyJobs(Exception):  # noqa: N818 - the HTTP layer answers it with 429
    def __init__(self, limit: int) -> None:
        super().__init__(f"this client already has {limit} jobs queued or running; wait for one to finish")


@dataclass
class JobWatch:
    """One API job: its id and the queue its events arrive on, in order."""

    job_id: str
    client: str
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    ended: bool = False

    async def next_event(self):
        event = await self.events.get()
        if isinstance(event, JOB_END_EVENTS):
            self.ended = True
        return event


class JobHub:
    """Submits requests through a supervisor (the window's own, or a headless one)."""

    def __init__(
        self, supervisor, max_per_client: int = MAX_QUEUED_PER_CLIENT, priority: Priority | None = None
    ) -> None:
        """``priority``: every API job's class (``background``: the window's own work always wins);
        ``None``: the class the same job has in the window."""
        self.supervisor = supervisor
        self.max_per_client = max_per_client
        self.priority = priority
        self._lock = threading.Lock()
        self._watches: dict[str, tuple[JobWatch, asyncio.AbstractEventLoop]] = {}
        self._early: dict[str, list] = {}
        self._submitting = 0
        self._active: Counter[str] = Counter()
        supervisor.add_listener(self._on_event)

    def submit(self, request: JobRequest, client: str, priority: Priority | None = None) -> JobWatch:
        """Queue ``request`` for ``client``; raises ``BadInput`` or :class:`TooManyJobs`."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._active[client] >= self.max_per_client:
                raise TooManyJobs(self.max_per_client)
            self._active[client] += 1
            self._submitting += 1
        try:
            job_id = self.supervisor.submit(request, priority or self.priority, origin=JobOrigin.api)
        except BaseException:
            with self._lock:
                self._submitting -= 1
                self._release(client)
            raise
        watch = JobWatch(job_id=job_id, client=client)
        with self._lock:
            self._submitting -= 1
            early = self._early.pop(job_id, [])
            if not self._submitting:
                self._early.clear()  # events of jobs that were not ours
            ended = any(isinstance(e, JOB_END_EVENTS) for e in early)
            if not ended:
                self._watches[job_id] = (watch, loop)
            else:
                self._release(client)
        for event in early:
            watch.events.put_nowait(event)
        return watch

    def close(self) -> None:
        """Stop listening to the supervisor (a window that turns the API off keeps running)."""
        self.supervisor.remove_listener(self._on_event)

    def cancel(self, watch: JobWatch) -> None:
        """Cancel the job unless it has ended (a client that went away gets its memory back)."""
        if not watch.ended:
            self.supervisor.cancel(watch.job_id)

    def active_jobs(self, client: str) -> int:
        with self._lock:
            return self._active[client]

    def _on_event(self, event: object) -> None:
        job_id = getattr(event, "job_id", None)
        if job_id is None:
            return
        with self._lock:
            found = self._watches.get(job_id)
            if found is None:
                if self._submitting:
                    self._early.setdefault(job_id, []).append(event)
                return
            watch, loop = found
            if isinstance(event, JOB_END_EVENTS):
                del self._watches[job_id]
                self._release(watch.client)
        try:
            loop.call_soon_threadsafe(watch.events.put_nowait, event)
        except RuntimeError:  # the server's loop has closed: nobody is waiting any more
            pass

    def _release(self, client: str) -> None:
        self._active[client] -= 1
        if self._active[client] <= 0:
            del self._active[client]
