"""``hearth cluster start|join|status|stop``: Ray's own node commands, with Hearth's defaults.

- Token authentication on (``RAY_AUTH_MODE=token``): ``start`` makes a random token in Hearth's
  config folder (mode 0600) unless one is there; every machine that joins, and every Hearth that
  submits, must present it (``--token-file``, or ``RAY_AUTH_TOKEN``). Without it, anyone who can
  reach the head's port can run code on every node.
- Health checks every 0.5 s, 4 misses: a node that dies is noticed in about two seconds (Ray's
  defaults take over fifteen), so its job fails ``node_lost`` promptly.
- No dashboard, no usage statistics.
- ``stop`` ends the Ray processes this Hearth started (they carry its config folder in their
  environment), not every Ray process of the user as ``ray stop`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from workers.arbiter.status import format_snapshot
from workers.errors import HearthError
from workers.paths import config_dir

TOKEN_FILE = "cluster-token"
DEFAULT_PORT = 6379
RAY_SYSTEM_CONFIG = {
    # A lost node is noticed in about two seconds (Ray's defaults take 15 s and more).
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 4,
    # Ray starts its workers at nice 15; a Hearth worker on a node is the user's render, as on
    # their own machine: at 15 it got a few percent of a busy machine's CPU, and took three
    # minutes to import torch where a local worker took ten seconds.
    "worker_niceness": 0,
}
RAY_COMMAND_TIMEOUT_S = 180
OWNER_VARIABLE = "HEARTH_CLUSTER_OWNER"
"""Hearth's config folder, in the environment of the Ray processes it starts: what ``stop`` ends."""
STOP_GRACE_S = 10.0
"""How long Ray's processes get to exit on SIGTERM (as ``ray stop`` gives them) before SIGKILL."""


class ClusterError(HearthError):
    """A cluster command could not do what was asked (Ray missing, a node that would not start)."""


def token_path() -> Path:
    return config_dir() / TOKEN_FILE


def ensure_token(path: Path | None = None) -> Path:
    """The cluster token file, made (random, 256 bits, readable by this user only) if missing."""
    path = Path(path) if path else token_path()
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path


def auth_environment(token_file: Path | None) -> dict[str, str]:
    """What a Ray process needs to speak to a token-protected cluster (empty: no token known)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return {"RAY_AUTH_MODE": "token"}
    if token_file is None:
        token_file = token_path() if token_path().exists() else None
    if token_file is None:
        return {}
    if not Path(token_file).is_file():
        raise ClusterError(
            f"no cluster token at {token_file}: copy it from the machine that ran `hearth cluster start`"
        )
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(Path(token_file).absolute())}


def ray_executable() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise ClusterError(
            "Ray is not installed here: run `make setup-cluster` (pip install 'hearth[cluster]')"
        )
    return found


def _ray(args: list[str], env: dict[str, str]) -> str:
    try:
        done = subprocess.run(
            [ray_executable(), *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=RAY_COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ClusterError(f"`ray {args[0]}` did not finish within {RAY_COMMAND_TIMEOUT_S} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise ClusterError(f"`ray {' '.join(args[:2])}` failed (exit code {done.returncode}):\n{tail}")
    return done.stdout + done.stderr


def _resources(cpus: int | None, gpus: int | None) -> list[str]:
    out = []
    if cpus is not None:
        out.append(f"--num-cpus={cpus}")
    if gpus is not None:
        out.append(f"--num-gpus={gpus}")
    return out


def start_head(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    cpus: int | None = None,
    gpus: int | None = None,
    auth: bool = True,
) -> str:
    """Start a Ray head on this machine; returns the address others join (``HOST:PORT``)."""
    env = auth_environment(ensure_token()) if auth else {"RAY_AUTH_MODE": "disabled"}
    _ray(
        [
            "start",
            "--head",
            f"--port={port}",
            f"--node-ip-address={host}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--system-config={json.dumps(RAY_SYSTEM_CONFIG)}",
            *_resources(cpus, gpus),
        ],
        {**env, **_owner_environment()},
    )
    address = f"{host}:{port}"
    if auth:
        start_agent_here(address)
    return address


def join(
    address: str, *, cpus: int | None = None, gpus: int | None = None, token_file: Path | None = None
) -> None:
    """Make this machine a node of the cluster at ``address``: its GPUs, under its own arbiter."""
    _ray(
        ["start", f"--address={address}", "--disable-usage-stats", *_resources(cpus, gpus)],
        {**auth_environment(token_file), **_owner_environment()},
    )
    start_agent_here(address, token_file)


def start_agent_here(address: str, token_file: Path | None = None) -> list[str]:
    """Start the node agent (the arbiter) of each node on this machine now, so ``status`` shows
    it at once; returns the devices they serve. Agents are detached: each lives as long as its node."""
    transport = connect(address, token_file)
    try:
        import ray

        from workers.cluster.supervisor import agent_for

        here = ray.util.get_node_ip_address()
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["NodeManagerAddress"] == here]
        infos = ray.get([agent_for(node_id).info.remote() for node_id in nodes], timeout=120)
        return [info["device"] for info in infos]
    finally:
        transport.disconnect()


def stop() -> int:
    """Stop the Ray processes that this Hearth started on this machine (the head, or this
    machine's node, with their workers); returns how many. Any other Ray here is left alone,
    where ``ray stop`` would end every Ray process of this user: someone's own Ray work, or
    another Hearth's cluster."""
    import psutil

    ours = [proc for proc in psutil.process_iter() if _started_by_this_hearth(proc)]
    for proc in ours:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(ours, timeout=STOP_GRACE_S)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=STOP_GRACE_S)
    return len(ours)


