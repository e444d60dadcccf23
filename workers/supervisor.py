"""Spawns one worker process per kind, routes jobs to them, and notices a dead worker at once.

Pure Python (no Qt, no torch): the GUI wraps it in ``app.bridge.Bridge``, the CLI drives it
directly. Events reach listeners on the supervisor's monitor thread; a listener must hand them
over to its own thread (Qt queued signals, a ``queue.Queue``) rather than block.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from workers.codec import MalformedMessage, decode, encode
from workers.errors import BadInput, ErrorKind
from workers.jobstore import JobStore
from workers.launch import worker_context
from workers.paths import database_path
from workers.protocol import (
    Cancel,
    Cancelled,
    Failed,
    Finished,
    Hello,
    JobOrigin,
    JobRequest,
    JobState,
    Output,
    Priority,
    Queued,
    Shutdown,
    Started,
    Submit,
    WorkerEvent,
    WorkerKind,
    WorkerState,
    WorkerStatus,
)
from workers.runtime import TERMINAL_SIGNALS, TERMINATED_EXIT_CODE

log = logging.getLogger(__name__)
Listener = Callable[[object], None]
PRIORITY_ORDER = {Priority.interactive: 0, Priority.single_shot: 1, Priority.background: 2}
MAX_QUICK_CRASHES = 3
QUICK_CRASH_WINDOW_S = 30.0
TERMINATE_GRACE_S = 2.0
"""How long a worker sent SIGTERM may take to unwind (removing its temp files) before SIGKILL."""
TERMINATED_EXIT_CODES = (-signal.SIGTERM, TERMINATED_EXIT_CODE)
"""A worker's exit code after a SIGTERM: before its handler is installed, and after."""


@dataclass
class WorkerHandle:
    kind: WorkerKind
    process: BaseProcess | None = None
    conn: Connection | None = None
    status: WorkerStatus = WorkerStatus.stopped
    current: Submit | None = None
    queue: deque[Submit] = field(default_factory=deque)
    crash_times: list[float] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process and self.process.pid else 0


