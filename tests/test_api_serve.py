"""``hearth serve`` as a user starts it, and the README's "Use Hearth from other apps" snippets run
against it as written (only the port is changed, to a free one)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys

import psutil
import pytest
import soundfile

from tests.cli_process import ROOT, HearthProcess, assert_all_gone

pytestmark = pytest.mark.timeout(600)
README = (ROOT / "README.md").read_text(encoding="utf-8")
README_PORT = "11435"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def readme_block(language: str) -> str:
    section = README.split("## Use Hearth from other apps", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)[-1]


@pytest.fixture
def served(tmp_path):
    port = free_port()
    serve = HearthProcess(["serve", "--port", str(port)])
    try:
        serve.wait_for(rf"listens on http://127\.0\.0\.1:{port}/v1")
        yield serve, port
    finally:
        if serve.process.poll() is None:
            serve.kill()


def test_readme_snippets_run_against_hearth_serve_and_ctrl_c_stops_it_cleanly(served, tmp_path):
    serve, port = served
    key = subprocess.run(
        [sys.executable, "-m", "app", "api-key"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert key.startswith("hearth-")

    snippet = readme_block("python").replace(README_PORT, str(port))
    chat = subprocess.run(
        [sys.executable, "-c", f"HEARTH_KEY = {key!r}\n" + snippet],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip()

    curl = readme_block("bash").replace(README_PORT, str(port))
    curl = curl.replace(".venv/bin/hearth api-key", f"{sys.executable} -m app api-key")
    fetched = subprocess.run(
        ["bash", "-c", f"cd {ROOT} && " + curl.replace("-o piano.wav", f"-o {tmp_path / 'piano.wav'}")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fetched.returncode == 0, fetched.stderr
    audio, rate = soundfile.read(tmp_path / "piano.wav")
    assert abs(len(audio) / rate - 4.0) < 0.05

    listening = [c for c in psutil.Process(serve.pid).net_connections() if c.status == psutil.CONN_LISTEN]
    assert [c.laddr.ip for c in listening] == ["127.0.0.1"]
    workers = serve.descendants()
    serve.signal(signal.SIGINT)
    assert serve.finish() == 0
    assert "Traceback" not in serve.stderr
    assert_all_gone(workers)  # the forkserver and its workers end with it


def test_serve_on_a_port_in_use_says_so(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = HearthProcess(["serve", "--port", str(port)])
        code = serve.finish()
    assert code != 0
    assert f"port {port} on 127.0.0.1 is already in use" in serve.stderr
    assert "Traceback" not in serve.stderr
