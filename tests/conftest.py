"""Test hygiene: headless Qt, every Hearth folder under tmp, the arbiter on a simulated device;
a test that leaves a thread, child process, socket or QTimer behind fails (tests/hygiene.py)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from tests.arbiter_helpers import REVOKE_DEADLINE_S
from tests.arbiter_helpers import wait_for as _wait_for
from workers import launch
from workers.arbiter import client as client_module
from workers.arbiter.address import arbiter_running, running_pid
from workers.arbiter.client import ArbiterClient
from workers.protocol import WorkerKind

if not os.environ.get("QT_QPA_PLATFORM"):  # an empty value crashes pytest-qt (docs/FIELD-NOTES.md §6)
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["HF_HUB_OFFLINE"] = "1"
# This run may share its cores with another (CI, a second copy): torch's OpenMP threads, here and
# in the workers the tests start, spin while waiting and starve the other run's; sleeping ones
# made two copies of the supervisor and video tests take 31 s instead of 192 s on 2 CPUs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Each test process runs several workers at once: torch's default of one thread per core in every
# one of them oversubscribes a small machine. One thread each: the suite ran 339 s, not 391 s, on
# 2 CPUs. (The tests check behaviour, which does not depend on the thread count.)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Hundreds of processes (CLI runs, workers) start in a run: let them keep the compiled modules
# rather than compile Hearth's own sources again in each (a machine may set this globally).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# A suite started in the background by a script (`bash .ci/run &`) inherits SIGINT ignored, and so
# would every command it starts: a `hearth` that never sees the Ctrl-C its test sends. The tests'
# commands get what a terminal's foreground job gets (exec resets a handler, never an ignore).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

pytest_plugins = ["tests.hygiene"]

# The cluster tests need the optional Ray extra (`make setup-cluster`): without it they are not
# collected, so the default `make test` never starts (or needs) Ray.
if importlib.util.find_spec("ray") is None:
    collect_ignore_glob = ["test_cluster_*.py"]

DIR_VARS = ("HEARTH_DATA_DIR", "HEARTH_CONFIG_DIR", "HEARTH_RUNTIME_DIR", "HEARTH_LOG_DIR")
SIM_DEVICE = "sim:2GiB"


def _hearth_env(root: Path) -> dict[str, str]:
    env = {var: str(root / var.removeprefix("HEARTH_").removesuffix("_DIR").lower()) for var in DIR_VARS}
    env["HEARTH_ARBITER_DEVICE"] = SIM_DEVICE
    env["HEARTH_ARBITER_SOCKET"] = str(root / "runtime" / "arbiter.sock")
    return env


@pytest.fixture(scope="session", autouse=True)
def shared_models_dir(tmp_path_factory):
    """Demo models are deterministic: build them once per run, not once per test. The test
    processes of one run share the folder (pytest-xdist gives each its own base temp under one
    folder); every build and conversion in it holds a lock, as two workers of the app do."""
    base = tmp_path_factory.getbasetemp()
    path = base.parent / "models" if os.environ.get("PYTEST_XDIST_WORKER") else base / "models"
    path.mkdir(exist_ok=True)
    os.environ["HEARTH_MODELS_DIR"] = str(path)
    yield path
    _kill_arbiters_under(tmp_path_factory.getbasetemp())
    _stop_arbiters_started_here()


@pytest.fixture(scope="session", autouse=True)
def hub_cache(tmp_path_factory):
    """An empty Hugging Face cache of the session's own, set before the forkserver imports
    huggingface_hub (which reads it once, at import): a test that lays a download out in it gets
    workers forked warm, where a changed ``HF_HUB_CACHE`` would make every worker a fresh spawn."""
    path = tmp_path_factory.getbasetemp() / "hf-hub"
    path.mkdir()
    os.environ["HF_HUB_CACHE"] = str(path)
    if "huggingface_hub.constants" in sys.modules:  # imported while the tests were collected
        sys.modules["huggingface_hub.constants"].HF_HUB_CACHE = str(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def forkserver_with_every_kind(shared_models_dir, hub_cache):
    """The forkserver preloads what the first supervisor's kinds need: here every kind, so that
    workers fork warm whichever test starts the first supervisor."""
    launch.worker_context(tuple(WorkerKind))


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


def _stop_arbiters_started_here() -> None:
    """Stop and reap the arbiters this process's clients started (an arbiter outlives its client
    on purpose; left to the end of the interpreter, each would be warned about as still running)."""
    for process in client_module._STARTED:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=5)
    client_module._STARTED.clear()


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


# -- the arbiter socket tests: a private socket on a simulated device, clients closed after the
#    test, and no arbiter process left running.


@pytest.fixture
def sock(tmp_path, monkeypatch):
    path = tmp_path / "a.sock"
    monkeypatch.setenv("HEARTH_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("HEARTH_ARBITER_SOCKET", str(path))
    monkeypatch.setenv("HEARTH_ARBITER_DEVICE", "sim:8GiB,lag=0.2")
    monkeypatch.setenv("HEARTH_ARBITER_HEADROOM", "512MiB")
    monkeypatch.setenv("HEARTH_ARBITER_REVOKE_DEADLINE", str(REVOKE_DEADLINE_S))  # never kills pytest
    yield path
    pid = running_pid(path)
    if pid and arbiter_running(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        _wait_for(lambda: not arbiter_running(path), what="the arbiter to stop")
    _stop_arbiters_started_here()


@pytest.fixture
def clients(sock):
    made: list[ArbiterClient] = []

    def make(owner: str, **kwargs) -> ArbiterClient:
        made.append(ArbiterClient(owner, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("arbiter-client")]


# -- `make test` runs on three pytest-xdist processes: a module stays in one (its module-scoped
#    workers and models are built once), except the modules whose tests share nothing; the Ray
#    cluster tests share one, so that two Ray clusters never start at once on a small machine; and
#    the longest units start first, so that none of them ends the run alone.

CLUSTER_TESTS = "tests/test_cluster_"
SHARING_NOTHING = ("tests/test_cli_signals.py",)  # each test is its own `hearth run`
LONGEST_FIRST = (
    CLUSTER_TESTS,
    "tests/test_cli_signals.py",
    "tests/test_soak.py",
    "tests/test_chat_requant.py",
)


def pytest_collection_modifyitems(config, items):
    # A stable sort: the longest first, the rest in their order.
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST_FIRST))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which a plain `pytest` may lack
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class LongestFirstByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if module.startswith(CLUSTER_TESTS):
                return "ray cluster tests"
            return nodeid if module in SHARING_NOTHING else module

    config.option.loadscopereorder = False  # the collection's order (longest first) is the order of work
    return LongestFirstByModule(config, log)
