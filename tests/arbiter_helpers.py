"""Helpers shared by the arbiter socket tests."""

from __future__ import annotations

import time

REVOKE_DEADLINE_S = 600.0
"""The socket tests' revoke deadline. Pytest itself is a client in them: a holder that misses its
deadline is SIGKILLed, so a short one on a slow machine would kill the whole test run. Longer than
any test's timeout, so a test that forgets a revoke fails on its own instead."""
KILL_DEADLINE_S = 1.0
"""For a test that wants the kill: only its child-process holder may hold a revocable lease then."""


def wait_for(condition, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
