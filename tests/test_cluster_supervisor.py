"""Hearth on a real two-node Ray cluster on this machine: each node its own simulated device and
arbiter, the image worker an actor on each, jobs through the normal supervisor API.

The cluster and the supervisor run in one driver process for the module (this file, run as
``python -m tests.test_cluster_supervisor DIR``), because a Ray driver keeps gRPC sockets open
until its process exits: in pytest's own process the hygiene checks would rightly count them.
The driver reports the supervisor's events (codec JSON) and answers commands, one JSON line
each; the tests hold node memory themselves, through each node's arbiter socket, as another
program on that machine would. The head is "the user's machine", node1 "the second machine";
the last test kills node1. Collected only when the optional Ray extra is installed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from tests.arbiter_helpers import wait_for
from tests.supervisor_helpers import Recorder
from workers.arbiter.client import ArbiterClient
from workers.arbiter.messages import LedgerSnapshot, Tier
from workers.cluster.placement import free_for_new_work
from workers.codec import decode, encode
from workers.errors import ErrorKind
from workers.protocol import Cancelled, Failed, Finished, ImageRequest, JobStatus, Output, Priority, Progress

NODE_LOST_WITHIN_S = 10.0
"""Ray's health checks as ``hearth cluster start`` sets them (0.5 s, 4 misses) notice a dead node
in about two seconds; a loaded two-core machine gets slack, Ray's defaults (15 s+) would fail."""
LONG_STEPS = 500  # demo-sd at 64x64: many seconds of steps, time to act mid-render
MARK = "@@ "
DRIVER_ENV = {"HEARTH_ARBITER_REVOKE_DEADLINE": "600"}
"""Pytest holds leases as "another program": no arbiter may ever kill it over a revoke."""


