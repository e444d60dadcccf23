"""The supervisor's second transport: workers as Ray actors, one arbiter per node.

``Supervisor(..., transport=RayTransport("HOST:PORT"))`` builds a ``ClusterSupervisor``: the
same public API, the same events and job store as local worker processes, so the window, the
command line and the HTTP API do not change. What differs is where a job runs:

- every node of the cluster gets an arbiter agent (``NodeAgent``) and, per job kind, one
  ``WorkerActor`` pinned to it (``num_gpus`` is Ray bookkeeping only: the node's arbiter keeps
  the memory truth);
- a job waits in this supervisor's queue (strongest priority first, as locally) until a worker
  of its kind is free; then each free node's arbiter is asked what it could grant now and the
  job goes where it fits best (``workers.cluster.placement``);
- outputs come back through Ray's object store and are written here atomically
  (``workers.cluster.staging``);
- a node that leaves mid-job fails the job with ``node_lost``, naming the node, as soon as Ray
  reports it (about a second with ``hearth cluster start``'s health checks).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from workers.arbiter.messages import LedgerSnapshot, Tier
from workers.cluster.actors import NAMESPACE, WORKER_PREFIX, RemoteNodeAgent, RemoteWorkerActor, agent_name
from workers.cluster.placement import NodeOffer, choose, least_queued, offer
from workers.cluster.staging import local_destination, runs_on_users_machine, write_here
from workers.codec import MalformedMessage, decode, encode
from workers.errors import BadInput, ErrorKind
from workers.jobstore import JobStore
from workers.protocol import (
    Cancel,
    Cancelled,
    Failed,
    Finished,
    Hello,
    JobOrigin,
    JobState,
    JobStatus,
    Output,
    Shutdown,
    Started,
    Submit,
    WorkerEvent,
    WorkerKind,
    WorkerState,
    WorkerStatus,
)
from workers.supervisor import MAX_QUICK_CRASHES, QUICK_CRASH_WINDOW_S, Listener, Supervisor, WorkerHandle

log = logging.getLogger(__name__)

PUMP_WAIT_S = 0.5
"""How long one ``events`` call waits in the actor for something to say."""
RPC_GRACE_S = 10.0
"""Beyond ``PUMP_WAIT_S``, how long an answer may take before the node is looked at."""
TICK_S = 0.25
NODES_EVERY_S = 1.0
"""How often the cluster's membership is read (nodes joining; nodes gone without a word)."""
SNAPSHOT_TIMEOUT_S = 5.0
OUTPUT_FETCH_S = 120.0
DEATH_CONFIRM_S = 5.0
"""After an actor call fails: how long to wait for Ray to say whether its node is gone."""


class RayTransport:
    """Where the workers live: a Ray cluster at ``address`` ("HOST:PORT", "auto" or None)."""

    def __init__(self, address: str | None = None, *, init_options: dict | None = None) -> None:
        self.address = address
        self.init_options = dict(init_options or {})
        self._connected_here = False

    @property
    def supervisor_class(self) -> type[Supervisor]:
        return ClusterSupervisor

    def connect(self) -> None:
        if ray.is_initialized():
            return
        ray.init(
            address=self.address or "auto",
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level=logging.WARNING,
            **self.init_options,
        )
        self._connected_here = True

    def disconnect(self) -> None:
        if self._connected_here and ray.is_initialized():
            ray.shutdown()
        self._connected_here = False


@dataclass(eq=False)
class NodeHandle:
    node_id: str
    name: str
    ip: str
    local: bool
    gpus: float
    agent: Any = None
    """The node's arbiter agent (a Ray actor handle)."""
    alive: bool = True


@dataclass(eq=False)
class RemoteWorker:
    node: NodeHandle
    kind: WorkerKind
    actor: Any = None
    """The worker's Ray actor handle."""
    status: WorkerStatus = WorkerStatus.starting
    pid: int = 0
    current: Submit | None = None
    alive: bool = True
    crash_times: list[float] = field(default_factory=list)
    thread: threading.Thread | None = None


