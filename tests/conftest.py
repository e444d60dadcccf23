"""Test hygiene: headless Qt, every Hearth folder under tmp, the arbiter on a simulated device,
and no arbiter or worker process left behind."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

if not os.environ.get("QT_QPA_PLATFORM"):  # an empty value crashes pytest-qt (FIELD-NOTES §6)
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DIR_VARS = ("HEARTH_DATA_DIR", "HEARTH_CONFIG_DIR", "HEARTH_RUNTIME_DIR", "HEARTH_LOG_DIR")
SIM_DEVICE = "sim:2GiB"


def _hearth_env(root: Path) -> dict[str, str]:
    env = {var: str(root / var.removeprefix("HEARTH_").removesuffix("_DIR").lower()) for var in DIR_VARS}
    env["HEARTH_ARBITER_DEVICE"] = SIM_DEVICE
    env["HEARTH_ARBITER_SOCKET"] = str(root / "runtime" / "arbiter.sock")
    return env


@pytest.fixture(scope="session", autouse=True)
def shared_models_dir(tmp_path_factory):
    """Demo models are deterministic: build them once per session, not once per test."""
    path = tmp_path_factory.mktemp("models")
    os.environ["HEARTH_MODELS_DIR"] = str(path)
    yield path
    _kill_arbiters_under(tmp_path_factory.getbasetemp())


@pytest.fixture(autouse=True)
def hearth_dirs(request, tmp_path, monkeypatch):
    """Each test gets its own data/config/runtime dirs, unless it shares a module's worker env."""
    if "isolated_hearth_env" in request.fixturenames:
        yield None
        return
    for key, value in _hearth_env(tmp_path / "hearth").items():
        monkeypatch.setenv(key, value)
    yield tmp_path / "hearth"
    _kill_arbiters_under(tmp_path)


@pytest.fixture(scope="module")
def isolated_hearth_env(tmp_path_factory):
    """Module-wide Hearth dirs for tests sharing long-lived worker processes (spawned children
    inherit the environment at spawn time, so it must not change under them)."""
    root = tmp_path_factory.mktemp("hearth")
    env = _hearth_env(root)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _kill_arbiters_under(root)


@pytest.fixture(scope="module")
def arbiter_address(isolated_hearth_env) -> Path:
    return Path(os.environ["HEARTH_ARBITER_SOCKET"])


def _kill_arbiters_under(root: Path) -> None:
    """Arbiters are started detached on demand; stop the ones this test's folders started."""
    import psutil

    root = str(root)
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "workers.arbiter" not in cmdline:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("HEARTH_RUNTIME_DIR", "").startswith(root):
                proc.kill()
