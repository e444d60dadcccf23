"""``hearth cluster start`` + ``hearth run image --cluster 127.0.0.1:PORT`` in a shell, end to end:
a real Ray head on this machine (token authentication on), the job placed on it, the PNG here
with its parameters; ``status`` shows the node and its arbiter; ``stop`` leaves no Ray process.

Collected only when the optional Ray extra is installed (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys

import psutil
import pytest
from PIL import Image

from tests.cli_process import ROOT, HearthProcess

COMMAND_TIMEOUT_S = 240


def hearth(
    *args: str, env: dict[str, str], timeout: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ray_processes(root: str) -> list[str]:
    """Ray's daemons started for this test (they carry its Hearth folders in their environment)."""
    found = []
    for proc in psutil.process_iter(["name", "pid"]):
        try:
            if proc.info["name"] in ("raylet", "gcs_server") or "ray::" in proc.info["name"]:
                if any(root in value for value in proc.environ().values()):
                    found.append(f"{proc.info['pid']} {proc.info['name']}")
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="module")
def head(isolated_hearth_env):
    env = dict(os.environ, HEARTH_ARBITER_DEVICE="sim:2GiB", PYTHONUNBUFFERED="1")
    address = f"127.0.0.1:{_free_port()}"
    started = hearth("cluster", "start", "--port", address.split(":")[1], "--cpus", "1", env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert f"cluster head started at {address}" in started.stdout
        yield address, env
    finally:
        stopped = hearth("cluster", "stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
    assert not _ray_processes(str(isolated_hearth_env)), "Ray processes outlived `hearth cluster stop`"


def test_the_token_stays_private_to_this_user(head, isolated_hearth_env):
    token = isolated_hearth_env / "config" / "cluster-token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert len(token.read_text()) == 64


def test_run_image_on_the_cluster_writes_the_png_here_with_its_parameters(head, tmp_path):
    address, env = head
    out = tmp_path / "apple.png"
    run = hearth(
        "run",
        "image",
        "--prompt",
        "a red apple",
        "--steps",
        "2",
        "--seed",
        "5",
        "--out",
        str(out),
        "--cluster",
        address,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "sent to node" in run.stderr
    assert run.stdout.strip() == str(out)
    with Image.open(out) as image:
        params = json.loads(image.info["hearth"])
    assert (params["prompt"], params["steps"], params["seed"]) == ("a red apple", 2, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apple.png", "apple.png.json"]

    status = hearth("cluster", "status", "--address", address, env=env)
    assert status.returncode == 0, status.stderr
    assert "(alive)" in status.stdout
    assert "simulated 2.0 GiB" in status.stdout  # the node's own arbiter, with its device


def test_ctrl_c_cancels_the_job_on_the_cluster_at_its_next_step(head, tmp_path):
    address, env = head
    out = tmp_path / "long.png"
    run = HearthProcess(
        ["run", "image", "--prompt", "long", "--steps", "400", "--out", str(out), "--cluster", address],
        env=env,
    )
    try:
        run.wait_for(r"\d+/400")  # a step has been done on the cluster
        run.signal(signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground job
        assert run.finish() == 130
    finally:
        run.kill()
    assert re.search(r"cancelled at step \d+", run.stderr)
    assert list(tmp_path.iterdir()) == []


def test_a_second_machine_joins_with_its_own_device_and_arbiter(head, isolated_hearth_env, tmp_path):
    address, env = head
    token = isolated_hearth_env / "config" / "cluster-token"
    second = dict(
        env,
        HEARTH_RUNTIME_DIR=str(tmp_path / "b" / "run"),
        HEARTH_ARBITER_SOCKET=str(tmp_path / "b" / "run" / "arbiter.sock"),
        HEARTH_DATA_DIR=str(tmp_path / "b" / "data"),
        HEARTH_CONFIG_DIR=str(tmp_path / "b" / "config"),
        HEARTH_ARBITER_DEVICE="sim:4GiB",
    )
    joined = hearth("cluster", "join", address, "--cpus", "1", "--token-file", str(token), env=second)
    try:
        assert joined.returncode == 0, joined.stderr
        status = hearth("cluster", "status", "--address", address, env=env)
        assert status.returncode == 0, status.stderr
        assert status.stdout.count("(alive)") == 2
        assert "simulated 2.0 GiB" in status.stdout and "simulated 4.0 GiB" in status.stdout
    finally:  # on that machine: its own node, not the head
        stopped = hearth("cluster", "stop", env=second)
    assert stopped.returncode == 0 and "stopped this machine's cluster processes" in stopped.stdout


def test_a_machine_without_the_clusters_token_is_refused(head, tmp_path):
    address, env = head
    stranger = dict(env, HEARTH_CONFIG_DIR=str(tmp_path / "elsewhere"), RAY_AUTH_TOKEN="0" * 64)
    run = hearth(
        "run",
        "image",
        "--prompt",
        "x",
        "--steps",
        "1",
        "--out",
        str(tmp_path / "x.png"),
        "--cluster",
        address,
        env=stranger,
    )
    assert run.returncode == 1
    assert "refused this machine's token" in run.stderr
    assert not (tmp_path / "x.png").exists()


def test_nothing_but_a_cluster_command_loads_ray(isolated_hearth_env):
    """With the extra installed: the CLI, the window's modules and the supervisor leave Ray alone."""
    probe = (
        "import sys, contextlib, io\n"
        "import app.cli, app.main, app.main_window, workers.supervisor, workers.runtime\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    app.cli.main(['run', 'image', '--help'])\n"
        "print('ray' in sys.modules, 'workers.cluster' in sys.modules)\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_cluster_stop_ends_only_the_ray_processes_this_hearth_started(tmp_path):
    """Someone's own Ray work, or another Hearth's cluster, on the same machine keeps running."""
    from workers.cluster import control
    from workers.paths import config_dir

    def fake_ray_worker(owner: str) -> subprocess.Popen:
        env = dict(os.environ, **{control.OWNER_VARIABLE: owner})
        code = "import sys; sys.stdin.read()"  # until stdin closes or a signal ends it
        return subprocess.Popen(
            [sys.executable, "-c", code, "ray::WorkerActor"], env=env, stdin=subprocess.PIPE
        )

    ours = fake_ray_worker(str(config_dir().resolve()))
    theirs = fake_ray_worker(str(tmp_path / "another-hearth"))
    try:
        assert control.stop() == 1  # which waits for it to end
        assert ours.poll() is not None and theirs.poll() is None
    finally:
        for proc in (ours, theirs):
            proc.kill()
            proc.wait()
            proc.stdin.close()