class ClusterSupervisor(Supervisor):
    """``Supervisor``'s API over Ray actors on every node of a cluster."""

    def __init__(
        self,
        kinds: Iterable[WorkerKind] = tuple(WorkerKind),
        store: JobStore | None = None,
        listener: Listener | None = None,
        restore_queue: bool = True,
        transport: RayTransport | None = None,
    ) -> None:
        from workers.paths import database_path

        if transport is None:
            raise TypeError("a ClusterSupervisor needs a RayTransport")
        self._kinds = tuple(WorkerKind(k) for k in kinds)
        self._store = store or JobStore(database_path())
        self._listeners: list[Listener] = [listener] if listener else []
        self._restore_queue = restore_queue
        self._workers = {kind: WorkerHandle(kind) for kind in self._kinds}  # the queue of each kind
        self._lock = threading.RLock()
        self._stopping = False
        self._monitor: threading.Thread | None = None
        self._transport = transport
        self._nodes: dict[str, NodeHandle] = {}
        self._remote: list[RemoteWorker] = []
        self._joining: set[str] = set()
        self._tiers: dict[tuple[str, str], tuple[Tier, ...]] = {}
        self._local_node = ""
        self.job_nodes: dict[str, str] = {}
        """Job id -> the name of the node it was sent to."""
        self._destinations: dict[str, Path] = {}  # each job's first output here (a batch's names follow it)
        self.traffic: dict[str, int] = {}
        """Bytes of outputs received through the object store, per job kind."""

    # -- public API -----------------------------------------------------------------------

    def start(self) -> None:
        self._transport.connect()
        self._local_node = ray.get_runtime_context().get_node_id()
        for node in _alive_nodes():
            self._join(node)
        self._monitor = threading.Thread(target=self._watch, name="cluster-supervisor", daemon=True)
        self._monitor.start()
        if self._restore_queue:
            for record in self._store.claim_unfinished():
                if record.request is not None and record.request.kind in self._workers:
                    self._enqueue(
                        Submit(job_id=record.job_id, request=record.request, priority=record.priority)
                    )

    def submit(self, request, priority=None, origin=JobOrigin.window) -> str:
        if runs_on_users_machine(request) and self._local_node not in self._nodes:
            raise BadInput(
                "this job reads or writes files on this machine, which is not a node of the cluster: "
                "run `hearth cluster join` here first"
            )
        return super().submit(request, priority, origin)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            for handle in self._workers.values():
                queued = next((s for s in handle.queue if s.job_id == job_id), None)
                if queued is not None:
                    handle.queue.remove(queued)
                    self._finish(handle, Cancelled(job_id=job_id, at_step=-1))
                    return
            worker = self._running(job_id)
        if worker is not None:
            self._send(worker, Cancel(job_id=job_id))

    def worker_states(self) -> dict[WorkerKind, WorkerState]:
        order = (WorkerStatus.ready, WorkerStatus.busy, WorkerStatus.starting, WorkerStatus.crashed)
        with self._lock:
            states = {}
            for kind in self._kinds:
                mine = [w for w in self._remote if w.kind is kind and w.alive]
                status = next((s for s in order if any(w.status is s for w in mine)), WorkerStatus.stopped)
                local = next((w for w in mine if w.node.local), mine[0] if mine else None)
                detail = f"{len(mine)} node(s): " + ", ".join(f"{w.node.name} {w.status.value}" for w in mine)
                states[kind] = WorkerState(
                    kind=kind, status=status, pid=local.pid if local else 0, detail=detail
                )
            return states

    def worker_pid(self, kind: WorkerKind) -> int:
        return self.worker_states()[WorkerKind(kind)].pid

    def wait_ready(self, timeout: float = 60.0, kinds: Iterable[WorkerKind] | None = None) -> bool:
        """True once every live node's worker of each kind has said Hello."""
        wanted = [WorkerKind(k) for k in (kinds or self._kinds)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                workers = [w for w in self._remote if w.kind in wanted and w.alive]
                kinds_up = {w.kind for w in workers}
                if (
                    not self._joining
                    and set(wanted) <= kinds_up
                    and all(w.status in (WorkerStatus.ready, WorkerStatus.busy) for w in workers)
                ):
                    return True
            time.sleep(0.05)
        return False

    def node_status(self) -> list[dict]:
        """Every node: its name, GPUs, arbiter ledger, workers and the jobs running there."""
        with self._lock:
            nodes = [n for n in self._nodes.values() if n.alive]
            workers = list(self._remote)
        ledgers = self._snapshots(nodes)
        out = []
        for node in nodes:
            mine = [w for w in workers if w.node is node and w.alive]
            out.append(
                {
                    "node_id": node.node_id,
                    "name": node.name,
                    "ip": node.ip,
                    "local": node.local,
                    "gpus": node.gpus,
                    "ledger": ledgers.get(node.node_id),
                    "workers": {w.kind.value: w.status.value for w in mine},
                    "jobs": [w.current.job_id for w in mine if w.current is not None],
                }
            )
        return out

    def node_ledgers(self) -> dict[str, LedgerSnapshot]:
        """The memory panel's data: each node's ledger, by node name."""
        return {n["name"]: n["ledger"] for n in self.node_status() if n["ledger"] is not None}

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
            workers = [w for w in self._remote if w.alive]
            for worker in workers:
                if worker.current is not None:
                    self._send(worker, Cancel(job_id=worker.current.job_id))
                self._send(worker, Shutdown())
        if ray.is_initialized():  # (never connected: nothing to stop, and no Ray to start by asking)
            stops = [w.actor.stop.remote(timeout) for w in workers]
            with contextlib.suppress(RayError, GetTimeoutError):
                ray.get(stops, timeout=timeout + 5)
        self._end(workers)

    def stop_now(self) -> None:
        self.terminate_workers()
        with self._lock:
            workers = list(self._remote)
        self._end(workers)
        for worker in workers:
            if worker.current is not None:
                self._store.set_state(worker.current.job_id, JobState.cancelled)

    def terminate_workers(self) -> None:
        self._stopping = True
        for worker in list(self._remote):
            with contextlib.suppress(Exception):
                ray.kill(worker.actor, no_restart=True)

    def _end(self, workers: list[RemoteWorker]) -> None:
        for worker in workers:
            worker.alive = False
            with contextlib.suppress(Exception):
                ray.kill(worker.actor, no_restart=True)
        for worker in workers:
            if worker.thread is not None and worker.thread is not threading.current_thread():
                worker.thread.join(PUMP_WAIT_S + 2)
            worker.status = WorkerStatus.stopped
        monitor = self._monitor
        if monitor is not None and monitor is not threading.current_thread():
            monitor.join(2)
        self._transport.disconnect()

    # -- nodes ----------------------------------------------------------------------------

    def _join(self, info: dict) -> None:
        """Start a node's agent (or find it) and this supervisor's workers there."""
        node_id = info["NodeID"]
        with self._lock:
            if node_id in self._nodes or node_id in self._joining or self._stopping:
                return
            self._joining.add(node_id)
        try:
            agent = agent_for(node_id)
            described = ray.get(agent.info.remote(), timeout=60)
            gpus = float(info.get("Resources", {}).get("GPU", 0))
            node = NodeHandle(
                node_id=node_id,
                name=f"{described['hostname']}@{info['NodeManagerAddress']}/{node_id[:8]}",
                ip=info["NodeManagerAddress"],
                local=node_id == self._local_node,
                gpus=gpus,
                agent=agent,
            )
        except RayError as exc:
            log.warning("node %s could not start Hearth's arbiter agent: %s", node_id[:8], exc)
            with self._lock:
                self._joining.discard(node_id)
            return
        with self._lock:
            self._joining.discard(node_id)
            if self._stopping:
                return
            self._nodes[node_id] = node
            for kind in self._kinds:
                self._spawn(node, kind)
        log.info("node %s joined (%s)", node.name, described["device"])

    # The local Supervisor's worker methods take a WorkerHandle; here a worker is a RemoteWorker
    # on a node, so these overrides take that instead (the base class never calls them).
    def _spawn(self, node: NodeHandle, kind: WorkerKind) -> RemoteWorker:  # type: ignore[override]
        # Ray's GPU count is bookkeeping: a share per kind so the workers land on the node's first
        # GPU (the one its arbiter watches) and Ray leaves CUDA_VISIBLE_DEVICES pointing at it.
        share = 1.0 / len(self._kinds) if node.gpus >= 1 else 0
        actor = RemoteWorkerActor.options(
            name=f"{WORKER_PREFIX}{kind.value}-{node.node_id[:8]}-{uuid.uuid4().hex[:8]}",
            namespace=NAMESPACE,
            num_cpus=0,
            num_gpus=share,
            max_concurrency=4,
            max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node.node_id, soft=False),
        ).remote(kind.value)
        worker = RemoteWorker(node=node, kind=kind, actor=actor)
        previous = next((w for w in self._remote if w.node is node and w.kind is kind), None)
        if previous is not None:
            worker.crash_times = previous.crash_times
            self._remote.remove(previous)
        self._remote.append(worker)
        worker.thread = threading.Thread(
            target=self._pump, args=(worker,), name=f"cluster-{kind.value}-{node.node_id[:8]}", daemon=True
        )
        worker.thread.start()
        self._emit(WorkerState(kind=kind, status=WorkerStatus.starting, detail=f"on {node.name}"))
        return worker

    def _watch(self) -> None:
        last_nodes = 0.0
        while not self._stopping:
            time.sleep(TICK_S)
            if self._stopping:
                return
            now = time.monotonic()
            if now - last_nodes >= NODES_EVERY_S:
                last_nodes = now
                self._check_membership()
            with self._lock:
                waiting = [h for h in self._workers.values() if h.queue]
            for handle in waiting:  # memory may have come free on some node
                self._dispatch(handle)

    def _check_membership(self) -> None:
        try:
            alive = {n["NodeID"]: n for n in _alive_nodes()}
        except Exception as exc:  # noqa: BLE001 - the head itself is unreachable: try again next tick
            log.warning("cannot read the cluster's nodes: %s", exc)
            return
        with self._lock:
            gone = [n for n in self._nodes.values() if n.alive and n.node_id not in alive]
            new = [info for node_id, info in alive.items() if node_id not in self._nodes]
        for node in gone:
            self._node_lost(node, "it left the cluster")
        for info in new:
            threading.Thread(target=self._join, args=(info,), name="cluster-join", daemon=True).start()

    def _node_lost(self, node: NodeHandle, why: str) -> None:
        with self._lock:
            if not node.alive:
                return
            node.alive = False
            self._nodes.pop(node.node_id, None)
            lost = [w for w in self._remote if w.node is node]
            for worker in lost:
                worker.alive = False
                self._remote.remove(worker)
                if worker.current is not None and not self._stopping:
                    message = (
                        f"node_lost: node {node.name} was lost during this job ({why}); "
                        "nothing of it was written on this machine"
                    )
                    self._end_job(
                        worker,
                        Failed(job_id=worker.current.job_id, kind=ErrorKind.node_lost, message=message),
                    )
                self._emit(
                    WorkerState(kind=worker.kind, status=WorkerStatus.stopped, detail=f"{node.name} lost")
                )
        log.warning("node %s lost: %s", node.name, why)
        for handle in list(self._workers.values()):
            self._dispatch(handle)

    # -- workers --------------------------------------------------------------------------

    def _pump(self, worker: RemoteWorker) -> None:
        """Carry the actor's events to the supervisor, and notice when it (or its node) dies."""
        while not self._stopping and worker.alive:
            try:
                batch = ray.get(worker.actor.events.remote(PUMP_WAIT_S), timeout=PUMP_WAIT_S + RPC_GRACE_S)
            except GetTimeoutError:
                continue  # a slow answer: the membership check sees a dead node
            except RayError as exc:
                if not self._stopping and worker.alive:
                    self._worker_lost(worker, exc)
                return
            for data, extra in batch:
                try:
                    event = decode(data, expected=WorkerEvent)
                except MalformedMessage as exc:
                    self._emit(WorkerState(kind=worker.kind, status=worker.status, detail=str(exc)))
                    continue
                if isinstance(event, Output) and "file" in extra:
                    try:
                        event = self._receive(worker, event, extra)
                    except RayError as exc:  # the node went while its file was on the way
                        if not self._stopping and worker.alive:
                            self._worker_lost(worker, exc)
                        return
                    except OSError as exc:
                        self._end_job(
                            worker,
                            Failed(
                                job_id=event.job_id,
                                kind=ErrorKind.internal,
                                message=f"could not write the output here: {exc}",
                            ),
                        )
                        continue
                if extra.get("tiers") and worker.current is not None:
                    request = worker.current.request
                    self._tiers[_tier_key(request)] = tuple(
                        Tier(name=name, bytes=size, est_step_s=step) for name, size, step in extra["tiers"]
                    )
                self._on_event(worker, event)

    def _receive(self, worker: RemoteWorker, event: Output, extra: dict) -> Output:
        """Fetch a finished file from the object store and write it here, atomically."""
        submit = worker.current
        request = submit.request if submit is not None and submit.job_id == event.job_id else None
        first = self._destinations.get(event.job_id)
        destination = local_destination(request, event.job_id, event.path, first)
        self._destinations.setdefault(event.job_id, destination)
        data = ray.get(extra["file"], timeout=OUTPUT_FETCH_S)
        sidecar = ray.get(extra["sidecar"], timeout=OUTPUT_FETCH_S) if "sidecar" in extra else None
        write_here(destination, data, sidecar)
        kind = worker.kind.value
        self.traffic[kind] = self.traffic.get(kind, 0) + extra.get("bytes", len(data))
        return Output(job_id=event.job_id, path=str(destination), media_type=event.media_type)

    def _worker_lost(self, worker: RemoteWorker, exc: Exception) -> None:
        node = worker.node
        deadline = time.monotonic() + DEATH_CONFIRM_S
        while time.monotonic() < deadline:
            try:
                if node.node_id not in {n["NodeID"] for n in _alive_nodes()}:
                    self._node_lost(node, "Ray reports the node dead")
                    return
            except Exception:  # noqa: BLE001 - the head is unreachable too: count the node lost
                self._node_lost(node, "the cluster's head does not answer")
                return
            time.sleep(0.2)
        with self._lock:
            if not worker.alive:
                return
            worker.alive = False
            worker.status = WorkerStatus.crashed
            if worker.current is not None:
                message = (
                    f"the {worker.kind.value} worker on node {node.name} stopped unexpectedly during "
                    f"this job ({type(exc).__name__}); it has been restarted"
                )
                self._end_job(
                    worker,
                    Failed(job_id=worker.current.job_id, kind=ErrorKind.worker_crashed, message=message),
                )
            now = time.monotonic()
            worker.crash_times = [t for t in worker.crash_times if now - t < QUICK_CRASH_WINDOW_S] + [now]
            if len(worker.crash_times) > MAX_QUICK_CRASHES or self._stopping or not node.alive:
                self._emit(
                    WorkerState(
                        kind=worker.kind,
                        status=WorkerStatus.crashed,
                        detail=f"the {worker.kind.value} worker on {node.name} keeps crashing; see its log",
                    )
                )
                return
            self._spawn(node, worker.kind)

    def _running(self, job_id: str) -> RemoteWorker | None:
        return next((w for w in self._remote if w.current is not None and w.current.job_id == job_id), None)

    def _send(self, worker: RemoteWorker, command: object) -> None:  # type: ignore[override]
        with contextlib.suppress(RayError):
            worker.actor.command.remote(encode(command))

    # -- jobs -----------------------------------------------------------------------------

    def _dispatch(self, handle: WorkerHandle) -> None:
        """Send queued jobs of ``handle.kind`` to the free workers whose nodes fit them best."""
        with self._lock:
            while handle.queue and not self._stopping:
                submit = handle.queue[0]
                pinned = runs_on_users_machine(submit.request)
                mine = [
                    w
                    for w in self._remote
                    if w.kind is handle.kind and w.alive and (w.node.local or not pinned)
                ]
                free = [w for w in mine if w.status is WorkerStatus.ready and w.current is None]
                if not free:
                    return
                offers = self._offers(submit, [w.node for w in free])
                chosen = choose(offers, submit.priority)
                if chosen is None:
                    if any(w.status in (WorkerStatus.busy, WorkerStatus.starting) for w in mine):
                        return  # a worker that frees up (or memory coming back) is worth the wait
                    chosen = least_queued(offers) or NodeOffer(
                        node_id=free[0].node.node_id,
                        name=free[0].node.name,
                        local=free[0].node.local,
                        tier_index=None,
                        tier="",
                        free_bytes=0,
                        budget=0,
                        queued=0,
                    )
                worker = next(w for w in free if w.node.node_id == chosen.node_id)
                handle.queue.popleft()
                worker.current, worker.status = submit, WorkerStatus.busy
                self.job_nodes[submit.job_id] = worker.node.name
                self._send(worker, submit)
                self._emit(JobStatus(job_id=submit.job_id, message=f"sent to node {worker.node.name}"))
                self._emit(
                    WorkerState(
                        kind=worker.kind, status=WorkerStatus.busy, pid=worker.pid, detail=worker.node.name
                    )
                )

    def _offers(self, submit: Submit, nodes: list[NodeHandle]) -> list[NodeOffer]:
        snapshots = self._snapshots(nodes)
        tiers = self._tiers.get(_tier_key(submit.request))
        running: dict[str, int] = {}
        for worker in self._remote:
            if worker.current is not None:
                running[worker.node.node_id] = running.get(worker.node.node_id, 0) + 1
        return [
            offer(
                node.node_id,
                node.name,
                snapshots[node.node_id],
                tiers,
                local=node.local,
                running_here=running.get(node.node_id, 0),
            )
            for node in nodes
            if node.node_id in snapshots
        ]

    def _snapshots(self, nodes: list[NodeHandle]) -> dict[str, LedgerSnapshot]:
        """Each node's ledger, asked of all at once; a node that does not answer is left out."""
        refs = {node.node_id: node.agent.snapshot.remote() for node in nodes}
        out = {}
        for node_id, ref in refs.items():
            try:
                out[node_id] = decode(ray.get(ref, timeout=SNAPSHOT_TIMEOUT_S), expected=LedgerSnapshot)
            except (RayError, GetTimeoutError, MalformedMessage) as exc:
                log.warning("node %s did not give its ledger: %s", node_id[:8], exc)
        return out

    def _on_event(self, worker: RemoteWorker, event: object) -> None:  # type: ignore[override]
        with self._lock:
            if self._stopping or not worker.alive:
                return  # as locally: after shutdown began, nothing is recorded
            match event:
                case Hello(pid=pid):
                    worker.status, worker.pid = WorkerStatus.ready, pid
                    self._emit(
                        WorkerState(kind=worker.kind, status=worker.status, pid=pid, detail=worker.node.name)
                    )
                    self._dispatch(self._workers[worker.kind])
                case Started(job_id=job_id):
                    self._store.set_state(job_id, JobState.running)
                    self._emit(event)
                case Output(job_id=job_id, path=path):
                    self._store.add_output(job_id, path)
                    self._emit(event)
                case Finished() | Cancelled() | Failed():
                    self._end_job(worker, event)
                case _:
                    self._emit(event)

    def _end_job(self, worker: RemoteWorker, event: Finished | Cancelled | Failed) -> None:
        with self._lock:
            if worker.current is None or worker.current.job_id != event.job_id:
                return  # already ended here (its output could not be written, its node was lost)
            worker.current = None
            self._destinations.pop(event.job_id, None)
            if worker.status is WorkerStatus.busy:
                worker.status = WorkerStatus.ready
                self._emit(
                    WorkerState(
                        kind=worker.kind, status=worker.status, pid=worker.pid, detail=worker.node.name
                    )
                )
            self._finish(self._workers[worker.kind], event)

    def _finish(self, handle: WorkerHandle, event: Finished | Cancelled | Failed) -> None:
        match event:
            case Finished():
                self._store.set_state(event.job_id, JobState.finished)
            case Cancelled():
                self._store.set_state(event.job_id, JobState.cancelled)
            case Failed():
                self._store.set_state(event.job_id, JobState.failed, event.kind.value, event.message)
        self._emit(event)
        self._dispatch(handle)


def agent_for(node_id: str):
    """The node's arbiter agent: found by name, or started there (detached: it is the node's
    arbiter for every Hearth that uses the cluster, and lives as long as the node)."""
    return RemoteNodeAgent.options(
        name=agent_name(node_id),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=8,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote()


def _tier_key(request: object) -> tuple[str, str]:
    return type(request).__name__, str(getattr(request, "model", ""))


def _alive_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]
