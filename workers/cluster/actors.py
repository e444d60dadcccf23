"""The two actors Hearth places on every node: the node's arbiter agent and its workers.

``NodeAgent`` (one per node, detached, named ``hearth-node-<node id>``) owns that node's VRAM
arbiter: it serves the same ``ArbiterServer`` and ``Ledger`` as ``python -m workers.arbiter``, on
the node's usual socket and simulated or real device (``HEARTH_ARBITER_DEVICE`` of that node),
in a thread of its own process, so the arbiter dies with the node. Where an arbiter already
serves that socket (a Hearth window open on that machine), the agent uses it instead: one
authority per GPU, whoever asks. Supervisors ask the agent for the ledger (placement, the memory
panel, ``hearth cluster status``).

``WorkerActor`` (one per job kind per node and supervisor) hosts the unchanged
``WorkerRuntime``: commands and events travel as the codec's JSON bytes through a ``QueuePipe``
instead of a process pipe, leases come from the node's arbiter, every step is a cancel and
revoke point exactly as in a local worker process. Finished files travel back through Ray's
object store (``workers.cluster.staging``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import socket
import tempfile
import threading
import traceback
from pathlib import Path

import ray

from workers.arbiter.address import arbiter_running, socket_path
from workers.arbiter.client import ArbiterClient
from workers.arbiter.device import device_from_env
from workers.arbiter.ledger import Ledger
from workers.arbiter.server import ArbiterServer, _parse_args, acquire_instance_lock
from workers.arbiter.units import parse_bytes
from workers.arbiter.user_config import ConfigWatcher
from workers.cluster.pipe import QueuePipe
from workers.cluster.staging import sidecar_of, staged_request
from workers.codec import decode, encode
from workers.protocol import (
    Cancelled,
    Command,
    Failed,
    Finished,
    Output,
    Started,
    Submit,
    WorkerEvent,
    WorkerKind,
)
from workers.runtime import WorkerRuntime, prepare_worker_process

log = logging.getLogger(__name__)

NAMESPACE = "hearth"
AGENT_PREFIX = "hearth-node-"
WORKER_PREFIX = "hearth-worker-"


def agent_name(node_id: str) -> str:
    return f"{AGENT_PREFIX}{node_id}"


class NodeAgent:
    """The node's arbiter, and the ledger it answers with."""

    def __init__(self) -> None:
        self.node_id = ray.get_runtime_context().get_node_id()
        self.address = socket_path()
        self._server: ArbiterServer | None = None
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        if not arbiter_running(self.address):
            self._serve_arbiter()
        self._client = ArbiterClient("cluster node agent", address=self.address, autostart=False)

    def _serve_arbiter(self) -> None:
        fd = acquire_instance_lock(self.address)
        if fd is None:  # another arbiter took the socket meanwhile: use that one
            return
        # The same settings as ``python -m workers.arbiter`` started on this node: its environment.
        args = _parse_args([])
        ledger = Ledger(
            device_from_env(args.device),
            headroom=parse_bytes(args.headroom),
            revoke_deadline_s=args.revoke_deadline,
            aging_s=args.aging,
            grow_settle_s=args.grow_settle,
        )
        server = ArbiterServer(ledger, self.address, user_config=ConfigWatcher())
        server.listen()
        self._server, self._lock_fd = server, fd
        self._thread = threading.Thread(target=server.serve_forever, name="arbiter", daemon=True)
        self._thread.start()

    def info(self) -> dict:
        snapshot = self._client.status()
        resources = ray.get_runtime_context().get_assigned_resources()
        return {
            "node_id": self.node_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "device": snapshot.device,
            "arbiter": str(self.address),
            "owns_arbiter": self._server is not None,
            "assigned": resources,
        }

    def snapshot(self) -> bytes:
        """The node's ledger as the codec's bytes (a ``LedgerSnapshot``)."""
        return encode(self._client.status())

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()
        if self._server is not None:
            self._server.stop()
            if self._thread is not None:
                self._thread.join(timeout=5)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class _ActorRuntime(WorkerRuntime):
    """The worker runtime, noting each job's memory tiers for the placement of the next one."""

    def __init__(self, kind: WorkerKind, conn: QueuePipe) -> None:
        super().__init__(kind, conn)
        self.job_tiers: dict[str, list[tuple[str, int, float]]] = {}

    def lease_memory(self, ctx, key, tiers, on_release, can_grow=False, in_use=lambda: False):
        self.job_tiers[ctx.job_id] = [(t.name, int(t.bytes), float(t.est_step_s)) for t in tiers]
        return super().lease_memory(ctx, key, tiers, on_release, can_grow=can_grow, in_use=in_use)