def _owner_environment() -> dict[str, str]:
    """Inherited by every process of a Ray node that ``start_head`` or ``join`` starts."""
    return {OWNER_VARIABLE: str(config_dir().resolve())}


def _started_by_this_hearth(proc) -> bool:
    import psutil

    try:
        if proc.pid == os.getpid() or proc.uids().real != os.getuid():
            return False
        if proc.environ().get(OWNER_VARIABLE) != _owner_environment()[OWNER_VARIABLE]:
            return False
        command = " ".join(proc.cmdline())
        # Ray's daemons, its Python services and its workers ("ray::..."); not the arbiter a
        # node agent started, which ends on its own once idle.
        return proc.name() in ("raylet", "gcs_server") or "ray::" in command or "/ray/" in command
    except psutil.Error:
        return False


CONNECT_ATTEMPTS = 10
"""GCS connect attempts when joining a cluster (about a second each, longer when refused)."""


TOKEN_REFUSED = "it refused this machine's token (give the head's with --token-file or RAY_AUTH_TOKEN)"
PROBE_TIMEOUT_MS = 10_000
"""An idle head answers in 0.5 s; one busy with two test suites on two cores may take seconds."""


def _refuse_early_if_the_head_refuses_our_token(address: str | None) -> None:
    """Ask the head once, directly, before ``ray.init``: a head that refuses our token says so in
    half a second, where ``ray.init`` retries a refusal as it retries an unreachable head (over
    four minutes on a busy machine). Ray has no public call for this, so it is the GCS client
    ``ray.init`` itself starts with; anything but a refusal is left to ``ray.init``'s attempts."""
    if not address or "://" in address:
        return
    from ray._raylet import InnerGcsClient  # type: ignore[attr-defined]
    from ray.exceptions import AuthenticationError

    try:
        InnerGcsClient.standalone(address, None, PROBE_TIMEOUT_MS)
    except AuthenticationError:
        raise ClusterError(f"cannot reach the Hearth cluster at {address}: {TOKEN_REFUSED}") from None
    except Exception:  # noqa: BLE001, S110 - unreachable or still starting: ray.init decides
        pass


def connect(address: str | None, token_file: Path | None = None):
    """A ``RayTransport`` connected to the cluster at ``address``, with the cluster's token.

    Raises ``ClusterError`` naming the address when the cluster cannot be reached or refuses us.
    """
    # Before Ray is imported: it reads its authentication mode from the environment once.
    os.environ.update(auth_environment(token_file))
    # A head that refuses our token makes each GCS connect attempt wait out its own timeout; Ray's
    # default of ~20 attempts then took over 4 minutes on a busy machine before saying so. Ten
    # attempts (Ray's documented operator budget) still ride out a head that is just starting.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(CONNECT_ATTEMPTS))
    from workers.cluster.supervisor import RayTransport

    _refuse_early_if_the_head_refuses_our_token(address)
    transport = RayTransport(address)
    try:
        transport.connect()
    except (ConnectionError, RuntimeError) as exc:
        text = str(exc.__cause__ or exc)
        if "InvalidAuthToken" in text:
            why = TOKEN_REFUSED
        else:
            why = text.strip().splitlines()[-1][:300]
        raise ClusterError(f"cannot reach the Hearth cluster at {address or 'this machine'}: {why}") from None
    return transport


def status_report(address: str | None, token_file: Path | None = None) -> str:
    """Nodes, their GPUs, their arbiters' ledgers and the Hearth workers (and jobs) on each."""
    transport = connect(address, token_file)  # first: it sets the token before Ray is imported
    import ray

    from workers.arbiter.messages import LedgerSnapshot
    from workers.cluster.actors import NAMESPACE, agent_name
    from workers.codec import decode

    try:
        workers = _workers_by_node(NAMESPACE)
        lines = []
        for node in ray.nodes():
            node_id = node["NodeID"]
            resources = node.get("Resources", {})
            state = "alive" if node.get("Alive") else "dead"
            lines.append(
                f"node {node['NodeManagerHostname']}@{node['NodeManagerAddress']}/{node_id[:8]} ({state}): "
                f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"
            )
            if not node.get("Alive"):
                continue
            try:
                agent = ray.get_actor(agent_name(node_id), namespace=NAMESPACE)
                snapshot = decode(ray.get(agent.snapshot.remote(), timeout=10), expected=LedgerSnapshot)
                lines += ["  " + line for line in format_snapshot(snapshot).splitlines()]
            except (ValueError, ray.exceptions.RayError) as exc:
                lines.append(
                    f"  no Hearth arbiter on this node yet (it starts with the first job): {exc.__class__.__name__}"
                )
            for worker in workers.get(node_id, []):
                job = f"running job {worker['job']}" if worker["job"] else "idle"
                lines.append(f"  {worker['kind']} worker (pid {worker['pid']}): {job}")
            lines.append("")
        return "\n".join(lines).rstrip()
    finally:
        transport.disconnect()


def _workers_by_node(namespace: str) -> dict[str, list[dict]]:
    import ray

    from workers.cluster.actors import WORKER_PREFIX

    found: dict[str, list[dict]] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") != namespace or not entry.get("name", "").startswith(WORKER_PREFIX):
            continue
        with contextlib.suppress(ValueError, ray.exceptions.RayError):
            actor = ray.get_actor(entry["name"], namespace=namespace)
            status = ray.get(actor.status.remote(), timeout=10)
            found.setdefault(status["node_id"], []).append(status)
    return found
