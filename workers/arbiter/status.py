"""``hearth arbiter status``: the ledger as a table a person can read."""

from __future__ import annotations

import sys
from itertools import groupby
from pathlib import Path

from workers.arbiter.messages import LedgerSnapshot
from workers.arbiter.units import format_bytes


def format_snapshot(snapshot: LedgerSnapshot) -> str:
    """Budget, every lease grouped by owner, and the waiting requests with their reasons."""
    s = snapshot
    leased = sum(lease.bytes for lease in s.leases)
    lines = [
        f"device          {s.device or 'unknown'}",
        f"total           {format_bytes(s.total)}",
        f"headroom        {format_bytes(s.headroom)}",
        f"outside Hearth  {format_bytes(s.used_outside)}",
        f"budget          {format_bytes(s.budget)}  (leased {format_bytes(leased)}, "
        f"free {format_bytes(max(0, s.budget - leased - s.returning))}"
        + (f", returning {format_bytes(s.returning)}" if s.returning else "")
        + ")",
        "",
    ]
    if s.leases:
        lines.append(
            f"{'owner':<20} {'pid':>7}  {'job':<22} {'priority':<12} {'memory':>10}  {'tier':<12} state"
        )
        for owner, leases in groupby(
            sorted(s.leases, key=lambda lease: lease.owner), key=lambda lease: lease.owner
        ):
            for lease in leases:
                state = _state(lease)
                lines.append(
                    f"{owner:<20.20} {lease.pid:>7}  {lease.job:<22.22} {lease.priority:<12} "
                    f"{format_bytes(lease.bytes):>10}  {lease.tier:<12.12} {state}"
                )
    else:
        lines.append("no leases")
    if s.waiting:
        lines += ["", "waiting:"]
        for wait in s.waiting:
            lines.append(f"  {wait.owner} / {wait.job} ({wait.priority}): {wait.reason or 'queued'}")
    return "\n".join(lines)


def _state(lease) -> str:
    if lease.revoking:
        return "revoking"
    if lease.idle:
        return "idle"
    return "throttled" if lease.throttled else "active"


def print_status(address: Path | None = None) -> int:
    """Print the running arbiter's status; exit code 1 (with a hint) if none is running.

    Never starts an arbiter: asking for status should not change what is running.
    """
    from workers.arbiter.client import ArbiterClient, ArbiterUnavailable

    try:
        with ArbiterClient("hearth arbiter status", address=address, autostart=False) as client:
            snapshot = client.status()
    except ArbiterUnavailable as exc:
        print(f"{exc} (it starts with the first job that needs memory)", file=sys.stderr)
        return 1
    print(format_snapshot(snapshot))
    return 0
