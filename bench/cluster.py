"""Hearth on one node against two: the arbiter bench's mixed trace, with a queue of background
renders placed across nodes, and the real per-job cost of the Ray transport.

1. Simulation (``bench/arbiter_sim``, the real ``Ledger`` on each node, the real placement of
   ``workers/cluster/placement.py``): the user's machine runs the mixed trace of
   ``bench/arbiter.py`` (chat, a burst of brush edits, two music clips, a foreign program
   growing), and ``--renders`` background video renders arrive at the cluster's queue. One video
   worker per node, as in ``ClusterSupervisor``: a render waits until a node's worker is free,
   then goes where that node's arbiter could grant the fastest tier, most free memory first.
   The second node is another 16 GiB machine with its own desktop (1.5 GiB used), no person
   at it. Reported for 1 and 2 nodes:
   - ``background_throughput``: solo-render-equivalents per unit of time (the solo seconds of
     the finished renders over the time from the first arrival to the last finish: one node
     rendering alone at full speed all the time is 1.0),
   - ``interactive_slo``: chat turns and brush edits on target, as in ``bench/arbiter.py``,
   - each node's out-of-memory errors, where the renders ran, and the placement step's own
     cost (wall time of asking every node's ledger and choosing, per decision).
   Twelve seeds (six with ``--quick``), mean / min / max, besides the one trace.
2. Real processes (skipped with ``--sim-only``): a tiny image job (1 step, 64x64, demo model)
   through local worker processes and through a Ray actor on a one-node Ray cluster on this
   machine, both warm and up at once, their jobs alternating; median submit-to-finished of
   ``--jobs`` jobs each, and the bytes a job moved through the object store.

    python bench/cluster.py --quick     # CPU: simulation in seconds, the Ray part in a minute or two
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arbiter_sim.engine import Gpu, Sim  # noqa: E402
from bench.arbiter_sim.workloads import (  # noqa: E402
    CONTEXT_BYTES,
    DEVICE_TOTAL,
    FOREIGN_START,
    READING_LAG_S,
    VIDEO,
    Render,
    Trace,
    make_trace,
)
from bench.arbiter_sim.world import Stats, World, slo_met  # noqa: E402
from bench.harness import emit  # noqa: E402
from workers.arbiter.device import SimulatedDevice  # noqa: E402
from workers.arbiter.ledger import Ledger  # noqa: E402
from workers.arbiter.units import GiB  # noqa: E402
from workers.cluster.placement import choose, least_queued, offer  # noqa: E402
from workers.protocol import Priority  # noqa: E402

SEEDS = range(1, 13)
QUICK_SEEDS = range(1, 7)
CHUNK_S = 50.0
RENDER_GAP_S = 30.0
"""Background renders arrive this far apart (a person queueing a batch of clips)."""


class NodeWorld(World):
    """One node of the simulated cluster: its own GPU, device and ledger, on the shared clock."""

    def __init__(self, sim: Sim, trace: Trace, apps: tuple[str, ...], *, name: str, growing: bool) -> None:
        self.policy, self.trace, self.name = "ours", trace, name
        self.sim = sim
        self.gpu = Gpu(sim)
        self.device = SimulatedDevice(
            DEVICE_TOTAL,
            context_bytes_per_process=CONTEXT_BYTES,
            reading_lag_s=READING_LAG_S,
            foreign_bytes=FOREIGN_START,
            clock=sim,
        )
        self.stats = Stats()
        self.foreign = growing
        self.ledger = Ledger(self.device, clock=sim, lease_prefix=f"{name}-")
        self._by_name = {}
        self.clients = {app: self._client(app, pid) for pid, app in enumerate(apps, start=101)}

    def begin(self, renders: list[Render]) -> None:
        """``World.run`` without running the clock: the cluster runs it for every node at once."""
        self.sim.at(0.0, self._tick)
        if "chat" in self.clients:
            self.sim.start(self.chat_app())
        if "image" in self.clients:
            self.sim.start(self.brush_app())
        for render in renders:
            self.sim.start(self.render_app(render))
        if self.foreign:
            self.sim.start(self.foreign_app())


@dataclass
class Placed:
    render: Render
    node: str = ""
    started: float = 0.0
    finished: float = float("inf")


@dataclass
class ClusterRun:
    nodes: list[NodeWorld]
    placed: list[Placed] = field(default_factory=list)
    decisions_s: list[float] = field(default_factory=list)


def run_cluster(trace: Trace, backgrounds: list[Render], node_count: int, limit_s: float) -> ClusterRun:
    sim = Sim()
    local = NodeWorld(sim, trace, ("chat", "image", "video", "music"), name="local", growing=True)
    nodes = [local] + [
        NodeWorld(sim, trace, ("video",), name=f"node{i}", growing=False) for i in range(1, node_count)
    ]
    run = ClusterRun(nodes=nodes)
    waiting: deque[Placed] = deque()
    busy: dict[str, bool] = {node.name: False for node in nodes}
    tiers = VIDEO.wire()

    def dispatch() -> None:
        while waiting:
            free = [node for node in nodes if not busy[node.name]]
            if not free:
                return
            began = time.perf_counter()
            offers = [
                offer(n.name, n.name, n.ledger.snapshot(), tiers, local=n is local, running_here=0)
                for n in free
            ]
            chosen = choose(offers, Priority.background)
            if chosen is None and len(free) < len(nodes):
                run.decisions_s.append(time.perf_counter() - began)
                return  # as ClusterSupervisor: a busy worker freeing up is worth the wait
            chosen = chosen or least_queued(offers)
            run.decisions_s.append(time.perf_counter() - began)
            node = next(n for n in nodes if n.name == chosen.node_id)
            placed = waiting.popleft()
            placed.node, placed.started = node.name, sim.now
            busy[node.name] = True
            sim.start(render_on(node, placed))

    def render_on(node: NodeWorld, placed: Placed):
        yield from node.render_app(replace(placed.render, at=0.0))
        if node.stats.renders[placed.render.label] != float("inf"):
            placed.finished = sim.now
        busy[node.name] = False
        dispatch()

    def arrive(placed: Placed) -> None:
        waiting.append(placed)
        dispatch()

    for render in backgrounds:
        placed = Placed(render)
        run.placed.append(placed)
        sim.at(render.at, lambda p=placed: arrive(p))
    local.begin([r for r in trace.renders if r.app != "video"])
    for node in nodes[1:]:
        node.begin([])
    # The ledgers tick every 0.1 s for ever: stop once the mixed trace is over and every render is.
    until = trace.horizon_s
    while until < limit_s and any(p.finished == float("inf") for p in run.placed):
        sim.run(until)
        until += CHUNK_S
    sim.run(until)
    return run


_SOLO: dict[int, float] = {}


def _solo(steps: int) -> float:
    """A render's seconds alone on a node (its fastest tier, nothing else running)."""
    if steps not in _SOLO:
        render = Render("video", 0.0, steps, "solo")
        trace = Trace(seed=0, horizon_s=steps * VIDEO.tiers[0].step_s * 3)
        _SOLO[steps] = World("ours", trace, ("video",), foreign=False).run([render]).renders["solo"]
    return _SOLO[steps]


