"""Hygiene checks (a pytest plugin, loaded by conftest): a test fails, naming what leaked, when it
leaves behind a thread, a child process, a socket or an active QTimer that it started, or the
process's terminal signals changed (blocked or handled otherwise), which every command it starts
later would inherit: a ``hearth`` started with SIGINT blocked never sees a Ctrl-C.

Each test's check compares what exists after its teardown with what existed before its setup.
Fixtures of a wider scope are set up before that snapshot (pytest sets up higher scopes first),
so what they own is not the test's; the same check runs around each module, after its fixtures
are torn down. A supervisor that existed before the snapshot (a module's ``running_supervisor``)
may restart a worker during a test: that worker and its pipe belong to the supervisor, not the test.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
import weakref
from dataclasses import dataclass

import psutil
import pytest

from workers.supervisor import Supervisor

SETTLE_S = 5.0
"""How long leftovers get to finish on their own (threads joined, processes awaited) before they count."""
OUR_PACKAGES = ("app", "workers", "models", "tests")
# Allow-list: child processes that are nobody's leak.
SESSION_HELPERS = (
    # multiprocessing's resource tracker: started once, by the first spawned worker, for the session.
    "from multiprocessing.resource_tracker import main",
    # The forkserver the workers are forked from (workers/launch.py): started once, by the first
    # worker, for the session. Only our own child: the workers it forks share its command line.
    "from multiprocessing.forkserver import main",
)

_SUPERVISORS: weakref.WeakSet[Supervisor] = weakref.WeakSet()
_supervisor_init = Supervisor.__init__


def _tracked_init(self, *args, **kwargs) -> None:
    _supervisor_init(self, *args, **kwargs)
    _SUPERVISORS.add(self)


Supervisor.__init__ = _tracked_init  # so a check knows which supervisors predate the test


@dataclass(frozen=True)
class Snapshot:
    threads: frozenset[threading.Thread]
    processes: frozenset[tuple[int, float]]
    sockets: frozenset[int]
    timers: frozenset[int]
    supervisors: tuple[weakref.ref, ...]
    signals: tuple[frozenset[int], tuple[object, ...]]


def snapshot() -> Snapshot:
    return Snapshot(
        threads=frozenset(threading.enumerate()),
        processes=frozenset(_children()),
        sockets=frozenset(_socket_fds().values()),
        timers=frozenset(_active_timers()),
        supervisors=tuple(weakref.ref(s) for s in list(_SUPERVISORS)),
        signals=_signal_state(),
    )


def leftovers(before: Snapshot, test_root: str, settle: float = SETTLE_S) -> list[str]:
    """What was started since ``before`` and is still there (threads and processes get ``settle`` s)."""
    deadline = time.monotonic() + settle
    owners = [s for ref in before.supervisors if (s := ref()) is not None]
    found = _threads(before, deadline) + _processes(before, deadline, owners, test_root)
    return found + _sockets(before, owners, deadline) + _timers(before) + _signals(before)


@pytest.fixture(scope="module", autouse=True)
def hygiene_per_module(request, tmp_path_factory):
    before = snapshot()
    yield
    _fail_on(leftovers(before, str(tmp_path_factory.getbasetemp())), f"module {request.node.name}")


@pytest.fixture(autouse=True)
def hygiene_per_test(request, tmp_path_factory):
    before = snapshot()
    yield
    _fail_on(leftovers(before, str(tmp_path_factory.getbasetemp())), "this test")


def _fail_on(found: list[str], what: str) -> None:
    if found:
        pytest.fail(f"{what} left behind:\n  " + "\n  ".join(found), pytrace=False)


# -- threads: a non-daemon thread, or any thread running our code


def _threads(before: Snapshot, deadline: float) -> list[str]:
    suspects = [t for t in threading.enumerate() if t not in before.threads and _counts(t)]
    for thread in suspects:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [_describe_thread(t) for t in suspects if t.is_alive()]


def _counts(thread: threading.Thread) -> bool:
    if isinstance(thread, threading._DummyThread):  # a foreign (Qt, C) thread that called into Python
        return False
    return not thread.daemon or _thread_module(thread).split(".")[0] in OUR_PACKAGES


def _thread_module(thread: threading.Thread) -> str:
    target = getattr(thread, "_target", None)
    return getattr(target, "__module__", None) or type(thread).__module__


def _describe_thread(thread: threading.Thread) -> str:
    kind = "daemon thread" if thread.daemon else "thread"
    return f"{kind} {thread.name!r} (running {_thread_module(thread)})"


# -- child processes: awaited, never reaped here (their Popen or multiprocessing owner does that)


def _children() -> dict[tuple[int, float], psutil.Process]:
    found = {}
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                found[(proc.pid, proc.create_time())] = proc
    return found


def _processes(before: Snapshot, deadline: float, owners: list[Supervisor], test_root: str) -> list[str]:
    owned = {state.pid for s in owners for state in s.worker_states().values() if state.pid}
    suspects = [
        proc
        for key, proc in _children().items()
        if key not in before.processes and not _exempt(proc, owned, test_root)
    ]
    _await_exit(suspects, deadline)
    return [_describe_process(p) for p in suspects if _running(p)]


def _exempt(proc: psutil.Process, owned: set[int], test_root: str) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
        if "-m workers.arbiter" in cmdline:
            # Arbiters are detached by design and exit on their own when idle; conftest kills the
            # ones that a test's (or a module's) folders started. One elsewhere is a real leak.
            return proc.environ().get("HEARTH_RUNTIME_DIR", "").startswith(test_root)
        if any(helper in cmdline for helper in SESSION_HELPERS) and proc.ppid() == os.getpid():
            return True
        return proc.pid in owned or any(parent.pid in owned for parent in proc.parents())
    except psutil.Error:
        return True  # gone while we looked


def _await_exit(procs: list[psutil.Process], deadline: float) -> None:
    """Wait for exits on pidfds (readable once a process ends), so nothing is reaped behind its owner."""
    fds = []
    for proc in procs:
        with contextlib.suppress(OSError):
            fds.append(os.pidfd_open(proc.pid))
    try:
        while fds and (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(fds, [], [], remaining)
            for fd in ready:
                fds.remove(fd)
                os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe_process(proc: psutil.Process) -> str:
    try:
        return f"child process {proc.pid}: {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"child process {proc.pid}"


# -- sockets: every socket fd of this process (inet and unix, listening, connected or neither)


def _socket_fds() -> dict[int, int]:
    """{fd: socket inode} for this process's open sockets."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{name}")
            if link.startswith("socket:["):
                found[int(name)] = int(link[8:-1])
    return found


