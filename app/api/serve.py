"""Running the API: uvicorn on a thread beside the window, or in the foreground for ``hearth serve``.

Hearth binds the listening socket itself and hands it to uvicorn: a port in use is then a plain
``OSError`` saying so (uvicorn would log it and exit), and the bound port is known before the
first request (port 0 asks the system for a free one).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import sys
import threading
from collections.abc import Sequence

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11435
"""Beside Ollama's 11434, so both can run."""
START_TIMEOUT_S = 30.0


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


def url_of(host: str, port: int) -> str:
    """The base URL a client on this machine uses (a wildcard address is reached on loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or ``OSError`` with a message a person can act on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(
            f"the local API cannot listen on {host!r}: not an address of this machine ({exc})"
        ) from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                errno.EADDRINUSE,
                f"port {port} on {host} is already in use by another program: choose another port, or stop it",
            ) from None
        raise OSError(exc.errno, f"the local API cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


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
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def bound(self) -> tuple[str, int]:
        """The address actually listened on."""
        if self._socket is None:
            return self.host, self.port
        address = self._socket.getsockname()
        return address[0], address[1]

    @property
    def base_url(self) -> str:
        return url_of(*self.bound)

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        try:
            self._socket = bind(self.host, self.port)
        except OSError:
            self.hub.close()
            raise
        ended = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self.server.run(sockets=[self._socket])
            except BaseException as exc:  # noqa: BLE001 - reported to start()'s caller
                failure.append(exc)
            finally:
                ended.set()

        self._thread = threading.Thread(target=run, name="hearth-api", daemon=True)
        self._thread.start()
        listening = _wait_until(lambda: self.server.started or ended.is_set(), timeout)
        if not (listening and self.server.started):
            self.stop()
            why = failure[0] if failure else "it did not start"
            raise OSError(f"the local API could not start on {self.host}:{self.port}: {why}")

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
        self.hub.close()


def _wait_until(predicate, timeout: float) -> bool:
    """uvicorn says it listens by a flag, not an event: look at it every 20 ms."""
    tick = threading.Event()
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            return False
        tick.wait(0.02)
        waited += 0.02
    return True


def serve(host: str, port: int, cors_origins: Sequence[str], yield_to_window: bool = False) -> int:
    """``hearth serve``: a headless supervisor with every worker, the API in the foreground; Ctrl-C
    (uvicorn's own handler) stops it cleanly and the workers are shut down."""
    import uvicorn

    from app.api.hub import JobHub
    from app.api.keys import api_key, key_path
    from app.api.server import create_app
    from workers.protocol import Priority
    from workers.supervisor import Supervisor

    try:
        sock = bind(host, port)
    except OSError as exc:
        print(f"hearth: error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    warning = exposure_warning(host)
    if warning:
        print(f"hearth: warning: {warning}", file=sys.stderr)
    supervisor = Supervisor(restore_queue=False)
    supervisor.start()
    base_url = url_of(host, sock.getsockname()[1])
    hub = JobHub(supervisor, priority=Priority.background if yield_to_window else None)
    app = create_app(hub, api_key(), lambda: base_url, cors_origins)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=3)
    )
    print(f"hearth: the local API listens on {base_url}/v1", file=sys.stderr)
    print(f"hearth: API key in {key_path()} (print it with `hearth api-key`)", file=sys.stderr)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down for: stopping is the normal end
        pass
    finally:
        supervisor.shutdown()
        sock.close()
    print("hearth: the local API stopped", file=sys.stderr)
    return 0
