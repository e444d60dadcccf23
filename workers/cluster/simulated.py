"""A Ray cluster of simulated Hearth nodes on one machine, for the tests and ``bench/cluster.py``.

``ray.cluster_utils.Cluster`` starts a real head and real worker nodes (their own raylets and
object stores) as processes of this machine. Each node here gets its own Hearth folders and its
own simulated device (``HEARTH_ARBITER_DEVICE=sim:...``), so it runs its own arbiter, exactly as
a second machine would. The head is the user's machine: it keeps this process's folders.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from workers.arbiter.address import socket_path
from workers.cluster.actors import NAMESPACE
from workers.cluster.control import RAY_SYSTEM_CONFIG

NODE_DIRS = ("HEARTH_DATA_DIR", "HEARTH_RUNTIME_DIR", "HEARTH_LOG_DIR", "HEARTH_CONFIG_DIR")


@dataclass
class SimulatedNode:
    name: str
    node: object
    """``ray._private.node.Node``: what ``Cluster.remove_node`` takes."""
    node_id: str
    arbiter: Path
    """The node's arbiter socket (a test may hold memory there, as another program would)."""


@dataclass
class SimulatedCluster:
    cluster: Cluster
    address: str
    nodes: list[SimulatedNode]

    def kill(self, node: SimulatedNode) -> None:
        """SIGKILL the node's raylet and every process of it, as a machine losing power would."""
        self.cluster.remove_node(node.node, allow_graceful=False)


def _node_env(root: Path, name: str, device: str, extra: dict[str, str]) -> dict[str, str]:
    env = {
        var: str(root / name / var.removeprefix("HEARTH_").removesuffix("_DIR").lower()) for var in NODE_DIRS
    }
    for folder in env.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    env["HEARTH_ARBITER_SOCKET"] = str(root / name / "runtime" / "arbiter.sock")
    env["HEARTH_ARBITER_DEVICE"] = device
    return {**env, **extra}


@contextlib.contextmanager
def simulated_cluster(
    root: Path, devices: Sequence[str], *, env: dict[str, str] | None = None, cpus: int = 1
) -> Iterator[SimulatedCluster]:
    """A head (``devices[0]``, this process's folders) and one node per further device."""
    extra = dict(env or {})
    head_env = {"HEARTH_ARBITER_DEVICE": devices[0], **extra}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": cpus,
            "include_dashboard": False,
            "env_vars": head_env,
            "_system_config": RAY_SYSTEM_CONFIG,
        },
    )
    try:
        nodes = [SimulatedNode("head", cluster.head_node, cluster.head_node.node_id, socket_path())]
        for index, device in enumerate(devices[1:], start=1):
            name = f"node{index}"
            node_env = _node_env(Path(root), name, device, extra)
            node = cluster.add_node(num_cpus=cpus, env_vars=node_env)
            nodes.append(SimulatedNode(name, node, node.node_id, Path(node_env["HEARTH_ARBITER_SOCKET"])))
        cluster.wait_for_nodes()
        simulated = SimulatedCluster(cluster=cluster, address=cluster.address, nodes=nodes)
        start_agents(simulated)
        yield simulated
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def start_agents(simulated: SimulatedCluster) -> None:
    """Start every node's arbiter agent now (detached), so the first job does not wait for them."""
    from workers.cluster.supervisor import agent_for

    ray.init(address=simulated.address, namespace=NAMESPACE, log_to_driver=False, logging_level="WARNING")
    try:
        ray.get([agent_for(node.node_id).info.remote() for node in simulated.nodes], timeout=120)
    finally:
        ray.shutdown()
