"""A real ``hearth`` command in a subprocess, started in its own session as a terminal starts it,
its stdout and stderr read as they come so a test can wait for a line instead of the clock."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
EVENT_TIMEOUT_S = 240.0
"""Generous: on a loaded two-core machine a first run builds the demo models before its first step."""
EXIT_TIMEOUT_S = 120.0


def hearth_env(**overrides: str) -> dict[str, str]:
    """The test's Hearth folders (set by conftest) on a simulated 8 GiB device."""
    env = dict(os.environ, HEARTH_ARBITER_DEVICE="sim:8GiB", PYTHONUNBUFFERED="1")
    env.update(overrides)
    return env


class HearthProcess:
    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, script: Path | None = None, **popen
    ) -> None:
        """``hearth ARGS`` (``python -m app``), or ``script`` when given."""
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        command = [str(script)] if script else ["-m", "app"]
        self.process = subprocess.Popen(
            [sys.executable, *command, *args],
            cwd=ROOT,
            env=env or hearth_env(),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, as a shell makes one per job
            **popen,
        )
        self.pid = self.process.pid
        self._text = {"stdout": "", "stderr": ""}
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), name=f"read-{name}", daemon=True)
            for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr))
            if stream is not None
        ]
        for reader in self._readers:
            reader.start()

    @property
    def stdout(self) -> str:
        with self._changed:
            return self._text["stdout"]

    @property
    def stderr(self) -> str:
        with self._changed:
            return self._text["stderr"]

    def _read(self, name: str, stream) -> None:
        for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
            with self._changed:
                self._text[name] += chunk.decode(errors="replace")
                self._changed.notify_all()
        stream.close()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, stream: str = "stderr", timeout: float = EVENT_TIMEOUT_S) -> re.Match:
        """Until ``pattern`` shows up in ``stream``; fails if the command ends or times out first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = re.search(pattern, self._text[stream])
                if match:
                    return match
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"exited {self.process.returncode} before {pattern!r}:\n{self._text['stderr'][-3000:]}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no {pattern!r} after {timeout:.0f} s:\n{self._text['stderr'][-3000:]}"
                    )
                self._changed.wait(min(left, 1.0))  # woken by output; the bound notices a silent exit

    def arbiters(self) -> list[psutil.Process]:
        """The arbiter this command's first worker started, if it has started one yet."""
        return [p for p in psutil.Process(self.pid).children(recursive=True) if _is_arbiter(p)]

    def descendants(self) -> list[psutil.Process]:
        """Every process this command started, except the arbiter (it outlives its first client on
        purpose, in its own session; conftest stops it)."""
        return [p for p in psutil.Process(self.pid).children(recursive=True) if not _is_arbiter(p)]

    def signal(self, signum: int, group: bool = True) -> None:
        """``group``: what a terminal does (Ctrl-C reaches every process of the foreground job)."""
        if group:
            os.killpg(self.pid, signum)
        else:
            os.kill(self.pid, signum)

    def finish(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        """Wait for the exit and for the output of every process still writing to the pipes."""
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def kill(self) -> None:
        """After a failed test: nothing of this command may outlive it."""
        if self.process.poll() is None:
            for child in self.descendants():
                child.kill()
            self.process.kill()
            self.process.wait(10)
        for reader in self._readers:
            reader.join(10)
        with_group = [p for p in psutil.process_iter() if _in_group(p, self.pid)]
        for leftover in with_group:
            leftover.kill()


def _is_arbiter(process: psutil.Process) -> bool:
    cmdline = _cmdline(process)
    return "workers.arbiter" in cmdline or "--arbiter" in cmdline


def _in_group(process: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(process.pid) == pgid
    except (OSError, psutil.Error):
        return False


def assert_all_gone(processes: list[psutil.Process], timeout: float = 30.0) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"left behind: {[(p.pid, _cmdline(p)) for p in alive]}"


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return "?"