class Driver:
    """The driver process: commands in, replies and supervisor events out."""

    def __init__(self, root: Path) -> None:
        self.log = root / "driver.log"
        self._log_file = open(self.log, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.test_cluster_supervisor", str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            cwd=Path(__file__).resolve().parents[1],
            text=True,
        )
        self.recorder = Recorder()
        self._replies: dict[int, queue.Queue] = {}
        self._ready: queue.Queue = queue.Queue()
        self._ids = itertools.count()
        self._reader = threading.Thread(target=self._read, name="cluster-driver-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if not line.startswith(MARK):
                continue
            msg = json.loads(line[len(MARK) :])
            if "event" in msg:
                self.recorder(decode(msg["event"]))
            elif "reply" in msg:
                self._replies.pop(msg["reply"]).put(msg)
            elif "ready" in msg:
                self._ready.put(msg)
        self._ready.put({"ready": False, "error": "the driver exited"})

    def wait_ready(self, timeout: float) -> dict:
        try:
            return self._ready.get(timeout=timeout)
        except queue.Empty:
            return {"ready": False, "error": f"no answer in {timeout} s"}

    def ask(self, op: str, timeout: float = 60, **fields) -> dict:
        ident = next(self._ids)
        answer: queue.Queue = queue.Queue()
        self._replies[ident] = answer
        self.process.stdin.write(json.dumps({"id": ident, "op": op, **fields}) + "\n")
        self.process.stdin.flush()
        reply = answer.get(timeout=timeout)
        assert "error" not in reply, reply["error"]
        return reply

    def submit(self, request: ImageRequest, priority: Priority | None = None) -> str:
        return self.ask("submit", request=encode(request).decode(), priority=priority and priority.value)[
            "job_id"
        ]

    def node_of(self, job_id: str) -> str:
        return self.ask("job", job_id=job_id)["node"]

    def node_of_head(self) -> str:
        """The head's name as the supervisor gives it."""
        return next(n["name"] for n in self.ask("status")["nodes"] if n["local"])

    def ledgers(self) -> dict[str, LedgerSnapshot]:
        nodes = self.ask("status")["nodes"]
        return {n["name"]: decode(n["ledger"], expected=LedgerSnapshot) for n in nodes if n["ledger"]}

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(queue.Empty, OSError, AssertionError):
                self.ask("quit", timeout=120)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdin.close()
        self._reader.join(10)
        self.process.stdout.close()
        self._log_file.close()


@pytest.fixture(scope="module")
def driver(isolated_hearth_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    driver = Driver(root)
    try:
        ready = driver.wait_ready(timeout=280)
        assert ready.get("ready"), f"the cluster did not start: {ready}; see {driver.log}"
        driver.nodes = {n["name"]: n for n in ready["nodes"]}
        yield driver
    finally:
        driver.close()
    leftover = [p for p in psutil.process_iter(["name", "environ"]) if _ours(p, str(root))]
    assert not leftover, f"Ray processes outlived the cluster: {leftover}"


def _ours(proc: psutil.Process, root: str) -> bool:
    try:
        return proc.info["name"] in ("raylet", "gcs_server") and any(
            root in value for value in (proc.info["environ"] or {}).values()
        )
    except psutil.Error:
        return False


class Holder:
    """Another program on a node, holding memory through that node's arbiter."""

    def __init__(self, socket: str) -> None:
        self.client = ArbiterClient("test: another program", address=Path(socket), autostart=False)

    def hold(self, keep_free: int = 0):
        held = max(1, free_for_new_work(self.client.status()) - keep_free)
        return self.client.acquire(
            "another program", Priority.interactive, [Tier(name="all", bytes=held)], timeout=30
        )

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def holder_on(driver):
    made: list[Holder] = []

    def make(node: str) -> Holder:
        made.append(Holder(driver.nodes[node]["arbiter"]))
        return made[-1]

    yield make
    for holder in made:
        holder.close()


def test_a_background_image_goes_to_the_node_with_most_free_memory_and_lands_here(
    driver, holder_on, tmp_path
):
    holder_on("head").hold(keep_free=512 * 1024 * 1024)  # the user's machine: most of its memory taken
    out = tmp_path / "apple.png"
    job = driver.submit(
        ImageRequest(prompt="a red apple", steps=3, seed=7, out_path=str(out)), Priority.background
    )
    events = driver.recorder.job(job, timeout=240)

    assert isinstance(events[-1], Finished), events[-1]
    assert driver.nodes["node1"]["node_id"][:8] in driver.node_of(job), "placed where memory is most free"
    assert [e.path for e in events if isinstance(e, Output)] == [str(out)]
    with Image.open(out) as image:
        assert image.size == (64, 64)
        params = json.loads(image.info["hearth"])
    assert (params["prompt"], params["steps"], params["seed"]) == ("a red apple", 3, 7)
    assert json.loads(out.with_name("apple.png.json").read_text())["seed"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apple.png", "apple.png.json"]
    assert driver.ask("job", job_id=job)["traffic"]["image"] >= out.stat().st_size  # via the object store
    # The memory panel's data: both nodes' ledgers; node1's holds the image model, idle and warm.
    ledgers = driver.ledgers()
    assert len(ledgers) == 2
    node1 = next(s for name, s in ledgers.items() if driver.nodes["node1"]["node_id"][:8] in name)
    assert [(lease.job, lease.idle) for lease in node1.leases] == [("image:sd:demo-sd", True)]


def test_an_interactive_job_stays_on_the_users_machine_when_it_fits(driver, tmp_path):
    job = driver.submit(
        ImageRequest(prompt="a pear", steps=2, out_path=str(tmp_path / "p.png")), Priority.interactive
    )
    assert isinstance(driver.recorder.job_end(job, timeout=240), Finished)
    assert driver.nodes["head"]["node_id"][:8] in driver.node_of(job)
    assert (tmp_path / "p.png").is_file()


def test_when_the_users_machine_is_full_the_job_goes_to_the_other_node(driver, holder_on, tmp_path):
    holder_on("head").hold()  # everything the head's arbiter could grant
    job = driver.submit(ImageRequest(prompt="a plum", steps=2, out_path=str(tmp_path / "plum.png")))
    assert isinstance(driver.recorder.job_end(job, timeout=240), Finished)
    assert driver.nodes["node1"]["node_id"][:8] in driver.node_of(job)
    assert (tmp_path / "plum.png").is_file()


def test_cancel_of_a_remote_job_ends_cancelled_and_gives_its_memory_back(driver, holder_on, tmp_path):
    holder_on("head").hold()
    out = tmp_path / "long.png"
    job = driver.submit(ImageRequest(prompt="a long one", steps=LONG_STEPS, out_path=str(out)))
    driver.recorder.wait_for(lambda e: isinstance(e, Progress) and e.job_id == job, timeout=240)
    assert driver.nodes["node1"]["node_id"][:8] in driver.node_of(job)

    driver.ask("cancel", job_id=job)
    end = driver.recorder.job_end(job, timeout=60)
    assert isinstance(end, Cancelled) and 0 < end.at_step < LONG_STEPS, end
    assert driver.ask("job", job_id=job)["state"] == "cancelled"
    assert list(tmp_path.iterdir()) == []
    # node1's arbiter keeps no active lease for it: another program there is granted all of it.
    node1 = holder_on("node1")
    wait_for(
        lambda: all(lease.idle for lease in node1.client.status().leases), timeout=15, what="idle leases"
    )
    budget = node1.client.status().budget
    lease = node1.client.acquire(
        "another program", Priority.interactive, [Tier(name="all", bytes=budget)], timeout=30
    )
    assert lease.bytes == budget
    lease.release()


def test_the_remote_nodes_arbiter_revokes_its_lease_at_a_step_boundary_and_the_job_resumes(driver, holder_on):
    holder_on("head").hold()
    job = driver.submit(ImageRequest(prompt="patient", steps=LONG_STEPS))
    driver.recorder.wait_for(lambda e: isinstance(e, Progress) and e.job_id == job, timeout=240)
    assert driver.nodes["node1"]["node_id"][:8] in driver.node_of(job)

    # Someone at node1 needs all of its memory now: node1's arbiter revokes the render's lease.
    node1 = holder_on("node1")
    budget = node1.client.status().budget
    lease = node1.client.acquire(
        "another program", Priority.interactive, [Tier(name="all", bytes=budget)], timeout=60
    )
    paused = driver.recorder.wait_for(lambda e: isinstance(e, JobStatus) and e.job_id == job, timeout=60)
    assert paused.message.startswith("paused")
    lease.release()
    driver.recorder.wait_for(
        lambda e: isinstance(e, JobStatus) and e.job_id == job and e.message.startswith("resumed"), timeout=60
    )
    driver.recorder.wait_for(lambda e: isinstance(e, Progress) and e.job_id == job, timeout=60)
    driver.ask("cancel", job_id=job)
    assert isinstance(driver.recorder.job_end(job, timeout=60), Cancelled)


def test_killing_the_remote_node_mid_render_fails_the_job_node_lost_with_nothing_written(
    driver, holder_on, tmp_path
):
    holder_on("head").hold()
    out = tmp_path / "lost.png"
    job = driver.submit(ImageRequest(prompt="doomed", steps=LONG_STEPS, out_path=str(out)))
    driver.recorder.wait_for(lambda e: isinstance(e, Progress) and e.job_id == job, timeout=240)
    node = driver.node_of(job)
    assert driver.nodes["node1"]["node_id"][:8] in node

    killed_at = time.monotonic()
    driver.ask("kill", node="node1")
    end = driver.recorder.job_end(job, timeout=60)
    took = time.monotonic() - killed_at

    assert isinstance(end, Failed) and end.kind is ErrorKind.node_lost, end
    assert node in end.message and "node_lost" in end.message
    assert took < NODE_LOST_WITHIN_S, f"node_lost after {took:.1f} s"
    assert driver.ask("job", job_id=job)["state"] == "failed"
    assert list(tmp_path.iterdir()) == [], "nothing half-written here"
    assert [n["name"] for n in driver.ask("status")["nodes"]] == [driver.node_of_head()]


# -- the driver process ---------------------------------------------------------------------------


def _driver_main(root: Path) -> None:
    from workers.cluster.simulated import simulated_cluster
    from workers.cluster.supervisor import RayTransport
    from workers.protocol import WorkerKind
    from workers.supervisor import Supervisor

    lock = threading.Lock()

    def say(msg: dict) -> None:
        with lock:
            sys.stdout.write(MARK + json.dumps(msg) + "\n")
            sys.stdout.flush()

    with simulated_cluster(root, ["sim:2GiB", "sim:2GiB"], env=DRIVER_ENV) as cluster:
        supervisor = Supervisor(
            kinds=[WorkerKind.image],
            listener=lambda event: say({"event": encode(event).decode()}),
            restore_queue=False,
            transport=RayTransport(cluster.address),
        )
        supervisor.start()
        try:
            nodes = [{"name": n.name, "node_id": n.node_id, "arbiter": str(n.arbiter)} for n in cluster.nodes]
            say({"ready": supervisor.wait_ready(timeout=240), "nodes": nodes})
            for line in sys.stdin:
                command = json.loads(line)
                try:
                    reply = _answer(supervisor, cluster, command)
                except Exception as exc:  # noqa: BLE001 - the test shows it
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                say({"reply": command["id"], **reply})
                if command["op"] == "quit":
                    break
        finally:
            supervisor.shutdown()


def _answer(supervisor, cluster, command: dict) -> dict:
    match command["op"]:
        case "submit":
            priority = Priority(command["priority"]) if command.get("priority") else None
            return {"job_id": supervisor.submit(decode(command["request"]), priority)}
        case "cancel":
            supervisor.cancel(command["job_id"])
            return {}
        case "kill":
            cluster.kill(next(n for n in cluster.nodes if n.name == command["node"]))
            return {}
        case "status":
            nodes = supervisor.node_status()
            return {
                "nodes": [
                    {**n, "ledger": encode(n["ledger"]).decode() if n["ledger"] else None} for n in nodes
                ]
            }
        case "job":
            record = supervisor.store.get(command["job_id"])
            return {
                "node": supervisor.job_nodes.get(command["job_id"], ""),
                "traffic": supervisor.traffic,
                "state": record.state.value if record else "",
            }
        case "quit":
            return {}
    raise ValueError(f"unknown command {command['op']!r}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _driver_main(Path(sys.argv[1]))