def background_renders(trace: Trace, count: int) -> list[Render]:
    video = next(r for r in trace.renders if r.app == "video")
    return [
        Render("video", video.at + i * RENDER_GAP_S, video.steps, f"render {i + 1}") for i in range(count)
    ]


def summarise(trace: Trace, count: int, node_count: int) -> dict:
    backgrounds = background_renders(trace, count)
    solo = _solo(backgrounds[0].steps)
    run = run_cluster(trace, backgrounds, node_count, limit_s=trace.horizon_s + count * 4 * solo)
    done = [p for p in run.placed if p.finished != float("inf")]
    span = max(p.finished for p in done) - backgrounds[0].at if done else float("inf")
    chat_ok, edits_ok, interactive = slo_met(run.nodes[0].stats)
    return {
        "background_throughput": round(len(done) * solo / span, 4) if done else 0.0,
        "renders_finished": f"{len(done)}/{count}",
        "makespan_s": round(span, 1),
        "interactive_slo": round((chat_ok + edits_ok) / interactive, 4),
        "renders_on": {node.name: sum(1 for p in run.placed if p.node == node.name) for node in run.nodes},
        "ooms": {node.name: len(node.stats.ooms) for node in run.nodes},
        "placement_decisions": len(run.decisions_s),
        "placement_us_per_decision": round(statistics.mean(run.decisions_s) * 1e6, 1)
        if run.decisions_s
        else 0.0,
    }


