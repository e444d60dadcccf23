"""``hearth cluster start|join|status|stop`` and ``hearth run ... --cluster ADDRESS``.

Ray is an optional extra: nothing here imports it (or ``workers.cluster``) until a cluster
command runs, so ``hearth --help`` and every other command work without it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED = 0, 1
NO_RAY = "Ray is not installed here: run `make setup-cluster` (or pip install 'hearth[cluster]')"


def add_cluster(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True)
    start = actions.add_parser(
        "start",
        help="start a cluster head on this machine (its GPUs join too)",
        description="Start a Ray head on this machine, with token authentication on. Ray listens on "
        "every interface of this machine: keep its ports behind your router or firewall.",
    )
    start.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the head announces (default 127.0.0.1: this machine only)",
    )
    start.add_argument("--port", type=int, default=6379, help="the head's port (default 6379)")
    start.add_argument(
        "--no-auth", action="store_true", help="no token (only for a cluster nothing else can reach)"
    )
    _add_resources(start)
    join = actions.add_parser("join", help="offer this machine's GPUs to a cluster")
    join.add_argument("address", help="the head's HOST:PORT, as `hearth cluster start` printed it")
    _add_resources(join)
    _add_token(join)
    status = actions.add_parser("status", help="nodes, their GPUs, their arbiters' ledgers, running jobs")
    status.add_argument(
        "--address", default=None, help="the head's HOST:PORT (default: the one on this machine)"
    )
    _add_token(status)
    actions.add_parser("stop", help="stop this machine's part of the cluster (Ray's processes here)")


def _add_resources(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpus", type=int, default=None, help="CPU cores to offer (default: all)")
    p.add_argument("--gpus", type=int, default=None, help="GPUs to offer (default: all Ray finds)")


def _add_token(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="the cluster's token (default: Hearth's config folder, or $RAY_AUTH_TOKEN)",
    )


def add_cluster_option(p: argparse.ArgumentParser) -> None:
    """``hearth run KIND --cluster ADDRESS``: run the job on a cluster's nodes."""
    p.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help="run on the Hearth cluster at HOST:PORT (needs the cluster extra; see `hearth cluster`)",
    )
    _add_token(p)


def transport_for(address: str | None, token_file: Path | None = None):
    """The supervisor transport for ``--cluster`` (None: local worker processes)."""
    if not address:
        return None
    try:
        from workers.cluster.control import ClusterError, connect
    except ImportError:
        raise SystemExit(f"hearth: error: {NO_RAY}") from None
    try:
        return connect(address, token_file)
    except ClusterError as exc:
        raise SystemExit(f"hearth: error: {exc}") from None


def run_cluster(args: argparse.Namespace) -> int:
    try:
        from workers.cluster import control
    except ImportError:
        print(f"hearth: error: {NO_RAY}", file=sys.stderr)
        return EXIT_FAILED
    try:
        match args.action:
            case "start":
                address = control.start_head(
                    args.host, args.port, cpus=args.cpus, gpus=args.gpus, auth=not args.no_auth
                )
                print(f"cluster head started at {address}")
                if not args.no_auth:
                    print(f"token: {control.token_path()} (copy it to each machine that joins)")
                print(f"on another machine: hearth cluster join {address} --token-file PATH")
            case "join":
                control.join(args.address, cpus=args.cpus, gpus=args.gpus, token_file=args.token_file)
                print(f"this machine joined the cluster at {args.address}")
            case "status":
                print(control.status_report(args.address, args.token_file))
            case "stop":
                if control.stop():
                    print("stopped this machine's cluster processes")
                else:
                    print("no cluster processes of this Hearth run here (Ray started otherwise: `ray stop`)")
    except control.ClusterError as exc:
        print(f"hearth: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
