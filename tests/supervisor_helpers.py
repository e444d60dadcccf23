"""Shared by the tests that run real worker processes: an event recorder and a started supervisor."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator

from workers.protocol import Cancelled, Failed, Finished, WorkerKind
from workers.supervisor import Supervisor

JOB_ENDS = (Finished, Cancelled, Failed)


class Recorder:
    """Collects supervisor events (from its monitor thread) for the test thread to wait on."""

    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()
        self.seen: list = []

    def __call__(self, event) -> None:
        self.events.put(event)

    def until(self, predicate, timeout: float = 120.0) -> list:
        """Events up to and including the first one matching ``predicate``."""
        start, deadline = len(self.seen), time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(event)
            if predicate(event):
                return self.seen[start:]
        names = [type(e).__name__ for e in self.seen[-20:]]
        raise AssertionError(f"event not seen in {timeout}s; saw {names}")

    def wait_for(self, predicate, timeout: float = 120.0):
        return self.until(predicate, timeout)[-1]

    def job_end(self, job_id: str, timeout: float = 120.0):
        return self.wait_for(lambda e: isinstance(e, JOB_ENDS) and e.job_id == job_id, timeout)

    def job(self, job_id: str, timeout: float = 120.0) -> list:
        """This job's events, up to and including its end."""
        events = self.until(lambda e: isinstance(e, JOB_ENDS) and e.job_id == job_id, timeout)
        return [e for e in events if getattr(e, "job_id", None) == job_id]


@contextlib.contextmanager
def running_supervisor(kind: WorkerKind, start_timeout: float = 180) -> Iterator[tuple[Supervisor, Recorder]]:
    """One worker of ``kind`` started and ready; shut down (no process left) on exit."""
    recorder = Recorder()
    supervisor = Supervisor(kinds=[kind], listener=recorder, restore_queue=False)
    supervisor.start()
    try:
        assert supervisor.wait_ready(timeout=start_timeout), f"{kind} worker did not start"
        yield supervisor, recorder
    finally:
        supervisor.shutdown()