def across_seeds(count: int, quick: bool) -> dict:
    seeds = QUICK_SEEDS if quick else SEEDS
    out = {"seeds": f"{seeds.start}-{seeds.stop - 1}"}
    for nodes in (1, 2):
        results = [summarise(make_trace(seed, quick=quick), count, nodes) for seed in seeds]
        out[f"{nodes}_node"] = {
            key: {
                "mean": round(statistics.mean(r[key] for r in results), 4),
                "min": round(min(r[key] for r in results), 4),
                "max": round(max(r[key] for r in results), 4),
            }
            for key in ("background_throughput", "interactive_slo")
        }
    one, two = out["1_node"]["background_throughput"]["mean"], out["2_node"]["background_throughput"]["mean"]
    out["background_throughput_2_vs_1"] = round(two / one, 3) if one else None
    return out


# -- the real transport ----------------------------------------------------------------------------


def _tiny_job(supervisor, events, out: Path) -> tuple[float, float]:
    """(submit to Finished, submit to Started) of one tiny image job, in seconds."""
    from workers.protocol import Finished, ImageRequest, Started

    began = time.perf_counter()
    started = 0.0
    job = supervisor.submit(
        ImageRequest(prompt="a dot", steps=1, out_path=str(out)), priority=Priority.interactive
    )
    while True:
        event = events.get(timeout=600)
        if getattr(event, "job_id", None) != job:
            continue
        if isinstance(event, Started):
            started = time.perf_counter() - began
        if type(event).__name__ in ("Finished", "Cancelled", "Failed"):
            assert isinstance(event, Finished), event
            return time.perf_counter() - began, started


