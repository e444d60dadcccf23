"""Running the API: uvicorn on a thread beside the window, or in the foreground for ``hearth serve``."""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Sequence

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11435
"""Beside Ollama's 11434, so both can run."""
log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str:
    """What the window and ``hearth serve`` say when the API listens beyond this machine."""
    if is_loopback(host):
        return ""
    return (
        f"The local API listens on {host}: other machines on the network can reach it. Anyone with "
        "the key can run jobs on this GPU and read what they make."
    )


class ApiServer:
    """One uvicorn server for a supervisor; ``start`` returns once it listens (or raises why not)."""

    def __init__(
        self,
        supervisor,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        cors_origins: Sequence[str] = (),
        yield_to_window: bool = False,
    ) -> None:
        """``yield_to_window``: API jobs run in the background class, so the window always wins."""
        import uvicorn

        from app.api.hub import JobHub
        from app.api.keys import api_key
        from app.api.server import create_app
        from workers.protocol import Priority

        self.host, self.port = host, port
        self.key = api_key()
        self.hub = JobHub(supervisor, priority=Priority.background if yield_to_window else None)
        app = create_app(self.hub, self.key, lambda: self.base_url, cors_origins)
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=3
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    @property
    def bound(self) -> tuple[str, int]:
        """The address actually listened on (port 0 asks the system for a free one)."""
        for server in self.server.servers:
            for sock in server.sockets:
                address = sock.getsockname()
                return address[0], address[1]
        return self.host, self.port

    @property
    def base_url(self) -> str:
        host, port = self.bound
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{shown}:{port}"

    def start(self, timeout: float = 30.0) -> None:
        started = threading.Event()

        def run() -> None:
            try:
                self.server.run()
            except BaseException as exc:  # noqa: BLE001 - reported to start()'s caller
                self._failed = exc
            finally:
                started.set()

        self._thread = threading.Thread(target=run, name="hearth-api", daemon=True)
        self._thread.start()
        deadline_hit = not _wait_until(lambda: self.server.started or started.is_set(), timeout)
        if self._failed is not None or not self.server.started or deadline_hit:
            self.stop()
            why = self._failed or "it did not start listening"
            raise OSError(f"the local API could not listen on {self.host}:{self.port}: {why}")

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


def _wait_until(predicate, timeout: float) -> bool:
    event = threading.Event()
    step = 0.02
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            return False
        event.wait(step)
        waited += step
    return True


def serve(host: str, port: int, cors_origins: Sequence[str], yield_to_window: bool = False) -> int:
    """``hearth serve``: a headless supervisor with every worker, the API in the foreground; Ctrl-C
    (uvicorn's own handler) stops it cleanly and the workers are shut down."""
    import sys

    import uvicorn

    from app.api.hub import JobHub
    from app.api.keys import api_key, key_path
    from app.api.server import create_app
    from workers.protocol import Priority
    from workers.supervisor import Supervisor

    warning = exposure_warning(host)
    if warning:
        print(f"hearth: warning: {warning}", file=sys.stderr)
    supervisor = Supervisor(restore_queue=False)
    supervisor.start()
    key = api_key()
    config = uvicorn.Config(
        None, host=host, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    hub = JobHub(supervisor, priority=Priority.background if yield_to_window else None)
    config.app = create_app(hub, key, lambda: f"http://{shown}:{port}", cors_origins)
    print(f"hearth: the local API listens on http://{shown}:{port}/v1", file=sys.stderr)
    print(f"hearth: API key in {key_path()} (print it with `hearth api-key`)", file=sys.stderr)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down for: stopping is the normal end
        pass
    finally:
        supervisor.shutdown()
    if not server.started:
        return 1
    print("hearth: the local API stopped", file=sys.stderr)
    return 0
