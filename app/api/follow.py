"""Following one job to its end on behalf of an HTTP client, cancelling it if the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from app.api.errors import ApiError, job_failed
from app.api.hub import JobHub, JobWatch
from workers.protocol import Cancelled, Failed, Finished, Output


class ClientGone(Exception):  # noqa: N818 - control flow: the job was cancelled for it
    pass


@dataclass
class JobResult:
    finished: Finished
    outputs: list[Output] = field(default_factory=list)
    events: list = field(default_factory=list)

    def metric(self, name: str, default: float = 0.0) -> float:
        return next((m.value for m in self.finished.metrics if m.name == name), default)


async def wait_for_disconnect(request) -> None:
    """Returns when the client closes the connection (its body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def events_until_end(hub: JobHub, watch: JobWatch, request) -> AsyncIterator[object]:
    """Every event of the job, the end event last; cancels the job when the client disconnects."""
    gone = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        while True:
            nxt = asyncio.ensure_future(watch.next_event())
            done, _ = await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:
                nxt.cancel()
                raise ClientGone()
            event = nxt.result()
            yield event
            if watch.ended:
                return
    finally:
        gone.cancel()
        hub.cancel(watch)  # nothing if it ended; a client that left gets its memory back


def raise_for_end(event: object, model: str = "") -> None:
    match event:
        case Failed(kind=kind, message=message):
            raise job_failed(kind, message, model)
        case Cancelled():
            raise ApiError(
                499,
                "the job was cancelled (in the Jobs panel, or by Hearth closing)",
                type="server_error",
                code="cancelled",
            )


async def run_to_end(hub: JobHub, watch: JobWatch, request, model: str = "") -> JobResult:
    """Await the job's end; its outputs and events, or the ``ApiError`` its failure maps to."""
    outputs, events = [], []
    with contextlib.suppress(ClientGone):
        async with contextlib.aclosing(events_until_end(hub, watch, request)) as stream:
            async for event in stream:
                events.append(event)
                if isinstance(event, Output):
                    outputs.append(event)
                elif isinstance(event, Finished):
                    return JobResult(finished=event, outputs=outputs, events=events)
                else:
                    raise_for_end(event, model)
    raise ApiError(499, "the client closed the connection", code="client_closed")