def _sockets(before: Snapshot, owners: list[Supervisor], deadline: float) -> list[str]:
    new = _new_sockets(before, owners)
    while new and time.monotonic() < deadline:  # a server thread closes its end once the client has
        time.sleep(0.02)
        new = _new_sockets(before, owners)
    if not new:
        return []
    described = {c.fd: c for c in psutil.Process().net_connections(kind="all")}
    return [_describe_socket(fd, described.get(fd)) for fd in sorted(new)]


def _new_sockets(before: Snapshot, owners: list[Supervisor]) -> dict[int, int]:
    owned = set()
    for supervisor in owners:  # its worker pipes are socket pairs, renewed when a worker restarts
        for handle in list(supervisor._workers.values()):
            with contextlib.suppress(OSError, AttributeError, TypeError):
                owned.add(os.fstat(handle.conn.fileno()).st_ino)
    return {fd: inode for fd, inode in _socket_fds().items() if inode not in before.sockets | owned}


def _describe_socket(fd: int, conn) -> str:
    if conn is None:
        return f"socket fd {fd}"
    family = {1: "unix", 2: "inet", 10: "inet6"}.get(int(conn.family), str(conn.family))
    where = f"{conn.laddr or '-'} -> {conn.raddr or '-'}"
    return f"{family} socket fd {fd} ({conn.status or 'no state'}, {where})"


# -- terminal signals: this thread's blocked mask and the handlers (children inherit both)

WATCHED_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


def _signal_state() -> tuple[frozenset[int], tuple[object, ...]]:
    blocked = frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, []))
    return blocked, tuple(signal.getsignal(signum) for signum in WATCHED_SIGNALS)


def _signals(before: Snapshot) -> list[str]:
    (blocked_before, handlers_before), (blocked, handlers) = before.signals, _signal_state()
    found = [f"{signal.Signals(s).name} blocked" for s in sorted(blocked - blocked_before)]
    found += [f"{signal.Signals(s).name} unblocked" for s in sorted(blocked_before - blocked)]
    for signum, old, new in zip(WATCHED_SIGNALS, handlers_before, handlers, strict=True):
        if old != new:
            found.append(f"{signal.Signals(signum).name} handled by {new!r}, not {old!r}")
    if found:  # put back, so the next tests (and the commands they start) are not blamed for it
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked_before)
        for signum, old in zip(WATCHED_SIGNALS, handlers_before, strict=True):
            if old is not None:
                signal.signal(signum, old)
    return found


# -- Qt timers: an active QTimer on the application or on any widget (Qt tests only)


def _timer_objects() -> list:
    if "PySide6.QtWidgets" not in sys.modules:
        return []
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return []
    timers = app.findChildren(QTimer)
    for widget in QApplication.topLevelWidgets():
        timers += widget.findChildren(QTimer)
    return [t for t in timers if t.isActive()]


def _active_timers() -> dict[int, object]:
    timers = _timer_objects()
    if not timers:
        return {}
    import shiboken6

    return {shiboken6.getCppPointer(t)[0]: t for t in timers}


def _timers(before: Snapshot) -> list[str]:
    if "PySide6.QtWidgets" not in sys.modules:
        return []
    from PySide6.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)  # widgets qtbot closed
    found = []
    for address, timer in _active_timers().items():
        if address not in before.timers:
            parent = timer.parent()
            owner = type(parent).__name__ if parent is not None else "no parent"
            found.append(f"active QTimer (interval {timer.interval()} ms) owned by {owner}")
            timer.stop()  # so it cannot fire into the next test
    return found