class Supervisor:
    """Owns the worker processes and the job queue of each kind.

    ``transport``: None runs the workers as local processes (below). A ``RayTransport``
    (``workers.cluster``, the optional ``cluster`` extra) builds its ``ClusterSupervisor``
    instead: the same API and events, the workers hosted as Ray actors on a cluster's nodes.
    """

    def __new__(cls, *args, transport: Any = None, **kwargs):
        if transport is not None and cls is Supervisor:
            cls = transport.supervisor_class
        return super().__new__(cls)

    def __init__(
        self,
        kinds: Iterable[WorkerKind] = tuple(WorkerKind),
        store: JobStore | None = None,
        listener: Listener | None = None,
        restore_queue: bool = True,
        transport: None = None,
    ) -> None:
        self._kinds = tuple(WorkerKind(k) for k in kinds)
        self._store = store or JobStore(database_path())
        self._listeners: list[Listener] = [listener] if listener else []
        self._restore_queue = restore_queue
        self._workers = {kind: WorkerHandle(kind) for kind in self._kinds}
        self._lock = threading.RLock()
        self._stopping = False
        self._monitor: threading.Thread | None = None

    # -- public API -----------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def start(self) -> None:
        """Spawn every worker (they import their libraries in the background) and re-queue old jobs."""
        with self._lock:
            for handle in self._workers.values():
                self._spawn(handle)
        self._monitor = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._monitor.start()
        if self._restore_queue:
            for record in self._store.claim_unfinished():
                if record.request is not None and record.request.kind in self._workers:
                    self._enqueue(
                        Submit(job_id=record.job_id, request=record.request, priority=record.priority)
                    )

    def submit(
        self, request: JobRequest, priority: Priority | None = None, origin: JobOrigin = JobOrigin.window
    ) -> str:
        """Validate and queue a job; returns its id. Raises BadInput naming what is wrong."""
        request.validate()
        if request.kind not in self._workers:
            raise BadInput(f"no {request.kind} worker is running in this session")
        submit = Submit(
            job_id=uuid.uuid4().hex[:12], request=request, priority=priority or request.default_priority
        )
        # A session that does not restore its queue (``hearth run``) leaves nothing for others to
        # rerun, and an API job's client is gone after a restart.
        restorable = self._restore_queue and origin is not JobOrigin.api
        self._store.add(submit.job_id, request, submit.priority, restorable=restorable)
        self._enqueue(submit, origin)
        return submit.job_id

    def cancel(self, job_id: str) -> None:
        """Cancel a queued job at once, or a running one at its next step."""
        with self._lock:
            for handle in self._workers.values():
                queued = next((s for s in handle.queue if s.job_id == job_id), None)
                if queued is not None:
                    handle.queue.remove(queued)
                    self._finish(handle, Cancelled(job_id=job_id, at_step=-1))
                    return
                if handle.current and handle.current.job_id == job_id:
                    self._send(handle, Cancel(job_id=job_id))
                    return

    def worker_states(self) -> dict[WorkerKind, WorkerState]:
        with self._lock:
            return {
                h.kind: WorkerState(kind=h.kind, status=h.status, pid=h.pid) for h in self._workers.values()
            }

    def worker_pid(self, kind: WorkerKind) -> int:
        return self._workers[WorkerKind(kind)].pid

    def wait_ready(self, timeout: float = 60.0, kinds: Iterable[WorkerKind] | None = None) -> bool:
        wanted = [WorkerKind(k) for k in (kinds or self._kinds)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(self._workers[k].status in (WorkerStatus.ready, WorkerStatus.busy) for k in wanted):
                    return True
            time.sleep(0.05)
        return False

    @property
    def store(self) -> JobStore:
        return self._store

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel the running jobs, ask every worker to exit, then stop what is left: no orphan
        ever holds VRAM. A worker still there after ``timeout`` is terminated, then killed."""
        with self._lock:
            self._stopping = True
            for handle in self._workers.values():
                if handle.current is not None:  # it stops at its next step instead of running on
                    self._send(handle, Cancel(job_id=handle.current.job_id))
                self._send(handle, Shutdown())
        self._stop_processes(timeout)

    def stop_now(self) -> None:
        """Stop every worker at once (a second Ctrl-C): SIGTERM, and SIGKILL after a short grace."""
        self.terminate_workers()
        self._stop_processes(0.0)
        for handle in self._workers.values():
            if handle.current is not None:  # its worker is gone before it could say so
                self._store.set_state(handle.current.job_id, JobState.cancelled)

    def terminate_workers(self) -> None:
        """Send SIGTERM to every live worker. Takes no lock, so a signal handler may call it."""
        self._stopping = True
        for handle in list(self._workers.values()):
            process = handle.process
            if process is not None:
                with contextlib.suppress(OSError, ValueError):
                    process.terminate()  # the worker unwinds: its temp files are removed

    def _stop_processes(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for handle in self._workers.values():
            process = handle.process
            if process is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(TERMINATE_GRACE_S)
            if process.is_alive():
                process.kill()
                process.join(2)
            handle.status = WorkerStatus.stopped
        monitor = self._monitor
        if monitor is not None and monitor is not threading.current_thread():
            monitor.join(2)
        if monitor is None or monitor is threading.current_thread() or not monitor.is_alive():
            self._close_pipes()  # once the monitor no longer waits on them

    def _close_pipes(self) -> None:
        for handle in self._workers.values():
            if handle.conn is not None:
                handle.conn.close()
                handle.conn = None

    # -- processes ------------------------------------------------------------------------

    def _spawn(self, handle: WorkerHandle) -> None:
        from workers.runtime import worker_main

        context = worker_context(self._kinds)
        parent, child = context.Pipe(duplex=True)
        process = context.Process(
            target=worker_main,
            args=(handle.kind.value, child, dict(os.environ)),
            name=f"hearth-{handle.kind.value}-worker",
            daemon=True,
        )
        # Inherited by the child (and by the forkserver, started by the first start) until it
        # ignores them: a Ctrl-C meant for the CLI or the window must not interrupt the imports.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINAL_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        child.close()
        handle.process, handle.conn, handle.status = process, parent, WorkerStatus.starting
        self._emit(WorkerState(kind=handle.kind, status=handle.status, pid=handle.pid))

    def _watch(self) -> None:
        while not self._stopping:
            with self._lock:
                by_conn = {h.conn: h for h in self._workers.values() if h.conn is not None}
                by_sentinel = {h.process.sentinel: h for h in self._workers.values() if h.process is not None}
            ready = wait([*by_conn, *by_sentinel], timeout=0.25) if by_conn or by_sentinel else []
            for item in ready:
                if item in by_conn:
                    self._drain(by_conn[item])
            for item in ready:
                if item in by_sentinel and not self._stopping:
                    self._on_death(by_sentinel[item])

    def _drain(self, handle: WorkerHandle) -> None:
        conn = handle.conn
        try:
            while conn is not None and conn.poll():
                self._on_event(handle, decode(conn.recv_bytes(), expected=WorkerEvent))
        except (EOFError, OSError):
            pass  # the sentinel reports the death
        except MalformedMessage as exc:
            self._emit(WorkerState(kind=handle.kind, status=handle.status, pid=handle.pid, detail=str(exc)))

    def _on_death(self, handle: WorkerHandle) -> None:
        with self._lock:
            if handle.process is None or handle.process.is_alive():
                return
            self._drain(handle)
            code = handle.process.exitcode
            handle.process, handle.conn = None, None
            handle.status = WorkerStatus.crashed
            if handle.current is not None:
                self._finish(handle, _end_of_dead_job(handle, code))
            now = time.monotonic()
            handle.crash_times = [t for t in handle.crash_times if now - t < QUICK_CRASH_WINDOW_S]
            if code not in TERMINATED_EXIT_CODES:  # told to stop (SIGTERM) is not a crash
                handle.crash_times.append(now)
            if len(handle.crash_times) > MAX_QUICK_CRASHES:
                self._give_up(handle, code)
                return
            self._spawn(handle)

    def _give_up(self, handle: WorkerHandle, code: int | None) -> None:
        detail = f"the {handle.kind.value} worker keeps crashing (exit code {code}); see the log"
        self._emit(WorkerState(kind=handle.kind, status=WorkerStatus.crashed, detail=detail))
        while handle.queue:
            submit = handle.queue.popleft()
            self._finish(handle, Failed(job_id=submit.job_id, kind=ErrorKind.worker_crashed, message=detail))

    # -- jobs -----------------------------------------------------------------------------

    def _enqueue(self, submit: Submit, origin: JobOrigin = JobOrigin.window) -> None:
        with self._lock:
            handle = self._workers[submit.request.kind]
            position = len(handle.queue)
            for index, queued in enumerate(handle.queue):
                if PRIORITY_ORDER[submit.priority] < PRIORITY_ORDER[queued.priority]:
                    position = index
                    break
            handle.queue.insert(position, submit)
            self._emit(
                Queued(job_id=submit.job_id, request=submit.request, priority=submit.priority, origin=origin)
            )
            self._dispatch(handle)

    def _dispatch(self, handle: WorkerHandle) -> None:
        if handle.status is not WorkerStatus.ready or handle.current is not None or not handle.queue:
            return
        handle.current = handle.queue.popleft()
        handle.status = WorkerStatus.busy
        self._send(handle, handle.current)
        self._emit(WorkerState(kind=handle.kind, status=handle.status, pid=handle.pid))

    def _on_event(self, handle: WorkerHandle, event: object) -> None:
        with self._lock:
            if self._stopping:
                # What a worker says after shutdown began (a job cancelled by it) is not recorded:
                # the job stays unfinished, so the next window restores it as before.
                return
            match event:
                case Hello():
                    handle.status = WorkerStatus.ready
                    self._emit(WorkerState(kind=handle.kind, status=handle.status, pid=event.pid))
                    self._dispatch(handle)
                case Started(job_id=job_id):
                    self._store.set_state(job_id, JobState.running)
                    self._emit(event)
                case Output(job_id=job_id, path=path):
                    self._store.add_output(job_id, path)
                    self._emit(event)
                case Finished() | Cancelled() | Failed():
                    self._finish(handle, event)
                case _:
                    self._emit(event)

    def _finish(self, handle: WorkerHandle, event: Finished | Cancelled | Failed) -> None:
        match event:
            case Finished():
                self._store.set_state(event.job_id, JobState.finished)
            case Cancelled():
                self._store.set_state(event.job_id, JobState.cancelled)
            case Failed():
                self._store.set_state(event.job_id, JobState.failed, event.kind.value, event.message)
        if handle.current is not None and handle.current.job_id == event.job_id:
            handle.current = None
            if handle.status is WorkerStatus.busy:
                handle.status = WorkerStatus.ready
                self._emit(WorkerState(kind=handle.kind, status=handle.status, pid=handle.pid))
        self._emit(event)
        self._dispatch(handle)

    def _send(self, handle: WorkerHandle, command: object) -> None:
        if handle.conn is None:
            return
        with contextlib.suppress(OSError, BrokenPipeError):
            handle.conn.send_bytes(encode(command))

    def _emit(self, event: object) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - one broken listener must not stop the monitor thread
                log.exception("supervisor listener failed on %s", type(event).__name__)


def _end_of_dead_job(handle: WorkerHandle, code: int | None) -> Cancelled | Failed:
    """A worker stopped by SIGTERM (sent to the whole process group when a session ends) was told
    to stop: its job is cancelled. Any other death is a crash."""
    assert handle.current is not None  # called only for the job the worker was running
    if code in TERMINATED_EXIT_CODES:
        return Cancelled(job_id=handle.current.job_id, at_step=-1)
    message = (
        f"the {handle.kind.value} worker stopped unexpectedly (exit code {code}) "
        "during this job; it has been restarted"
    )
    return Failed(job_id=handle.current.job_id, kind=ErrorKind.worker_crashed, message=message)
