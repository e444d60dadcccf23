"""``hearth ARGS`` run in pytest's own process: its exit code and what it printed.

Its workers fork from the session's warm forkserver (``tests/conftest.py``), where a fresh
``python -m app`` would first spend seconds of CPU importing torch and diffusers. What only a
separate process shows (signals, a terminal, the interpreter's exit) stays with
``tests/cli_process.py``.
"""

from __future__ import annotations

import contextlib
import io
import subprocess

import pytest

from app.cli import main


def hearth_in_process(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``main(argv)`` with ``env`` set for the run (Hearth's own variables: the forkserver keeps
    the environment it started with, and anything else would make the worker a fresh spawn)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in (env or {}).items():
            assert key.startswith("HEARTH_"), f"{key}: only Hearth's variables are read when used"
            patch.setenv(key, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())
