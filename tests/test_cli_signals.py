"""Ctrl-C, a closed terminal and SIGTERM in ``hearth run`` cancel the job cleanly.

Each test drives the real command in its own session (as a terminal starts it), waits for a line
it prints (a model loading, a step done), sends the signal, and checks the exit code, the
messages, and that no worker or other child is left behind.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time
from pathlib import Path

import pytest

from tests.cli_process import EVENT_TIMEOUT_S, HearthProcess, assert_all_gone, hearth_env

LOADING = r"(?i)\b(loading|preparing)\b"
STEP_DONE = r"\|\s*[1-9]\d*/\d+ \["  # a tqdm bar past its first step
INTERRUPTED = 130


def long_job(kind: str, folder: Path) -> list[str]:
    """A job far longer than any test waits, so the signal always lands before its end."""
    match kind:
        case "image":
            return ["image", "--prompt", "a red apple", "--steps", "500", "--out", str(folder / "x.png")]
        case "chat":
            prompt = "Count from 1 to 1000, one number per line."
            return ["chat", "--prompt", prompt, "--max-new-tokens", "4000"]
        case "video":
            out = str(folder / "x.mp4")
            return ["video", "--prompt", "a cat", "--frames", "8", "--steps", "100", "--out", out]
        case "music":
            return ["music", "--prompt", "lofi beat", "--seconds", "600", "--out", str(folder / "x.wav")]
    raise ValueError(kind)


def wait_for_phase(cli: HearthProcess, kind: str, phase: str) -> None:
    if phase == "load":
        cli.wait_for(LOADING)
    elif kind == "chat":
        cli.wait_for(r"\S", stream="stdout")  # the first token
    else:
        cli.wait_for(STEP_DONE)


@pytest.fixture
def out(tmp_path) -> Path:
    """Where the jobs write (the Hearth folders under tmp_path are left to the command to make)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def start():
    started: list[HearthProcess] = []

    def start_cli(args: list[str], **kwargs) -> HearthProcess:
        started.append(HearthProcess(["run", *args], **kwargs))
        return started[-1]

    yield start_cli
    for cli in started:
        cli.kill()


def assert_clean_cancel(cli: HearthProcess, children, folder: Path) -> None:
    code = cli.finish()
    err = cli.stderr
    assert code == INTERRUPTED, err[-3000:]
    assert "hearth: cancelled" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "leaked semaphore" not in err, err[-3000:]
    assert "worker_crashed" not in err, err[-3000:]
    assert_all_gone(children)
    assert_nothing_half_written(folder, err)


def assert_nothing_half_written(folder: Path, err: str) -> None:
    """No temp file is left, and a file there is one the command says it kept (or its sidecar)."""
    for path in folder.iterdir():
        assert not path.name.startswith("."), f"temp file {path.name} left"
        output = path.with_name(path.name.removesuffix(".json"))
        assert f"cancelled: kept {output}" in err, f"{path.name} written but not reported"


def worker_children(cli: HearthProcess):
    children = cli.descendants()
    assert any(is_worker(p) for p in children), "no worker process yet"
    return children


def is_worker(proc) -> bool:
    """Spawned, or forked by the forkserver (which shares its command line with its workers)."""
    forkserver = "multiprocessing.forkserver import main"
    cmdline = " ".join(proc.cmdline())
    return "spawn_main" in cmdline or (
        forkserver in cmdline and forkserver in " ".join(proc.parent().cmdline())
    )


# Mid-job for every kind: each kind's job code has its own step boundaries. Mid-load for a
# diffusers kind and for llama.cpp only: the runtime answers a cancel that lands during a load the
# same way for every kind (the job ends at its first check after the load).
@pytest.mark.parametrize(
    ("kind", "phase"),
    [
        ("image", "load"),
        ("chat", "load"),
        ("image", "job"),
        ("chat", "job"),
        ("video", "job"),
        ("music", "job"),
    ],
)
def test_ctrl_c_in_the_terminal_cancels(kind, phase, start, out):
    """SIGINT to the whole foreground process group, as the terminal sends it."""
    cli = start(long_job(kind, out))
    wait_for_phase(cli, kind, phase)
    children = worker_children(cli)
    arbiters = cli.arbiters()
    cli.signal(signal.SIGINT, group=True)
    assert_clean_cancel(cli, children, out)
    # In its own session, the arbiter never sees the terminal's Ctrl-C; it serves the next client.
    assert all(arbiter.is_running() for arbiter in arbiters)


@pytest.mark.parametrize("kind, phase", [("image", "job"), ("chat", "load")])
def test_sigint_to_the_cli_alone_cancels(kind, phase, start, out):
    cli = start(long_job(kind, out))
    wait_for_phase(cli, kind, phase)
    children = worker_children(cli)
    cli.signal(signal.SIGINT, group=False)
    assert_clean_cancel(cli, children, out)
    if kind == "image":  # a half-drawn image is worth nothing: no file, and the step it reached
        assert "cancelled at step" in cli.stderr
        assert list(out.iterdir()) == []


