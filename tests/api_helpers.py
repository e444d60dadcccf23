"""The local API on real workers, driven by the official ``openai`` client as users' tools drive it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import openai

from app.api.serve import ApiServer
from tests.supervisor_helpers import Recorder
from workers.supervisor import Supervisor


@dataclass
class RunningApi:
    server: ApiServer
    supervisor: Supervisor
    recorder: Recorder
    clients: list[openai.OpenAI] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url + "/v1"

    def client(self, **kwargs) -> openai.OpenAI:
        """A client of the running API; ``close_clients`` (after each test) closes its connections."""
        client = openai.OpenAI(base_url=self.base_url, api_key=self.server.key, max_retries=0, **kwargs)
        self.clients.append(client)
        return client

    def close_clients(self) -> None:
        while self.clients:
            self.clients.pop().close()


@contextlib.contextmanager
def running_api(kinds, start_timeout: float = 180) -> Iterator[RunningApi]:
    """A supervisor with ``kinds`` workers and the API on a free loopback port; all stopped on exit."""
    recorder = Recorder()
    supervisor = Supervisor(kinds=kinds, listener=recorder, restore_queue=False)
    supervisor.start()
    server = running = None
    try:
        assert supervisor.wait_ready(timeout=start_timeout), f"{kinds} workers did not start"
        server = ApiServer(supervisor, port=0)
        server.start()
        running = RunningApi(server=server, supervisor=supervisor, recorder=recorder)
        yield running
    finally:
        if running is not None:
            running.close_clients()
        if server is not None:
            server.stop()
        supervisor.shutdown()
