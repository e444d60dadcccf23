"""How long a supervisor takes to have its workers ready, and to have one back after it crashed:
workers forked from the warm forkserver (what Hearth does) against spawned ones
(``HEARTH_WORKER_START=spawn``, a fresh interpreter importing torch and diffusers each time).

Each variant runs in a new interpreter with its own Hearth folders on a simulated device, so each
pays its own first import; the restarts after a SIGKILL are what a crash costs the user.

    python bench/worker_start.py            # the image worker, 3 restarts
    python bench/worker_start.py --kind chat --restarts 5
    python bench/worker_start.py --quick    # one restart
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit, in_fresh_process  # noqa: E402


def start_and_restart(kind: str, restarts: int) -> dict:
    """Runs in the fresh process: the first start, then each restart after a SIGKILL."""
    from workers.protocol import WorkerKind, WorkerStatus
    from workers.supervisor import Supervisor

    def ready_after(supervisor: Supervisor, since: float, old_pid: int | None) -> float:
        while True:
            state = supervisor.worker_states()[WorkerKind(kind)]
            if state.status == WorkerStatus.ready and state.pid != old_pid:
                return time.monotonic() - since
            time.sleep(0.01)

    supervisor = Supervisor(kinds=[WorkerKind(kind)], restore_queue=False)
    began = time.monotonic()
    supervisor.start()
    try:
        first = ready_after(supervisor, began, None)
        again = []
        for _ in range(restarts):
            pid = supervisor.worker_states()[WorkerKind(kind)].pid
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            again.append(ready_after(supervisor, killed, pid))
    finally:
        supervisor.shutdown()
    return {"first_ready_s": round(first, 2), "restart_s": round(statistics.median(again), 3)}


def run_variant(kind: str, restarts: int, start_method: str) -> dict:
    root = Path(tempfile.mkdtemp(prefix="hearth-bench-start-"))
    folders = {
        f"HEARTH_{name.upper()}_DIR": str(root / name) for name in ("data", "config", "runtime", "log")
    }
    saved = dict(os.environ)
    os.environ.update(folders, HEARTH_ARBITER_DEVICE="sim:4GiB", HEARTH_WORKER_START=start_method)
    try:
        return in_fresh_process("bench.worker_start:start_and_restart", kind=kind, restarts=restarts)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="image", choices=["image", "chat", "video", "music"])
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one restart (make bench-quick)")
    args = parser.parse_args()
    if args.quick:
        args.restarts = 1
    forked = run_variant(args.kind, args.restarts, "forkserver")
    spawned = run_variant(args.kind, args.restarts, "spawn")
    emit(
        "worker_start",
        config={"kind": args.kind, "restarts": args.restarts},
        ours={key: forked[key] for key in ("first_ready_s", "restart_s")},
        baseline={key: spawned[key] for key in ("first_ready_s", "restart_s")},
        ratio={
            "restart_speedup": round(spawned["restart_s"] / forked["restart_s"], 1),
            "first_ready": round(forked["first_ready_s"] / spawned["first_ready_s"], 2),
        },
    )


if __name__ == "__main__":
    main()