def test_a_cancelled_music_job_keeps_its_finished_windows(start, out):
    """Partial work is kept and named: the windows finished before the Ctrl-C are the output."""
    kept = out / "x.wav"
    args = [
        "music",
        "--prompt",
        "lofi beat",
        "--seconds",
        "600",
        "--window-seconds",
        "0.5",
        "--out",
        str(kept),
    ]
    cli = start(args)
    cli.wait_for(r"window 1/\d+ finished")
    children = worker_children(cli)
    cli.signal(signal.SIGINT)
    assert_clean_cancel(cli, children, out)
    assert f"cancelled: kept {kept}" in cli.stderr
    assert cli.stdout.strip().splitlines()[-1] == str(kept)
    assert kept.stat().st_size > 0


def test_second_ctrl_c_stops_at_once_and_leaves_nothing_half_written(start, out, tmp_path):
    """The second Ctrl-C lands while a first run builds the demo model (a cancel cannot take
    effect until the load ends): the workers stop at once, unwinding, so the half-built model's
    staging folder is removed too."""
    models = tmp_path / "models"
    models.mkdir()
    cli = start(long_job("image", out), env=hearth_env(HEARTH_MODELS_DIR=str(models)))
    cli.wait_for(LOADING)
    children = worker_children(cli)
    cli.signal(signal.SIGINT)
    cli.wait_for("cancelling")
    cli.signal(signal.SIGINT)
    code = cli.finish(timeout=30)  # prompt: no waiting for the model to finish building
    err = cli.stderr
    assert code == INTERRUPTED, err[-3000:]
    assert "cancelled (the workers were stopped at once)" in err, err[-3000:]
    assert "Traceback" not in err and "leaked semaphore" not in err, err[-3000:]
    assert_all_gone(children)
    assert not [p for p in models.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert list(out.iterdir()) == []


def test_sighup_to_the_group_cancels(start, out):
    cli = start(long_job("chat", out))  # any kind: the lightest to start (a GGUF needs no torch)
    wait_for_phase(cli, "chat", "job")
    children = worker_children(cli)
    cli.signal(signal.SIGHUP, group=True)
    assert_clean_cancel(cli, children, out)


def test_sigterm_to_the_group_cancels(start, out):
    """SIGTERM to every process (a session ending): the workers stop on their own, the job ends
    cancelled, not as a crashed worker."""
    cli = start(long_job("chat", out))  # any kind: the lightest to start
    wait_for_phase(cli, "chat", "job")
    children = worker_children(cli)
    cli.signal(signal.SIGTERM, group=True)
    assert_clean_cancel(cli, children, out)


def test_closing_the_terminal_cancels(start, out):
    """The command runs on a pseudo-terminal it controls; closing the terminal's side hangs it up
    (SIGHUP, then every write fails)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        # Music: a step bar to wait for on the terminal, and the first window is far from done.
        cli = start(long_job("music", out), stdout=terminal, stderr=terminal, preexec_fn=_take_terminal)
    finally:
        os.close(terminal)
    output = _read_until(controller, STEP_DONE)
    children = worker_children(cli)
    os.close(controller)
    assert cli.finish() == INTERRUPTED, output[-3000:]
    assert_all_gone(children)
    assert list(out.iterdir()) == []


def _take_terminal() -> None:
    fcntl.ioctl(1, termios.TIOCSCTTY, 0)


def _read_until(fd: int, pattern: str, timeout: float = EVENT_TIMEOUT_S) -> str:
    text, deadline = "", time.monotonic() + timeout
    while not re.search(pattern, text):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {pattern!r} after {timeout:.0f} s:\n{text[-3000:]}"
        text += os.read(fd, 65536).decode(errors="replace")  # OSError (EIO) once the command ended
    return text


WINDOW_WITH_A_JOB = """
import sys

from PySide6.QtCore import QTimer

import app.main
from workers.protocol import ChatMessage, ChatRequest, TextDelta

COUNT = ChatMessage(role="user", content="Count from 1 to 1000, one number per line.")

def submit_a_long_job(window, tab):
    def on_event(event):
        if isinstance(event, TextDelta):
            print("hearth-test: token", file=sys.stderr, flush=True)
    window.bridge.event.connect(on_event)
    request = ChatRequest(messages=(COUNT,), max_new_tokens=4000)
    QTimer.singleShot(0, lambda: window.bridge.submit(request))

if __name__ == "__main__":  # not in the spawned worker, which imports this file too
    app.main._select_tab = submit_a_long_job
    sys.exit(app.main.main(["--workers", "chat"]))  # any kind: the lightest to start
"""


def test_ctrl_c_closes_the_window_mid_job_and_leaves_no_worker(tmp_path):
    """The real window with a real chat worker: Ctrl-C in its terminal closes it mid-answer, and
    the worker (which ignores the Ctrl-C itself) is stopped with it."""
    script = tmp_path / "window.py"
    script.write_text(WINDOW_WITH_A_JOB)
    window = HearthProcess([], env=hearth_env(QT_QPA_PLATFORM="offscreen"), script=script)
    try:
        window.wait_for(r"hearth-test: token")
        children = worker_children(window)
        window.signal(signal.SIGINT, group=True)
        code = window.finish()
        assert code == 0, window.stderr[-3000:]
        assert "Traceback" not in window.stderr and "KeyboardInterrupt" not in window.stderr
        assert_all_gone(children)
    finally:
        window.kill()
