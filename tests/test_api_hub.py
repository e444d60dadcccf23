"""The API's job hub: per-client caps, and events that arrive before the hub knows the job's id."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from app.api.hub import JobHub, TooManyJobs
from workers.protocol import Finished, Started, TextDelta


class InstantSupervisor:
    """Answers every job at once, from inside ``submit``, as a fast worker can race the hub."""

    def __init__(self) -> None:
        self.listeners = []
        self.ids = (f"job{n}" for n in itertools.count())
        self.cancelled = []
        self.finish_at_once = False

    def add_listener(self, listener) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener) -> None:
        self.listeners.remove(listener)

    def submit(self, request, priority=None, origin=None) -> str:
        job_id = next(self.ids)
        for event in (Started(job_id=job_id), TextDelta(job_id=job_id, text="hi")):
            self.emit(event)
        if self.finish_at_once:
            self.emit(Finished(job_id=job_id))
        return job_id

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    def emit(self, event) -> None:
        for listener in self.listeners:
            listener(event)


def test_a_client_over_its_cap_is_refused_until_one_of_its_jobs_ends():
    async def scenario():
        supervisor = InstantSupervisor()
        hub = JobHub(supervisor, max_per_client=2)
        first = hub.submit(object(), "a")
        hub.submit(object(), "a")
        with pytest.raises(TooManyJobs):
            hub.submit(object(), "a")
        hub.submit(object(), "b")  # another client is not held back
        supervisor.emit(Finished(job_id=first.job_id))
        await asyncio.sleep(0)  # the event is handed to this loop with call_soon_threadsafe
        assert hub.active_jobs("a") == 1
        hub.submit(object(), "a")

    asyncio.run(scenario())


def test_events_sent_while_the_job_was_being_submitted_are_not_lost():
    async def scenario():
        supervisor = InstantSupervisor()
        supervisor.finish_at_once = True
        hub = JobHub(supervisor)
        watch = hub.submit(object(), "a")
        events = [await watch.next_event() for _ in range(3)]
        assert [type(e) for e in events] == [Started, TextDelta, Finished]
        assert watch.ended and hub.active_jobs("a") == 0
        hub.cancel(watch)
        assert supervisor.cancelled == []  # an ended job is not cancelled

    asyncio.run(scenario())
