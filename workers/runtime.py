"""The worker process: one job at a time, models kept warm, every step cancellable.

The supervisor starts ``worker_main`` forked from a warm forkserver or spawned
(``workers.launch``). A reader thread turns
incoming bytes into commands (a ``Cancel`` sets the running job's token at once); the main
thread runs jobs. Errors are caught once, here at the job boundary, and become ``Failed``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workers.codec import MalformedMessage, decode, encode
from workers.context import CancelToken, HeldLease, JobContext, MemoryTier
from workers.errors import ErrorKind, HearthError, JobCancelled
from workers.launch import GROUP_SIGNALS, apply_worker_environment
from workers.logs import setup_logging
from workers.protocol import Cancel, Cancelled, Failed, Finished, Hello, Shutdown, Started, Submit, WorkerKind

if TYPE_CHECKING:
    from workers.arbiter.selfcheck import LeaseAudit

IDLE_POLL_S = 0.2
READING_INTERVAL_S = 1.0
"""How often a worker on a GPU tells the arbiter what the device shows (at step boundaries)."""
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGHUP)
"""Ctrl-C and a closed terminal reach the whole process group. The CLI or the window answers them
by cancelling through the supervisor, so a worker ignores them (the supervisor also blocks them
across the spawn, so not even the start-up imports can be interrupted)."""
TERMINATED_EXIT_CODE = 128 + signal.SIGTERM
"""A worker told to stop by SIGTERM exits with this code, after unwinding (temp files removed)."""
log = logging.getLogger(__name__)


def prepare_worker_process(kind: str) -> None:
    """What every host of the worker runtime (a process here, a Ray actor) does first."""
    setup_logging(f"worker-{kind}")
    apply_worker_environment()


def worker_main(kind: str, conn: Any, environment: dict[str, str] | None = None) -> None:
    """Entry point of a worker process (must live in an importable module for spawn).

    ``environment`` is the supervisor's, as it was when it started this worker: a worker forked
    from the forkserver would otherwise keep the one the forkserver started with."""
    _leave_signals_to_the_supervisor()  # first: before the heavy imports a Ctrl-C could interrupt
    _die_with_parent()
    if environment is not None:
        os.environ.clear()
        os.environ.update(environment)
    prepare_worker_process(kind)
    runtime = WorkerRuntime(WorkerKind(kind), conn)
    runtime.serve()
    _exit_without_teardown()


def _exit_without_teardown() -> None:
    """End a worker whose jobs have ended and whose leases are released, skipping the
    interpreter's teardown of torch, diffusers and transformers: over a second per worker that
    the window closing or ``hearth run`` ending would wait for, with nothing left to clean up.
    What multiprocessing does at a child's normal exit still runs: its finalizers unlink the
    semaphores made here (tqdm's lock), else the resource tracker reports them leaked."""
    from multiprocessing import util

    util._exit_function()  # type: ignore[attr-defined]
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(0)


def _leave_signals_to_the_supervisor() -> None:
    for signum in TERMINAL_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # Blocked across the start (by the supervisor, or inherited from the forkserver): a terminal
    # signal sent meanwhile is dropped, a SIGTERM is answered now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, GROUP_SIGNALS)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """Stop now, but unwinding: ``finally`` blocks remove half-written temp files, and the
    multiprocessing finalizers unregister this process's semaphores."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not cut the unwinding short
    raise SystemExit(TERMINATED_EXIT_CODE)


def _die_with_parent() -> None:
    """Ask Linux to kill us if the GUI dies, even by SIGKILL: no orphan holding VRAM."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class WarmCache:
    """Loaded models kept between jobs, least recently used first out."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Any] = OrderedDict()

    def get_or_load(self, key: str, load: Callable[[], Any]) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load()
        self._items[key] = value
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value

    def drop(self, key: str) -> None:
        self._items.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._items


class WorkerRuntime:
    def __init__(self, kind: WorkerKind, conn: Any) -> None:
        self.kind = kind
        self.conn = conn
        self.cache = WarmCache()
        self.leases: dict[str, HeldLease] = {}
        self._send_lock = threading.Lock()
        self._submits: queue.Queue[Submit | None] = queue.Queue()
        self._current: tuple[str, CancelToken] | None = None
        self._cancelled_early: set[str] = set()
        self._arbiter = None
        self._lease_audit: LeaseAudit | None = None  # per-job check of usage against leases
        self._throttle_said = None  # issue 7: the throttle order last shown to the user
        self._reported_at = float("-inf")  # the last DeviceReading sent to the arbiter
        self.handler = importlib.import_module(f"workers.jobs.{kind.value}")

    # -- wire -----------------------------------------------------------------------------

    def send(self, event: Any) -> None:
        data = encode(event)
        with self._send_lock:
            try:
                self.conn.send_bytes(data)
            except (BrokenPipeError, OSError):
                os._exit(0)  # the supervisor is gone; nobody is left to report to

    def _read_commands(self) -> None:
        while True:
            try:
                command = decode(self.conn.recv_bytes(), expected=Submit | Cancel | Shutdown)
            except (EOFError, OSError):
                os._exit(0)
            except MalformedMessage:
                continue
            match command:
                case Submit():
                    self._submits.put(command)
                case Cancel(job_id=job_id):
                    current = self._current
                    if current and current[0] == job_id:
                        current[1].set()
                    else:
                        self._cancelled_early.add(job_id)
                case Shutdown():
                    self._submits.put(None)

    # -- main loop ------------------------------------------------------------------------

    def serve(self) -> None:
        threading.Thread(target=self._read_commands, name="commands", daemon=True).start()
        warm_up = getattr(self.handler, "warm_up", None)
        if warm_up:
            warm_up()
        self.send(Hello(kind=self.kind, pid=os.getpid()))
        while True:
            try:
                submit = self._submits.get(timeout=IDLE_POLL_S)
            except queue.Empty:
                self._honour_idle_revokes()
                continue
            if submit is None:
                break
            self.run_job(submit)
        self._release_all()

    def run_job(self, submit: Submit) -> None:
        token = CancelToken()
        if submit.job_id in self._cancelled_early:
            token.set()
        self._current = (submit.job_id, token)
        ctx = JobContext(
            job_id=submit.job_id, priority=submit.priority, send=self.send, cancel_token=token, runtime=self
        )
        start = time.perf_counter()
        self.send(Started(job_id=submit.job_id))
        log.info(
            "job %s started (%s, %s)", submit.job_id, type(submit.request).__name__, submit.priority.value
        )
        try:
            submit.request.validate()
            ctx.check_cancelled()
            self.handler.run(ctx, submit.request)
            ctx.check_cancelled()
            end: Finished | Cancelled | Failed = Finished(
                job_id=submit.job_id, elapsed_s=time.perf_counter() - start, metrics=tuple(ctx.metrics)
            )
        except JobCancelled as exc:
            end = Cancelled(job_id=submit.job_id, at_step=exc.at_step)
        except HearthError as exc:
            end = Failed(
                job_id=submit.job_id, kind=exc.kind, message=str(exc), traceback=traceback.format_exc()
            )
        except Exception as exc:  # noqa: BLE001 - the one place every error becomes an event
            end = _failure_from(submit.job_id, exc)
        finally:
            self._current = None
            self._mark_leases_idle()
        log.info("job %s ended: %s", submit.job_id, type(end).__name__)
        if isinstance(end, Failed):
            log.error("job %s failed (%s): %s\n%s", submit.job_id, end.kind.value, end.message, end.traceback)
        self.send(end)

    # -- memory leases --------------------------------------------------------------------

    @property
    def arbiter(self):
        if self._arbiter is None:
            from workers.arbiter.client import ArbiterClient

            self._arbiter = ArbiterClient(owner=f"{self.kind.value}-worker")
        return self._arbiter

    def lease_memory(
        self,
        ctx: JobContext,
        key: str,
        tiers: list[MemoryTier],
        on_release: Callable[[], None],
        can_grow: bool = False,
        in_use: Callable[[], bool] = lambda: False,
    ) -> MemoryTier:
        held = self.leases.get(key)
        if held is not None and (
            _tier_named(tiers, held.lease.tier).bytes > held.lease.bytes
            or held.lease.revoke_requested() is not None
        ):
            # Issue 7: this job needs more than the warm lease covers at its tier (e.g. more
            # frames), or the arbiter asked for the idle lease back just as this job came:
            # give it back and ask anew rather than start on memory that is no longer ours.
            self._drop_lease(key, held)
            held = None
        if held is not None:
            held.lease.set_idle(False)
            held.tiers = tiers  # this job's tiers: revokes must apply its callbacks, not a past job's
            held.in_use = in_use
            return _tier_named(held.tiers, held.lease.tier)
        lease = self._acquire(ctx, key, tiers, can_grow)
        self.leases[key] = HeldLease(
            lease=lease, tiers=tiers, priority=ctx.priority, job=key, on_release=on_release, in_use=in_use
        )
        tier = _tier_named(tiers, lease.tier)
        tier.apply()
        return tier

    def _acquire(self, ctx: JobContext, key: str, tiers: list[MemoryTier], can_grow: bool = False):
        from workers.arbiter.messages import Tier

        self._report_device(force=True)  # without NVML, the arbiter knows the GPU from these
        wire_tiers = [
            Tier(
                name=t.name,
                bytes=int(t.bytes),
                est_step_s=float(t.est_step_s),
                pause_every_s=float(t.pause_every_s),
            )
            for t in tiers
        ]
        # Issue 7: token-by-token models are kept resident in preference (a reload stalls a reply).
        keep_resident = self.kind.value in ("chat", "music")
        return self.arbiter.acquire(
            job=f"{self.kind.value}:{key}",
            priority=ctx.priority,
            tiers=wire_tiers,
            cancelled=ctx.cancel_token.is_set,
            on_wait=ctx.status,
            keep_resident=keep_resident,
            can_grow=can_grow,
        )

    def _drop_lease(self, key: str, held: HeldLease) -> None:
        self._give_back(key, held, answering_revoke=False)

    def _give_back(
        self, key: str, held: HeldLease, *, answering_revoke: bool, resuming: bool = False
    ) -> None:
        """The one way memory goes back: free the weights, forget the cached model (unless this
        job resumes on it), return PyTorch's cached blocks, and only then tell the arbiter, which
        grants the memory again once the device shows it free."""
        held.on_release()
        if not resuming:
            self.cache.drop(key)
        self._return_cached_blocks()
        if answering_revoke:
            held.lease.done_revoke(0, "released")
        else:
            held.lease.release()
        del self.leases[key]

    def _return_cached_blocks(self) -> None:
        """After freeing tensors, hand PyTorch's cached blocks back to the driver, then say so.

        The caching allocator keeps freed memory reserved for this process; until it is
        returned, the device (and the arbiter reading it) rightly shows it in use, and another
        worker granted it would run out of memory.
        """
        torch = _cuda_torch()
        if torch is not None:
            torch.cuda.empty_cache()
            self._report_device(force=True)

    def _report_device(self, force: bool = False) -> None:
        """A ``DeviceReading`` (free/total, this process's reserved bytes), at most once a second."""
        torch = _cuda_torch(initialise=force)
        now = time.monotonic()
        if torch is None or (not force and now - self._reported_at < READING_INTERVAL_S):
            return
        self._reported_at = now
        try:
            free, total = torch.cuda.mem_get_info()
            self.arbiter.report_device(total=total, free=free, used_by_hearth=torch.cuda.memory_reserved())
        except Exception as exc:  # a reading is advice: never fail a job over it
            log.warning("cannot report a device reading: %s", exc)

    def honour_revokes(self, ctx: JobContext) -> None:
        """At a step boundary: shrink to the tier the arbiter asks for, or pause until memory returns."""
        self._wait_while_throttled(ctx)  # issue 7: compute contention
        for key, held in list(self.leases.items()):
            revoke = held.lease.revoke_requested()
            if revoke is None:
                continue
            if held.in_use():  # honoured once the model is free (next boundary, or idle at job end)
                continue
            leaner = [t for t in held.tiers if t.bytes <= revoke.target_bytes]
            if leaner:
                leaner[0].apply()
                self._return_cached_blocks()
                held.lease.done_revoke(leaner[0].bytes, leaner[0].name)
                ctx.status(f"memory reduced: running {leaner[0].name} ({revoke.reason})")
                continue
            self._give_back(key, held, answering_revoke=True, resuming=True)
            ctx.status(f"paused: {revoke.reason}")
            lease = self._acquire(ctx, key, held.tiers, held.lease.can_grow)
            self.leases[key] = dataclasses.replace(held, lease=lease)
            _tier_named(held.tiers, lease.tier).apply()
            ctx.status(f"resumed on {lease.tier}")
        self._take_up_grows(ctx)
        self._audit_leases(ctx)
        self._report_device()

    def _take_up_grows(self, ctx: JobContext) -> None:
        """Memory came back (issue 7): switch to the faster tier set aside for us, or decline."""
        for held in self.leases.values():
            grow = held.lease.grow_offered()
            if grow is None:
                continue
            tier = next((t for t in held.tiers if t.name == grow.tier and t.bytes <= grow.target_bytes), None)
            if tier is None or tier.apply() is False:  # False: the model cannot switch back now
                held.lease.done_grow(held.lease.bytes, held.lease.tier)
                continue
            held.lease.done_grow(tier.bytes, tier.name)
            ctx.status(f"memory back: running {tier.name}")

    def pause_point(self, ctx: JobContext, flush: Callable[[], None] | None = None) -> None:
        """Inside a step (``workers/pause_points.py``): a throttle holds the job here; revokes wait
        for the step boundary, where the activations are freed."""
        if self._throttle_order() is None:
            return
        if flush is not None:
            flush()
        self._wait_while_throttled(ctx)

    # Issue 7 (arbiter policy), added by the arbiter's owner: the helpers below.
    def _throttle_order(self):
        return next((h.lease.throttled() for h in self.leases.values() if h.lease.throttled()), None)

    def _wait_while_throttled(self, ctx: JobContext) -> None:
        """A stronger job (chat, a brush edit) computes: wait here, between steps, keeping memory.

        Bounded by the arbiter's ``max_pause_s`` so background work is never starved for good;
        a revoke or a cancel ends the wait at once.
        """
        order = self._throttle_order()
        if order is None:
            return
        if order is not self._throttle_said:  # once per order, not at every token
            self._throttle_said = order
            ctx.status(order.reason or "paused while an interactive job runs")
        deadline = time.monotonic() + (order.pause_s or order.max_pause_s)
        while (left := deadline - time.monotonic()) > 0 and not ctx.cancel_token.is_set():
            held = list(self.leases.values())
            if not any(h.lease.throttled() for h in held) or any(h.lease.revoke_requested() for h in held):
                break
            time.sleep(min(0.05, left))

    def _audit_leases(self, ctx: JobContext) -> None:
        """After each step: does this worker hold more than its leases? (log error + metrics)."""
        from workers.arbiter.selfcheck import LeaseAudit

        if self._lease_audit is None or self._lease_audit.job_id != ctx.job_id:
            self._lease_audit = LeaseAudit(ctx.job_id)
        self._lease_audit.check(self.leases.values(), ctx.metrics)

    def _honour_idle_revokes(self) -> None:
        for key, held in list(self.leases.items()):
            if held.lease.revoke_requested() is not None:
                self._give_back(key, held, answering_revoke=True)

    def _mark_leases_idle(self) -> None:
        for held in self.leases.values():
            with contextlib.suppress(Exception):
                held.lease.set_idle(True)

    def _release_all(self) -> None:
        """At exit: the process ending frees its memory, so the leases are only ended."""
        for held in self.leases.values():
            with contextlib.suppress(Exception):
                held.lease.release()
        self.leases.clear()
        if self._arbiter is not None:
            self._arbiter.close()


def _cuda_torch(initialise: bool = False):
    """torch, where this process computes on CUDA (already, or from now with ``initialise``)."""
    torch = sys.modules.get("torch")
    if torch is None or os.environ.get("HEARTH_DEVICE", "") == "cpu" or not torch.cuda.is_available():
        return None
    return torch if initialise or torch.cuda.is_initialized() else None


def _tier_named(tiers: list[MemoryTier], name: str) -> MemoryTier:
    for tier in tiers:
        if tier.name == name:
            return tier
    return tiers[-1]


def _failure_from(job_id: str, exc: Exception) -> Failed:
    kind = ErrorKind.out_of_memory if _is_oom(exc) else ErrorKind.internal
    message = f"{type(exc).__name__}: {exc}"
    if kind is ErrorKind.out_of_memory:
        message = f"ran out of device memory: {exc}"
    return Failed(job_id=job_id, kind=kind, message=message, traceback=traceback.format_exc())


def _is_oom(exc: Exception) -> bool:
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch else None
    return (oom is not None and isinstance(exc, oom)) or isinstance(exc, MemoryError)