def transport_overhead(jobs: int) -> dict:
    """Both supervisors up and warm at once, their jobs alternating: the machine's load (two
    shared cores) falls on both alike."""
    import queue

    from workers.cluster.simulated import simulated_cluster
    from workers.cluster.supervisor import RayTransport
    from workers.protocol import WorkerKind
    from workers.supervisor import Supervisor

    root = Path(tempfile.mkdtemp(prefix="hearth-bench-cluster-"))
    for var in ("HEARTH_DATA_DIR", "HEARTH_CONFIG_DIR", "HEARTH_RUNTIME_DIR", "HEARTH_LOG_DIR"):
        os.environ[var] = str(root / var.lower())
    os.environ.setdefault("HEARTH_MODELS_DIR", str(root / "models"))
    os.environ["HEARTH_ARBITER_SOCKET"] = str(root / "hearth_runtime_dir" / "arbiter.sock")
    os.environ["HEARTH_ARBITER_DEVICE"] = "sim:2GiB"
    # Ray starts its workers with one OpenMP thread; local workers get the same, or the two
    # shared cores' contention (docs/FIELD-NOTES.md §0) would be measured instead of the transport.
    os.environ["OMP_NUM_THREADS"] = "1"
    out = root / "out"
    out.mkdir()
    times: dict[str, list[tuple[float, float]]] = {"local": [], "ray": []}
    local_events: queue.Queue = queue.Queue()
    local = Supervisor(kinds=[WorkerKind.image], listener=local_events.put, restore_queue=False)
    local.start()
    try:
        assert local.wait_ready(timeout=600)
        _tiny_job(local, local_events, out / "warm-local.png")  # builds the demo model once
        with simulated_cluster(root / "nodes", ["sim:2GiB"]) as cluster:
            ray_events: queue.Queue = queue.Queue()
            remote = Supervisor(
                kinds=[WorkerKind.image],
                listener=ray_events.put,
                restore_queue=False,
                transport=RayTransport(cluster.address),
            )
            remote.start()
            try:
                assert remote.wait_ready(timeout=600)
                _tiny_job(remote, ray_events, out / "warm-ray.png")
                for index in range(jobs):
                    times["local"].append(_tiny_job(local, local_events, out / f"local-{index}.png"))
                    times["ray"].append(_tiny_job(remote, ray_events, out / f"ray-{index}.png"))
                traffic = remote.traffic.get("image", 0) / (jobs + 1)
            finally:
                remote.shutdown()
    finally:
        local.shutdown()
    local_s, ray_s = (statistics.median(t for t, _ in times[k]) for k in ("local", "ray"))
    local_start, ray_start = (statistics.median(s for _, s in times[k]) for k in ("local", "ray"))
    return {
        "jobs": jobs,
        "local_median_s": round(local_s, 4),
        "ray_median_s": round(ray_s, 4),
        "ray_overhead_ms": round((ray_s - local_s) * 1000, 1),
        "local_submit_to_started_ms": round(local_start * 1000, 1),
        "ray_submit_to_started_ms": round(ray_start * 1000, 1),
        "local_all_s": [round(t, 4) for t, _ in times["local"]],
        "ray_all_s": [round(t, 4) for t, _ in times["ray"]],
        "object_store_bytes_per_image_job": int(traffic),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short trace (the default on CPU)")
    parser.add_argument("--gpu", action="store_true", help="same simulation; printed for bench/gpu.sh")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--renders", type=int, default=8, help="background renders queued on the cluster")
    parser.add_argument("--jobs", type=int, default=9, help="tiny image jobs per transport (the Ray part)")
    parser.add_argument("--sim-only", action="store_true", help="leave out the real Ray part")
    args = parser.parse_args(argv)
    quick = args.quick or not args.gpu
    trace = make_trace(args.seed, quick=quick)
    one, two = summarise(trace, args.renders, 1), summarise(trace, args.renders, 2)
    print(f" 1 node: {one}\n 2 nodes: {two}", file=sys.stderr)
    seeds = across_seeds(args.renders, quick)
    print(f"  seeds: {seeds}", file=sys.stderr)
    transport = None if args.sim_only else transport_overhead(args.jobs)
    if transport:
        print(f"  transport: {transport}", file=sys.stderr)
    config = {
        "trace": trace.describe(),
        "background_renders": f"{args.renders} video renders ({VIDEO.tiers[0].name} {VIDEO.tiers[0].bytes / GiB:g} GiB "
        f"fastest tier), {RENDER_GAP_S:g} s apart, one video worker per node",
        "nodes": "the user's machine (the whole mixed trace, a foreign program growing) + N-1 idle 16 GiB machines",
        "simulated": "discrete-event simulation driving the real Ledger per node and the real placement",
        "background_throughput": "solo seconds of finished renders / (last finish - first arrival)",
        "across_seeds": seeds,
        "transport": "tiny image job (1 step, 64x64, demo-sd), warm workers with one OpenMP thread each, "
        "jobs alternating between the two transports, submit to Finished (and to Started), median",
    }
    ratio = {
        "background_throughput_2_vs_1": round(two["background_throughput"] / one["background_throughput"], 3)
        if one["background_throughput"]
        else None,
        "interactive_slo_2_vs_1": round(two["interactive_slo"] / one["interactive_slo"], 3)
        if one["interactive_slo"]
        else None,
        "ray_vs_local_per_job": round(transport["ray_median_s"] / transport["local_median_s"], 3)
        if transport
        else None,
    }
    emit(
        "cluster",
        config,
        {"2_nodes": two, "transport_ray": transport},
        {"1_node": one},
        ratio,
        device=f"simulated {DEVICE_TOTAL / GiB:.0f} GiB GPUs (simulation); the transport part on this machine's CPU",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