class WorkerActor:
    """One worker of one kind on one node: the runtime in a thread, its pipe behind methods."""

    def __init__(self, kind: str) -> None:
        prepare_worker_process(kind)
        self.kind = WorkerKind(kind)
        self.pipe = QueuePipe()
        self.staging = Path(tempfile.mkdtemp(prefix=f"hearth-{kind}-staging-"))
        self.current: tuple[str, int] | None = None
        self.failure = ""
        self.runtime = _ActorRuntime(self.kind, self.pipe)
        self._thread = threading.Thread(target=self._serve, name=f"hearth-{kind}-runtime", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self.runtime.serve()
        except BaseException:  # noqa: BLE001 - reported to the supervisor as this worker's crash
            self.failure = traceback.format_exc()
            log.error("the %s worker actor stopped: %s", self.kind.value, self.failure)

    # -- commands in --------------------------------------------------------------------------

    def command(self, data: bytes) -> None:
        """A ``Submit``, ``Cancel`` or ``Shutdown``; a submitted job's output goes to staging."""
        command = decode(data, expected=Command)
        if isinstance(command, Submit):
            request = staged_request(command.request, command.job_id, self.staging)
            data = encode(dataclasses.replace(command, request=request))
        self.pipe.put_command(data)

    # -- events out ---------------------------------------------------------------------------

    def events(self, timeout: float) -> list[tuple[bytes, dict]]:
        """What the runtime said since the last call, each with what travels beside it: an
        output's bytes as object-store references, the job's memory tiers at its end."""
        if self.failure and not self._thread.is_alive():
            raise RuntimeError(f"the {self.kind.value} worker stopped:\n{self.failure}")
        out = []
        for data in self.pipe.take_events(timeout):
            event = decode(data, expected=WorkerEvent)
            extra: dict = {}
            match event:
                case Started(job_id=job_id):
                    self.current = (job_id, -1)
                case Output(path=path):
                    extra = self._ship(Path(path))
                case Finished() | Cancelled() | Failed():
                    self.current = None
                    tiers = self.runtime.job_tiers.pop(event.job_id, None)
                    if tiers:
                        extra = {"tiers": tiers}
            out.append((data, extra))
        return out

    def _ship(self, path: Path) -> dict:
        """Put a staged output (and its sidecar) in the object store, then drop the staged copy."""
        if path.parent != self.staging:  # a path of the user's own machine (a local-only job)
            return {}
        sidecar = sidecar_of(path)
        extra = {"file": ray.put(path.read_bytes()), "bytes": path.stat().st_size}
        if sidecar.exists():
            extra["sidecar"] = ray.put(sidecar.read_bytes())
            extra["bytes"] += sidecar.stat().st_size
            sidecar.unlink()
        path.unlink()
        return extra

    def status(self) -> dict:
        return {
            "kind": self.kind.value,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "job": self.current[0] if self.current else "",
            "alive": self._thread.is_alive(),
        }

    def stop(self, timeout: float) -> bool:
        """After a ``Shutdown``: wait for the runtime to release its leases, then drop staging."""
        self._thread.join(timeout)
        shutil.rmtree(self.staging, ignore_errors=True)
        return not self._thread.is_alive()


RemoteNodeAgent = ray.remote(NodeAgent)
RemoteWorkerActor = ray.remote(WorkerActor)
